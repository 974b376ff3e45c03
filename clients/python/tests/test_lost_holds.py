"""A hold that was lost (its session connection killed, its ttl run out, found gone by the
watchdog) is never taken afresh by a reentry: the outer block was not protected all along,
so the reentry raises LockNotOwnedError, as every release of it does; then it starts anew."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import command_calls, wait_until
from redis.exceptions import LockError, LockNotOwnedError

import rlock
import rlock.asyncio
from rlock import _watchdog


def kill_clients_named(r, name: str) -> int:
    """Closes, on the server, every connection of the clients created with ``client_name``."""
    ids = [c["id"] for c in r.client_list() if c.get("name") == name]
    for client_id in ids:
        r.execute_command("CLIENT", "KILL", "ID", client_id)
    return len(ids)


def lose_the_session(server, key) -> rlock.Lock:
    r = server.client(client_name="holder")
    lock = rlock.Lock(r, key, timeout=30, session=True)
    assert lock.acquire()
    assert kill_clients_named(server.client(), "holder") >= 1
    return lock


def lose_by_expiry(server, key) -> rlock.Lock:
    r = server.client()
    lock = rlock.Lock(r, key, timeout=0.2)
    assert lock.acquire()
    wait_until(lambda: not r.exists(key), what="the lock to expire")
    return lock


def lose_the_watched_lock(server, key) -> rlock.Lock:
    r = server.client()
    told = threading.Event()
    lock = rlock.Lock(r, key, lease=1, on_lost=lambda lost: told.set())
    assert lock.acquire()
    r.delete(key)
    assert told.wait(10)
    return lock


@pytest.mark.parametrize("lose", [lose_the_session, lose_by_expiry, lose_the_watched_lock])
def test_a_reentry_after_the_hold_was_lost_raises(server, r, key, lose):
    lock = lose(server, key)
    with pytest.raises(LockNotOwnedError):
        lock.acquire(blocking=False)
    assert lock.lost
    assert lock.info() is None, "the reentry did not take the lock afresh"
    with pytest.raises(LockNotOwnedError):
        lock.release()
    with pytest.raises(LockError):
        lock.release()
    assert lock.acquire(blocking=False), "released, it starts anew"
    lock.release()


def test_a_nested_block_after_the_loss_raises_and_so_does_the_outer_exit(server, r, key):
    lock = rlock.Lock(r, key, timeout=0.2)
    with pytest.raises(LockNotOwnedError) as raised, lock:
        wait_until(lambda: not r.exists(key), what="the lock to expire")
        with lock:
            pytest.fail("the nested block ran without the lock")
    assert isinstance(raised.value.__context__, LockNotOwnedError)
    assert not lock.locked()


def test_another_lock_object_of_the_thread_does_not_take_a_lost_hold_afresh(r, key):
    outer = rlock.Lock(r, key, timeout=0.2)
    assert outer.acquire()
    wait_until(lambda: not r.exists(key), what="the lock to expire")
    with pytest.raises(LockNotOwnedError):
        rlock.Lock(r, key, timeout=10).acquire()
    assert not outer.locked()
    with pytest.raises(LockNotOwnedError):
        outer.release()
    with rlock.Lock(r, key, timeout=10) as fresh:
        assert fresh.owned()


async def test_an_asyncio_reentry_after_the_watchdog_found_it_lost_raises(server, key):
    client = server.async_client()
    told = asyncio.Event()

    async def on_lost(lock):
        told.set()

    lock = rlock.asyncio.Lock(client, key, lease=1, on_lost=on_lost)
    assert await lock.acquire()
    await client.delete(key)
    await asyncio.wait_for(told.wait(), 10)
    with pytest.raises(LockNotOwnedError):
        await lock.acquire(blocking=False)
    assert await lock.info() is None, "the reentry did not take the lock afresh"
    with pytest.raises(LockNotOwnedError):
        await lock.release()
    assert await lock.acquire(blocking=False)
    await lock.release()
    await client.aclose()


async def test_an_asyncio_reentry_after_the_session_connection_was_killed_raises(server, key):
    client = server.async_client(client_name="holder")
    lock = rlock.asyncio.Lock(client, key, timeout=30, session=True)
    assert await lock.acquire()
    assert kill_clients_named(server.client(), "holder") >= 1
    with pytest.raises(LockNotOwnedError):
        await lock.acquire(blocking=False)
    assert await lock.info() is None
    with pytest.raises(LockNotOwnedError):
        await lock.release()
    await client.aclose()


def test_a_reentry_with_a_shorter_ttl_never_shortens_the_hold(r, key):
    with rlock.Lock(r, key, timeout=30) as outer:
        with rlock.Lock(r, key, timeout=1):
            assert r.pttl(key) > 20_000
        assert outer.owned()
    with rlock.Lock(r, key, lease=30), rlock.Lock(r, key, timeout=1):
        assert r.pttl(key) > 20_000


def test_the_watchdog_never_renews_a_timed_outer_hold_shorter(r, key):
    """A watched lock nested in one with a long timeout: renewals keep the outer ttl."""
    with rlock.Lock(r, key, timeout=60), rlock.Lock(r, key, lease=1):
        # the renewals counted below are this lock's: the watchdog renews nothing else
        wait_until(lambda: len(_watchdog.watchdog()._book) == 1, what="other leases to end")
        renewals = command_calls(r, "lock.renew")
        wait_until(lambda: command_calls(r, "lock.renew") > renewals, what="a renewal")
        assert r.pttl(key) > 30_000


def test_a_watched_lease_below_the_lower_bound_is_refused(r, key):
    with pytest.raises(ValueError, match="at least"):
        rlock.Lock(r, key, lease=rlock.MIN_LEASE / 2)
    with pytest.raises(ValueError, match="at least"):
        rlock.Semaphore(r, key, 2, lease=0.3)
    # a lock with a timeout is not renewed: its lease does not matter
    with rlock.Lock(r, key, timeout=10, lease=0.3) as timed:
        assert timed.owned()
