"""rlock.asyncio.Lock: redis-py's asyncio Lock (``redis.asyncio.lock.Lock``), backed by the
rlock module, with the watchdog as an asyncio task and cancellation-safe acquire and release.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import weakref
from collections.abc import Awaitable
from types import SimpleNamespace, TracebackType
from typing import Any, Callable

from redis.exceptions import LockError, RedisError, ResponseError

from rlock import _owners, _protocol
from rlock._base import LockBase
from rlock._kinds import ReadWriteLockBase, SemaphoreBase
from rlock._leases import (
    Lease,
    LeaseBook,
    LossListener,
    by_client,
    logger,
    renewal_pipeline,
    tell,
)
from rlock._protocol import KeyName, LockInfo, Seconds, lock_error, not_owned
from rlock._settings import encode_owner, socket_timeout_ms, wait_slices

__all__ = ["Lock", "ReadWriteLock", "Semaphore"]

OnLost = Callable[["Lock"], Any]

# Clean-up tasks run past a cancellation; kept here so they are not garbage collected early.
_background: set[asyncio.Task[Any]] = set()

#: After a cancelled acquire, its owner id is released at these delays (seconds): at once, and
#: again in case the server handed the lock over just as the waiting connection closed.
CANCEL_RELEASE_DELAYS = (0.0, 0.05, 0.5)


def _in_background(coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _close_dedicated(client: Any) -> None:
    """Disconnects and closes a session connection: the server ends its session holds."""
    connection = getattr(client, "connection", None)
    try:
        if connection is not None:
            await connection.disconnect()
    finally:
        await client.aclose()


class TaskLocal:
    """Attributes kept per asyncio task, as ``threading.local`` keeps them per thread: a lock
    held by one task is not held by another on the same event loop."""

    def __init__(self) -> None:
        object.__setattr__(self, "_by_task", weakref.WeakKeyDictionary())
        object.__setattr__(self, "_outside_tasks", SimpleNamespace(token=None))

    def _namespace(self) -> SimpleNamespace:
        task = asyncio.current_task()
        if task is None:
            namespace: SimpleNamespace = object.__getattribute__(self, "_outside_tasks")
            return namespace
        by_task = object.__getattribute__(self, "_by_task")
        if task not in by_task:
            by_task[task] = SimpleNamespace(token=None)
        result: SimpleNamespace = by_task[task]
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._namespace(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._namespace(), name, value)


class AsyncWatchdog:
    """One task per event loop renews every watched lock of that loop, pipelined per client.
    The task starts with the first watched lock and ends when none is left."""

    def __init__(self) -> None:
        self._book = LeaseBook()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def hold(self, client: Any, name: KeyName, owner: bytes, lease_ms: int) -> Lease:
        lease = self._book.hold(client, name, owner, lease_ms, time.monotonic(), None)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        return lease

    def listen(self, lease: Lease, listener: LossListener) -> None:
        lease.listeners.append(listener)

    def let_go(self, lease: Lease, listener: LossListener | None = None) -> None:
        self._book.let_go(lease, listener)

    def drop(self, lease: Lease) -> None:
        self._book.drop(lease)

    async def _run(self) -> None:
        try:
            while self._book:
                now = time.monotonic()
                next_due = self._book.next_due()
                if next_due is not None and next_due <= now:
                    await self._renew(self._book.take_due(now))
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), next_due - now if next_due else None)
        finally:
            self._task = None

    async def _renew(self, due: list[Lease]) -> None:
        for leases in by_client(due):
            await self._renew_on_one_client(leases)

    async def _renew_on_one_client(self, leases: list[Lease]) -> None:
        sent_at = time.monotonic()
        try:
            replies: list[Any] = await renewal_pipeline(leases).execute(raise_on_error=False)
        except RedisError as error:
            logger.warning("rlock: renewing %d lock(s) failed: %s", len(leases), error)
            replies = [error] * len(leases)
        for result in tell(self._book.record(leases, replies, sent_at, time.monotonic())):
            if inspect.isawaitable(result):
                _in_background(result)


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncWatchdog] = (
    weakref.WeakKeyDictionary()
)


def watchdog() -> AsyncWatchdog:
    """The running event loop's watchdog."""
    loop = asyncio.get_running_loop()
    if loop not in _watchdogs:
        _watchdogs[loop] = AsyncWatchdog()
    return _watchdogs[loop]


class Lock(LockBase):
    """A distributed lock with the constructor and methods of redis-py's asyncio Lock
    (``redis.asyncio.lock.Lock``), for ``redis.asyncio`` clients: swap it in with
    ``client.lock(name, lock_class=rlock.asyncio.Lock)``.

    Everything is as in :class:`rlock.Lock` (times in seconds, the watchdog with ``lease``,
    ``on_lost``, ``replicas``/``replica_timeout``, ``fencing_token``, ``lost``), except:

    - ``thread_local`` (default True) makes each asyncio *task* its own holder; reentrancy is
      through the same Lock object in the same task (each acquisition needs one release).
    - The watchdog is one asyncio task per event loop; ``on_lost`` may be a coroutine
      function.
    - A cancelled ``acquire`` never leaves the lock held: if the server granted the lock just
      as the call was cancelled, the grant is released. A cancelled ``release`` still
      completes in the background.
    """

    def _holder_local(self) -> TaskLocal:
        return TaskLocal()

    # -- what redis-py's asyncio Lock offers -----------------------------------------------

    async def __aenter__(self) -> Lock:
        if await self.acquire():
            return self
        raise lock_error("Unable to acquire lock within the time specified", self.name)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.release()
        except LockError:
            if self.raise_on_release_error:
                raise
            logger.warning("Lock was unlocked or no longer owned when exiting context manager.")

    async def acquire(
        self,
        blocking: bool | None = None,
        blocking_timeout: Seconds | None = None,
        token: Any | None = None,
    ) -> bool:
        """Takes the lock; True once held, False when it could not be had in time.

        As :meth:`rlock.Lock.acquire` (``blocking``, ``blocking_timeout`` in seconds, ``token``
        the owner id), without ``sleep``. The same task acquiring through this Lock again
        reenters it. Cancellation-safe. Raises ``ReplicaSyncError`` as the sync Lock does.
        """
        self._forget_if_lost()
        wait = self._wait_ms(blocking, blocking_timeout)
        held: bytes | None = self.local.token
        if held is not None and token is None:
            return await self._reenter(held)
        owner = (
            _protocol.check_owner(encode_owner(token)) if token is not None else _owners.new_owner()
        )
        try:
            fencing_token = await self._acquire_on_server(owner, wait)
        except asyncio.CancelledError:
            # The owner id is new: releasing it undoes a grant that raced the cancellation
            # and does nothing otherwise.
            _in_background(self._release_abandoned(owner))
            self._after_failed_acquire()
            raise
        except BaseException:
            self._after_failed_acquire()
            raise
        if fencing_token is None:
            self._after_failed_acquire()
            return False
        self._hold(owner, fencing_token)
        return True

    async def release(self) -> None:
        """Lets go of one acquisition; as :meth:`rlock.Lock.release`, and the release
        completes even if the calling task is cancelled meanwhile."""
        owner = self._releasing_owner()
        # The reply and the bookkeeping belong together: shielded from the caller's cancel,
        # and the bookkeeping done on this task's state (the shielded task has its own).
        state = self._state()
        remaining = await asyncio.shield(_in_background(self._release_and_let_go(state, owner)))
        if remaining is None:
            raise not_owned("release", self.name)

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """As :meth:`rlock.Lock.extend`: seconds added to (or, with ``replace_ttl``, set as)
        the remaining ttl of a lock with a ``timeout``."""
        args = self._extend_args(additional_time, replace_ttl)
        if not await self._extend_script(keys=[self.name], args=args, client=self.redis):
            raise not_owned("extend", self.name)
        return True

    async def reacquire(self) -> bool:
        """As :meth:`rlock.Lock.reacquire`: the ttl reset to ``timeout``."""
        owner = self._held_owner("reacquire")
        ttl_ms = self.settings.ttl_ms
        if not await self.redis.execute_command("LOCK.RENEW", self.name, owner, ttl_ms):
            raise not_owned("reacquire", self.name)
        return True

    async def locked(self) -> bool:
        """True when anyone holds the lock."""
        return await self.info() is not None

    async def owned(self) -> bool:
        """True when this task (this owner) holds the lock, as the server sees it now."""
        owner: bytes | None = self.local.token
        if owner is None or self.lost:
            return False
        return self._holds(await self.info(), owner)

    # -- what rlock adds --------------------------------------------------------------------

    async def info(self) -> LockInfo | None:
        """The lock as the server has it now, or None when it is free."""
        return _protocol.parse_info(await self.redis.execute_command("LOCK.INFO", self.name))

    # -- internals --------------------------------------------------------------------------

    async def _reenter(self, owner: bytes) -> bool:
        """Reenters a held lock. LOCK.REENTER never blocks: it is left to finish even when
        the caller is cancelled, and a reentry that finished after the cancel is undone."""
        reentry = _in_background(
            self.redis.execute_command("LOCK.REENTER", self.name, owner, self.settings.grant_ms)
        )
        try:
            count = await asyncio.shield(reentry)
        except asyncio.CancelledError:
            reentry.add_done_callback(self._undo_reentry(owner))
            raise
        if count is None:
            raise not_owned("reenter", self.name)
        self._hold(owner, self.local.fencing_token)
        return True

    def _undo_reentry(self, owner: bytes) -> Callable[[asyncio.Task[Any]], None]:
        def undo(reentry: asyncio.Task[Any]) -> None:
            if not reentry.cancelled() and reentry.exception() is None and reentry.result():
                _in_background(self.redis.execute_command("LOCK.RELEASE", self.name, owner))

        return undo

    async def _release_abandoned(self, owner: bytes) -> None:
        for delay in CANCEL_RELEASE_DELAYS:
            await asyncio.sleep(delay)
            try:
                if await self.redis.execute_command("LOCK.RELEASE", self.name, owner) is not None:
                    return
            except RedisError as error:
                logger.warning("rlock: releasing a cancelled acquire of %r: %s", self.name, error)

    async def _acquire_on_server(self, owner: bytes, wait: int | None) -> int | None:
        for one_wait in wait_slices(wait, socket_timeout_ms(self.redis)):
            token = await self._acquire_once(owner, one_wait)
            if token is not None:
                return token
        return None

    async def _acquire_once(self, owner: bytes, wait: int | None) -> int | None:
        args = self._acquire_args(owner, wait)
        try:
            if not self.settings.replicas:
                return _protocol.as_int(await self._acquiring_client().execute_command(*args))
            token_reply, acknowledged = await self._replica_pipeline(args).execute()
        except ResponseError as error:
            if (typed := self._typed(error)) is None:
                raise
            raise typed from error
        token = _protocol.as_int(token_reply)
        if (shortfall := self._replica_shortfall(token, acknowledged)) is not None:
            await asyncio.shield(
                _in_background(self.redis.execute_command("LOCK.RELEASE", self.name, owner))
            )
            raise shortfall
        return token

    def _state(self) -> Any:
        """This task's (or, without thread_local, the Lock's) namespace of holding state."""
        local = self.local
        return local._namespace() if isinstance(local, TaskLocal) else local

    async def _release_and_let_go(self, state: Any, owner: bytes) -> int | None:
        remaining: int | None = -1
        try:
            remaining = _protocol.as_int(
                await self.redis.execute_command("LOCK.RELEASE", self.name, owner)
            )
        finally:
            self._let_go_once(state, remaining)
        return remaining

    def _close_session(self, client: Any) -> None:
        _in_background(_close_dedicated(client))

    def _watchdog(self) -> AsyncWatchdog:
        return watchdog()

    def _watch(self, owner: bytes) -> Lease:
        return watchdog().hold(self.redis, self.name, owner, self.settings.lease_ms)


class ReadWriteLock(ReadWriteLockBase[Lock]):
    """As :class:`rlock.ReadWriteLock`, for ``redis.asyncio``: ``read_lock()`` and
    ``write_lock()`` are :class:`rlock.asyncio.Lock` objects. As with that Lock, reentry is
    through the same Lock object in the same task: a task holding the write lock that then
    acquires the read lock waits behind itself; take the read lock with the write lock's
    owner id (``acquire(token=...)``) or keep to the write lock."""

    def _new_lock(self, *args: Any, **options: Any) -> Lock:
        return Lock(*args, **options)


class Semaphore(SemaphoreBase[Lock]):
    """As :class:`rlock.Semaphore`, for ``redis.asyncio``: permits are
    :class:`rlock.asyncio.Lock` objects; ``acquire``, ``info`` and ``available_permits``
    are coroutines; ``async with sem.permit() as p:`` holds one permit."""

    def _new_lock(self, *args: Any, **options: Any) -> Lock:
        return Lock(*args, **options)

    async def acquire(
        self, blocking: bool | None = None, blocking_timeout: Seconds | None = None
    ) -> Lock | None:
        """Takes one permit: the held permit, or None when none could be had in time."""
        permit = self.permit()
        held = await permit.acquire(blocking=blocking, blocking_timeout=blocking_timeout)
        return permit if held else None

    async def info(self) -> LockInfo | None:
        """The key as the server has it now (``holders``: one per permit held)."""
        return _protocol.parse_info(await self.redis.execute_command("LOCK.INFO", self.name))

    async def available_permits(self) -> int:
        """How many permits are free now (0 while the key is held otherwise)."""
        return self._available(self.permits, await self.info())
