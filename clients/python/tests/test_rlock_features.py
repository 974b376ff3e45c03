"""What rlock.Lock adds to redis-py's Lock: fencing tokens, waits in the server, reentrancy,
unit conversion and validation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import wait_until
from redis.exceptions import LockError, LockNotOwnedError

import rlock


def waiters(lock: rlock.Lock) -> int:
    info = lock.info()
    return info.waiters if info else 0


def test_each_acquisition_gets_a_higher_fencing_token(r, key):
    lock = rlock.Lock(r, key, timeout=10)
    assert lock.fencing_token is None
    tokens = []
    for _ in range(3):
        assert lock.acquire()
        assert isinstance(lock.fencing_token, int)
        tokens.append(lock.fencing_token)
        lock.release()
        assert lock.fencing_token is None
    assert tokens == sorted(set(tokens))


def test_a_thread_reenters_its_lock_and_releases_once_per_acquire(r, key):
    lock = rlock.Lock(r, key, timeout=10)
    assert lock.acquire()
    token = lock.fencing_token
    assert lock.acquire(blocking=False)
    with lock:
        assert lock.info().count == 3
        assert lock.fencing_token == token
    lock.release()
    assert lock.owned()
    assert lock.info().count == 1
    lock.release()
    assert not lock.locked()


def test_reentry_through_another_lock_object_in_the_same_thread(r, key):
    outer = r.lock(key, timeout=10, lock_class=rlock.Lock)
    inner = r.lock(key, timeout=10, lock_class=rlock.Lock)
    with outer, inner:
        assert outer.info().count == 2
        assert inner.fencing_token == outer.fencing_token
    assert not outer.locked()


def test_other_threads_do_not_reenter(r, key):
    lock = rlock.Lock(r, key, timeout=10)
    assert lock.acquire()
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: lock.acquire(blocking=False)).result() is False
    lock.release()


def test_a_blocked_acquire_waits_in_the_server_and_is_handed_the_lock(r, key):
    holder = rlock.Lock(r, key, timeout=10)
    assert holder.acquire()
    waiter = rlock.Lock(r, key, timeout=10)
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking_timeout=30)))
    thread.start()
    wait_until(lambda: waiters(holder) == 1, what="the waiter to queue in the server")
    first_token = holder.fencing_token
    holder.release()
    thread.join(30)
    assert got == [True]
    info = waiter.info()
    assert info.token > first_token
    assert info.waiters == 0
    r.delete(key)


def test_waiters_are_served_first_come_first_served(r, key):
    holder = rlock.Lock(r, key, timeout=10)
    assert holder.acquire()
    order: list[int] = []

    def wait_then_release(number: int) -> None:
        lock = rlock.Lock(r, key, timeout=10)
        assert lock.acquire(blocking_timeout=30)
        order.append(number)
        lock.release()

    threads = []
    for number in range(3):
        threads.append(threading.Thread(target=wait_then_release, args=(number,)))
        threads[-1].start()
        wait_until(lambda n=number: waiters(holder) == n + 1, what="the next waiter to queue")
    holder.release()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2]


def test_a_wait_that_times_out_returns_false_and_leaves_the_queue(r, key):
    holder = rlock.Lock(r, key, timeout=10)
    assert holder.acquire()
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: rlock.Lock(r, key).acquire(blocking_timeout=0.05)).result() is (
            False
        )
    assert holder.info().waiters == 0
    holder.release()


def test_a_wait_longer_than_the_socket_timeout_is_cut_into_slices(server, r, key):
    holder = rlock.Lock(r, key, timeout=10)
    assert holder.acquire()
    impatient = server.client(socket_timeout=0.2)
    waiter = rlock.Lock(impatient, key, timeout=10, thread_local=False)
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking_timeout=60)))
    thread.start()
    wait_until(lambda: waiters(holder) == 1, what="the waiter to queue")
    threading.Event().wait(0.6)  # several socket timeouts pass while it waits
    holder.release()
    thread.join(30)
    assert got == [True]
    waiter.release()
    impatient.close()


def test_seconds_are_rounded_up_to_whole_milliseconds(r, key):
    lock = rlock.Lock(r, key, timeout=2.0001)
    assert lock.settings.ttl_ms == 2_001
    assert lock.acquire()
    assert 0 < r.pttl(key) <= 2_001
    lock.release()
    tiny = rlock.Lock(r, key, timeout=0.0000001)
    assert tiny.settings.ttl_ms == 1


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": -1},
        {"timeout": 2_592_001},
        {"timeout": float("nan")},
        {"lease": 0},
        {"replicas": -1},
        {"replica_timeout": 0},
    ],
)
def test_values_the_server_cannot_take_are_refused_up_front(r, key, options):
    with pytest.raises(ValueError):
        rlock.Lock(r, key, **options)


def test_owner_ids_the_server_cannot_take_are_refused(r, key):
    lock = rlock.Lock(r, key, timeout=10)
    with pytest.raises(ValueError):
        lock.acquire(token="x" * 1025)
    with pytest.raises(ValueError):
        lock.acquire(token="")
    assert lock.acquire(token="x" * 1024)
    lock.release()


def test_a_key_of_another_type_is_a_server_error(r, key):
    r.set(key, "not a lock")
    with pytest.raises(Exception, match="WRONGTYPE"):
        rlock.Lock(r, key, timeout=10).acquire()


def test_exceptions_are_redis_pys(r, key):
    assert rlock.LockError is LockError
    assert rlock.LockNotOwnedError is LockNotOwnedError
    assert issubclass(rlock.ReplicaSyncError, LockError)
