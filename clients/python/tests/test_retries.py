"""Calls cut short by a stalled server (DEBUG SLEEP longer than the client's socket timeout):
redis-py's retry resends them, and HELD makes the resent call change nothing; without
retries, a grant that may have come with the timeout is given back. Nothing is left held,
and nobody else gets in while the holder holds."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import redis
from conftest import command_calls, stalled
from redis.backoff import NoBackoff
from redis.retry import Retry

import rlock

# The socket timeout and a stall that outlasts it (twice for the release, so that redis-py
# resends it at least twice while the server sleeps).
SOCKET_TIMEOUT = 0.3
RELEASE_STALL = 0.8
ACQUIRE_TIMEOUT = 0.4
ACQUIRE_STALL = 0.6

HoldFactory = Callable[[Any, str], rlock.Lock]

KINDS: dict[str, HoldFactory] = {
    "lock": lambda r, key: rlock.Lock(r, key, timeout=30),
    "watched": lambda r, key: rlock.Lock(r, key, lease=30),
    "read": lambda r, key: rlock.ReadWriteLock(r, key, timeout=30).read_lock(),
    "write": lambda r, key: rlock.ReadWriteLock(r, key, timeout=30).write_lock(),
    "permit": lambda r, key: rlock.Semaphore(r, key, 2, timeout=30).permit(),
}


def impatient_client(server, timeout: float, retries: bool = True) -> redis.Redis:
    """A client with a short socket timeout, connected already: the call under test is then
    the one the stall catches, not the connection handshake."""
    options: dict[str, Any] = {} if retries else {"retry": Retry(NoBackoff(), 0)}
    client = server.client(socket_timeout=timeout, **options)
    client.ping()
    return client


def test_a_retried_inner_release_takes_effect_once(server, r, key):
    impatient = impatient_client(server, SOCKET_TIMEOUT)
    lock = rlock.Lock(impatient, key, timeout=30)
    intruder = rlock.Lock(r, key, timeout=30, thread_local=False)
    with lock:
        assert lock.acquire()
        before = command_calls(r, "lock.release")
        with stalled(server, RELEASE_STALL):
            lock.release()
        assert command_calls(r, "lock.release") - before >= 2, "the release was resent"
        assert lock.info().count == 1
        assert intruder.acquire(blocking=False) is False
        assert lock.owned()
    assert not lock.locked()
    impatient.close()


def test_a_retried_acquire_counts_once(server, r, key):
    impatient = impatient_client(server, SOCKET_TIMEOUT)
    lock = rlock.Lock(impatient, key, timeout=30)
    before = command_calls(r, "lock.acquire")
    with stalled(server, RELEASE_STALL):
        assert lock.acquire(blocking=False)
    assert command_calls(r, "lock.acquire") - before >= 2, "the acquire was resent"
    assert lock.info().count == 1
    lock.release()
    assert not lock.locked()
    impatient.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_acquire_retried_through_a_stall_holds_once(server, r, key, kind):
    impatient = impatient_client(server, ACQUIRE_TIMEOUT)
    hold = KINDS[kind](impatient, key)
    before = command_calls(r, "lock.acquire")
    with stalled(server, ACQUIRE_STALL):
        assert hold.acquire()
    assert command_calls(r, "lock.acquire") - before >= 2, "the acquire was resent"
    info = hold.info()
    assert [h.count for h in info.holders] == [1]
    hold.release()
    assert hold.info() is None
    impatient.close()


@pytest.mark.parametrize("kind", [*KINDS, "session"])
def test_an_acquire_that_timed_out_leaves_nothing_held(server, r, key, kind):
    impatient = impatient_client(server, ACQUIRE_TIMEOUT, retries=False)
    factory = KINDS.get(kind) or (lambda r, key: rlock.Lock(r, key, timeout=30, session=True))
    hold = factory(impatient, key)
    with stalled(server, ACQUIRE_STALL), pytest.raises(redis.TimeoutError):
        hold.acquire()
    assert hold.info() is None, "the grant that came after the timeout was given back"
    assert hold.fencing_token is None
    assert hold.acquire(blocking=False)
    hold.release()
    impatient.close()


def test_a_session_acquire_is_not_retried(server, r, key):
    """Its hold would be bound to the socket that timed out, and end with it."""
    impatient = impatient_client(server, ACQUIRE_TIMEOUT)
    lock = rlock.Lock(impatient, key, timeout=30, session=True)
    with stalled(server, ACQUIRE_STALL), pytest.raises(redis.TimeoutError):
        lock.acquire()
    assert lock.info() is None
    impatient.close()


def test_a_reentry_that_timed_out_is_undone(server, r, key):
    impatient = impatient_client(server, ACQUIRE_TIMEOUT, retries=False)
    lock = rlock.Lock(impatient, key, timeout=30)
    assert lock.acquire()
    with stalled(server, ACQUIRE_STALL), pytest.raises(redis.TimeoutError):
        lock.acquire()
    assert lock.info().count == 1
    lock.release()
    assert not lock.locked()
    impatient.close()
