"""One hot lock, N processes, a 1 ms critical section: grants/s, wait p99 and fairness (Jain's
index over the grants per process) for rlock.Lock, redis-py's Lock and python-redis-lock.

Each contender runs for a fixed time against one redis-server (with the rlock module) that
this script starts in a temp dir, reached over a unix socket, and stops by its pid.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

CONTENDERS = ["rlock", "redis-py", "redis-py sleep=1ms", "python-redis-lock"]


def make_lock(kind: str, client: redis.Redis, name: str) -> Any:
    if kind == "rlock":
        import rlock

        return rlock.Lock(client, name, timeout=10)
    if kind == "redis-py":
        return client.lock(name, timeout=10)
    if kind == "redis-py sleep=1ms":
        return client.lock(name, timeout=10, sleep=0.001)
    import redis_lock

    return redis_lock.Lock(client, name, expire=10)


def worker(kind: str, socket_path: str, name: str, go: Any, seconds: float, out: Any) -> None:
    client = redis.Redis(unix_socket_path=socket_path, socket_timeout=None)
    lock = make_lock(kind, client, name)
    waits: list[float] = []
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked = time.perf_counter()
        lock.acquire()
        waits.append(time.perf_counter() - asked)
        time.sleep(0.001)  # the critical section
        lock.release()
    out.put(waits)
    client.close()


def run(kind: str, socket_path: str, processes: int, seconds: float) -> dict[str, float]:
    spawn = multiprocessing.get_context("spawn")
    go, out = spawn.Event(), spawn.Queue()
    name = f"bench:{kind}"
    workers = [
        spawn.Process(target=worker, args=(kind, socket_path, name, go, seconds, out))
        for _ in range(processes)
    ]
    for process in workers:
        process.start()
    time.sleep(1.0)  # let every process import and connect before the start signal
    go.set()
    per_process = [out.get(timeout=seconds + 60) for _ in workers]
    for process in workers:
        process.join(30)
    grants = [len(waits) for waits in per_process]
    all_waits = sorted(w for waits in per_process for w in waits)
    p99 = all_waits[min(len(all_waits) - 1, int(0.99 * len(all_waits)))] if all_waits else 0.0
    return {
        "grants/s": sum(grants) / seconds,
        "wait p50 ms": statistics.median(all_waits) * 1000 if all_waits else 0.0,
        "wait p99 ms": p99 * 1000,
        "Jain": jain(grants),
        "min/max grants": f"{min(grants)}/{max(grants)}",  # type: ignore[dict-item]
    }


def jain(values: list[int]) -> float:
    """Jain's fairness index: 1.0 when all equal, 1/n when one gets everything."""
    total, squares = sum(values), sum(v * v for v in values)
    return (total * total) / (len(values) * squares) if squares else 0.0


def start_server(workdir: Path) -> subprocess.Popen[bytes]:
    module = os.environ["RLOCK_MODULE"]
    args = [
        os.environ.get("RLOCK_SERVER", "redis-server"), "--port", "0",
        "--unixsocket", str(workdir / "redis.sock"), "--unixsocketperm", "700",
        "--dir", str(workdir), "--save", "", "--appendonly", "no", "--loadmodule", module,
    ]  # fmt: skip
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (the server owns it)
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(unix_socket_path=str(workdir / "redis.sock"))
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"redis-server did not start; see {workdir / 'server.log'}")
            time.sleep(0.05)


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    columns = ["lock", *rows[0][1].keys()]
    cells = [[kind, *(fmt(value) for value in result.values())] for kind, result in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(columns, *cells)]
    line: Callable[[list[str]], str] = lambda row: "  ".join(  # noqa: E731
        str(cell).ljust(width) for cell, width in zip(row, widths)
    )
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def fmt(value: Any) -> str:
    return (
        f"{value:.3f}"
        if isinstance(value, float) and value < 10
        else (f"{value:.0f}" if isinstance(value, float) else str(value))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="per contender")
    parser.add_argument("--only", choices=CONTENDERS, action="append")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rlock-bench-"))
    server = start_server(workdir)
    try:
        rows = []
        for kind in options.only or CONTENDERS:
            print(f"running {kind} ...", file=sys.stderr)
            rows.append(
                (kind, run(kind, str(workdir / "redis.sock"), options.processes, options.seconds))
            )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"one hot lock, {options.processes} processes, 1 ms critical section, "
        f"{options.seconds:g} s each"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
