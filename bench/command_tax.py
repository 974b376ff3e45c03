#!/usr/bin/env python3
"""What loading rlock costs every other command: server instructions per SET and per GET
(callgrind, counting processCommand and everything under it), without the module and with
each module given, side by side.

usage: bench/command_tax.py [MODULE.so ...]   (needs valgrind; about a minute per module)

Each figure is a difference of two server runs (5 and 25 rounds over the same 1000 keys), so
start-up, the first round's inserts and table growth cancel out; the client speaks raw RESP,
so no command but the measured ones reaches the server. The server runs as bench/pair_cost.py
runs it (a fixed hash seed where mount namespaces are allowed, no ASLR, no clock-driven
purging in jemalloc, hz 1, no slowlog), so runs repeat to within a few instructions; without
the fixed seed a command's table lookups differ from run to run by up to ~150 instructions.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
import pair_cost  # noqa: E402  (the repeatable server set-up)

REDIS_SERVER = "/usr/bin/redis-server"
KEYS = 1000
FEW, MANY = 5, 25


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(name, key):
    key = b"key:%08d" % key
    if name == "SET":
        return b"*3\r\n$3\r\nSET\r\n$12\r\n" + key + b"\r\n$8\r\nvalue-01\r\n"
    return b"*2\r\n$3\r\nGET\r\n$12\r\n" + key + b"\r\n"


def instructions(module, rounds):
    """processCommand's instructions for `rounds` (a list of SET/GET) over KEYS keys."""
    # Paths, port and environment of the same length in every run (see pair_cost.one_run).
    workdir = tempfile.mkdtemp(prefix="rlock-tax-", dir="/tmp")
    port = pair_cost.free_port()
    seeded = pair_cost.seed_prefix(0) if pair_cost.seeds_allowed() else []
    args = seeded + [pair_cost.TOOLS["setarch"], "-R", pair_cost.TOOLS["valgrind"],
            "--tool=callgrind",
            "--toggle-collect=processCommand",
            "--callgrind-out-file=" + os.path.join(workdir, "callgrind.out"),
            REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--jemalloc-bg-thread", "no", "--hz", "1", "--slowlog-log-slower-than", "-1",
            "--logfile", os.path.join(workdir, "redis.log")]
    if module:
        linked = os.path.join(workdir, "rlock.so")
        os.symlink(module, linked)
        args += ["--loadmodule", linked]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=pair_cost.SERVER_ENV)
    try:
        log = os.path.join(workdir, "redis.log")
        for _ in range(600):
            if os.path.exists(log) and "Ready to accept" in open(log).read():
                break
            time.sleep(0.1)
        else:
            raise SystemExit("redis-server under valgrind did not start: " + log)
        with socket.create_connection(("127.0.0.1", port)) as client:
            for name in rounds:
                for first in range(0, KEYS, 100):
                    client.sendall(b"".join(command(name, k) for k in range(first, first + 100)))
                    lines = 100 * (1 if name == "SET" else 2)
                    reply = b""
                    while reply.count(b"\r\n") < lines:
                        reply += client.recv(65536)
    finally:
        # SIGTERM: the server shuts down outside processCommand and callgrind writes its file.
        server.send_signal(signal.SIGTERM)
        server.wait()
    text = open(os.path.join(workdir, "callgrind.out")).read()
    return int(re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M).group(1))


def per_command(module, before, name):
    few = instructions(module, before + [name] * FEW)
    many = instructions(module, before + [name] * MANY)
    return (many - few) / ((MANY - FEW) * KEYS)


def main():
    if not pair_cost.seeds_allowed():
        print("note: no private mount namespace here: counts vary by up to ~150 a command")
    modules = [None] + [os.path.abspath(module) for module in sys.argv[1:]]
    rows = []
    for module in modules:
        rows.append((module or "no module",
                     per_command(module, [], "SET"), per_command(module, ["SET"], "GET")))
    base_set, base_get = rows[0][1], rows[0][2]
    print("server instructions per command (callgrind, processCommand inclusive)")
    print(f"{'server':60s} {'SET':>8s} {'GET':>8s} {'SET extra':>10s} {'GET extra':>10s}")
    for label, per_set, per_get in rows:
        print(f"{label[-60:]:60s} {per_set:8.0f} {per_get:8.0f} "
              f"{per_set - base_set:+10.0f} {per_get - base_get:+10.0f}")


if __name__ == "__main__":
    main()
