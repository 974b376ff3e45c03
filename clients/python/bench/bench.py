"""One hot lock, N processes, a 1 ms critical section: grants/s, wait p99 and fairness (Jain's
index over the grants per process) for rlock.Lock, redis-py's Lock and python-redis-lock.

Each contender runs for a fixed time against one redis-server (with the rlock module) that
this script starts in a temp dir, reached over a unix socket, and stops by its pid.

--sweep 1,2,4,8,16,32 also runs every contender at each of those process counts (--sweep-seconds
each) and prints grants/s and wait p99 against them; --json PATH writes the results (the run's
machine, server and date, the sweep, and the distribution of waits at --processes) for
`rlock-bench charts`. Waits are in milliseconds.

Besides the locks, a "raw" row: the same LOCK.ACQUIRE ... WAIT 0 and LOCK.RELEASE that
rlock.Lock sends (less its HELD count), straight on a redis-py client with no client logic
(the floor of any client over FIFO handoff), and "rlock watched" (no timeout: the watchdog
renews it). Columns beyond rate, waits (p50, p99 and the longest: p99 over grants hides a
process starved to a few grants) and fairness: "retake" (the share of grants that went to
the process that had the lock just before: a release followed by its own next acquire, which
a FIFO queue refuses while others wait), the client CPU per grant (every process'
process_time), the server's CPU per grant (/proc), and the client's context switches per
grant (getrusage). With --rounds N each contender runs N times, interleaved, and the round
with its median rate is shown (the JSON keeps every round).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
# The contenders the sweep, the handoff rounds and the wait CDF cover (the charts' lines; the
# raw floor and the watched lock are in the contention table only; a watched lock never
# expires, so it has no handoff on expiry).
CHARTED = ["rlock", "redis-py", "redis-py sleep=1ms", "python-redis-lock"]
# What the charts call each contender.
LABELS = {
    "raw": "raw LOCK.ACQUIRE WAIT / LOCK.RELEASE",
    "rlock": "rlock.Lock",
    "rlock watched": "rlock.Lock, watchdog",
    "redis-py": "redis-py Lock",
    "redis-py sleep=1ms": "redis-py Lock sleep=1ms",
    "python-redis-lock": "python-redis-lock",
}
# Points of the wait distribution kept for the CDF chart.
CDF_POINTS = 200
# The holder's lease in the handoff-on-expiry rounds, in seconds (python-redis-lock: 1 s).
EXPIRY_TTL_S = 0.05
# How long the processes may take to start, import and connect.
START_TIMEOUT_S = 120.0


class RawLock:
    """rlock.Lock's two commands and nothing else: the floor of a client over FIFO handoff."""

    def __init__(self, client: redis.Redis, name: str, ttl: float = 10.0) -> None:
        self.client, self.name = client, name
        self.owner = uuid.uuid4().hex
        self.ttl_ms = int(ttl * 1000)

    def acquire(self) -> bool:
        command = ("LOCK.ACQUIRE", self.name, self.owner, self.ttl_ms, "WAIT", 0)
        return self.client.execute_command(*command) is not None

    def release(self) -> None:
        if self.client.execute_command("LOCK.RELEASE", self.name, self.owner) is None:
            raise RuntimeError("the raw lock was not held at release")


def make_lock(kind: str, client: redis.Redis, name: str, ttl: float = 10.0) -> Any:
    """A lock of `kind` on `name` whose lease is `ttl` seconds (python-redis-lock: whole
    seconds, at least 1; "rlock watched": no timeout, the watchdog renews it)."""
    if kind == "raw":
        return RawLock(client, name, ttl)
    if kind == "rlock":
        import rlock

        return rlock.Lock(client, name, timeout=ttl)
    if kind == "rlock watched":
        import rlock

        return rlock.Lock(client, name)
    if kind == "redis-py":
        return client.lock(name, timeout=ttl)
    if kind == "redis-py sleep=1ms":
        return client.lock(name, timeout=ttl, sleep=0.001)
    import redis_lock

    return redis_lock.Lock(client, name, expire=expiry_ttl_s(kind, ttl))


def expiry_ttl_s(kind: str, ttl: float) -> int | float:
    """The lease a lock of `kind` can take: python-redis-lock's is whole seconds, at least 1."""
    return max(1, round(ttl)) if kind == "python-redis-lock" else ttl


def worker(kind: str, socket_path: str, name: str, go: Any, seconds: float, out: Any) -> None:
    client = redis.Redis(unix_socket_path=socket_path, socket_timeout=None)
    lock = make_lock(kind, client, name)
    client.ping()
    waits: list[float] = []
    granted_at: list[float] = []
    go.wait(START_TIMEOUT_S)  # every process ready (connected): the start line
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
    return run_with_waits(kind, socket_path, server_pid, processes, seconds)[0]


def run_with_waits(
    kind: str, socket_path: str, server_pid: int, processes: int, seconds: float
) -> tuple[dict[str, Any], list[float]]:
    """The row of the table and every wait, sorted, in seconds."""
    spawn = multiprocessing.get_context("spawn")
    go, out = spawn.Barrier(processes + 1), spawn.Queue()
    name = f"bench:{kind}:{processes}:{time.monotonic_ns()}"
    workers = [
        spawn.Process(target=worker, args=(kind, socket_path, name, go, seconds, out))
        for _ in range(processes)
    ]
    for process in workers:
        process.start()
    go.wait(START_TIMEOUT_S)
    server_cpu = cpu_seconds(server_pid)
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
    }, all_waits


def handoffs(kind: str, socket_path: str, rounds: int, on_expiry: bool) -> list[float]:
    """Handoff latencies in ms, one holder and one waiter (a thread) on one lock.

    On release: the waiter is waiting (20 to 120 ms after it began: any polling phase); from
    sending the release to the waiter's grant. On expiry: the holder takes an `EXPIRY_TTL_S`
    lock and never releases it; the waiter begins at a random point of that lease; from the
    expiry instant (the midpoint of the holder's acquire + the lease) to the grant. Each of
    python-redis-lock's waiters sleeps in BLPOP for its own lease, so both take 1 s there.
    """
    holder_client = redis.Redis(unix_socket_path=socket_path, socket_timeout=None)
    waiter_client = redis.Redis(unix_socket_path=socket_path, socket_timeout=None)
    name = f"handoff:{kind}:{'expiry' if on_expiry else 'release'}"
    ttl = expiry_ttl_s(kind, EXPIRY_TTL_S) if on_expiry else 10.0
    latencies = []
    for _ in range(rounds):
        granted: list[float] = []

        def wait(phase: float, granted: list[float]) -> None:
            time.sleep(phase)
            lock = make_lock(kind, waiter_client, name, ttl)
            lock.acquire()
            granted.append(time.perf_counter())
            lock.release()

        holder = make_lock(kind, holder_client, name, ttl)
        asked = time.perf_counter()
        holder.acquire()
        expires = (asked + time.perf_counter()) / 2 + ttl
        phase = random.uniform(0, ttl * 0.8) if on_expiry else 0.0
        waiter = threading.Thread(target=wait, args=(phase, granted), daemon=True)
        waiter.start()
        if on_expiry:
            waiter.join(ttl + 30)
            start = expires
        else:
            time.sleep(random.uniform(0.02, 0.12))
            start = time.perf_counter()
            holder.release()
            waiter.join(30)
        if not granted:
            sys.exit(f"{kind}: the waiter got no lock within 30 s of the handoff")
        latencies.append((granted[0] - start) * 1000)
    holder_client.close()
    waiter_client.close()
    return latencies


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    rank = min(len(ordered) - 1, int(0.99 * len(ordered)))
    return {
        "rounds": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[rank],
        "max_ms": ordered[-1],
    }


def quantiles(sorted_values: list[float], points: int) -> list[float]:
    """`points` evenly spaced nearest-rank quantiles, minimum to maximum, of sorted values."""
    if not sorted_values or points < 2:
        return []
    last = len(sorted_values) - 1
    return [sorted_values[(i * last + (points - 1) // 2) // (points - 1)] for i in range(points)]


def describe_run() -> dict[str, str]:
    """The machine, the server and the date of this run, as every chart states them."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
                break
    server = os.environ.get("RLOCK_SERVER", "redis-server")
    try:
        words = subprocess.run(
            [server, "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        words = []
    version = next((w[2:] for w in words if w.startswith("v=")), "unknown version")
    return {
        "machine": f"{os.cpu_count()} CPUs (nproc), {model}",
        "server": f"redis-server {version}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }


def sweep_table(what: str, counts: list[int], cells: dict[tuple[str, int], str]) -> str:
    kinds = list(dict.fromkeys(kind for kind, _ in cells))
    rows = [[f"{what}, processes:", *map(str, counts)]]
    rows += [[kind, *(cells[kind, n] for n in counts)] for kind in kinds]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
    parser.add_argument(
        "--sweep", help="process counts to sweep as well, e.g. 1,2,4,8,16,32", default=""
    )
    parser.add_argument(
        "--sweep-seconds", type=float, default=1.5, help="per contender and process count"
    )
    parser.add_argument(
        "--handoff-rounds",
        type=int,
        default=0,
        help="also measure handoff on release (this many rounds) and on expiry (a fifth)",
    )
    parser.add_argument("--json", help="write the results there as JSON (waits in ms)")
    options = parser.parse_args()
    counts = [int(n) for n in options.sweep.split(",") if n.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="rlock-bench-"))
    server = start_server(workdir)
    socket_path = str(workdir / "redis.sock")
    kinds = options.only or CONTENDERS
    rounds: dict[str, list[tuple[dict[str, Any], list[float]]]] = {kind: [] for kind in kinds}
    points: list[dict[str, Any]] = []
    handoff: list[dict[str, Any]] = []
    try:
        for number in range(options.rounds):
            for kind in kinds:
                print(f"running {kind} (round {number + 1}) ...", file=sys.stderr)
                rounds[kind].append(
                    run_with_waits(
                        kind, socket_path, server.pid, options.processes, options.seconds
                    )
                )
        charted = [kind for kind in kinds if kind in CHARTED]
        for kind in charted:
            for processes in counts:
                print(f"sweep: {kind}, {processes} processes ...", file=sys.stderr)
                row = run(kind, socket_path, server.pid, processes, options.sweep_seconds)
                points.append(
                    {
                        "lock": LABELS[kind],
                        "processes": processes,
                        "grants_per_s": row["grants/s"],
                        "wait_p50_ms": row["wait p50 ms"],
                        "wait_p99_ms": row["wait p99 ms"],
                        "jain": row["Jain"],
                    }
                )
        for kind in charted if options.handoff_rounds else []:
            print(f"handoff: {kind} ...", file=sys.stderr)
            release = handoffs(kind, socket_path, options.handoff_rounds, on_expiry=False)
            expiry = handoffs(kind, socket_path, max(5, options.handoff_rounds // 5), True)
            handoff.append(
                {
                    "lock": LABELS[kind],
                    "release_from_request": latency_summary(release),
                    "expiry": latency_summary(expiry),
                    "expiry_ttl_ms": expiry_ttl_s(kind, EXPIRY_TTL_S) * 1000,
                }
            )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {kind: median_round(rounds[kind]) for kind in kinds}
    rows = [(kind, medians[kind][0]) for kind in kinds]
    cdf = [
        {
            "lock": LABELS[kind],
            "wait_quantiles_ms": [w * 1000 for w in quantiles(medians[kind][1], CDF_POINTS)],
        }
        for kind in kinds
        if kind in CHARTED
    ]
    print(
        f"one hot lock, {options.processes} processes, 1 ms critical section, "
        f"{options.seconds:g} s each"
        + (f", the median of {options.rounds} rounds by grants/s" if options.rounds > 1 else "")
    )
    print(table(rows))
    if counts:
        print(f"\nsweep: {', '.join(map(str, counts))} processes, {options.sweep_seconds:g} s each")
        by_point = {(p["lock"], p["processes"]): p for p in points}
        for what, key in (("grants/s", "grants_per_s"), ("wait p99 ms", "wait_p99_ms")):
            cells = {point: fmt(float(p[key])) for point, p in by_point.items()}
            print(f"\n{sweep_table(what, counts, cells)}")
    if handoff:
        print("\nhandoff (ms): on release from sending the release; on expiry from the expiry")
        for entry in handoff:
            release, expiry = entry["release_from_request"], entry["expiry"]
            print(
                f"{entry['lock']:<24} release p50 {release['p50_ms']:8.3f}"
                f" p99 {release['p99_ms']:8.3f}   expiry ({entry['expiry_ttl_ms']:.0f} ms lease)"
                f" p50 {expiry['p50_ms']:8.3f}"
                f" p99 {expiry['p99_ms']:8.3f}"
            )
    if options.json:
        results = {
            "run": describe_run(),
            "critical_section_ms": 1.0,
            "sweep": points,
            "handoff": handoff,
            "wait_cdf": {"processes": options.processes, "locks": cdf},
            "contention": {
                "processes": options.processes,
                "seconds": options.seconds,
                "rounds": {kind: [row for row, _ in rounds[kind]] for kind in kinds},
                "median": dict(rows),
            },
        }
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"results as JSON: {options.json}")


def median_round(
    results: list[tuple[dict[str, Any], list[float]]],
) -> tuple[dict[str, Any], list[float]]:
    """The round with the median rate (the lower middle of an even count)."""
    ranked = sorted(results, key=lambda result: float(result[0]["grants/s"]))
    return ranked[(len(ranked) - 1) // 2]


if __name__ == "__main__":
    main()
