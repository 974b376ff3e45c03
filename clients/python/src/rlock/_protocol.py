"""The rlock commands, argument conversion and reply parsing: no I/O here.

Shared by the sync and asyncio locks so both speak to the server in exactly the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from redis.exceptions import LockError, LockNotOwnedError

#: The server's upper bound for a ttl or a WAIT timeout, in milliseconds (30 days).
MAX_MS = 2_592_000_000
#: The server's upper bound for an owner id, in bytes.
MAX_OWNER_BYTES = 1024
#: The lease of a watched lock when none is given, in seconds (Redisson's 30 s).
DEFAULT_LEASE = 30.0

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


def acquire_args(name: KeyName, owner: bytes, ttl_ms: int, wait: int | None) -> list[Any]:
    """LOCK.ACQUIRE's arguments; ``wait`` None sends no WAIT (one try)."""
    args: list[Any] = ["LOCK.ACQUIRE", name, owner, ttl_ms]
    if wait is not None:
        args += ["WAIT", wait]
    return args


def as_int(reply: Any) -> int | None:
    """An integer reply, or None for nil (clients with decode_responses give str for bulk)."""
    return None if reply is None else int(reply)


@dataclass(frozen=True)
class LockInfo:
    """What LOCK.INFO tells about a held lock.

    ``ttl`` is in seconds (a float; None when an admin made the lock permanent), ``owner``
    is the holder's id as bytes, ``count`` its hold count, ``token`` the fencing token and
    ``waiters`` the number of clients queued in the server.
    """

    owner: bytes
    count: int
    ttl: float | None
    token: int
    waiters: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_info(reply: Any) -> LockInfo | None:
    """Parses LOCK.INFO's map (RESP3) or flat field/value array (RESP2); None when free."""
    if reply is None:
        return None
    if isinstance(reply, dict):
        fields = {_text(k): v for k, v in reply.items()}
    else:
        fields = {_text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
    owner = fields["owner"]
    ttl_ms = int(fields["ttl"])
    return LockInfo(
        owner=owner if isinstance(owner, bytes) else str(owner).encode(),
        count=int(fields["count"]),
        ttl=None if ttl_ms < 0 else ttl_ms / 1000,
        token=int(fields["token"]),
        waiters=int(fields["waiters"]),
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


def not_owned(action: str, name: KeyName) -> LockError:
    return lock_error(f"Cannot {action} a lock that's no longer owned", name, LockNotOwnedError)


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
