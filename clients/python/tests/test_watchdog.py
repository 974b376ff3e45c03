"""The watchdog: a lock without a timeout lives past its lease while held, renewal stops at
release, and a lost lock is reported (on_lost, lost, LockNotOwnedError)."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import wait_until
from redis.exceptions import LockError, LockNotOwnedError

import rlock
from rlock import _watchdog
from rlock._holdings import Holding
from rlock._leases import LeaseBook

LEASE = 1.0  # seconds: renewed every third; long enough for a loaded machine


def outlive(seconds: float) -> None:
    """Lets time pass (several leases) without asserting anything about timing."""
    time.sleep(seconds)


def watchdog_idle() -> bool:
    return len(_watchdog.watchdog()._book) == 0


def test_a_held_lock_outlives_its_lease(r, key):
    lock = rlock.Lock(r, key, lease=LEASE)
    assert lock.acquire()
    assert 0 < r.pttl(key) <= 1_000
    outlive(1.5 * LEASE)
    assert lock.owned()
    assert not lock.lost
    lock.release()
    assert not lock.locked()


def test_renewal_stops_after_release(r, key):
    lock = rlock.Lock(r, key, lease=LEASE)
    with lock:
        pass
    wait_until(watchdog_idle, what="the watchdog to have nothing to renew")
    wait_until(lambda: _watchdog.watchdog()._thread is None, what="the watchdog thread to end")
    # another owner's lock of the same name is not renewed by the old holder's watchdog
    r.execute_command("LOCK.ACQUIRE", key, "someone-else", 200)
    wait_until(lambda: not r.exists(key), what="the other owner's lock to expire")


def test_renewal_goes_on_until_the_last_reentrant_release(r, key):
    lock = rlock.Lock(r, key, lease=LEASE)
    assert lock.acquire()
    assert lock.acquire()
    lock.release()
    outlive(1.5 * LEASE)
    assert lock.owned()
    lock.release()
    assert not lock.locked()


def test_many_locks_share_one_watchdog_thread(r, key):
    locks = [rlock.Lock(r, f"{key}:{n}", lease=LEASE) for n in range(20)]
    for lock in locks:
        assert lock.acquire()
    watchdog_threads = [t for t in threading.enumerate() if t.name == "rlock-watchdog"]
    assert len(watchdog_threads) == 1
    outlive(1.5 * LEASE)
    assert all(lock.owned() for lock in locks)
    for lock in locks:
        lock.release()


def lose_by_del(r, key):
    r.delete(key)


def lose_by_expiry(r, key):
    r.pexpire(key, 1)


def lose_by_flushall(r, key):
    r.flushall()


@pytest.mark.parametrize("lose", [lose_by_del, lose_by_expiry, lose_by_flushall])
def test_a_lost_lock_is_reported(fresh_server, key, lose):
    r = fresh_server.client()
    told = threading.Event()
    lock = rlock.Lock(r, key, lease=LEASE, on_lost=lambda lost_lock: told.set())
    assert lock.acquire()
    lose(r, key)
    assert told.wait(10)
    assert lock.lost
    assert not lock.owned()
    with pytest.raises(LockNotOwnedError):
        lock.extend(1)
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert lock.lost
    with pytest.raises(LockError):
        lock.release()
    # the next acquire starts afresh
    assert lock.acquire()
    assert not lock.lost
    lock.release()
    r.close()


def test_a_lost_lock_taken_by_another_owner_is_not_renewed_or_released(r, key):
    told = threading.Event()
    lock = rlock.Lock(r, key, lease=LEASE, on_lost=lambda lost_lock: told.set())
    assert lock.acquire()
    r.delete(key)
    r.execute_command("LOCK.ACQUIRE", key, "next-owner", 60_000)
    assert told.wait(10)
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert lock.info().owner == b"next-owner"


def test_a_context_manager_exit_after_loss_raises(r, key):
    lock = rlock.Lock(r, key, lease=LEASE)
    with pytest.raises(LockNotOwnedError), lock:
        r.delete(key)
        wait_until(lambda: lock.lost, what="the loss to be noticed")


def test_an_ended_holder_thread_stops_the_renewal(r, key):
    lock = rlock.Lock(r, key, lease=LEASE)
    thread = threading.Thread(target=lock.acquire)
    thread.start()
    thread.join(10)
    assert lock.locked()
    wait_until(lambda: not lock.locked(), what="the abandoned lock to expire")


def test_a_failing_on_lost_callback_does_not_stop_the_watchdog(r, key):
    def explode(lost_lock):
        raise RuntimeError("callback failure")

    failing = rlock.Lock(r, f"{key}:a", lease=LEASE, on_lost=explode)
    kept = rlock.Lock(r, f"{key}:b", lease=LEASE)
    assert failing.acquire()
    assert kept.acquire()
    r.delete(f"{key}:a")
    wait_until(lambda: failing.lost, what="the loss to be noticed")
    outlive(1.5 * LEASE)
    assert kept.owned()
    kept.release()


RELEASING_THREADS = 4
LOCKS_PER_THREAD = 10
ROUNDS = 25  # 4 x 10 x 25 = 1000 releases


def test_a_release_racing_a_renewal_is_never_reported_lost(r, key, caplog):
    """Each round, every thread takes its locks and releases them at the moment their first
    renewal is due: a renewal that reaches the server after the release finds the lock gone,
    which must not be taken for a loss (the lease was marked releasing before LOCK.RELEASE)."""
    spurious: list[rlock.Lock] = []
    failures: list[BaseException] = []
    deadline = time.monotonic() + 40

    def release_at_renewal_time(thread_number: int) -> None:
        locks = [
            rlock.Lock(r, f"{key}:{thread_number}:{n}", lease=LEASE, on_lost=spurious.append)
            for n in range(LOCKS_PER_THREAD)
        ]
        for _ in range(ROUNDS):
            if time.monotonic() > deadline:
                raise AssertionError("the rounds took too long")
            # Lock n is taken and released as long after the start as its renewal falls due
            # after its grant: each release meets its lock's first renewal, give or take.
            start = time.monotonic()
            for lock in locks:
                assert lock.acquire()
            time.sleep(max(0.0, start + LEASE / 3 - time.monotonic()))
            for lock in locks:
                lock.release()
                assert not lock.lost

    def run(thread_number: int) -> None:
        try:
            release_at_renewal_time(thread_number)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(RELEASING_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert spurious == []
    assert "lost while held" not in caplog.text


def test_a_lock_taken_again_and_again_does_not_wake_the_watchdog(r, key, monkeypatch):
    # Another watched lock keeps the thread alive and asleep until its renewal, 10 s away:
    # acquires of a lock with the same lease are due later, so none wakes the thread.
    keeper = rlock.Lock(r, key + ":keeper")
    assert keeper.acquire()
    try:
        changed = _watchdog.watchdog()._changed
        wakes: list[str] = []
        notify = changed.notify

        def counting_notify(n: int = 1) -> None:
            if threading.current_thread().name != "rlock-watchdog":
                wakes.append(threading.current_thread().name)
            notify(n)

        monkeypatch.setattr(changed, "notify", counting_notify)
        lock = rlock.Lock(r, key)
        for _ in range(50):
            with lock:
                pass
        assert wakes == []
    finally:
        keeper.release()


def test_a_shorter_lease_wakes_the_sleeping_watchdog(r, key):
    keeper = rlock.Lock(r, key + ":keeper")  # the thread sleeps until its renewal, 10 s away
    assert keeper.acquire()
    try:
        lock = rlock.Lock(r, key, lease=LEASE)
        assert lock.acquire()
        outlive(1.5 * LEASE)
        assert lock.owned()
        assert not lock.lost
        lock.release()
    finally:
        keeper.release()


def test_the_schedule_stays_small_while_a_lock_is_taken_again_and_again():
    book = LeaseBook()
    holding = Holding("lock:schedule", b"owner")
    for second in range(10_000):
        book.let_go(book.hold(holding, object(), 30_000, float(second)))
    assert len(book._heap) <= 2 * len(book) + 64
    lease = book.hold(holding, object(), 30_000, 20_000.0)
    assert book.next_due() == lease.due
