"""Leader election: how soon a follower takes over when the leader dies, and how many observers
one change of leader wakes, on a redis-server with the rlock module that this script starts in a
temp dir and stops by its pid (issue 22's benchmark).

Failover: a leader process (forked) takes the leadership and is killed with SIGKILL; the time
from the kill to the follower's campaign returning, p50/p99/max over the rounds, for
- rlock: `LOCK.ACQUIRE leader <id> <lease> SESSION WAIT 0` (what rlock.Election sends): the
  server ends the session hold when the dead leader's connection closes and hands the lock to
  the follower blocked in the queue;
- polling at 100 ms (etcd-style without watches, and what a redis-py election loop does):
  `SET leader <id> NX PX <lease>`, renewed by the leader at a third of the lease, retried by the
  follower every 100 ms; a dead leader's key lives on to its lease;
- redis-py's `Lock(timeout=lease, sleep=0.1)`: the same, through redis-py's own lock.
The lease is 1 s for every approach (rlock's only matters for a leader cut off, not killed).

Observers: N clients blocked in `LOCK.OBSERVE leader <epoch>` (raw sockets, one selector loop);
the leader hands over once; the time from that command's reply to each observer's reply
(p50/p99/max) and the server's CPU time for the change (INFO's used_cpu_sys + used_cpu_user
before and after), for N = 1, 100 and 10,000.

Wall-clock figures on a shared 2-core machine are noisy (the follower, the server and the
observers share the cores); the ratios between approaches in one run are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import start_server, table

LEASE_MS = 1000
POLL_S = 0.1
KEY = "leader"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50 ms": at(0.50), "p99 ms": at(0.99), "max ms": ordered[-1], "rounds": len(ordered)}


def fork_leader(socket_path: str, approach: str, owner: str) -> int:
    """A child process that becomes leader by `approach` and keeps leading until killed;
    returns once it leads (its pid)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the leader
        os.close(ready_r)
        try:
            client = redis.Redis(unix_socket_path=socket_path)
            renew = lead(client, approach, owner)
            os.write(ready_w, b"1")
            while True:
                time.sleep(LEASE_MS / 3000)
                renew()
        finally:
            os._exit(0)
    os.close(ready_w)
    if os.read(ready_r, 1) != b"1":
        raise SystemExit(f"the {approach} leader did not start")
    os.close(ready_r)
    return pid


def lead(client: redis.Redis, approach: str, owner: str) -> Any:
    """Takes the leadership (waiting as the approach waits); returns how to renew it."""
    if approach == "rlock":
        client.execute_command("LOCK.ACQUIRE", KEY, owner, LEASE_MS, "SESSION", "WAIT", 0)
        return lambda: client.execute_command("LOCK.RENEW", KEY, owner, LEASE_MS)
    if approach == "polling 100 ms":
        while not client.set(KEY, owner, nx=True, px=LEASE_MS):
            time.sleep(POLL_S)
        return lambda: client.set(KEY, owner, xx=True, px=LEASE_MS)
    lock = client.lock(KEY, timeout=LEASE_MS / 1000, sleep=POLL_S)
    lock.acquire()
    return lambda: lock.reacquire()


def failover_round(socket_path: str, approach: str, index: int) -> float:
    """ms from SIGKILL of the leader to the follower's campaign returning."""
    pid = fork_leader(socket_path, approach, f"leader-{index}")
    follower = redis.Redis(unix_socket_path=socket_path)
    led = threading.Event()
    thread = threading.Thread(
        target=lambda: (lead(follower, approach, f"follower-{index}"), led.set())
    )
    thread.start()
    if approach == "rlock":
        wait_blocked(follower, 1)
    else:
        time.sleep(POLL_S * 1.5)  # the follower has polled at least once
    # The leader dies anywhere in its renewal period, as a crash would.
    time.sleep(random.uniform(0, LEASE_MS / 3000))
    killed = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    thread.join()
    took = (time.perf_counter() - killed) * 1000
    follower.delete(KEY)
    follower.close()
    return took


def wait_blocked(client: redis.Redis, n: int) -> None:
    deadline = time.monotonic() + 30
    while int(client.info("clients")["blocked_clients"]) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"{n} clients never blocked")
        time.sleep(0.001)


def resp(*args: Any) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(parts)


def observers_round(socket_path: str, client: redis.Redis, count: int) -> dict[str, float]:
    """`count` observers blocked on the leader's epoch, one handover: their wake-up times."""
    epoch = int(client.execute_command("LOCK.ACQUIRE", KEY, "old", 60000))
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(socket_path)
        conn.sendall(resp("LOCK.OBSERVE", KEY, epoch))
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        sockets.append(conn)
    wait_blocked(client, count)
    cpu = lambda: sum(float(client.info("cpu")[f]) for f in ("used_cpu_sys", "used_cpu_user"))  # noqa: E731
    cpu_before = cpu()
    waiting = set(range(count))
    woken: list[float] = []
    changed = time.perf_counter()
    client.execute_command("LOCK.RELEASE", KEY, "old")
    changed_reply = time.perf_counter()
    index = {conn.fileno(): i for i, conn in enumerate(sockets)}
    while waiting:
        for ready, _ in selector.select(timeout=30):
            conn = ready.fileobj
            assert isinstance(conn, socket.socket)
            if conn.recv(65536):
                waiting.discard(index[conn.fileno()])
                woken.append((time.perf_counter() - changed_reply) * 1000)
                selector.unregister(conn)
    cpu_ms = (cpu() - cpu_before) * 1000
    for conn in sockets:
        conn.close()
    selector.close()
    wait_blocked(client, 0)
    return {
        "observers": count,
        **{k: v for k, v in percentiles(woken).items() if k != "rounds"},
        "release ms": (changed_reply - changed) * 1000,
        "server cpu ms": cpu_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="failover rounds for rlock")
    parser.add_argument(
        "--polling-rounds",
        type=int,
        default=30,
        help="failover rounds for each polling approach (each waits a lease)",
    )
    parser.add_argument("--observers", default="1,100,10000")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()  # fmt: skip
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = max(int(n) for n in args.observers.split(","))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, most + 1024)), hard))
    with tempfile.TemporaryDirectory(prefix="rlock-election-") as tmp:
        server = start_server(Path(tmp))
        try:
            socket_path = str(Path(tmp) / "redis.sock")
            client = redis.Redis(unix_socket_path=socket_path)
            client.config_set("maxclients", most + 100)
            failover = []
            plan = [
                ("rlock", args.rounds),
                ("polling 100 ms", args.polling_rounds),
                ("redis-py Lock sleep=0.1", args.polling_rounds),
            ]
            for approach, rounds in plan:
                took = [failover_round(socket_path, approach, i) for i in range(rounds)]
                failover.append((approach, percentiles(took)))
            print(f"Failover: SIGKILL of the leader -> the follower leads (lease {LEASE_MS} ms)")
            print(table(failover))
            observed = [
                observers_round(socket_path, client, int(n)) for n in args.observers.split(",")
            ]
            print("\nObservers woken by one handover (LOCK.OBSERVE), from the release's reply")
            print(table([(f"{row['observers']}", row) for row in observed]))
        finally:
            server.terminate()
            server.wait()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"failover": dict(failover), "observers": observed}, indent=1)
        )


if __name__ == "__main__":
    main()
