"""rlock.ReadWriteLock, rlock.Semaphore and session holds against the real module."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from conftest import wait_until
from redis.exceptions import LockError, ResponseError

import rlock


def waiters(r, key) -> int:
    info = rlock.Lock(r, key).info()
    return info.waiters if info else 0


def kill_clients_named(r, name: str) -> int:
    """Closes, on the server, every connection of the clients created with ``client_name``."""
    ids = [c["id"] for c in r.client_list() if c.get("name") == name]
    for client_id in ids:
        r.execute_command("CLIENT", "KILL", "ID", client_id)
    return len(ids)


def in_thread(target) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()))
    thread.start()
    return thread, result


def test_readers_hold_the_key_together(r, key):
    first = rlock.ReadWriteLock(r, key, timeout=10, thread_local=False).read_lock()
    second = rlock.ReadWriteLock(r, key, timeout=10, thread_local=False).read_lock()
    assert first.acquire(blocking=False)
    assert second.acquire(blocking=False)
    assert first.fencing_token != second.fencing_token
    info = first.info()
    assert (info.mode, info.owner, len(info.holders)) == ("shared", None, 2)
    assert {h.token for h in info.holders} == {first.fencing_token, second.fencing_token}
    assert first.owned()
    assert second.owned()
    first.release()
    assert not first.owned()
    assert second.owned()
    second.release()
    assert not first.locked()


def test_a_writer_is_excluded_and_served_in_arrival_order(r, key):
    def rw():
        return rlock.ReadWriteLock(r, key, timeout=10, blocking_timeout=30, thread_local=False)

    reader = rw().read_lock()
    assert reader.acquire()
    writer = rw().write_lock()
    assert not writer.acquire(blocking=False)
    order: list[str] = []

    def take(lock: rlock.Lock, name: str) -> int:
        assert lock.acquire()
        order.append(name)
        token = lock.fencing_token
        lock.release()
        return token

    write_thread, write_token = in_thread(lambda: take(writer, "writer"))
    wait_until(lambda: waiters(r, key) == 1, what="the writer to queue")
    late_reader = rw().read_lock()
    assert not late_reader.acquire(blocking=False), "a reader never passes a queued writer"
    read_thread, read_token = in_thread(lambda: take(late_reader, "reader"))
    wait_until(lambda: waiters(r, key) == 2, what="the late reader to queue")
    first_token = reader.fencing_token
    reader.release()
    write_thread.join(30)
    read_thread.join(30)
    assert order == ["writer", "reader"]
    assert first_token < write_token[0] < read_token[0]


def test_the_writer_may_read_but_a_reader_may_not_upgrade(r, key):
    rw = rlock.ReadWriteLock(r, key, timeout=10)
    with rw.write_lock() as writer, rw.read_lock() as reader:
        assert reader.fencing_token == writer.fencing_token
        assert writer.info().count == 2
    assert not writer.locked()
    with rw.read_lock():
        with pytest.raises(rlock.HoldConflictError) as raised:
            rw.write_lock().acquire(blocking=False)
        assert isinstance(raised.value, LockError)
        assert rw.read_lock().info().holders[0].count == 1


def test_semaphore_permits_are_counted(r, key):
    sem = rlock.Semaphore(r, key, 2, timeout=10, blocking_timeout=30)
    one, two = sem.acquire(), sem.acquire()
    assert one is not None
    assert two is not None
    assert one.fencing_token < two.fencing_token
    assert sem.available_permits() == 0
    assert sem.acquire(blocking=False) is None
    info = sem.info()
    assert (info.mode, info.limit, len(info.holders)) == ("limit", 2, 2)
    thread, third = in_thread(sem.acquire)
    wait_until(lambda: waiters(r, key) == 1, what="a third permit to queue")
    one.release()
    thread.join(30)
    assert third[0] is not None
    assert third[0].fencing_token > two.fencing_token
    assert sem.available_permits() == 0
    two.release()
    assert sem.available_permits() == 1
    with sem.permit() as permit:
        assert permit.owned()
        assert sem.available_permits() == 0
    third[0].release()
    assert sem.info() is None


def test_another_number_of_permits_is_a_typed_error(r, key):
    permit = rlock.Semaphore(r, key, 2, timeout=10).acquire()
    with pytest.raises(rlock.LimitMismatchError) as raised:
        rlock.Semaphore(r, key, 3, timeout=10).acquire()
    error = raised.value
    assert (error.limit, error.requested) == (2, 3)
    assert isinstance(error, LockError)
    assert isinstance(error, ResponseError)
    permit.release()
    assert rlock.Semaphore(r, key, 3, timeout=10).acquire() is not None  # all back: changeable


@pytest.mark.parametrize(
    "options", [{"shared": True, "limit": 2}, {"limit": 0}, {"limit": 10_001}, {"limit": True}]
)
def test_hold_kinds_the_server_cannot_take_are_refused_up_front(r, key, options):
    with pytest.raises(ValueError):
        rlock.Lock(r, key, **options)


def test_info_reads_both_protocols(server, key):
    for protocol in (2, 3):
        client = server.client(protocol=protocol)
        lock = rlock.Lock(client, key, timeout=10, shared=True, session=True)
        assert lock.acquire()
        info = lock.info()
        assert info.mode == "shared"
        assert info.holders[0].session is True
        assert info.holders[0].owner == lock.local.token
        lock.release()
        client.close()


HOLDER = """
import sys, redis, rlock
r = redis.Redis(unix_socket_path=sys.argv[1])
lock = rlock.Lock(r, sys.argv[2], timeout=600, session=True)
assert lock.acquire()
print(lock.fencing_token, flush=True)
sys.stdin.read()
"""


def test_a_session_hold_ends_when_its_process_dies(server, r, key):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, server.socket_path, key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        token = int(holder.stdout.readline())
        assert rlock.Lock(r, key).info().holders[0].session
        waiter = rlock.Lock(r, key, timeout=10, thread_local=False)
        thread, got = in_thread(lambda: waiter.acquire(blocking_timeout=60))
        wait_until(lambda: waiters(r, key) == 1, what="the waiter to queue")
        holder.kill()  # by its pid; the 600 s ttl is far off
        holder.wait()
        thread.join(60)
        assert got == [True]
        assert waiter.fencing_token > token
        waiter.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_session_hold_uses_one_dedicated_connection_until_released(server, key):
    r = server.client(client_name="holder")
    lost: list[rlock.Lock] = []
    lock = rlock.Lock(r, key, session=True, lease=1, on_lost=lost.append)
    assert lock.acquire()
    assert lock.acquire()  # reentry over the same connection
    assert lock.info().count == 2
    assert lock.info().holders[0].session
    lock.release()
    lock.release()
    assert not lock.locked()
    assert lock.acquire()
    assert kill_clients_named(r, "holder") >= 1  # the connection drops: the server ends it
    wait_until(lambda: lost == [lock], what="the watchdog to report the loss")
    assert lock.lost
    with pytest.raises(rlock.LockNotOwnedError):
        lock.release()
    r.close()


def session_connections(r) -> int:
    return int(r.info("lock")["lock_session_connections"])


def test_a_session_downgrade_keeps_the_read_hold(server, r, key):
    """Write lock, then read lock (a reentry), then the write lock released: the owner still
    holds the key through the session connection that took it first."""
    rw = rlock.ReadWriteLock(server.client(), key, timeout=30, session=True)
    intruder = rlock.Lock(r, key, timeout=30, thread_local=False)
    writer, reader = rw.write_lock(), rw.read_lock()
    assert writer.acquire()
    assert reader.acquire()
    writer.release()
    info = reader.info()
    assert info is not None, "the read hold survived the write lock's release"
    assert info.holders[0].count == 1
    assert intruder.acquire(blocking=False) is False
    assert reader.owned()
    reader.release()
    assert reader.info() is None
    wait_until(lambda: session_connections(r) == 0, what="the session connection to close")
    assert intruder.acquire(blocking=False)
    intruder.release()


def test_with_on_a_permit_from_acquire_holds_one_permit(r, key):
    sem = rlock.Semaphore(r, key, 2, timeout=30)
    with sem.acquire() as permit:
        assert [h.count for h in sem.info().holders] == [1]
        assert permit.owned()
    assert sem.info() is None


def test_with_on_a_new_permit_and_on_the_semaphore_hold_one_permit_each(r, key):
    sem = rlock.Semaphore(r, key, 2, timeout=30)
    with sem.permit() as first:
        assert [h.count for h in sem.info().holders] == [1]
        with sem as second:
            assert second is not first
            assert sorted(h.count for h in sem.info().holders) == [1, 1]
            assert sem.available_permits() == 0
            with pytest.raises(LockError), rlock.Semaphore(r, key, 2, blocking=False):
                pass
        assert [h.count for h in sem.info().holders] == [1]
    assert sem.info() is None


def test_with_on_an_acquired_permit_reentered_releases_in_order(r, key):
    sem = rlock.Semaphore(r, key, 1, timeout=30)
    permit = sem.acquire()
    with permit:  # takes over the acquisition
        with permit:  # a reentry
            assert sem.info().holders[0].count == 2
        assert sem.info().holders[0].count == 1
    assert sem.info() is None
    with pytest.raises(LockError):
        permit.release()


@pytest.mark.parametrize("which", ["read_lock", "write_lock"])
def test_with_on_a_read_write_lock_holds_once(r, key, which):
    rw = rlock.ReadWriteLock(r, key, timeout=30)
    with getattr(rw, which)() as lock:
        assert [h.count for h in lock.info().holders] == [1]
    assert lock.info() is None
