"""A bounded soak: sync threads and asyncio tasks take every kind of hold (locks with a
timeout and watched, read-write locks, a semaphore, session holds, reentries) on a few keys
while the server is stalled past the clients' socket timeouts (with and without retries),
their connections are killed and asyncio acquires are cancelled.

Checked: a separate connection polls atomic LOCK.INFO snapshots, which never show more
holders than a key's kind allows; no two holders whose releases succeeded (so who held the
key the whole time) were ever inside an exclusive section together, nor more than the
semaphore's permits; no call fails in an unexpected way (a HELD mismatch would); and once the
workers stop, no key is held, nothing is renewed and no session connection is left."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.retry
from conftest import stalled, wait_until
from redis.backoff import NoBackoff
from redis.exceptions import LockError

import rlock
import rlock.asyncio
from rlock import _watchdog

SYNC_WORKERS = 3
ASYNC_TASKS = 6
ITERATIONS = 1000  # per worker or task at most; they stop once the disturbances are over
DISTURBANCES = 24  # about 12 s of them
DEADLINE = 25.0  # seconds: the workers stop by then, done or not
SOCKET_TIMEOUT = 0.3
STALL = 0.5  # past one socket timeout, short of two (a give-back then gets through)
PERMITS = 2

# key -> what may be inside at once: "exclusive", "shared" (readers together, writers
# alone), "permits" (up to PERMITS)
KEYS = {"plain": "exclusive", "watched": "exclusive", "rw": "shared", "sem": "permits"}
KEYS["session"] = "exclusive"


@dataclass
class Section:
    """One critical section: a holder inside ``key`` (``exclusive`` or not) from ``start``
    to ``end`` (monotonic), ``vouched`` when its release succeeded."""

    key: str
    exclusive: bool
    start: float
    end: float
    vouched: bool


class Record:
    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.sections: list[Section] = []
        self.unexpected: list[BaseException] = []
        self.snapshot_faults: list[str] = []
        self.snapshots = 0

    def section(self, section: Section) -> None:
        with self.mutex:
            self.sections.append(section)

    def fault(self, error: BaseException) -> None:
        with self.mutex:
            self.unexpected.append(error)


# What a disturbed call may raise: not had in time, cut short, lost.
EXPECTED = (LockError, redis.TimeoutError, redis.ConnectionError, asyncio.TimeoutError)


def sync_hold(r: Any, name: str, kind: str, rng: random.Random) -> tuple[rlock.Lock, bool]:
    """A hold of the key's kind, and whether it is exclusive."""
    if kind == "plain":
        return rlock.Lock(r, name, timeout=30, blocking_timeout=1), True
    if kind == "watched":
        return rlock.Lock(r, name, lease=1, blocking_timeout=1), True
    if kind == "session":
        lifetime = rng.choice([{"lease": 1}, {"timeout": 30}])
        return rlock.Lock(r, name, session=True, blocking_timeout=1, **lifetime), True
    if kind == "rw":
        rw = rlock.ReadWriteLock(r, name, timeout=30, blocking_timeout=1)
        write = rng.random() < 0.4
        return (rw.write_lock() if write else rw.read_lock()), write
    sem = rlock.Semaphore(r, name, PERMITS, lease=1, blocking_timeout=1)
    return sem.permit(), False


def async_hold(r: Any, name: str, kind: str, rng: random.Random) -> tuple[rlock.asyncio.Lock, bool]:
    if kind == "plain":
        return rlock.asyncio.Lock(r, name, timeout=30, blocking_timeout=1), True
    if kind == "watched":
        return rlock.asyncio.Lock(r, name, lease=1, blocking_timeout=1), True
    if kind == "session":
        return rlock.asyncio.Lock(r, name, timeout=30, session=True, blocking_timeout=1), True
    if kind == "rw":
        rw = rlock.asyncio.ReadWriteLock(r, name, timeout=30, blocking_timeout=1)
        write = rng.random() < 0.4
        return (rw.write_lock() if write else rw.read_lock()), write
    sem = rlock.asyncio.Semaphore(r, name, PERMITS, lease=1, blocking_timeout=1)
    return sem.permit(), False


def sync_worker(
    server, names: dict[str, str], record: Record, seed: int, stop: threading.Event
) -> None:
    try:
        sync_iterations(server, names, record, seed, stop)
    except BaseException as error:
        record.fault(error)


def sync_iterations(
    server, names: dict[str, str], record: Record, seed: int, stop: threading.Event
) -> None:
    rng = random.Random(seed)
    options: dict[str, Any] = {} if seed % 2 else {"retry": redis.retry.Retry(NoBackoff(), 0)}
    r = server.client(socket_timeout=SOCKET_TIMEOUT, client_name="soak", **options)
    for _ in range(ITERATIONS):
        if stop.is_set():
            break
        kind = rng.choice(list(KEYS))
        hold, exclusive = sync_hold(r, names[kind], kind, rng)
        try:
            one_section(hold, exclusive, kind, record, rng)
        except EXPECTED:
            pass
        except BaseException as error:
            record.fault(error)
    r.close()


def one_section(hold: rlock.Lock, exclusive: bool, kind: str, record: Record, rng) -> None:
    if not hold.acquire():
        return
    start = time.monotonic()
    vouched = False
    try:
        if rng.random() < 0.3:  # a nested block: a reentry and its release
            with hold:
                time.sleep(rng.uniform(0.001, 0.01))
        time.sleep(rng.uniform(0.001, 0.02))
    finally:
        end = time.monotonic()
        try:
            hold.release()
            vouched = True
        finally:
            record.section(Section(kind, exclusive, start, end, vouched))


async def acquire_or_cancel(hold: rlock.asyncio.Lock, seconds: float) -> bool:
    """``hold.acquire()``, cancelled after ``seconds`` if still running: by a timer on this
    very task (asyncio.wait_for before Python 3.12 would run the acquire in a task of its
    own, which would then be the holder)."""
    task = asyncio.current_task()
    assert task is not None
    timer = asyncio.get_running_loop().call_later(seconds, task.cancel)
    try:
        return await hold.acquire()
    except asyncio.CancelledError:
        if hasattr(task, "uncancel"):
            task.uncancel()
        raise asyncio.TimeoutError from None
    finally:
        timer.cancel()


async def async_section(
    hold: rlock.asyncio.Lock, exclusive: bool, kind: str, record: Record, rng
) -> None:
    # Some acquires are cancelled part way.
    if not await acquire_or_cancel(hold, rng.choice([0.05, 0.2, 5.0])):
        return
    start = time.monotonic()
    vouched = False
    try:
        if rng.random() < 0.3:
            async with hold:
                await asyncio.sleep(rng.uniform(0.001, 0.01))
        await asyncio.sleep(rng.uniform(0.001, 0.02))
    finally:
        end = time.monotonic()
        try:
            await hold.release()
            vouched = True
        finally:
            record.section(Section(kind, exclusive, start, end, vouched))


async def async_workers(
    server, names: dict[str, str], record: Record, stop: threading.Event
) -> None:
    clients = [
        server.async_client(socket_timeout=SOCKET_TIMEOUT, client_name="soak"),
        server.async_client(
            socket_timeout=SOCKET_TIMEOUT,
            client_name="soak",
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        ),
    ]

    async def task(number: int) -> None:
        rng = random.Random(1000 + number)
        r = clients[number % 2]
        for _ in range(ITERATIONS):
            if stop.is_set():
                break
            kind = rng.choice(list(KEYS))
            hold, exclusive = async_hold(r, names[kind], kind, rng)
            try:
                await async_section(hold, exclusive, kind, record, rng)
            except EXPECTED:
                pass
            except BaseException as error:
                record.fault(error)

    await asyncio.gather(*(task(n) for n in range(ASYNC_TASKS)))
    # Give-backs of cancelled acquires run in the background: let them finish.
    for _ in range(200):
        if not rlock.asyncio._background:
            break
        await asyncio.sleep(0.05)
    if rlock.asyncio.watchdog()._book:
        record.fault(AssertionError("the asyncio watchdog still renews something"))
    for client in clients:
        await client.aclose()


def disturb(server, stop: threading.Event) -> None:
    """Stalls and kills, a fixed number; then (or at the deadline) tells the workers to stop."""
    admin = server.client(client_name="admin")
    rng = random.Random(7)
    deadline = time.monotonic() + DEADLINE
    for _ in range(DISTURBANCES):
        if time.monotonic() > deadline:
            break
        if rng.random() < 0.6:
            with stalled(server, STALL):
                pass
        else:
            for client in admin.client_list():
                if client.get("name") == "soak":
                    with contextlib.suppress(redis.ResponseError):
                        admin.execute_command("CLIENT", "KILL", "ID", client["id"])
        time.sleep(rng.uniform(0.2, 0.5))  # the workers' time between disturbances
    stop.set()
    admin.close()


# The modes a key's LOCK.INFO may show, by its rule, and how many holders each allows.
MODES = {"exclusive": {"exclusive"}, "shared": {"exclusive", "shared"}, "permits": {"limit"}}
MOST_HOLDERS = {"exclusive": 1, "shared": 10_000, "limit": PERMITS}


def observe(server, names: dict[str, str], record: Record, done: threading.Event) -> None:
    observer = server.client(client_name="observer")
    while not done.is_set():
        for kind, name in names.items():
            info = rlock.Lock(observer, name).info()  # one atomic LOCK.INFO
            record.snapshots += 1
            if info is None:
                continue
            if info.mode not in MODES[KEYS[kind]] or len(info.holders) > MOST_HOLDERS[info.mode]:
                record.snapshot_faults.append(f"{kind}: {info}")
    observer.close()


def overlaps(sections: list[Section]) -> list[str]:
    """Vouched sections inside together beyond what their key allows."""
    faults = []
    vouched = [s for s in sections if s.vouched]
    for kind, rule in KEYS.items():
        mine = sorted((s for s in vouched if s.key == kind), key=lambda s: s.start)
        for i, section in enumerate(mine):
            together = [o for o in mine[:i] if o.end > section.start]
            if rule == "permits" and len(together) >= PERMITS:
                faults.append(f"{kind}: {len(together) + 1} permits at {section.start}")
            elif any(section.exclusive or other.exclusive for other in together):
                faults.append(f"{kind}: two holders inside at {section.start}")
    return faults


@pytest.mark.timeout(DEADLINE + 60)
def test_soak_every_kind_of_hold_under_stalls_kills_and_cancellations(fresh_server, key):
    server = fresh_server
    names = {kind: f"{key}:{kind}" for kind in KEYS}
    record = Record()
    stop, done = threading.Event(), threading.Event()
    disturber = threading.Thread(target=disturb, args=(server, stop))
    observer = threading.Thread(target=observe, args=(server, names, record, done))
    workers = [
        threading.Thread(target=sync_worker, args=(server, names, record, seed, stop))
        for seed in range(SYNC_WORKERS)
    ]

    def run_async_workers() -> None:
        try:
            asyncio.run(async_workers(server, names, record, stop))
        except BaseException as error:
            record.fault(error)

    workers.append(threading.Thread(target=run_async_workers))
    for thread in [disturber, observer, *workers]:
        thread.start()
    for thread in [disturber, *workers]:
        thread.join(DEADLINE + 20)
    done.set()
    observer.join(10)

    assert not any(t.is_alive() for t in [disturber, observer, *workers]), "a thread is stuck"
    assert record.unexpected == []
    assert record.snapshot_faults == []
    assert record.snapshots > 0
    assert overlaps(record.sections) == []
    vouched = [s for s in record.sections if s.vouched]
    assert len(vouched) > 50, "the soak held locks often enough to mean something"
    r = server.client()
    for name in names.values():
        assert rlock.Lock(r, name).info() is None, f"{name} is still held"
    wait_until(lambda: len(_watchdog.watchdog()._book) == 0, what="the renewals to stop")
    wait_until(
        lambda: int(r.info("lock")["lock_session_connections"]) == 0,
        what="every session connection to close",
    )
    r.close()
