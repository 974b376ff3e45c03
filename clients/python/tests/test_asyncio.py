"""rlock.asyncio.Lock: the redis.asyncio Lock API, the watchdog as a task, per-task holders,
and cancellation that never leaves a lock behind."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.lock import Lock as RedisPyAsyncLock
from redis.exceptions import LockError, LockNotOwnedError

import rlock.asyncio

LEASE = 1.0


@pytest.fixture
async def ar(server):
    client = server.async_client()
    yield client
    await client.aclose()


async def eventually(condition, timeout: float = 10.0, what: str = ""):
    """Awaits ``condition()`` (a coroutine function) until truthy, within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


async def waiters(lock) -> int:
    info = await lock.info()
    return info.waiters if info else 0


@pytest.mark.parametrize("lock_class", [RedisPyAsyncLock, rlock.asyncio.Lock])
async def test_the_redis_asyncio_lock_api(ar, key, lock_class):
    lock = ar.lock(key, timeout=10, lock_class=lock_class)
    assert isinstance(lock, lock_class)
    assert not await lock.locked()
    assert await lock.acquire(blocking=False) is True
    assert await lock.owned()
    assert await lock.extend(10) is True
    assert 10_000 < await ar.pttl(key) <= 20_000
    assert await lock.extend(5, replace_ttl=True) is True
    assert 0 < await ar.pttl(key) <= 5_000
    assert await lock.reacquire() is True
    assert 5_000 < await ar.pttl(key) <= 10_000
    await lock.release()
    assert not await lock.locked()
    with pytest.raises(LockError):
        await lock.release()
    with pytest.raises(LockNotOwnedError):
        async with lock:
            await ar.delete(key)
            with pytest.raises(LockNotOwnedError):
                await lock.extend(1)


@pytest.mark.parametrize("lock_class", [RedisPyAsyncLock, rlock.asyncio.Lock])
async def test_context_exit_after_loss_raises(ar, key, lock_class):
    with pytest.raises(LockNotOwnedError):
        async with ar.lock(key, timeout=10, lock_class=lock_class):
            await ar.delete(key)


async def test_fencing_tokens_and_reentry_in_one_task(ar, key):
    lock = rlock.asyncio.Lock(ar, key, timeout=10)
    async with lock:
        token = lock.fencing_token
        assert isinstance(token, int)
        async with lock:
            assert (await lock.info()).count == 2
            assert lock.fencing_token == token
        assert await lock.owned()
    assert not await lock.locked()
    async with lock:
        assert lock.fencing_token > token


async def test_another_task_is_another_holder(ar, key):
    lock = rlock.asyncio.Lock(ar, key, timeout=10)
    assert await lock.acquire()
    other = asyncio.ensure_future(lock.acquire(blocking=False))
    assert await other is False
    assert await asyncio.ensure_future(lock.owned()) is False
    await lock.release()


async def test_a_waiting_task_is_handed_the_lock(ar, key):
    holder = rlock.asyncio.Lock(ar, key, timeout=10)
    assert await holder.acquire()
    waiter = rlock.asyncio.Lock(ar, key, timeout=10, thread_local=False)
    waiting = asyncio.ensure_future(waiter.acquire(blocking_timeout=30))
    await eventually(lambda: _is(waiters(holder), 1), what="the waiter to queue")
    await holder.release()
    assert await waiting is True
    await waiter.release()


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected


async def test_the_watchdog_keeps_a_held_lock_and_stops_after_release(ar, key):
    lock = rlock.asyncio.Lock(ar, key, lease=LEASE)
    async with lock:
        await asyncio.sleep(1.5 * LEASE)
        assert await lock.owned()
    assert not await lock.locked()
    watchdog = rlock.asyncio.watchdog()
    await eventually(lambda: _true(watchdog._task is None), what="the watchdog task to end")


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("lose", ["DEL", "PEXPIRE", "FLUSHALL"])
async def test_a_lost_lock_is_reported(fresh_server, key, lose):
    client = fresh_server.async_client()
    told = asyncio.Event()

    async def on_lost(lock):
        told.set()

    lock = rlock.asyncio.Lock(client, key, lease=LEASE, on_lost=on_lost)
    assert await lock.acquire()
    command = {"DEL": ("DEL", key), "PEXPIRE": ("PEXPIRE", key, 1), "FLUSHALL": ("FLUSHALL",)}
    await client.execute_command(*command[lose])
    await asyncio.wait_for(told.wait(), 10)
    assert lock.lost
    with pytest.raises(LockNotOwnedError):
        await lock.release()
    await client.aclose()


async def test_a_cancelled_wait_leaves_no_lock_behind(ar, key):
    holder = rlock.asyncio.Lock(ar, key, timeout=10)
    assert await holder.acquire()
    waiter = rlock.asyncio.Lock(ar, key, timeout=10)
    waiting = asyncio.ensure_future(waiter.acquire())
    await eventually(lambda: _is(waiters(holder), 1), what="the waiter to queue")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: _is(waiters(holder), 0), what="the waiter to leave the queue")
    await holder.release()
    assert not await holder.locked()


async def test_a_grant_racing_the_cancellation_is_released(ar, key):
    """Release and cancel back to back, many times: whoever wins, the lock ends up free."""
    for _ in range(20):
        holder = rlock.asyncio.Lock(ar, key, timeout=10, thread_local=False)
        assert await holder.acquire()
        waiter = rlock.asyncio.Lock(ar, key, timeout=10)
        waiting = asyncio.ensure_future(waiter.acquire())
        await eventually(lambda h=holder: _is(waiters(h), 1), what="the waiter to queue")
        releasing = asyncio.ensure_future(holder.release())
        await asyncio.sleep(0)
        waiting.cancel()
        await releasing
        try:
            await waiting
        except asyncio.CancelledError:
            await eventually(lambda h=holder: _is(h.locked(), False), what="the lock freed")
        else:  # the grant came first and the cancel was too late: we hold it, as we should
            await waiter.release()


async def test_a_cancelled_release_still_releases(ar, key):
    lock = rlock.asyncio.Lock(ar, key, timeout=10, thread_local=False)
    assert await lock.acquire()
    await _cancel_after_one_step(lock.release())
    await eventually(lambda: _is(lock.locked(), False), what="the release to complete")


async def test_a_cancelled_reentry_is_undone(ar, key):
    # thread_local=False: the Lock object is the holder, so the test task may release it
    lock = rlock.asyncio.Lock(ar, key, timeout=10, thread_local=False)
    assert await lock.acquire()
    await _cancel_after_one_step(lock.acquire())
    await eventually(lambda: _is(_count(lock), 1), what="the reentry to be undone")
    await lock.release()
    assert not await lock.locked()


async def _cancel_after_one_step(coroutine) -> None:
    """Runs ``coroutine`` in a task, cancels it after its first step, and checks that the
    task ends cancelled."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _count(lock) -> int:
    info = await lock.info()
    return info.count if info else 0


async def test_replica_sync_reports_too_few_replicas(ar, key):
    lock = rlock.asyncio.Lock(ar, key, timeout=10, replicas=1, replica_timeout=0.05)
    with pytest.raises(rlock.ReplicaSyncError):
        await lock.acquire()
    assert not await lock.locked()
