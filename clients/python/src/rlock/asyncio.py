"""rlock.asyncio.Lock: redis-py's asyncio Lock (``redis.asyncio.lock.Lock``), backed by the
rlock module, with the watchdog as an asyncio task and cancellation-safe acquire and release.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
import weakref
from collections.abc import Awaitable
from types import SimpleNamespace, TracebackType
from typing import Any, Callable, TypeVar

from redis.asyncio.retry import Retry
from redis.exceptions import LockError, RedisError, ResponseError

from rlock import _owners, _protocol
from rlock._base import LockBase
from rlock._holdings import Holder, Holding
from rlock._kinds import ReadWriteLockBase, SemaphoreBase
from rlock._leases import (
    Lease,
    LeaseBook,
    by_client,
    logger,
    loss_pipeline,
    newly_lost,
    record_losses,
    release_pipeline,
    renewal_pipeline,
    tell,
)
from rlock._protocol import (
    LockInfo,
    LossReason,
    ReplicaSyncError,
    Seconds,
    lock_error,
    not_owned,
)
from rlock._sessions import close_async_session, open_async_session
from rlock._settings import (
    GIVE_BACK_BACKOFF,
    give_back_retries,
    socket_timeout_ms,
    wait_slices,
)

__all__ = ["Lock", "ReadWriteLock", "Semaphore"]

OnLost = Callable[["Lock"], Any]

# Clean-up tasks run past a cancellation; kept here so they are not garbage collected early.
_background: set[asyncio.Task[Any]] = set()

#: After a cancelled acquire, its grant (if any) is given back at these delays (seconds): at
#: once, and again in case the server handed the lock over just as the waiting connection
#: closed.
CANCEL_RELEASE_DELAYS = (0.0, 0.05, 0.5)

T = TypeVar("T")


def _in_background(coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _to_the_end(coroutine: Awaitable[T]) -> tuple[asyncio.Task[T], bool]:
    """Runs ``coroutine`` to its end even if the caller is cancelled meanwhile (a command
    whose effect must be known before going on); returns its task and whether the caller
    was cancelled (it then re-raises CancelledError once it has settled the outcome)."""
    task = asyncio.ensure_future(coroutine)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    return task, cancelled


async def _nothing() -> None:
    """A retry's failure callback that has nothing to do (redis-py reconnects by itself)."""


def _mutex(holding: Holding) -> asyncio.Lock:
    """The holding's asyncio mutex (a holding belongs to one event loop, as its client)."""
    if holding.async_mutex is None:
        holding.async_mutex = asyncio.Lock()
    mutex: asyncio.Lock = holding.async_mutex
    return mutex


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
    The task starts with the first watched lock and ends when none is left. A lock whose
    holders are all gone (tasks done, Lock objects collected) is released instead."""

    def __init__(self) -> None:
        self._book = LeaseBook()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: When the sleeping task wakes by itself (math.inf: never); None while it is not
        #: sleeping: then it reads the book before it sleeps again.
        self._wakes_at: float | None = None

    def hold(self, holding: Holding, client: Any, lease_ms: int) -> Lease:
        lease = self._book.hold(holding, client, lease_ms, time.monotonic())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._wakes_at is not None and lease.due < self._wakes_at:
            self._wake.set()  # else the task wakes in time by itself (see rlock._watchdog)
        return lease

    def let_go(self, lease: Lease) -> None:
        self._book.let_go(lease)

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
                self._wakes_at = math.inf if next_due is None else next_due
                try:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            self._wake.wait(), next_due - now if next_due else None
                        )
                finally:
                    self._wakes_at = None
        finally:
            self._task = None
            self._wakes_at = None

    async def _renew(self, due: list[Lease]) -> None:
        for leases in by_client(due):
            alive = [lease for lease in leases if not await self._ended(lease)]
            if alive:
                await self._renew_on_one_client(alive)

    async def _renew_on_one_client(self, leases: list[Lease]) -> None:
        sent_at = time.monotonic()
        try:
            pipe = renewal_pipeline(leases, sent_at)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except RedisError as error:
            logger.warning("rlock: renewing %d lock(s) failed: %s", len(leases), error)
            replies = [error] * len(leases)
        active_before = [lease.active for lease in leases]
        to_tell = self._book.record(leases, replies, sent_at, time.monotonic())
        if lost := newly_lost(leases, active_before):
            try:
                record_losses(lost, await loss_pipeline(lost).execute(raise_on_error=False))
            except Exception as error:  # the loss is told anyway, without its reason
                logger.debug("rlock: LOCK.LOST failed: %s", error)
        for result in tell(to_tell):
            if inspect.isawaitable(result):
                _in_background(result)

    async def _ended(self, lease: Lease) -> bool:
        """Releases the lease's holding when every holder of it is gone; True then. A
        holding busy with a call has a live holder: it is renewed."""
        holding = lease.holding
        mutex = _mutex(holding)
        if not holding.abandoned() or mutex.locked():
            return False
        async with mutex:
            if not holding.abandoned():
                return False
            logger.warning("rlock: %r's holders ended without releasing it; released", lease.name)
            self.drop(lease)
            await _end_abandoned(lease.client, holding)
            return True


async def _end_abandoned(client: Any, holding: Holding) -> None:
    """Gives back every hold of ``holding``, whose holders are gone (called with its mutex
    held); on a connection error the holds are left to run out."""
    try:
        await release_pipeline(client, holding).execute(raise_on_error=False)
    except RedisError as error:
        logger.warning("rlock: releasing abandoned %r failed: %s", holding.name, error)
    holding.clear()
    session, holding.session = holding.session, None
    if session is not None:
        _in_background(close_async_session(session))


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
      as the call was cancelled, the grant is given back. A cancelled reentry is finished and
      undone before the cancellation goes on; a cancelled ``release`` still completes in the
      background.
    """

    def _holder_local(self) -> TaskLocal:
        return TaskLocal()

    # -- what redis-py's asyncio Lock offers -----------------------------------------------

    async def __aenter__(self) -> Lock:
        if self._adopt_acquisition() or await self.acquire():
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
        the owner id; ``LockNotOwnedError`` for a reentry of a lost hold), without ``sleep``.
        The same task acquiring through this Lock again reenters it. Cancellation-safe: a
        grant that came with the cancellation (or a timeout) is given back. Raises
        ``ReplicaSyncError`` as the sync Lock does.
        """
        owner = self._owner_for(token)
        wait = self._wait_ms(blocking, blocking_timeout)
        holding = self._holding_of(owner)
        async with _mutex(holding):
            if holding.abandoned():
                await self._end_abandoned(holding)
            held = self._held_before(holding)
            if held:
                return await self._reenter(holding, held)
            return await self._acquire_new(holding, wait)

    async def release(self) -> None:
        """Lets go of one acquisition; as :meth:`rlock.Lock.release`, and the release
        completes even if the calling task is cancelled meanwhile."""
        holding, holder = self._releasing()
        # The reply and the bookkeeping belong together: shielded from the caller's cancel,
        # and the bookkeeping done on this task's state (the shielded task has its own).
        releasing = _in_background(self._release_locked(holding, holder, self._state()))
        outcome = await asyncio.shield(releasing)
        if isinstance(outcome, LockError):
            raise outcome

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """As :meth:`rlock.Lock.extend`: seconds added to (or, with ``replace_ttl``, set as)
        the remaining ttl of a lock with a ``timeout``."""
        args = self._extend_args(additional_time, replace_ttl)
        if not await self._extend_script(keys=[self.name], args=args, client=self.redis):
            raise await self._renew_refused("extend")
        return True

    async def reacquire(self) -> bool:
        """As :meth:`rlock.Lock.reacquire`: the ttl reset to ``timeout``."""
        owner = self._held_owner("reacquire")
        ttl_ms = self.settings.ttl_ms
        if not await self.redis.execute_command("LOCK.RENEW", self.name, owner, ttl_ms):
            raise await self._renew_refused("reacquire")
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

    async def _ask_lost(self, owner: bytes) -> LossReason | None:
        """As :meth:`rlock.Lock._ask_lost`: LOCK.LOST, None when the server cannot tell."""
        try:
            reply = await self.redis.execute_command("LOCK.LOST", self.name, owner)
            return _protocol.parse_lost(reply)
        except Exception as error:
            logger.debug("rlock: LOCK.LOST %r failed: %s", self.name, error)
            return None

    async def _renew_refused(self, action: str) -> LockError:
        """The LockNotOwnedError of an extend or reacquire the server refused."""
        holding = self._held_holding()
        loss = await self._ask_lost(self.local.token)
        if holding is None:
            return not_owned(action, self.name, loss)
        return self._lost_error(action, holding, loss)

    def _default_owner(self) -> bytes:
        # Fresh for every new acquisition: a cancelled one's grant is then given back by
        # owner without touching anyone else's hold.
        return _owners.new_owner()

    def _context(self) -> object | None:
        return asyncio.current_task() if self.thread_local else None

    async def _acquire_new(self, holding: Holding, wait: int | None) -> bool:
        """A new hold (HELD 0), waiting in the server as asked; called with the mutex."""
        sent_at = time.monotonic()
        try:
            fencing_token = await self._acquire_on_server(holding, wait)
        except (ResponseError, ReplicaSyncError):
            self._after_no_grant(holding)  # refused: nothing changed on the server
            raise
        except asyncio.CancelledError:
            self._after_no_grant(holding)
            _in_background(self._give_back_later(holding))
            raise
        except BaseException:
            await _to_the_end(self._give_back(holding, 0))
            self._after_no_grant(holding)
            raise
        if fencing_token is None:
            self._after_no_grant(holding)
            return False
        self._count_hold(holding, fencing_token, sent_at)
        return True

    async def _reenter(self, holding: Holding, held: int) -> bool:
        """One more hold of a held lock (HELD ``held``); called with the mutex. LOCK.ACQUIRE
        never waits for a reentry: it is run to its end even when the caller is cancelled,
        and a reentry that took effect is undone before the cancellation goes on."""
        sent_at = time.monotonic()
        task, cancelled = await _to_the_end(self._acquire_once(holding, held, None))
        if task.exception() is not None and not isinstance(
            task.exception(), (ResponseError, ReplicaSyncError)
        ):
            await _to_the_end(self._give_back(holding, held))
        fencing_token = task.result()  # raises what the call raised
        if fencing_token is None:
            self._mark_lost(holding)
            raise self._lost_error("reenter", holding, await self._ask_lost(holding.owner))
        if cancelled:
            await _to_the_end(self._give_back(holding, held))
            raise asyncio.CancelledError
        self._count_hold(holding, fencing_token, sent_at)
        return True

    async def _give_back(self, holding: Holding, held: int) -> None:
        """Undoes the grant an acquire from ``held`` may have had although its reply never
        came (as :meth:`rlock.Lock._give_back`)."""
        try:
            await self._release_call(_protocol.release_args(self.name, holding.owner, held + 1))
        except RedisError as error:
            logger.warning("rlock: giving back an unfinished acquire of %r: %s", self.name, error)
            if held:
                self._mark_lost(holding)  # the count on the server is unknown now

    async def _give_back_later(self, holding: Holding) -> None:
        """After a cancelled new acquire: gives its grant back, now and a little later, for
        as long as nobody acquired the holding again (which would then own that grant)."""
        args = _protocol.release_args(self.name, holding.owner, 1)
        for delay in CANCEL_RELEASE_DELAYS:
            await asyncio.sleep(delay)
            async with _mutex(holding):
                if holding.count:
                    return
                try:
                    if await self._release_call(args) is not None:
                        return
                except RedisError as error:
                    logger.warning("rlock: giving back a cancelled acquire: %s", error)

    async def _release_call(self, args: list[Any]) -> Any:
        """As :meth:`rlock.Lock._release_call`."""
        retry = Retry(GIVE_BACK_BACKOFF, give_back_retries(self.redis))
        return await retry.call_with_retry(
            lambda: self.redis.execute_command(*args), lambda error: _nothing()
        )

    async def _acquire_on_server(self, holding: Holding, wait: int | None) -> int | None:
        for one_wait in wait_slices(wait, socket_timeout_ms(self.redis)):
            token = await self._acquire_once(holding, 0, one_wait)
            if token is not None:
                return token
        return None

    async def _acquire_once(self, holding: Holding, held: int, wait: int | None) -> int | None:
        args = self._acquire_args(holding.owner, wait, held)
        client = await self._acquiring_client(holding)
        try:
            if not self.settings.replicas:
                return _protocol.as_int(await client.execute_command(*args))
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*args)
            pipe.execute_command("WAIT", self.settings.replicas, self.settings.replica_timeout_ms)
            token_reply, acknowledged = await pipe.execute()
        except ResponseError as error:
            if (typed := self._typed(error)) is None:
                raise
            raise typed from error
        token = _protocol.as_int(token_reply)
        if (shortfall := self._replica_shortfall(token, acknowledged)) is not None:
            release = _protocol.release_args(self.name, holding.owner, held + 1)
            await _to_the_end(self.redis.execute_command(*release))
            raise shortfall
        return token

    async def _acquiring_client(self, holding: Holding) -> Any:
        """As :meth:`rlock.Lock._acquiring_client`."""
        if not self._needs_session(holding):
            return self.redis
        if holding.session is None:
            holding.session = await open_async_session(self.redis)
        return holding.session

    async def _release_locked(
        self, holding: Holding, holder: Holder, state: Any
    ) -> int | LockError:
        """LOCK.RELEASE of one hold and its bookkeeping, under the holding's mutex; the
        remaining count, or the LockNotOwnedError to raise when the hold was lost."""
        async with _mutex(holding):
            if holding.lost:
                error = self._lost_error("release", holding, None)
                self._count_release(holding, holder, state)
                return error
            self._before_release(holding)
            args = _protocol.release_args(self.name, holding.owner, holding.count)
            try:
                remaining = _protocol.as_int(await self._release_call(args))
            except BaseException:
                self._mark_lost(holding)  # released or not: this process cannot tell
                self._count_release(holding, holder, state)
                raise
            outcome: int | LockError
            if remaining is None:
                self._mark_lost(holding)
                loss = await self._ask_lost(holding.owner)
                outcome = self._lost_error("release", holding, loss)
            else:
                outcome = remaining
            self._count_release(holding, holder, state)
            return outcome

    async def _end_abandoned(self, holding: Holding) -> None:
        if holding.lease is not None:
            watchdog().drop(holding.lease)
        await _end_abandoned(self.redis, holding)

    def _state(self) -> Any:
        """This task's (or, without thread_local, the Lock's) namespace of holding state."""
        local = self.local
        return local._namespace() if isinstance(local, TaskLocal) else local

    def _close_session(self, client: Any) -> None:
        _in_background(close_async_session(client))

    def _watchdog(self) -> AsyncWatchdog:
        return watchdog()


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
    are coroutines; each of ``async with sem as p:``, ``async with sem.permit() as p:`` and
    ``async with await sem.acquire() as p:`` holds one permit for the block."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._with_blocks = TaskLocal()

    def _new_lock(self, *args: Any, **options: Any) -> Lock:
        return Lock(*args, **options)

    async def __aenter__(self) -> Lock:
        permit = await self.acquire()
        if permit is None:
            raise lock_error("Unable to acquire a permit within the time specified", self.name)
        self._entered().append(permit)
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._entered().pop().__aexit__(exc_type, exc_value, traceback)

    async def acquire(
        self, blocking: bool | None = None, blocking_timeout: Seconds | None = None
    ) -> Lock | None:
        """Takes one permit: the held permit, or None when none could be had in time."""
        permit = self.permit()
        if not await permit.acquire(blocking=blocking, blocking_timeout=blocking_timeout):
            return None
        permit.local.adoptable = True  # an ``async with`` on it takes over this acquisition
        return permit

    def _entered(self) -> list[Lock]:
        """The permits of this task's ``async with sem:`` blocks, innermost last."""
        entered: list[Lock] | None = getattr(self._with_blocks, "permits", None)
        if entered is None:
            entered = self._with_blocks.permits = []
        return entered

    async def info(self) -> LockInfo | None:
        """The key as the server has it now (``holders``: one per permit held)."""
        return _protocol.parse_info(await self.redis.execute_command("LOCK.INFO", self.name))

    async def available_permits(self) -> int:
        """How many permits are free now (0 while the key is held otherwise)."""
        return self._available(self.permits, await self.info())
