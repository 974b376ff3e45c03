"""What the sync and the asyncio Lock share: the constructor, the holding state and its
bookkeeping, and the checks before and after each command. No I/O here: each Lock sends the
commands itself (one blocking, one awaiting) and calls in here around them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any, Callable, Protocol

from redis.exceptions import LockError, ResponseError

from rlock import _holdings, _protocol
from rlock._holdings import Holder, Holding
from rlock._leases import Lease, logger
from rlock._protocol import (
    DEFAULT_LEASE,
    KeyName,
    LockInfo,
    LossReason,
    ReplicaSyncError,
    Seconds,
    check_owner,
    lock_error,
    not_owned,
)
from rlock._settings import LockSettings, encode_owner

OnLost = Callable[[Any], Any]


class Watchdog(Protocol):
    """What the bookkeeping needs of a watchdog (the thread one, or an event loop's)."""

    def hold(self, holding: Holding, client: Any, lease_ms: int) -> Lease: ...

    def drop(self, lease: Lease) -> None: ...

    def let_go(self, lease: Lease) -> None: ...


class LockBase:
    """The state and bookkeeping of a Lock. ``local`` holds, per holder (thread, task, or the
    Lock itself without ``thread_local``): ``token`` (the owner id while held, else None),
    ``holding`` (the owner's shared count on the key, see rlock._holdings) and ``holder``
    (this Lock's share of it in this thread or task)."""

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
        #: Why the server says this Lock's hold was last lost (see ``LossReason``), set when a
        #: renewal, reentry or release finds the hold gone; None until then, or when the
        #: server could not tell (an older server, an ACL, the record aged out).
        self.lost_reason: LossReason | None = None
        self._watched_holdings: weakref.WeakSet[Holding] = weakref.WeakSet()
        self._identified: Any = None  # the client whose server ``_server`` identifies
        self._server: Hashable = None
        self._name_bytes = b""
        self.local: Any = self._holder_local() if self.thread_local else SimpleNamespace(token=None)
        self._extend_script = redis.register_script(_protocol.EXTEND_SCRIPT)

    # -- what the subclasses provide ---------------------------------------------------------

    def _holder_local(self) -> Any:
        """The ``local`` of a thread_local Lock: one namespace per holder."""
        raise NotImplementedError

    def _watchdog(self) -> Watchdog:
        raise NotImplementedError

    def _context(self) -> object | None:
        """What holds with this Lock here, when it is thread_local: the thread, or the task."""
        raise NotImplementedError

    def _default_owner(self) -> bytes:
        """The owner id of an acquire without ``token`` by a holder that holds nothing."""
        raise NotImplementedError

    def _close_session(self, client: Any) -> None:
        """Closes a holding's dedicated session connection (which ends its session holds)."""
        raise NotImplementedError

    # -- properties ----------------------------------------------------------------------------

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this holder's current acquisition (an int), None if not held.
        Pass it to the resource the lock protects; it rises with every new acquisition."""
        holding = self._held_holding()
        return None if holding is None else holding.fencing_token

    @property
    def lost(self) -> bool:
        """True once this holder's held lock was found gone (by the watchdog, or by a reentry
        or release the server answered nil), until the next acquire."""
        holding = self._held_holding()
        if holding is None:
            return bool(getattr(self.local, "lost_at_release", False))
        return holding.lost

    def _held_holding(self) -> Holding | None:
        """The holding this holder holds (counts at least one hold of), else None."""
        holder: Holder | None = getattr(self.local, "holder", None)
        if holder is None or holder.count <= 0:
            return None
        holding: Holding = self.local.holding
        return holding

    # -- before a command ----------------------------------------------------------------------

    def _owner_for(self, token: Any | None) -> bytes:
        """The owner id an acquire goes with: ``token``, else the one this holder holds with
        (a reentry), else a new one (or the thread's)."""
        held = self.local.token if self._held_holding() is not None else None
        if token is None:
            return held if held is not None else self._default_owner()
        owner = check_owner(encode_owner(token))
        if held is not None and owner != held:
            raise lock_error(
                "This holder holds the lock under another token; release it first", self.name
            )
        return owner

    def _holding_of(self, owner: bytes) -> Holding:
        # The server's identity (from the client's connection settings) is read once per
        # client, not on every acquire; a Lock given another client reads it again.
        if self._identified is not self.redis:
            self._server = _holdings.server_of(self.redis)
            self._name_bytes = _holdings.key_bytes(self.name)
            self._identified = self.redis
        return _holdings.holding_at(self._server, self._name_bytes, self.name, owner)

    def _held_before(self, holding: Holding) -> int:
        """The ``HELD`` count of an acquire on ``holding``. A reentry of a hold that was lost
        raises ``LockNotOwnedError``: the block around it was not protected all along."""
        if holding.lost:
            raise self._lost_error("reenter", holding, None)
        return holding.count

    def _wait_ms(self, blocking: bool | None, blocking_timeout: Seconds | None) -> int | None:
        """LOCK.ACQUIRE's WAIT for an acquire's arguments (None: the constructor's)."""
        return _protocol.wait_ms(
            self.blocking if blocking is None else blocking,
            self.blocking_timeout if blocking_timeout is None else blocking_timeout,
        )

    def _acquire_args(self, owner: bytes, wait: int | None, held: int) -> list[Any]:
        return _protocol.acquire_args(
            self.name, owner, self.settings.grant_ms, wait, self.settings.hold_options, held
        )

    def _needs_session(self, holding: Holding) -> bool:
        """Whether the acquire goes over the holding's dedicated connection: a session hold
        is bound to the connection that first takes it; a reentry does not rebind it."""
        return self.settings.session and holding.count == 0

    def _typed(self, error: ResponseError) -> LockError | None:
        """A server refusal of the kind of hold as a typed error; None for another error."""
        return _protocol.hold_error(error, self.name)

    def _holds(self, info: LockInfo | None, owner: bytes | None) -> bool:
        """Whether ``info`` shows a hold of ``owner``."""
        return info is not None and owner is not None and info.holder(owner) is not None

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

    def _releasing(self) -> tuple[Holding, Holder]:
        """The holding and holder of a release; raises when this holder holds nothing."""
        holding = self._held_holding()
        if holding is None:
            raise lock_error(
                "Cannot release a lock that's not owned or is already unlocked.", self.name
            )
        holder: Holder = self.local.holder
        return holding, holder

    def _extend_args(self, additional_time: Seconds, replace_ttl: bool) -> list[Any]:
        """The extend script's ARGV; raises when the lock cannot be extended."""
        owner = self._held_owner("extend")
        if additional_time < 0:
            raise ValueError(f"additional_time must be >= 0 seconds, not {additional_time!r}")
        additional_ms = max(1, math.ceil(additional_time * 1000))
        return _protocol.extend_args(owner, additional_ms, replace_ttl)

    def _held_owner(self, action: str) -> bytes:
        """The owner id of a held lock with a timeout; raises for ``action`` otherwise."""
        if self._held_holding() is None:
            raise lock_error(f"Cannot {action} an unlocked lock", self.name)
        owner: bytes = self.local.token
        if self.lost:
            raise not_owned(action, self.name, self.lost_reason)
        if self.settings.watched:
            raise lock_error(f"Cannot {action} a lock with no timeout", self.name)
        return owner

    # -- holding bookkeeping ---------------------------------------------------------------------

    def _count_hold(self, holding: Holding, fencing_token: int, sent_at: float) -> None:
        """Counts one more hold of this holder on ``holding``, granted with ``fencing_token``
        to a call sent at ``sent_at`` (monotonic); a lock without ttl is watched."""
        local = self.local
        holder: Holder | None = getattr(local, "holder", None)
        if holder is None or getattr(local, "holding", None) is not holding:
            holder = Holder(self, self._context())
        holding.count_hold(holder, fencing_token)
        local.token, local.holding, local.holder = holding.owner, holding, holder
        local.lost_at_release = False
        settings = self.settings
        if settings.ttl_ms is not None:
            holding.floor = max(holding.floor, sent_at + settings.ttl_ms / 1000)
            return
        lease = self._watchdog().hold(holding, self.redis, settings.lease_ms)
        self._watched_holdings.add(holding)
        lease.listen(self._tell_lost)

    def _before_release(self, holding: Holding) -> None:
        """Before LOCK.RELEASE of the last hold: the renewals stop first, so that one racing
        the release does not report the lock lost (the lease is over either way)."""
        if holding.count == 1 and holding.lease is not None:
            self._watchdog().drop(holding.lease)

    def _count_release(self, holding: Holding, holder: Holder, local: Any = None) -> None:
        """Counts one hold less of ``holder`` (released, or given up); a holding left with
        nothing is ended (renewals, session connection). ``local``: the holder's namespace,
        when not the calling thread's or task's."""
        local = self.local if local is None else local
        lease = holding.lease
        if lease is not None and self.settings.watched:
            self._watchdog().let_go(lease)
        local.lost_at_release = holding.lost
        holding.count_release(holder)
        if holder.count <= 0:
            if lease is not None and not any(h.count and h.of(self) for h in holding.holders):
                lease.unlisten(self._tell_lost)
            self._forget_holder(holder, local)
        if holding.count <= 0:
            self._end_holding(holding)

    def _forget_holder(self, holder: Holder, local: Any) -> None:
        if getattr(local, "holder", None) is holder:
            local.token, local.holding, local.holder = None, None, None
            local.adoptable = False

    def _mark_lost(self, holding: Holding) -> None:
        """The server's count is not what this process counts (the hold was lost, or a call
        got no reply): the holding holds nothing any more; each of its holds is released by
        raising ``LockNotOwnedError``."""
        holding.lost = True
        if holding.lease is not None:
            self._watchdog().drop(holding.lease)

    def _after_no_grant(self, holding: Holding) -> None:
        """An acquire that added no hold: a holding left with nothing is ended."""
        if holding.count == 0:
            self._end_holding(holding)

    def _end_holding(self, holding: Holding) -> None:
        """The holding holds nothing: no more renewals, and its session connection closes."""
        if holding.lease is not None:
            self._watchdog().drop(holding.lease)
        client, holding.session = holding.session, None
        if client is not None:
            self._close_session(client)

    def _adopt_acquisition(self) -> bool:
        """Whether a ``with`` block takes over the acquisition already made for it
        (a permit returned held by ``Semaphore.acquire``) instead of acquiring again."""
        if not getattr(self.local, "adoptable", False) or self._held_holding() is None:
            return False
        self.local.adoptable = False
        return True

    def _lost_error(self, action: str, holding: Holding, loss: LossReason | None) -> LockError:
        """The ``LockNotOwnedError`` of ``action`` on a hold found gone, with the server's
        reason (``loss``, None when it could not tell); remembered in ``lost_reason``."""
        if loss is not None:
            holding.loss = loss
        loss = loss or holding.loss
        if loss is not None:
            self.lost_reason = loss
        return not_owned(action, self.name, loss)

    def _tell_lost(self) -> Any:
        found = [h.loss for h in self._watched_holdings if h.lost and h.loss is not None]
        if found:
            self.lost_reason = found[0]
        logger.warning("rlock: lock %r was lost while held", self.name)
        return self.on_lost(self) if self.on_lost is not None else None
