"""Every method of redis-py's Lock API, run on redis-py's own Lock and on rlock.Lock: where the
semantics agree, both must give the same results."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from conftest import wait_until
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock as RedisPyLock

import rlock

LOCK_CLASSES = [pytest.param(RedisPyLock, id="redis-py"), pytest.param(rlock.Lock, id="rlock")]


@pytest.fixture(params=LOCK_CLASSES)
def lock_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


def in_other_thread(call: Callable[[], Any]) -> Any:
    """Runs ``call`` in another thread (another owner) and returns what it returned."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=30)


def test_acquire_and_release(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert not lock.locked()
    assert not lock.owned()
    assert lock.acquire(blocking=False) is True
    assert lock.locked()
    assert lock.owned()
    assert lock.release() is None
    assert not lock.locked()
    assert not lock.owned()


def test_another_thread_cannot_take_a_held_lock(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    assert in_other_thread(lambda: lock.acquire(blocking=False)) is False
    assert in_other_thread(lambda: lock.acquire(blocking_timeout=0.2)) is False
    assert in_other_thread(lock.locked) is True
    lock.release()
    assert in_other_thread(lambda: lock.acquire(blocking=False)) is True


def test_another_lock_object_with_another_token_cannot_take_it(r, key, lock_class):
    holder = lock_class(r, key, timeout=10)
    assert holder.acquire(token="holder")
    assert lock_class(r, key, timeout=10).acquire(blocking=False, token="other") is False
    holder.release()


def test_owned_in_another_thread_is_false(r, key):
    lock = rlock.Lock(r, key, timeout=10)
    assert lock.acquire()
    assert in_other_thread(lock.owned) is False
    assert in_other_thread(lambda: lock.fencing_token) is None
    lock.release()


def test_release_of_an_unlocked_lock_raises_lock_error(r, key, lock_class):
    with pytest.raises(LockError) as raised:
        lock_class(r, key).release()
    assert not isinstance(raised.value, LockNotOwnedError)


def test_release_after_expiry_raises_lock_not_owned(r, key, lock_class):
    lock = lock_class(r, key, timeout=0.05)
    assert lock.acquire()
    wait_until(lambda: not r.exists(key), what="the lock to expire")
    with pytest.raises(LockNotOwnedError):
        lock.release()
    # and the lock is forgotten, as redis-py does
    with pytest.raises(LockError):
        lock.release()


def test_release_after_del_raises_lock_not_owned(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    r.delete(key)
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_extend_adds_to_the_ttl(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    assert lock.extend(10) is True
    assert 10_000 < r.pttl(key) <= 20_000
    lock.release()


def test_extend_with_replace_ttl_sets_it(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    assert lock.extend(100, replace_ttl=True) is True
    assert 10_000 < r.pttl(key) <= 100_000
    assert lock.extend(5, replace_ttl=True) is True
    assert 0 < r.pttl(key) <= 5_000
    lock.release()


def test_extend_refusals(r, key, lock_class):
    with pytest.raises(LockError, match="unlocked"):
        lock_class(r, key, timeout=10).extend(1)
    untimed = lock_class(r, key)
    assert untimed.acquire()
    with pytest.raises(LockError, match="no timeout"):
        untimed.extend(1)
    untimed.release()
    expiring = lock_class(r, key, timeout=0.05)
    assert expiring.acquire()
    wait_until(lambda: not r.exists(key), what="the lock to expire")
    with pytest.raises(LockNotOwnedError):
        expiring.extend(1)


def test_reacquire_resets_the_ttl(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    r.pexpire(key, 500)
    assert lock.reacquire() is True
    assert 500 < r.pttl(key) <= 10_000
    lock.release()


def test_reacquire_refusals(r, key, lock_class):
    with pytest.raises(LockError, match="unlocked"):
        lock_class(r, key, timeout=10).reacquire()
    untimed = lock_class(r, key)
    assert untimed.acquire()
    with pytest.raises(LockError, match="no timeout"):
        untimed.reacquire()
    untimed.release()
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire()
    r.delete(key)
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()


def test_context_manager(r, key, lock_class):
    with lock_class(r, key, timeout=10) as lock:
        assert lock.owned()
    assert not r.exists(key)


def test_context_manager_that_cannot_acquire_raises(r, key, lock_class):
    holder = lock_class(r, key, timeout=10)
    assert holder.acquire(token="holder")
    waiter = lock_class(r, key, timeout=10, blocking_timeout=0.1)
    with pytest.raises(LockError, match="Unable to acquire"), waiter:
        pass
    holder.release()


def test_context_manager_exit_after_loss(r, key, lock_class):
    with pytest.raises(LockNotOwnedError), lock_class(r, key, timeout=10):
        r.delete(key)
    with lock_class(r, key, timeout=10, raise_on_release_error=False):
        r.delete(key)


def test_explicit_token_is_the_owner(r, key, lock_class):
    lock = lock_class(r, key, timeout=10)
    assert lock.acquire(token="my-token")
    assert lock.local.token == b"my-token"
    assert lock.owned()
    lock.release()
    assert not lock.locked()


def test_thread_local_false_lets_another_thread_release(r, key, lock_class):
    lock = lock_class(r, key, timeout=10, thread_local=False)
    assert lock.acquire()
    in_other_thread(lock.release)
    assert not lock.locked()


def test_thread_local_keeps_the_token_per_thread(r, key):
    # (redis-py's own Lock raises AttributeError here: its token is missing in other threads)
    lock = rlock.Lock(r, key, timeout=10)
    assert lock.acquire()
    with pytest.raises(LockError):
        in_other_thread(lock.release)
    lock.release()


def test_blocking_false_in_the_constructor(r, key, lock_class):
    holder = lock_class(r, key, timeout=10)
    assert holder.acquire()
    assert in_other_thread(lambda: lock_class(r, key, blocking=False).acquire()) is False
    holder.release()


def test_blocking_waits_for_the_release(r, key, lock_class):
    holder = lock_class(r, key, timeout=10)
    assert holder.acquire()
    waiter = lock_class(r, key, timeout=10, sleep=0.01)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire(blocking_timeout=20)))
    thread.start()
    holder.release()
    thread.join(30)
    assert result == [True]
    assert waiter.locked()
    r.delete(key)


def test_redis_lock_with_lock_class_is_a_drop_in(r, key):
    lock = r.lock(key, timeout=10, blocking_timeout=1, lock_class=rlock.Lock)
    assert isinstance(lock, rlock.Lock)
    assert (lock.timeout, lock.blocking_timeout, lock.thread_local) == (10, 1, True)
    with lock:
        assert isinstance(lock.fencing_token, int)
        assert lock.owned()
    assert not lock.locked()


def test_decode_responses_client(server, key, lock_class):
    client = server.client(decode_responses=True)
    lock = lock_class(client, key, timeout=10)
    assert lock.acquire()
    assert lock.owned()
    assert lock.extend(1)
    lock.release()
    client.close()


def test_lock_errors_name_the_lock(r, key):
    with pytest.raises(LockError) as raised:
        rlock.Lock(r, key).release()
    assert raised.value.lock_name == key


def test_redis_client_kinds(server, key):
    client = server.client(protocol=3)
    lock = rlock.Lock(client, key, timeout=10)
    assert lock.acquire()
    info = lock.info()
    assert info is not None
    assert (info.count, info.owner, info.token, info.waiters) == (
        1,
        lock.local.token,
        lock.fencing_token,
        0,
    )
    lock.release()
    client.close()
