"""rlock.ReadWriteLock and rlock.Semaphore: the server's shared holds and semaphores as
redis-py style Lock objects (see :class:`rlock.Lock`)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rlock import _protocol
from rlock._kinds import ReadWriteLockBase, SemaphoreBase
from rlock._protocol import LockInfo, Seconds, lock_error
from rlock.lock import Lock

__all__ = ["ReadWriteLock", "Semaphore"]


class ReadWriteLock(ReadWriteLockBase[Lock]):
    """A read-write lock on one key, as Redisson's ``RReadWriteLock``.

    ``read_lock()`` and ``write_lock()`` return :class:`rlock.Lock` objects (fencing token,
    watchdog, reentrancy, context manager) taking the key shared (``SHARED``) or exclusive.
    Any number of readers hold it together; a writer waits until they are gone and excludes
    everyone while it holds the key; waiters are served first come, first served, and readers
    queued together are admitted together. A thread holding the write lock may also take the
    read lock (a reentry); a thread holding only the read lock that asks for the write lock
    gets :class:`rlock.HoldConflictError` (an upgrade in place deadlocks: release first).

    The arguments are :class:`rlock.Lock`'s, for both locks, and ``session``: each hold also
    ends when its holder's connection closes (see the README).
    """

    def _new_lock(self, *args: Any, **options: Any) -> Lock:
        return Lock(*args, **options)


class Semaphore(SemaphoreBase[Lock]):
    """A semaphore of ``permits`` on one key, as Redisson's ``RPermitExpirableSemaphore``:
    each permit is held by its own owner with its own fencing token and expiry (``timeout``
    seconds, or a lease renewed by the watchdog), so a crashed holder's permit comes back by
    itself.

    ``acquire()`` takes one permit and returns it (an :class:`rlock.Lock`; release it with
    ``permit.release()``), or None when none was free in time. Each of ``with sem as p:``,
    ``with sem.permit() as p:`` and ``with sem.acquire() as p:`` holds one permit for the
    block and releases it at its end (a ``with`` on a permit that ``acquire()`` returned takes
    over that acquisition); ``with sem:`` raises ``LockError`` when no permit was free in
    time. Waiters are served first come, first served. The number of permits is fixed by the
    first holder: asking with another number while any permit is held raises
    :class:`rlock.LimitMismatchError`.
    """

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._with_blocks = threading.local()

    def _new_lock(self, *args: Any, **options: Any) -> Lock:
        return Lock(*args, **options)

    def __enter__(self) -> Lock:
        permit = self.acquire()
        if permit is None:
            raise lock_error("Unable to acquire a permit within the time specified", self.name)
        self._entered().append(permit)
        return permit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered().pop().__exit__(exc_type, exc_value, traceback)

    def acquire(
        self, blocking: bool | None = None, blocking_timeout: Seconds | None = None
    ) -> Lock | None:
        """Takes one permit: the held permit, or None when none could be had in time
        (``blocking``/``blocking_timeout`` as in :meth:`rlock.Lock.acquire`)."""
        permit = self.permit()
        if not permit.acquire(blocking=blocking, blocking_timeout=blocking_timeout):
            return None
        permit.local.adoptable = True  # a ``with`` on it takes over this acquisition
        return permit

    def _entered(self) -> list[Lock]:
        """The permits of this thread's ``with sem:`` blocks, innermost last."""
        entered: list[Lock] | None = getattr(self._with_blocks, "permits", None)
        if entered is None:
            entered = self._with_blocks.permits = []
        return entered

    def info(self) -> LockInfo | None:
        """The key as the server has it now (``holders``: one per permit held)."""
        return _protocol.parse_info(self.redis.execute_command("LOCK.INFO", self.name))

    def available_permits(self) -> int:
        """How many permits are free now (0 while the key is held otherwise)."""
        return self._available(self.permits, self.info())
