"""rlock.asyncio.ReadWriteLock, rlock.asyncio.Semaphore and session holds with asyncio."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import LockError

import rlock
import rlock.asyncio


async def eventually(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def ar(server):
    client = server.async_client(client_name="holder")
    yield client
    await client.aclose()


async def waiters(ar, key) -> int:
    info = await rlock.asyncio.Lock(ar, key).info()
    return info.waiters if info else 0


async def test_readers_together_then_the_queued_writer_then_a_late_reader(ar, key):
    def rw():
        return rlock.asyncio.ReadWriteLock(ar, key, timeout=10, blocking_timeout=30)

    first, second = rw().read_lock(), rw().read_lock()
    assert await first.acquire(blocking=False)
    assert await second.acquire(blocking=False)
    info = await first.info()
    assert info.mode == "shared"
    assert len(info.holders) == 2
    order: list[str] = []

    async def take(lock: rlock.asyncio.Lock, name: str) -> int:
        assert await lock.acquire()
        order.append(name)
        token = lock.fencing_token
        await lock.release()
        return token

    writer = asyncio.ensure_future(take(rw().write_lock(), "writer"))
    await eventually(lambda: _is(waiters(ar, key), 1), "the writer to queue")
    late = rw().read_lock()
    assert not await late.acquire(blocking=False)
    reader = asyncio.ensure_future(take(late, "reader"))
    await eventually(lambda: _is(waiters(ar, key), 2), "the late reader to queue")
    await first.release()
    await second.release()
    write_token, read_token = await writer, await reader
    assert order == ["writer", "reader"]
    assert second.fencing_token is None
    assert write_token < read_token


async def _is(value, expected) -> bool:
    return await value == expected


async def test_semaphore_permits_and_the_mismatch_error(ar, key):
    sem = rlock.asyncio.Semaphore(ar, key, 2, timeout=10)
    one, two = await sem.acquire(), await sem.acquire()
    assert one is not None
    assert two is not None
    assert await sem.acquire(blocking=False) is None
    assert await sem.available_permits() == 0
    with pytest.raises(rlock.LimitMismatchError) as raised:
        await rlock.asyncio.Semaphore(ar, key, 5).acquire(blocking=False)
    assert (raised.value.limit, raised.value.requested) == (2, 5)
    assert isinstance(raised.value, LockError)
    await one.release()
    async with sem.permit() as permit:
        assert permit.fencing_token > two.fencing_token
        assert await sem.available_permits() == 0
    await two.release()
    assert await sem.info() is None


async def test_a_session_hold_ends_when_its_connection_closes(server, ar, key):
    lost: list[rlock.asyncio.Lock] = []
    lock = rlock.asyncio.Lock(ar, key, session=True, lease=1, on_lost=lost.append)
    assert await lock.acquire()
    assert (await lock.info()).holders[0].session
    checker = server.client()
    ids = [c["id"] for c in checker.client_list() if c.get("name") == "holder"]
    for client_id in ids:
        checker.execute_command("CLIENT", "KILL", "ID", client_id)
    checker.close()
    # The pool reconnects; the hold ended with its connection.
    await eventually(lambda: _is(lock.info(), None), "the hold to end")
    await eventually(lambda: _true(lost == [lock]), "the watchdog to report the loss")
    with pytest.raises(rlock.LockNotOwnedError):
        await lock.release()


async def _true(value: bool) -> bool:
    return value


async def test_a_cancelled_session_acquire_leaves_nothing_behind(server, ar, key):
    holder = rlock.asyncio.Lock(ar, key, timeout=10)
    assert await holder.acquire()
    waiter = rlock.asyncio.Lock(ar, key, timeout=10, session=True)
    task = asyncio.ensure_future(waiter.acquire(blocking_timeout=30))
    await eventually(lambda: _is(waiters(ar, key), 1), "the waiter to queue")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: _is(waiters(ar, key), 0), "the waiter to leave the queue")
    await holder.release()
    assert not await holder.locked()


async def test_a_session_downgrade_keeps_the_read_hold(server, ar, key):
    """As in test_holds, with the read lock taken under the write lock's owner id (in
    asyncio each acquisition has its own owner)."""
    rw = rlock.asyncio.ReadWriteLock(ar, key, timeout=30, session=True)
    writer, reader = rw.write_lock(), rw.read_lock()
    assert await writer.acquire()
    assert await reader.acquire(token=writer.local.token)
    await writer.release()
    info = await reader.info()
    assert info is not None, "the read hold survived the write lock's release"
    assert info.holders[0].count == 1
    intruder = rlock.asyncio.Lock(ar, key, timeout=30)
    assert await intruder.acquire(blocking=False) is False
    await reader.release()
    assert await reader.info() is None


async def test_async_with_on_permits_and_the_semaphore_holds_one_permit_each(ar, key):
    sem = rlock.asyncio.Semaphore(ar, key, 3, timeout=30)

    async def counts() -> list[int]:
        info = await sem.info()
        return sorted(h.count for h in info.holders) if info else []

    async with await sem.acquire() as first:
        assert await counts() == [1]
        async with sem.permit() as second, sem as third:
            assert len({first, second, third}) == 3
            assert await counts() == [1, 1, 1]
        assert await counts() == [1]
    assert await sem.info() is None
