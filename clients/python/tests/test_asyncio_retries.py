"""rlock.asyncio under a stalled server (DEBUG SLEEP longer than the socket timeout): a call
resent by redis-py's retry changes nothing (HELD), and an acquire cut short by a timeout or a
cancellation gives its possible grant back, for every kind of hold."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest
import redis
import redis.asyncio
from conftest import command_calls, stalled
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import rlock.asyncio

SOCKET_TIMEOUT = 0.3
RELEASE_STALL = 0.8
ACQUIRE_TIMEOUT = 0.4
ACQUIRE_STALL = 0.6

KINDS: dict[str, Callable[[Any, str], rlock.asyncio.Lock]] = {
    "lock": lambda r, key: rlock.asyncio.Lock(r, key, timeout=30),
    "watched": lambda r, key: rlock.asyncio.Lock(r, key, lease=30),
    "read": lambda r, key: rlock.asyncio.ReadWriteLock(r, key, timeout=30).read_lock(),
    "write": lambda r, key: rlock.asyncio.ReadWriteLock(r, key, timeout=30).write_lock(),
    "permit": lambda r, key: rlock.asyncio.Semaphore(r, key, 2, timeout=30).permit(),
    "session": lambda r, key: rlock.asyncio.Lock(r, key, timeout=30, session=True),
}


async def impatient_client(server, timeout: float, retries: bool = True):
    """A connected client with a short socket timeout (see test_retries)."""
    options: dict[str, Any] = {} if retries else {"retry": Retry(NoBackoff(), 0)}
    client = server.async_client(socket_timeout=timeout, **options)
    await client.ping()
    return client


async def eventually(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_retried_inner_release_takes_effect_once(server, r, key):
    impatient = await impatient_client(server, SOCKET_TIMEOUT)
    lock = rlock.asyncio.Lock(impatient, key, timeout=30)
    async with lock:
        assert await lock.acquire()
        before = command_calls(r, "lock.release")
        with stalled(server, RELEASE_STALL):
            await lock.release()
        assert command_calls(r, "lock.release") - before >= 2, "the release was resent"
        assert (await lock.info()).count == 1
        assert await lock.owned()
    assert not await lock.locked()
    await impatient.aclose()


async def test_a_retried_acquire_counts_once(server, r, key):
    impatient = await impatient_client(server, SOCKET_TIMEOUT)
    lock = rlock.asyncio.Lock(impatient, key, timeout=30)
    before = command_calls(r, "lock.acquire")
    with stalled(server, RELEASE_STALL):
        assert await lock.acquire(blocking=False)
    assert command_calls(r, "lock.acquire") - before >= 2, "the acquire was resent"
    assert (await lock.info()).count == 1
    await lock.release()
    assert not await lock.locked()
    await impatient.aclose()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "session"])
async def test_an_acquire_retried_through_a_stall_holds_once(server, r, key, kind):
    impatient = await impatient_client(server, ACQUIRE_TIMEOUT)
    hold = KINDS[kind](impatient, key)
    with stalled(server, ACQUIRE_STALL):
        assert await hold.acquire()
    assert [h.count for h in (await hold.info()).holders] == [1]
    await hold.release()
    assert await hold.info() is None
    await impatient.aclose()


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_acquire_that_timed_out_leaves_nothing_held(server, key, kind):
    impatient = await impatient_client(server, ACQUIRE_TIMEOUT, retries=False)
    hold = KINDS[kind](impatient, key)
    # (A session hold's own connection is opened in the stall: its handshake times out.)
    with stalled(server, ACQUIRE_STALL), pytest.raises((redis.TimeoutError, redis.ConnectionError)):
        await hold.acquire()
    assert await hold.info() is None, "the grant that came after the timeout was given back"
    assert await hold.acquire(blocking=False)
    await hold.release()
    await impatient.aclose()


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_acquire_cancelled_in_a_stall_leaves_nothing_held(server, key, kind):
    client = server.async_client()
    await client.ping()
    hold = KINDS[kind](client, key)
    with stalled(server, ACQUIRE_STALL):
        acquiring = asyncio.ensure_future(hold.acquire())
        await asyncio.sleep(ACQUIRE_STALL / 3)  # sent, and waiting for the stalled server
        acquiring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await acquiring
    await eventually(lambda: _is_none(hold.info()), "the late grant to be given back")
    assert hold.fencing_token is None
    await client.aclose()


async def test_a_reentry_that_timed_out_is_undone(server, key):
    impatient = await impatient_client(server, ACQUIRE_TIMEOUT, retries=False)
    lock = rlock.asyncio.Lock(impatient, key, timeout=30)
    assert await lock.acquire()
    with stalled(server, ACQUIRE_STALL), pytest.raises(redis.TimeoutError):
        await lock.acquire()
    assert (await lock.info()).count == 1
    await lock.release()
    assert not await lock.locked()
    await impatient.aclose()


async def test_a_reentry_cancelled_in_a_stall_is_undone(server, key):
    client = server.async_client()
    await client.ping()
    lock = rlock.asyncio.Lock(client, key, timeout=30, thread_local=False)
    assert await lock.acquire()
    with stalled(server, ACQUIRE_STALL):
        reentering = asyncio.ensure_future(lock.acquire())
        await asyncio.sleep(ACQUIRE_STALL / 3)
        reentering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reentering
    assert (await lock.info()).count == 1
    await lock.release()
    assert not await lock.locked()
    await client.aclose()


async def _is_none(awaitable) -> bool:
    return await awaitable is None
