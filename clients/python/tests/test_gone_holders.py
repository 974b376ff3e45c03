"""A holder that is gone without releasing (its Lock object or permit collected, its thread
ended, its asyncio task done) cannot release any more: the watchdog stops renewing its hold
and gives it back, for every kind of hold, sync and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from typing import Any, Callable

import pytest
from conftest import command_calls, wait_until

import rlock
import rlock.asyncio
from rlock import _watchdog

LEASE = 1.0

SYNC_KINDS: dict[str, Callable[[Any, str], rlock.Lock]] = {
    "lock": lambda r, key: rlock.Lock(r, key, lease=LEASE),
    "read": lambda r, key: rlock.ReadWriteLock(r, key, lease=LEASE).read_lock(),
    "write": lambda r, key: rlock.ReadWriteLock(r, key, lease=LEASE).write_lock(),
    "permit": lambda r, key: rlock.Semaphore(r, key, 2, lease=LEASE).permit(),
    "session": lambda r, key: rlock.Lock(r, key, lease=LEASE, session=True),
}

ASYNC_KINDS: dict[str, Callable[[Any, str], rlock.asyncio.Lock]] = {
    "lock": lambda r, key: rlock.asyncio.Lock(r, key, lease=LEASE),
    "read": lambda r, key: rlock.asyncio.ReadWriteLock(r, key, lease=LEASE).read_lock(),
    "write": lambda r, key: rlock.asyncio.ReadWriteLock(r, key, lease=LEASE).write_lock(),
    "permit": lambda r, key: rlock.asyncio.Semaphore(r, key, 2, lease=LEASE).permit(),
    "session": lambda r, key: rlock.asyncio.Lock(r, key, lease=LEASE, session=True),
}


def held_by_nobody(r, key) -> bool:
    gc.collect()  # a holder in a reference cycle is gone too, once collected
    return rlock.Lock(r, key).info() is None


def assert_given_back(r, key) -> None:
    """The hold ends and nothing is renewed any more (a renewed hold never ends)."""
    wait_until(lambda: held_by_nobody(r, key), what="the abandoned hold to end")
    wait_until(lambda: len(_watchdog.watchdog()._book) == 0, what="the renewals to stop")


@pytest.mark.parametrize("kind", list(SYNC_KINDS))
def test_a_hold_whose_lock_object_was_collected_is_given_back(r, key, kind):
    assert SYNC_KINDS[kind](r, key).acquire()  # the Lock object is dropped at once
    assert_given_back(r, key)


def test_a_permit_of_a_thread_that_raised_is_given_back(r, key):
    sem = rlock.Semaphore(r, key, 2, lease=LEASE)

    def take_a_permit_and_fail() -> None:
        permit = sem.acquire()
        assert permit is not None
        raise RuntimeError("the worker fails without releasing")

    def worker() -> None:
        # (the traceback, and the permit with it, is dropped at the end of the block)
        with contextlib.suppress(RuntimeError):
            take_a_permit_and_fail()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert sem.info() is not None
    assert_given_back(r, key)
    assert sem.available_permits() == 2


def test_a_held_lock_of_a_living_holder_is_still_renewed(r, key):
    """The other side: a holder that is alive keeps its hold (and a collected sibling Lock
    object of the same thread does not end it)."""
    outer = rlock.Lock(r, key, lease=LEASE)
    assert outer.acquire()
    assert rlock.Lock(r, key, lease=LEASE).acquire()  # a reentry by a dropped Lock object
    renewals = command_calls(r, "lock.renew")
    wait_until(lambda: command_calls(r, "lock.renew") > renewals, what="a renewal")
    gc.collect()
    assert outer.owned()
    outer.release()
    assert_given_back(r, key)  # the dropped object's hold is given back after the release


# (Not a permit: any task may release it, so it is gone only once collected, below.)
@pytest.mark.parametrize("kind", [k for k in ASYNC_KINDS if k != "permit"])
async def test_a_hold_of_a_task_that_ended_without_releasing_is_given_back(server, r, key, kind):
    client = server.async_client()
    lock = ASYNC_KINDS[kind](client, key)  # kept: the task's end alone makes it gone

    async def take_and_forget() -> None:
        assert await lock.acquire()

    await asyncio.ensure_future(take_and_forget())
    assert await lock.info() is not None
    deadline = time.monotonic() + 10
    while not (await lock.info() is None and not rlock.asyncio.watchdog()._book):
        assert time.monotonic() < deadline, "the abandoned hold is still renewed"
        await asyncio.sleep(0.05)
    await client.aclose()


@pytest.mark.parametrize("kind", ["permit", "lock"])
async def test_an_asyncio_hold_whose_lock_object_was_collected_is_given_back(server, key, kind):
    client = server.async_client()

    async def take() -> None:
        assert await ASYNC_KINDS[kind](client, key).acquire()  # this task lives on

    await take()
    deadline = time.monotonic() + 10
    while True:
        gc.collect()
        if await client.execute_command("LOCK.INFO", key) is None:
            break
        assert time.monotonic() < deadline, "the abandoned hold is still renewed"
        await asyncio.sleep(0.05)
    await client.aclose()
