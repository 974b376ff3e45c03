"""The fenced register: the resource the locks protect, a service of its own (a process).

Per key it keeps the highest token it accepted and refuses a write with a lower one (an equal
token is the same hold writing again). It records every attempt, one JSON line each, in the
order it decided them: client, op, key, token, the client's local times of acquiring and of
writing, the register's own time, and whether it accepted. Reads (shared and LIMIT holders)
are recorded too and change nothing.

Protocol: one JSON object a line over TCP on 127.0.0.1, one JSON reply a line.
  {"op": "write"|"read", "client": str, "opid": str, "key": str, "token": int,
   "t_acquired": float, "t_sent": float}            (times: seconds since the epoch)
  -> {"accepted": bool, "highest": int}
Run: python -m rlock_faults.register LOG_PATH PORT_FILE (writes its port there once listening).
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time
from typing import Any


class Register:
    """The per-key state and the log; one decision at a time."""

    def __init__(self, log_path: str) -> None:
        self._highest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def attempt(self, request: dict[str, Any]) -> dict[str, Any]:
        key, token = str(request["key"]), int(request["token"])
        with self._lock:
            highest = self._highest.get(key, -1)
            if request["op"] == "write":
                accepted = token >= highest
                if accepted:
                    self._highest[key] = token
            else:
                accepted = True
            record = dict(
                request, accepted=accepted, highest_before=highest, t_register=time.time()
            )
            self._log.write(json.dumps(record) + "\n")
        return {"accepted": accepted, "highest": max(highest, token) if accepted else highest}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            if not line.strip():
                continue
            reply = self.server.register.attempt(json.loads(line))
            self.wfile.write((json.dumps(reply) + "\n").encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, register: Register) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.register = register


class RegisterClient:
    """One connection to the register; reconnects once when it was dropped."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _connect(self) -> None:
        self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=30)
        self._file = self._sock.makefile("rwb")

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Sends one attempt; returns the register's reply. Raises OSError when unreachable."""
        for attempt in range(2):
            if self._sock is None:
                self._connect()
            try:
                self._file.write((json.dumps(request) + "\n").encode())
                self._file.flush()
                line = self._file.readline()
                if line:
                    reply: dict[str, Any] = json.loads(line)
                    return reply
            except OSError:
                if attempt == 1:
                    raise
            self.close()
        raise OSError("the register closed the connection")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None


def main() -> None:
    log_path, port_file = sys.argv[1], sys.argv[2]
    server = _Server(Register(log_path))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
