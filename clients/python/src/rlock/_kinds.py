"""What the sync and the asyncio ReadWriteLock and Semaphore share: both are factories of Lock
objects on one key, with the hold kind (``SHARED``, ``LIMIT n``) and the options set."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from rlock import _protocol
from rlock._base import LockBase
from rlock._protocol import DEFAULT_LEASE, KeyName, Seconds
from rlock._settings import LockSettings

L = TypeVar("L", bound=LockBase)


class ReadWriteLockBase(Generic[L]):
    """A read-write lock on one key: ``read_lock()`` (shared) and ``write_lock()``
    (exclusive) are Lock objects with the constructor's options. Readers hold the key
    together; a writer excludes everyone; waiting is first come, first served across both, so
    a writer is not starved by a stream of readers."""

    def __init__(
        self,
        redis: Any,
        name: KeyName,
        timeout: Seconds | None = None,
        sleep: Seconds = 0.1,
        blocking: bool = True,
        blocking_timeout: Seconds | None = None,
        thread_local: bool = True,
        raise_on_release_error: bool = True,
        *,
        lease: Seconds = DEFAULT_LEASE,
        on_lost: Callable[[Any], Any] | None = None,
        replicas: int = 0,
        replica_timeout: Seconds = 1.0,
        session: bool = False,
    ) -> None:
        self.redis = redis
        self.name = name
        self.session = bool(session)
        args = (redis, name, timeout, sleep, blocking, blocking_timeout, thread_local)
        options: dict[str, Any] = {
            "raise_on_release_error": raise_on_release_error,
            "lease": lease,
            "on_lost": on_lost,
            "replicas": replicas,
            "replica_timeout": replica_timeout,
            "session": session,
        }
        self._read = self._new_lock(*args, shared=True, **options)
        self._write = self._new_lock(*args, **options)

    def _new_lock(self, *args: Any, **options: Any) -> L:
        raise NotImplementedError

    def read_lock(self) -> L:
        """The read (shared) lock: the same Lock object on every call."""
        return self._read

    def write_lock(self) -> L:
        """The write (exclusive) lock: the same Lock object on every call."""
        return self._write


class SemaphoreBase(Generic[L]):
    """A semaphore of ``permits`` on one key. Each permit is a Lock object of its own (a fresh
    owner id, its own fencing token, watchdog and release); ``permit()`` makes one, unheld."""

    def __init__(
        self,
        redis: Any,
        name: KeyName,
        permits: int,
        timeout: Seconds | None = None,
        blocking: bool = True,
        blocking_timeout: Seconds | None = None,
        raise_on_release_error: bool = True,
        *,
        lease: Seconds = DEFAULT_LEASE,
        on_lost: Callable[[Any], Any] | None = None,
        replicas: int = 0,
        replica_timeout: Seconds = 1.0,
        session: bool = False,
    ) -> None:
        # Checks what each permit would check (permits, times, the lease), up front.
        LockSettings(name, timeout, lease, replicas, replica_timeout, limit=permits)
        self.redis = redis
        self.name = name
        self.permits = permits
        self.session = bool(session)
        self._args = (redis, name, timeout)
        self._options: dict[str, Any] = {
            "blocking": blocking,
            "blocking_timeout": blocking_timeout,
            "thread_local": False,
            "raise_on_release_error": raise_on_release_error,
            "lease": lease,
            "on_lost": on_lost,
            "replicas": replicas,
            "replica_timeout": replica_timeout,
            "limit": permits,
            "session": session,
        }

    def _new_lock(self, *args: Any, **options: Any) -> L:
        raise NotImplementedError

    def permit(self) -> L:
        """A new permit, not yet acquired: a Lock with its own owner id (``thread_local``
        False: any thread or task may release it). Acquiring it again while held reenters it
        (the same permit, one more release)."""
        return self._new_lock(*self._args, **self._options)

    @staticmethod
    def _available(permits: int, info: _protocol.LockInfo | None) -> int:
        if info is None:
            return permits
        if info.mode != "limit":
            return 0  # held as a lock (an exclusive request queued behind the permits won)
        return max(0, (info.limit or permits) - len(info.holders))
