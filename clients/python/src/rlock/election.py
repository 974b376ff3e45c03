"""``rlock.Election``: leader election on one lock key.

A candidate ``campaign`` s by waiting in the server's queue for the key (``LOCK.ACQUIRE ...
SESSION WAIT``: first come, first served among candidates). The leader's hold is a session
hold with a lease renewed by the watchdog: when the leader's process dies its connection
closes and the next candidate is handed the key at once; a leader cut off (a partition, a
pause) loses it when its lease runs out. Each new leader gets a fencing token that rises
with every grant, across failovers: the **epoch**, to fence the leader's writes.

Where the candidate's ``value`` is kept: in the owner string of its hold,
``value + b"#" + 16 random hex digits`` (a companion key could not be written in the same
step as the grant, so it could name a leader that is not). ``leader()`` and ``observe()``
read it back from ``LOCK.INFO`` / ``LOCK.OBSERVE``. So ``value`` is at most 1007 bytes.

Times are seconds (floats), as in redis-py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

from redis.exceptions import LockNotOwnedError

from rlock import _protocol
from rlock._protocol import MAX_OWNER_BYTES, KeyName, Seconds
from rlock._settings import encode_owner, socket_timeout_ms
from rlock.lock import Lock

#: The leader's lease when none is given, in seconds: how long a cut-off leader can keep the
#: leadership (a dead one's connection closes and ends it at once).
DEFAULT_ELECTION_LEASE = 10.0
#: The share of the lease a leader gives up for clock drift: ``is_leader`` turns false that
#: much before the server could let a rival win.
DRIFT_MARGIN = 0.02
#: The random suffix that makes a candidate's owner string unique: ``#`` and 16 hex digits.
_SUFFIX_BYTES = 17


@dataclass(frozen=True)
class Leader:
    """A leader as the server has it: ``value`` (the candidate's value, bytes) and ``epoch``
    (its hold's fencing token, rising with every new leader)."""

    value: bytes
    epoch: int


def owner_for(value: Any) -> bytes:
    """The owner string a candidate holds with: its value and a random suffix."""
    encoded = encode_owner(value)
    if not encoded or len(encoded) > MAX_OWNER_BYTES - _SUFFIX_BYTES:
        raise ValueError(
            f"a candidate's value must be 1 to {MAX_OWNER_BYTES - _SUFFIX_BYTES} bytes"
        )
    return encoded + b"#" + uuid.uuid4().hex[:16].encode()


def value_of(owner: bytes) -> bytes:
    """The candidate's value in an owner string (the whole string if it has no suffix)."""
    value, sep, _ = owner.rpartition(b"#")
    return value if sep else owner


def leader_of(info: _protocol.LockInfo | None) -> Leader | None:
    """The leader a LOCK.INFO reply shows (its exclusive holder), None when free."""
    if info is None or info.token is None or info.owner is None:
        return None
    return Leader(value_of(info.owner), info.token)


def parse_observed(reply: Any) -> tuple[int, Leader | None]:
    """LOCK.OBSERVE's ``[epoch, state]`` as the epoch and the leader (None when free)."""
    epoch, state = reply
    return int(epoch), leader_of(_protocol.parse_info(state))


def observe_slice_ms(client: Any) -> int:
    """How long one LOCK.OBSERVE may block (ms): under the client's socket timeout, else
    for ever (0)."""
    socket_ms = socket_timeout_ms(client)
    return 0 if socket_ms is None else max(1, socket_ms * 3 // 4)


class Election:
    """Leader election among candidates on the key ``name`` of ``redis``.

    ``lease`` (seconds, at least ``rlock.MIN_LEASE``) bounds how long a leader that is cut
    off or paused stays leader; ``on_lost(election)`` is called (in the watchdog thread)
    when a renewal finds the leadership gone (expired, the session connection closed,
    deleted). ``lost`` (a ``threading.Event``) is set then too: the leader's work should stop.

    One Election object campaigns for one candidate at a time; use one object per candidate.
    """

    def __init__(
        self,
        redis: Any,
        name: KeyName,
        *,
        lease: Seconds = DEFAULT_ELECTION_LEASE,
        on_lost: Callable[[Election], Any] | None = None,
    ) -> None:
        self.redis = redis
        self.name = name
        self.on_lost = on_lost
        self.lost = threading.Event()
        self._lock = Lock(
            redis, name, lease=lease, thread_local=False, session=True, on_lost=self._told_lost
        )
        self._margin = self._lock.settings.lease_ms / 1000 * DRIFT_MARGIN
        self.value: bytes | None = None

    def campaign(self, value: Any, timeout: Seconds | None = None) -> int | None:
        """Waits in the server's queue (first come, first served) until this candidate
        leads, up to ``timeout`` seconds (None: no limit); returns the epoch (the fencing
        token, an int), or None when not elected in time. ``value`` (str or bytes) is what
        ``leader()`` and ``observe()`` tell of this candidate. Raises ``LockError`` when
        this Election already leads, ValueError for a value too long, redis-py's errors on
        connection problems (a grant that may have come with them is given back)."""
        if self._lock.fencing_token is not None:
            raise _protocol.lock_error("This Election already leads; resign first", self.name)
        owner = owner_for(value)
        self.lost.clear()
        if not self._lock.acquire(blocking=True, blocking_timeout=timeout, token=owner):
            return None
        self.value = value_of(owner)
        return self._lock.fencing_token

    @property
    def epoch(self) -> int | None:
        """The epoch (fencing token) of this candidate's leadership, None when not leading."""
        return self._lock.fencing_token

    @property
    def leader_until(self) -> float | None:
        """The ``time.monotonic()`` deadline until which this candidate surely leads: the
        last grant or renewal's send time plus the lease, less ``DRIFT_MARGIN`` of it; None
        when not leading (or the leadership was found lost)."""
        holding = self._lock._held_holding()
        if holding is None or holding.lost:
            return None
        lease = holding.lease
        if lease is None or not lease.active:
            return None
        return lease.renewed_at + lease.lease_ms / 1000 - self._margin

    @property
    def is_leader(self) -> bool:
        """Whether this candidate surely leads now, from the local deadline ``leader_until``
        (no round trip): it turns false before the server could let a rival win, so a
        leader that was paused knows on waking that it may no longer lead."""
        until = self.leader_until
        return until is not None and time.monotonic() < until

    def resign(self) -> bool:
        """Gives up the leadership (the next candidate in line is handed it at once); True
        when it was still held, False when it had been lost (or was not held)."""
        if self._lock.fencing_token is None:
            return False
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        finally:
            self.value = None
        return True

    def leader(self) -> Leader | None:
        """The leader now, as the server has it: ``Leader(value, epoch)``, None when none."""
        return leader_of(self._lock.info())

    def observe(self, since: int | None = None) -> Iterator[Leader | None]:
        """Leader changes, as they happen (``LOCK.OBSERVE``, blocking in the server): first
        the leader now (a ``Leader``, or None when there is none), then each change once,
        in order: a new ``Leader`` (its epoch above the last one told), or None when the key
        became free. ``since``: an epoch already seen (nothing is told until it changes).
        A generator: stop iterating to stop observing."""
        seen = since
        block_ms = observe_slice_ms(self.redis)
        if seen is None:
            # Epoch 0 is "free": held, this answers at once; free, it answers nil in 1 ms.
            reply = self.redis.execute_command("LOCK.OBSERVE", self.name, 0, "TIMEOUT", 1)
            seen, leader = (0, None) if reply is None else parse_observed(reply)
            yield leader
        while True:
            args: list[Any] = ["LOCK.OBSERVE", self.name, seen]
            if block_ms:
                args += ["TIMEOUT", block_ms]
            reply = self.redis.execute_command(*args)
            if reply is None:
                continue  # a slice under the socket timeout ended: observe again
            epoch, leader = parse_observed(reply)
            if epoch != seen:
                seen = epoch
                yield leader

    def _told_lost(self, lock: Any) -> Any:
        self.lost.set()
        return self.on_lost(self) if self.on_lost is not None else None
