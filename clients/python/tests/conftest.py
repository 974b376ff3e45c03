"""Fixtures: real redis-server processes with the rlock module, each in its own temp dir,
reached over a unix socket in that dir (so a test cannot talk to another test's server), and
stopped by their own pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
import redis.asyncio

MODULE = os.environ.get("RLOCK_MODULE", "")
SERVER = os.environ.get("RLOCK_SERVER", "redis-server")


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Polls ``condition`` until it is truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    dir: Path
    port: int

    @property
    def socket_path(self) -> str:
        return str(self.dir / "redis.sock")

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, **options)

    def async_client(self, **options: Any) -> redis.asyncio.Redis:
        return redis.asyncio.Redis(unix_socket_path=self.socket_path, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def stalled(server: Server, seconds: float) -> Iterator[None]:
    """Stalls the whole server for ``seconds`` (``DEBUG SLEEP`` from a connection of its own)
    around the block: the command is written before the block runs, so the server reads it
    first and whatever the block sends is run only after the stall. Waits for the stall to
    end when the block is done."""
    connection = redis.UnixDomainSocketConnection(path=server.socket_path)
    connection.connect()
    connection.send_command("DEBUG", "SLEEP", seconds)
    try:
        yield
    finally:
        assert connection.read_response() == b"OK"
        connection.disconnect()


def command_calls(client: redis.Redis, command: str) -> int:
    """How many times the server ran ``command`` (lower case, e.g. ``lock.release``)."""
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def start_server(*extra: str) -> Server:
    if not MODULE or not Path(MODULE).is_file():
        pytest.fail(f"RLOCK_MODULE must name the built librlock.so (got {MODULE!r})")
    workdir = Path(tempfile.mkdtemp(prefix="rlock-py-"))
    port = free_port()
    args = [
        SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--unixsocket", str(workdir / "redis.sock"), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
        "--loadmodule", MODULE, *extra,
    ]  # fmt: skip
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (the server owns it)
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(process, workdir, port)
    client = server.client()
    try:
        wait_until(lambda: _answers(client, process), 15, f"redis-server in {workdir}")
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()
    return server


def _answers(client: redis.Redis, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"redis-server exited with {process.returncode}")
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    started = start_server()
    yield started
    started.stop()
    shutil.rmtree(started.dir, ignore_errors=True)


@pytest.fixture
def fresh_server() -> Iterator[Server]:
    """A server of the test's own, for tests that disturb everything (FLUSHALL) or need a
    replica."""
    started = start_server()
    yield started
    started.stop()
    shutil.rmtree(started.dir, ignore_errors=True)


@pytest.fixture
def r(server: Server) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    """A lock name no other test uses."""
    return f"lock:{uuid.uuid4().hex}"
