"""Why a hold was lost: a release, reentry or renewal that finds the hold gone asks the server
(LOCK.LOST) and puts its reason in the LockNotOwnedError it raises, and in ``lost_reason``."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import wait_until
from redis.exceptions import LockNotOwnedError

import rlock
import rlock.asyncio
import rlock.multi_asyncio


def expire(r, key, lock) -> None:
    assert lock.acquire()
    wait_until(lambda: not r.exists(key), what="the lock to expire")


def test_a_release_after_expiry_says_expired_and_how_late(r, key):
    lock = rlock.Lock(r, key, timeout=0.2)
    expire(r, key, lock)
    token = lock.fencing_token
    with pytest.raises(LockNotOwnedError) as raised:
        lock.release()
    error = raised.value
    assert isinstance(error, rlock.HoldLostError)
    assert error.reason == "expired"
    assert "expired" in str(error)
    assert error.late_ms is not None
    assert error.late_ms >= 0
    assert error.lost_at is not None
    assert error.lost_at > 0
    assert error.loss is not None
    assert error.loss.token == token
    assert error.held_by is None
    assert error.held_by_token is None
    assert lock.lost_reason is not None
    assert lock.lost_reason.reason == "expired"


def test_a_reentry_after_an_admins_del_says_deleted(r, key):
    lock = rlock.Lock(r, key, timeout=30)
    assert lock.acquire()
    r.delete(key)
    with pytest.raises(LockNotOwnedError) as raised:
        lock.acquire(blocking=False)
    assert raised.value.reason == "deleted"
    with pytest.raises(LockNotOwnedError) as again:
        lock.release()
    assert again.value.reason == "deleted", "the known loss keeps its reason"


def test_flushall_says_flushed(fresh_server, key):
    r = fresh_server.client()
    lock = rlock.Lock(r, key, timeout=30)
    assert lock.acquire()
    r.flushall()
    with pytest.raises(LockNotOwnedError) as raised:
        lock.release()
    assert raised.value.reason == "flushed"
    r.close()


def test_a_killed_session_connection_says_session_closed(server, r, key):
    holder = server.client(client_name="lost-reason-holder")
    lock = rlock.Lock(holder, key, timeout=30, session=True)
    assert lock.acquire()
    ids = [c["id"] for c in r.client_list() if c.get("name") == "lost-reason-holder"]
    for client_id in ids:
        r.execute_command("CLIENT", "KILL", "ID", client_id)
    wait_until(lambda: not r.exists(key), what="the session hold to end")
    with pytest.raises(LockNotOwnedError) as raised:
        lock.release()
    assert raised.value.reason == "session-closed"
    holder.close()


def test_a_hold_taken_over_names_the_new_holder_and_its_token(r, key):
    lock = rlock.Lock(r, key, timeout=0.2)
    expire(r, key, lock)
    rival = rlock.Lock(r, key, timeout=30, thread_local=False)
    assert rival.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError) as raised:
        lock.release()
    assert raised.value.reason == "expired"
    assert raised.value.held_by == rival.local.token
    assert raised.value.held_by_token == rival.fencing_token
    assert str(rival.fencing_token) in str(raised.value)
    rival.release()


def test_an_extend_refused_says_why(r, key):
    lock = rlock.Lock(r, key, timeout=30)
    assert lock.acquire()
    r.delete(key)
    with pytest.raises(LockNotOwnedError) as raised:
        lock.extend(10)
    assert raised.value.reason == "deleted"
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_on_lost_sees_the_reason(r, key):
    told = threading.Event()
    reasons = []

    def on_lost(lost):
        reasons.append(lost.lost_reason)
        told.set()

    lock = rlock.Lock(r, key, lease=1, on_lost=on_lost)
    assert lock.acquire()
    r.delete(key)
    assert told.wait(10)
    assert reasons[0] is not None
    assert reasons[0].reason == "deleted"
    with pytest.raises(LockNotOwnedError) as raised:
        lock.release()
    assert raised.value.reason == "deleted"


def test_a_refused_lock_lost_still_raises_lock_not_owned_without_a_reason(r, server, key):
    r.execute_command("ACL", "SETUSER", "nolost", "on", ">pw", "~*", "+@all", "-lock.lost")
    limited = server.client(username="nolost", password="pw")
    try:
        lock = rlock.Lock(limited, key, timeout=30)
        assert lock.acquire()
        r.delete(key)
        with pytest.raises(LockNotOwnedError) as raised:
            lock.release()
        assert raised.value.reason is None
        assert raised.value.held_by is None
    finally:
        limited.close()
        r.execute_command("ACL", "DELUSER", "nolost")


def test_a_multilock_release_says_why(r, key):
    names = [f"{{{key}}}:a", f"{{{key}}}:b"]
    multi = rlock.MultiLock(r, names, timeout=30)
    assert multi.acquire()
    r.delete(*names)
    with pytest.raises(LockNotOwnedError) as raised:
        multi.release()
    assert raised.value.reason == "deleted"
    assert multi.lost_reason is not None


async def test_asyncio_release_and_watchdog_say_why(server, key):
    client = server.async_client()
    lock = rlock.asyncio.Lock(client, key, timeout=0.2)
    assert await lock.acquire()
    wait_until(lambda: not server.client().exists(key), what="the lock to expire")
    with pytest.raises(LockNotOwnedError) as raised:
        await lock.release()
    assert raised.value.reason == "expired"

    told = asyncio.Event()
    watched = rlock.asyncio.Lock(client, key, lease=1, on_lost=lambda lost: told.set())
    assert await watched.acquire()
    await client.delete(key)
    await asyncio.wait_for(told.wait(), 10)
    assert watched.lost_reason is not None
    assert watched.lost_reason.reason == "deleted"
    with pytest.raises(LockNotOwnedError) as again:
        await watched.release()
    assert again.value.reason == "deleted"

    names = [f"{{{key}}}:a", f"{{{key}}}:b"]
    multi = rlock.multi_asyncio.MultiLock(client, names, timeout=30)
    assert await multi.acquire()
    await client.delete(*names)
    with pytest.raises(LockNotOwnedError) as multi_raised:
        await multi.release()
    assert multi_raised.value.reason == "deleted"
    await client.aclose()
