"""One hot lock, N processes, a 1 ms critical section: grants/s, wait p99 and fairness (Jain's
index over the grants per process) for rlock.Lock, redis-py's Lock and python-redis-lock.

Each contender runs for a fixed time against one redis-server (with the rlock module) that
this script starts in a temp dir, reached over a unix socket, and stops by its pid.

Besides the locks, a "raw" row: the same LOCK.ACQUIRE ... WAIT 0 and LOCK.RELEASE that
rlock.Lock sends (less its HELD count), straight on a redis-py client with no client logic
(the floor of any client over FIFO handoff), and "rlock watched" (no timeout: the watchdog
renews it). Columns beyond rate, waits (p50, p99 and the longest: p99 over grants hides a
process starved to a few grants) and fairness: "retake" (the share of grants that went to
the process that had the lock just before: a release followed by its own next acquire, which
a FIFO queue refuses while others wait), the client CPU per grant (every process'
process_time), the server's CPU per grant (/proc), and the client's context switches per
grant (getrusage). With --rounds N each contender runs N times, interleaved, and the round
with its median rate is shown; --json writes every round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

CONTENDERS = [
    "raw",
    "rlock",
    "rlock watched",
    "redis-py",
    "redis-py sleep=1ms",
    "python-redis-lock",
]


class RawLock:
    """rlock.Lock's two commands and nothing else: the floor of a client over FIFO handoff."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.client, self.name = client, name
        self.owner = uuid.uuid4().hex

    def acquire(self) -> bool:
        return (
            self.client.execute_command("LOCK.ACQUIRE", self.name, self.owner, 10000, "WAIT", 0)
            is not None
        )

    def release(self) -> None:
        if self.client.execute_command("LOCK.RELEASE", self.name, self.owner) is None:
            raise RuntimeError("the raw lock was not held at release")


def make_lock(kind: str, client: redis.Redis, name: str) -> Any:
    if kind == "raw":
        return RawLock(client, name)
    if kind == "rlock":
        import rlock

        return rlock.Lock(client, name, timeout=10)
    if kind == "rlock watched":
        import rlock

        return rlock.Lock(client, name)
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
    granted_at: list[float] = []
    go.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked = time.monotonic()
        if not lock.acquire():
            raise RuntimeError(f"{kind}: acquire without a timeout returned False")
        got = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
        waits.append(got - asked)
        granted_at.append(got)
        time.sleep(0.001)  # the critical section
        lock.release()
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    switches = after.ru_nvcsw + after.ru_nivcsw - usage.ru_nvcsw - usage.ru_nivcsw
    out.put({"waits": waits, "granted_at": granted_at, "cpu": cpu, "switches": switches})
    client.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    kind: str, socket_path: str, server_pid: int, processes: int, seconds: float
) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    go, out = spawn.Event(), spawn.Queue()
    name = f"bench:{kind}:{time.monotonic_ns()}"
    workers = [
        spawn.Process(target=worker, args=(kind, socket_path, name, go, seconds, out))
        for _ in range(processes)
    ]
    for process in workers:
        process.start()
    time.sleep(1.0)  # let every process import and connect before the start signal
    server_cpu = cpu_seconds(server_pid)
    go.set()
    per_process = [out.get(timeout=seconds + 60) for _ in workers]
    server_cpu = cpu_seconds(server_pid) - server_cpu
    for process in workers:
        process.join(30)
    grants = [len(one["waits"]) for one in per_process]
    total = sum(grants)
    all_waits = sorted(w for one in per_process for w in one["waits"])
    p99 = all_waits[min(len(all_waits) - 1, int(0.99 * len(all_waits)))] if all_waits else 0.0
    order = sorted((at, index) for index, one in enumerate(per_process) for at in one["granted_at"])
    retakes = sum(1 for before, now in zip(order, order[1:]) if before[1] == now[1])
    return {
        "grants/s": total / seconds,
        "wait p50 ms": statistics.median(all_waits) * 1000 if all_waits else 0.0,
        "wait p99 ms": p99 * 1000,
        "wait max ms": all_waits[-1] * 1000 if all_waits else 0.0,
        "Jain": jain(grants),
        "min/max grants": f"{min(grants)}/{max(grants)}",
        "retake": retakes / max(1, total - 1),
        "client CPU µs/grant": sum(one["cpu"] for one in per_process) / max(1, total) * 1e6,
        "server CPU µs/grant": server_cpu / max(1, total) * 1e6,
        "switches/grant": sum(one["switches"] for one in per_process) / max(1, total),
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


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
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
    parser.add_argument("--seconds", type=float, default=3.0, help="per contender and round")
    parser.add_argument("--rounds", type=int, default=1, help="runs per contender, interleaved")
    parser.add_argument("--only", choices=CONTENDERS, action="append")
    parser.add_argument("--json", metavar="FILE", help="every round's figures, as JSON")
    options = parser.parse_args()
    kinds = options.only or CONTENDERS
    workdir = Path(tempfile.mkdtemp(prefix="rlock-bench-"))
    server = start_server(workdir)
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for number in range(options.rounds):
            for kind in kinds:
                print(f"running {kind} (round {number + 1}) ...", file=sys.stderr)
                rounds[kind].append(
                    run(
                        kind,
                        str(workdir / "redis.sock"),
                        server.pid,
                        options.processes,
                        options.seconds,
                    )
                )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [(kind, median_round(rounds[kind])) for kind in kinds]
    print(
        f"one hot lock, {options.processes} processes, 1 ms critical section, "
        f"{options.seconds:g} s each"
        + (f", the median of {options.rounds} rounds by grants/s" if options.rounds > 1 else "")
    )
    print(table(rows))
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        document = {
            "date": time.strftime("%Y-%m-%d"),
            "processes": options.processes,
            "seconds": options.seconds,
            "cpus": os.cpu_count(),
            "rounds": rounds,
            "median": dict(rows),
        }
        Path(options.json).write_text(json.dumps(document, indent=2))


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(results, key=lambda result: result["grants/s"])
    return ranked[(len(ranked) - 1) // 2]


if __name__ == "__main__":
    main()
