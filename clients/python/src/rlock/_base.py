"""What the sync and the asyncio Lock share: the constructor, the holding state and its
bookkeeping, and the checks before and after each command. No I/O here: each Lock sends the
commands itself (one blocking, one awaiting) and calls in here around them.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Callable, Protocol

from redis.exceptions import LockError, ResponseError

from rlock import _protocol
from rlock._leases import Lease, LossListener, logger
from rlock._protocol import (
    DEFAULT_LEASE,
    KeyName,
    LockInfo,
    ReplicaSyncError,
    Seconds,
    lock_error,
    not_owned,
)
from rlock._settings import LockSettings

OnLost = Callable[[Any], Any]


class Watchdog(Protocol):
    """What the bookkeeping needs of a watchdog (the thread one, or an event loop's)."""

    def listen(self, lease: Lease, listener: LossListener) -> None: ...

    def drop(self, lease: Lease) -> None: ...

    def let_go(self, lease: Lease, listener: LossListener | None = None) -> None: ...


class LockBase:
    """The state and bookkeeping of a Lock. ``local`` holds, per holder (thread, task, or the
    Lock itself without ``thread_local``): ``token`` (the owner id while held, else None),
    ``holds``, ``fencing_token`` and, for a watched lock, ``lease``."""

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
        on_lost: OnLost | None = None,
        replicas: int = 0,
        replica_timeout: Seconds = 1.0,
        shared: bool = False,
        limit: int | None = None,
        session: bool = False,
    ) -> None:
        self.settings = LockSettings(
            name, timeout, lease, replicas, replica_timeout, shared, limit, session
        )
        self.redis = redis
        self.name = name
        self.timeout = timeout
        self.sleep = sleep
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self.thread_local = bool(thread_local)
        self.raise_on_release_error = raise_on_release_error
        self.lease = lease
        self.on_lost = on_lost
        self.shared = bool(shared)
        self.limit = limit
        self.session = bool(session)
        self.local: Any = self._holder_local() if self.thread_local else SimpleNamespace(token=None)
        self._extend_script = redis.register_script(_protocol.EXTEND_SCRIPT)

    # -- what the subclasses provide ---------------------------------------------------------

    def _holder_local(self) -> Any:
        """The ``local`` of a thread_local Lock: one namespace per holder."""
        raise NotImplementedError

    def _watchdog(self) -> Watchdog:
        raise NotImplementedError

    def _watch(self, owner: bytes) -> Lease:
        """Starts (or counts one more hold on) the watchdog's renewals of a held lock."""
        raise NotImplementedError

    def _close_session(self, client: Any) -> None:
        """Closes a holder's dedicated session connection (which ends its session holds)."""
        raise NotImplementedError

    # -- properties ----------------------------------------------------------------------------

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this holder's current acquisition (an int), None if not held.
        Pass it to the resource the lock protects; it rises with every new acquisition."""
        value: int | None = getattr(self.local, "fencing_token", None)
        return value if self.local.token is not None else None

    @property
    def lost(self) -> bool:
        """True once the watchdog found this holder's held lock gone (until the next acquire)."""
        lease: Lease | None = getattr(self.local, "lease", None)
        return lease is not None and lease.lost

    # -- checks before and after commands ------------------------------------------------------

    def _wait_ms(self, blocking: bool | None, blocking_timeout: Seconds | None) -> int | None:
        """LOCK.ACQUIRE's WAIT for an acquire's arguments (None: the constructor's)."""
        return _protocol.wait_ms(
            self.blocking if blocking is None else blocking,
            self.blocking_timeout if blocking_timeout is None else blocking_timeout,
        )

    def _acquire_args(self, owner: bytes, wait: int | None) -> list[Any]:
        return _protocol.acquire_args(
            self.name, owner, self.settings.grant_ms, wait, self.settings.hold_options
        )

    def _acquiring_client(self) -> Any:
        """The client LOCK.ACQUIRE goes over: the Redis client, or for a session hold this
        holder's dedicated connection (a single-connection client taken from the same pool,
        kept until the holder's last release), since the hold lives with that connection."""
        if not self.settings.session:
            return self.redis
        client = getattr(self.local, "session_client", None)
        if client is None:
            client = self.local.session_client = self.redis.client()
        return client

    def _typed(self, error: ResponseError) -> LockError | None:
        """A server refusal of the kind of hold as a typed error; None for another error."""
        return _protocol.hold_error(error, self.name)

    def _after_failed_acquire(self) -> None:
        """An acquire that did not take the lock: a holder holding nothing needs no session
        connection."""
        if self.local.token is None:
            self._end_session()

    def _holds(self, info: LockInfo | None, owner: bytes | None) -> bool:
        """Whether ``info`` shows a hold of ``owner``."""
        return info is not None and owner is not None and info.holder(owner) is not None

    def _replica_pipeline(self, acquire_args: list[Any]) -> Any:
        """LOCK.ACQUIRE and Redis' WAIT for the replicas, in one round trip (not executed)."""
        pipe = self._acquiring_client().pipeline(transaction=False)
        pipe.execute_command(*acquire_args)
        pipe.execute_command("WAIT", self.settings.replicas, self.settings.replica_timeout_ms)
        return pipe

    def _replica_shortfall(self, token: int | None, acknowledged: Any) -> ReplicaSyncError | None:
        """The error to raise (after releasing the grant) when fewer replicas than asked for
        acknowledged a granted acquisition; None when all is well."""
        required = self.settings.replicas
        if token is None or int(acknowledged) >= required:
            return None
        return ReplicaSyncError(
            f"only {acknowledged} of {required} replicas acknowledged the lock "
            f"{self.name!r}; released it",
            int(acknowledged),
            required,
        )

    def _releasing_owner(self) -> bytes:
        """The owner id to release with; raises when this holder holds nothing (or lost it)."""
        owner: bytes | None = self.local.token
        if owner is None:
            raise lock_error(
                "Cannot release a lock that's not owned or is already unlocked.", self.name
            )
        if self.lost:
            self._forget_all()
            raise not_owned("release", self.name)
        return owner

    def _extend_args(self, additional_time: Seconds, replace_ttl: bool) -> list[Any]:
        """The extend script's ARGV; raises when the lock cannot be extended."""
        owner = self._held_owner("extend")
        if additional_time < 0:
            raise ValueError(f"additional_time must be >= 0 seconds, not {additional_time!r}")
        additional_ms = max(1, math.ceil(additional_time * 1000))
        return _protocol.extend_args(owner, additional_ms, replace_ttl)

    def _held_owner(self, action: str) -> bytes:
        """The owner id of a held lock with a timeout; raises for ``action`` otherwise."""
        owner: bytes | None = self.local.token
        if owner is None:
            raise lock_error(f"Cannot {action} an unlocked lock", self.name)
        if self.lost:
            raise not_owned(action, self.name)
        if self.settings.watched:
            raise lock_error(f"Cannot {action} a lock with no timeout", self.name)
        return owner

    # -- holding bookkeeping ---------------------------------------------------------------------

    def _hold(self, owner: bytes, fencing_token: int) -> None:
        """Counts one more hold, granted with ``fencing_token``; watches a lock without ttl."""
        local = self.local
        first = not getattr(local, "holds", 0)
        local.token = owner
        local.holds = getattr(local, "holds", 0) + 1
        local.fencing_token = fencing_token
        if not self.settings.watched:
            return
        lease = self._watch(owner)
        if first:
            self._watchdog().listen(lease, self._tell_lost)
        local.lease = lease

    def _let_go_once(self, local: Any, remaining: int | None) -> None:
        """Forgets one hold of ``local`` after LOCK.RELEASE replied ``remaining`` (-1: no
        reply)."""
        local.holds -= 1
        lease: Lease | None = getattr(local, "lease", None)
        if lease is not None:
            watchdog = self._watchdog()
            if remaining in (0, None):
                watchdog.drop(lease)
            watchdog.let_go(lease, self._tell_lost if local.holds <= 0 else None)
        if local.holds <= 0 or remaining in (0, None):
            self._forget_all(local)

    def _forget_all(self, local: Any = None) -> None:
        local = self.local if local is None else local
        local.token = None
        local.holds = 0
        local.fencing_token = None
        self._end_session(local)

    def _end_session(self, local: Any = None) -> None:
        """Closes the holder's session connection, if any (it holds nothing any more)."""
        local = self.local if local is None else local
        client = getattr(local, "session_client", None)
        if client is not None:
            local.session_client = None
            self._close_session(client)

    def _forget_if_lost(self) -> None:
        """A lost holding is over: the next acquire starts afresh."""
        if self.lost:
            self._forget_all()
            self.local.lease = None

    def _tell_lost(self) -> Any:
        logger.warning("rlock: lock %r was lost while held", self.name)
        return self.on_lost(self) if self.on_lost is not None else None
