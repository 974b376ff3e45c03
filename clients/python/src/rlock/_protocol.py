"""The rlock commands, argument conversion and reply parsing: no I/O here.

Shared by the sync and asyncio locks so both speak to the server in exactly the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Union

from redis.exceptions import LockError, LockNotOwnedError, ResponseError

#: The server's upper bound for a ttl or a WAIT timeout, in milliseconds (30 days).
MAX_MS = 2_592_000_000
#: The server's upper bound for an owner id, in bytes.
MAX_OWNER_BYTES = 1024
#: The server's upper bound for a semaphore's permits (``LIMIT n``) and for shared holders.
MAX_LIMIT = 10_000
#: The lease of a watched lock when none is given, in seconds (Redisson's 30 s).
DEFAULT_LEASE = 30.0
#: The shortest lease of a watched lock, in seconds. The watchdog renews at a third of it, so
#: a renewal has two thirds of the lease to reach the server; a GC pause, a starved CPU, an
#: event loop busy elsewhere or one socket timeout and retry of redis-py easily take hundreds
#: of milliseconds, and a lease lost that way lets another owner in.
MIN_LEASE = 1.0

Seconds = Union[int, float]
KeyName = Union[str, bytes, memoryview]


def seconds_to_ms(seconds: Seconds, what: str) -> int:
    """Converts seconds (a float, as redis-py takes them) to the server's whole milliseconds.

    Rounds up so a lock never lives shorter than asked, and gives at least 1 ms.
    Raises ValueError when ``seconds`` is not positive or exceeds the server's 30 days.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {seconds!r}")
    ms = max(1, math.ceil(seconds * 1000))
    if ms > MAX_MS:
        raise ValueError(f"{what} must be at most {MAX_MS // 1000} seconds, not {seconds!r}")
    return ms


def wait_ms(blocking: bool, blocking_timeout: Seconds | None) -> int | None:
    """The WAIT argument for LOCK.ACQUIRE: None for a single try, 0 for no limit.

    redis-py's ``blocking_timeout=None`` means "wait forever", which is the server's WAIT 0;
    a timeout of 0 or less means one try, as redis-py behaves; anything past the server's
    30 days is clamped to it.
    """
    if not blocking:
        return None
    if blocking_timeout is None:
        return 0
    if blocking_timeout <= 0:
        return None
    return min(MAX_MS, max(1, math.ceil(blocking_timeout * 1000)))


def check_owner(owner: bytes) -> bytes:
    """Refuses an owner id the server would refuse, before anything is sent."""
    if not owner:
        raise ValueError("the lock owner (token) must not be empty")
    if len(owner) > MAX_OWNER_BYTES:
        raise ValueError(f"the lock owner (token) must be at most {MAX_OWNER_BYTES} bytes")
    return owner


def hold_options(shared: bool, limit: int | None, session: bool) -> list[Any]:
    """LOCK.ACQUIRE's options for the kind of hold: ``SHARED`` or ``LIMIT n``, ``SESSION``.
    Raises ValueError for what the server would refuse."""
    options: list[Any] = []
    if limit is not None:
        if shared:
            raise ValueError("a hold is either shared or one of a semaphore's permits, not both")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"permits must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        options += ["LIMIT", limit]
    elif shared:
        options.append("SHARED")
    if session:
        options.append("SESSION")
    return options


def acquire_args(
    name: KeyName, owner: bytes, ttl_ms: int, wait: int | None, options: list[Any], held: int
) -> list[Any]:
    """LOCK.ACQUIRE's arguments; ``wait`` None sends no WAIT (one try). ``held`` is the
    owner's hold count before the call (``HELD``: a retry of the call changes nothing)."""
    args: list[Any] = ["LOCK.ACQUIRE", name, owner, ttl_ms, *options]
    if wait is not None:
        args += ["WAIT", wait]
    return [*args, "HELD", held]


def release_args(name: KeyName, owner: bytes, held: int) -> list[Any]:
    """LOCK.RELEASE's arguments for an owner holding ``held`` (>= 1) before the call: the
    count goes from ``held`` to ``held - 1`` once, however often the call is retried; the
    reply is nil when the owner holds nothing (lost, or freed by an earlier attempt)."""
    return ["LOCK.RELEASE", name, owner, "HELD", held]


def as_int(reply: Any) -> int | None:
    """An integer reply, or None for nil (clients with decode_responses give str for bulk)."""
    return None if reply is None else int(reply)


@dataclass(frozen=True)
class HolderInfo:
    """One holder of a key as LOCK.INFO tells it: ``owner`` (bytes), ``count`` (its hold
    count), ``ttl`` (seconds left, None when permanent), ``token`` (its fencing token) and
    ``session`` (True when the hold also ends with the connection that took it)."""

    owner: bytes
    count: int
    ttl: float | None
    token: int
    session: bool = False


@dataclass(frozen=True)
class LockInfo:
    """What LOCK.INFO tells about a held key.

    ``mode`` is ``"exclusive"`` (a plain lock, or a read-write lock held for writing),
    ``"shared"`` (held for reading) or ``"limit"`` (a semaphore of ``limit`` permits).
    ``holders`` lists every holder (one for an exclusive lock) and ``waiters`` counts the
    clients queued in the server.

    For an exclusive lock ``owner``, ``count``, ``ttl`` (seconds, None when an admin made it
    permanent) and ``token`` are its holder's; for shared and semaphore keys they are None
    (see ``holders``).
    """

    owner: bytes | None
    count: int | None
    ttl: float | None
    token: int | None
    waiters: int
    mode: str = "exclusive"
    limit: int | None = None
    holders: tuple[HolderInfo, ...] = ()

    def holder(self, owner: bytes) -> HolderInfo | None:
        """The hold of ``owner``, if it has one."""
        return next((h for h in self.holders if h.owner == owner), None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(reply: Any) -> dict[str, Any]:
    """A map (RESP3) or flat field/value array (RESP2) as a dict with str keys."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def _holder(fields: dict[str, Any]) -> HolderInfo:
    owner = fields["owner"]
    ttl_ms = int(fields["ttl"])
    return HolderInfo(
        owner=owner if isinstance(owner, bytes) else str(owner).encode(),
        count=int(fields["count"]),
        ttl=None if ttl_ms < 0 else ttl_ms / 1000,
        token=int(fields["token"]),
        session=bool(int(fields.get("session", 0))),
    )


def parse_info(reply: Any) -> LockInfo | None:
    """Parses LOCK.INFO's reply, either shape (an exclusive lock's fields, or ``mode`` and
    ``holders``); None when free."""
    if reply is None:
        return None
    fields = _fields(reply)
    waiters = int(fields["waiters"])
    if "mode" not in fields:
        only = _holder(fields)
        return LockInfo(only.owner, only.count, only.ttl, only.token, waiters, holders=(only,))
    limit = fields.get("limit")
    return LockInfo(
        owner=None,
        count=None,
        ttl=None,
        token=None,
        waiters=waiters,
        mode=_text(fields["mode"]),
        limit=None if limit is None else int(limit),
        holders=tuple(_holder(_fields(h)) for h in fields["holders"]),
    )


# Adds to the remaining ttl atomically, as redis-py's extend does; LOCK.RENEW checks the owner.
# KEYS[1] lock name; ARGV[1] owner; ARGV[2] milliseconds; ARGV[3] "1" to replace the ttl.
# A permanent lock (PTTL -1) gets ARGV[2] alone; the sum is clamped to the server's maximum.
EXTEND_SCRIPT = """
local ttl = tonumber(ARGV[2])
if ARGV[3] == "0" then
    local left = redis.call('pttl', KEYS[1])
    if left > 0 then ttl = ttl + left end
end
if ttl > tonumber(ARGV[4]) then ttl = tonumber(ARGV[4]) end
return redis.call('lock.renew', KEYS[1], ARGV[1], ttl)
"""


def extend_args(owner: bytes, additional_ms: int, replace_ttl: bool) -> list[Any]:
    return [owner, additional_ms, "1" if replace_ttl else "0", MAX_MS]


def lock_error(message: str, name: KeyName, kind: type[LockError] = LockError) -> LockError:
    """A redis-py lock exception naming the lock (set by hand: redis 5.0 lacks ``lock_name``)."""
    error = kind(message)
    error.lock_name = name  # type: ignore[assignment]
    return error


@dataclass(frozen=True)
class LossReason:
    """Why the server says an owner lost its hold (``LOCK.LOST key owner``).

    ``reason`` is the server's name: ``"expired"``, ``"deleted"``, ``"overwritten"``,
    ``"flushed"``, ``"dropped-on-resync"`` or ``"session-closed"``. ``lost_at`` is when
    (unix time, seconds), ``late_ms`` how long ago that was when asked (ms; for an expiry,
    by how much the call came too late), ``token`` the lost hold's fencing token, ``kind``
    its kind (``"exclusive"``, ``"shared"``, ...), ``held_ms`` how long it had been held
    (ms), ``holders`` who holds the key now, as ``(owner, token)`` pairs.
    """

    reason: str
    lost_at: float
    late_ms: int
    token: int
    kind: str
    held_ms: int
    holders: tuple[tuple[bytes, int], ...] = ()

    def describe(self) -> str:
        text = f"{self.reason} {self.late_ms} ms ago after being held {self.held_ms} ms"
        if self.holders:
            owner, token = self.holders[0]
            text += f"; now held by {owner!r} with token {token}"
        return text


def parse_lost(reply: Any) -> LossReason | None:
    """Parses LOCK.LOST's reply (a map, or RESP2's flat array); None for nil."""
    if reply is None:
        return None
    fields = _fields(reply)
    holders = []
    for entry in fields.get("holders") or ():
        holder = _fields(entry)
        owner = holder["owner"]
        owner = owner if isinstance(owner, bytes) else str(owner).encode()
        holders.append((owner, int(holder["token"])))
    return LossReason(
        reason=_text(fields["reason"]),
        lost_at=int(fields["time"]) / 1000,
        late_ms=int(fields["ago_ms"]),
        token=int(fields["token"]),
        kind=_text(fields["kind"]),
        held_ms=int(fields["held_ms"]),
        holders=tuple(holders),
    )


class HoldLostError(LockNotOwnedError):
    """redis-py's ``LockNotOwnedError`` with the server's reason for the loss, when it told
    one (``LOCK.LOST``); every attribute is None when it did not (an older server, an ACL
    refusing the command, the record aged out).

    ``reason`` (str, see :class:`LossReason`), ``lost_at`` (unix seconds), ``late_ms`` (ms
    since the loss), ``held_by`` / ``held_by_token`` (the owner holding the key now and its
    fencing token, or None when free), ``loss`` (the whole :class:`LossReason`).
    """

    def __init__(self, message: str, loss: LossReason | None = None) -> None:
        if loss is not None:
            message = f"{message} ({loss.describe()})"
        super().__init__(message)
        self.loss = loss
        self.reason = None if loss is None else loss.reason
        self.lost_at = None if loss is None else loss.lost_at
        self.late_ms = None if loss is None else loss.late_ms
        first = loss.holders[0] if loss is not None and loss.holders else None
        self.held_by = None if first is None else first[0]
        self.held_by_token = None if first is None else first[1]


def not_owned(action: str, name: KeyName, loss: LossReason | None = None) -> LockError:
    """The ``LockNotOwnedError`` (a :class:`HoldLostError`) of ``action`` on ``name``."""
    error = HoldLostError(f"Cannot {action} a lock that's no longer owned", loss)
    error.lock_name = name  # type: ignore[assignment]
    return error


class ReplicaSyncError(LockError):
    """Raised by ``acquire`` when fewer replicas than ``replicas`` acknowledged the grant in
    ``replica_timeout``; the acquisition has been released again before this is raised.

    ``acknowledged`` and ``required`` give the counts.
    """

    def __init__(self, message: str, acknowledged: int, required: int) -> None:
        super().__init__(message)
        self.message = message
        self.acknowledged = acknowledged
        self.required = required


class LimitMismatchError(LockError, ResponseError):
    """Raised by a semaphore permit's ``acquire`` when the key is held as a semaphore of
    another number of permits (the server's ``ERR LIMIT m differs from the key's LIMIT n``).
    The limit changes only once every permit is back. ``limit`` is the key's, ``requested``
    the one asked for."""

    def __init__(self, message: str, limit: int, requested: int) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.requested = requested


class HoldConflictError(LockError, ResponseError):
    """Raised by ``acquire`` when its owner already holds the key in a way it cannot reenter
    as asked, e.g. a reader asking for the write lock (an upgrade in place would deadlock:
    release the read lock first)."""


_LIMIT_DIFFERS = re.compile(r"LIMIT (\d+) differs from the key's LIMIT (\d+)")


def hold_error(error: ResponseError, name: KeyName) -> LockError | None:
    """The typed error for a server refusal about the kind of hold, None for any other."""
    text = str(error)
    if (match := _LIMIT_DIFFERS.search(text)) is not None:
        typed: LockError = LimitMismatchError(text, int(match[2]), int(match[1]))
    elif "cannot also hold it" in text:
        typed = HoldConflictError(text)
    else:
        return None
    typed.lock_name = name  # type: ignore[assignment]
    return typed
