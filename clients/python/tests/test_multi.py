"""rlock.MultiLock and rlock.multi_asyncio.MultiLock: several keys in one step, all or
nothing; transfers in opposite key orders never deadlock; a wait closing a cycle raises
DeadlockError at once; the watchdog renews every key."""

import threading

import pytest
from conftest import wait_until
from redis.exceptions import LockError, LockNotOwnedError

import rlock
import rlock.multi_asyncio


def names(key: str) -> list[str]:
    return [f"{{{key}}}:acct:1", f"{{{key}}}:acct:2"]


def blocked(r) -> int:
    return int(r.info("clients")["blocked_clients"])


def test_every_key_is_taken_with_its_token_and_released(r, key):
    lock = rlock.MultiLock(r, names(key), timeout=10)
    with lock:
        assert lock.tokens is not None
        assert len(lock.tokens) == 2
        assert lock.tokens[0] < lock.tokens[1]
        other = rlock.MultiLock(r, list(reversed(names(key))), timeout=10, blocking=False)
        assert not other.acquire(), "all or nothing: busy"
        assert r.exists(names(key)[0]) == 1
    assert r.exists(*names(key)) == 0
    with pytest.raises(LockNotOwnedError):
        lock.release()
    with pytest.raises(ValueError):
        rlock.MultiLock(r, [key, key])


def test_transfers_in_opposite_orders_all_complete(r, key):
    accounts = names(key)
    done = []

    def transfer(order: list[str]) -> None:
        for _ in range(20):
            with rlock.MultiLock(r, order, timeout=10, blocking_timeout=30):
                done.append(order[0])

    threads = [
        threading.Thread(target=transfer, args=(accounts,)),
        threading.Thread(target=transfer, args=(list(reversed(accounts)),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(done) == 40


def test_a_wait_closing_a_cycle_raises_deadlock_error(r, key):
    k1, k2 = names(key)
    r.execute_command("LOCK.ACQUIRE", k1, "A", 60000)
    r.execute_command("LOCK.ACQUIRE", k2, "B", 60000)
    before = blocked(r)
    waiter = threading.Thread(
        target=lambda: r.execute_command("LOCK.ACQUIRE", k1, "B", 60000, "WAIT", 20000)
    )
    waiter.start()
    wait_until(lambda: blocked(r) == before + 1, what="B waiting for k1")
    lock = rlock.MultiLock(r, [k2, f"{{{key}}}:acct:3"], timeout=10, owner="A")
    with pytest.raises(rlock.DeadlockError) as refused:
        lock.acquire()
    assert isinstance(refused.value, LockError)
    assert refused.value.cycle == f"'{k2}' is held by 'B', which waits for '{k1}', held by 'A'"
    r.execute_command("LOCK.RELEASE", k1, "A")
    waiter.join(timeout=30)
    r.execute_command("LOCK.MRELEASE", 2, k1, k2, "B")


def test_the_watchdog_renews_every_key(r, key):
    lock = rlock.MultiLock(r, names(key))
    assert lock.acquire()
    try:
        # Shorten both leases behind the watchdog's back: its next renewal restores them.
        for name in names(key):
            r.execute_command("LOCK.RENEW", name, lock.owner, 2000)
        lock.ttl_ms = 3000
        lock._stop_watchdog()
        lock._start_watchdog()
        wait_until(lambda: all(r.pttl(name) > 2000 for name in names(key)), what="renewal")
    finally:
        lock.release()


async def test_the_asyncio_multilock(server, key):
    ar = server.async_client()
    try:
        async with rlock.multi_asyncio.MultiLock(ar, names(key), timeout=10) as lock:
            assert lock.tokens is not None
            assert len(lock.tokens) == 2
            busy = rlock.multi_asyncio.MultiLock(ar, names(key), timeout=10, blocking=False)
            assert not await busy.acquire()
        assert await ar.exists(*names(key)) == 0
    finally:
        await ar.aclose()
