"""The watchdog's bookkeeping: which leases to renew when. No I/O and no locking here: the
thread watchdog (rlock._watchdog) and the asyncio one (rlock.asyncio) drive it, each
serialising access in its own way.

One lease stands for one (client, key, owner) held through any number of Lock objects and
reentries; it is renewed at a third of its length (as Redisson does) until the last hold is
let go, the server says the lock is gone, or the holding thread has ended.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from rlock._protocol import KeyName

logger = logging.getLogger("rlock")

#: After a failed renewal (a connection error), the next try comes this soon, in seconds at most.
RETRY_AFTER = 1.0

LossListener = Callable[[], Any]


@dataclass(eq=False)
class Lease:
    """A lock held with a lease that the watchdog keeps renewing.

    ``renewed_at`` is the monotonic time (seconds) a successful grant or renewal was last sent
    or seen; the lock surely expires ``lease_ms`` after it unless renewed again.
    """

    client: Any
    name: KeyName
    owner: bytes
    lease_ms: int
    renewed_at: float
    holder: weakref.ref[threading.Thread] | None
    holds: int = 0
    lost: bool = False
    active: bool = True
    due: float = 0.0
    listeners: list[LossListener] = field(default_factory=list)

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the lease."""
        return self.lease_ms / 3000

    def holder_gone(self) -> bool:
        """True when the thread that held it has ended without letting go."""
        return self.holder is not None and (
            (thread := self.holder()) is None or not thread.is_alive()
        )


def _key_bytes(name: KeyName) -> bytes:
    return name.encode() if isinstance(name, str) else bytes(name)


class LeaseBook:
    """Leases by (client, key, owner), and a heap of when each is next due."""

    def __init__(self) -> None:
        self._leases: dict[tuple[int, bytes, bytes], Lease] = {}
        self._heap: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._leases)

    def hold(
        self,
        client: Any,
        name: KeyName,
        owner: bytes,
        lease_ms: int,
        now: float,
        holder: threading.Thread | None,
    ) -> Lease:
        """Counts one more hold on the lease (made on the first), granted at ``now``."""
        key = (id(client), _key_bytes(name), owner)
        lease = self._leases.get(key)
        if lease is None:
            holder_ref = weakref.ref(holder) if holder is not None else None
            lease = Lease(client, name, owner, lease_ms, now, holder_ref)
            self._leases[key] = lease
        lease.lease_ms = max(lease.lease_ms, lease_ms)
        lease.holds += 1
        self.renewed(lease, now)
        return lease

    def let_go(self, lease: Lease, listener: LossListener | None = None) -> None:
        """Counts one hold less (and forgets ``listener``); at none the lease is no longer
        renewed."""
        if listener is not None and listener in lease.listeners:
            lease.listeners.remove(listener)
        lease.holds -= 1
        if lease.holds <= 0:
            self.drop(lease)

    def drop(self, lease: Lease) -> None:
        """Stops renewing the lease, whatever its holds."""
        lease.active = False
        key = (id(lease.client), _key_bytes(lease.name), lease.owner)
        if self._leases.get(key) is lease:
            del self._leases[key]

    def lose(self, lease: Lease) -> list[LossListener]:
        """Marks the lease lost and dropped; returns the listeners to tell (outside any lock)."""
        lease.lost = True
        self.drop(lease)
        return list(lease.listeners)

    def renewed(self, lease: Lease, sent_at: float) -> None:
        lease.renewed_at = sent_at
        self._schedule(lease, sent_at + lease.interval)

    def failed(self, lease: Lease, now: float) -> bool:
        """A renewal got no answer. Returns True when the lease has surely expired by now
        (then the caller loses it); else schedules a retry soon."""
        if now - lease.renewed_at >= lease.lease_ms / 1000:
            return True
        self._schedule(lease, now + min(RETRY_AFTER, lease.interval / 3))
        return False

    def take_due(self, now: float) -> list[Lease]:
        """The active leases whose renewal is due, taken off the schedule."""
        due: list[Lease] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, lease = heapq.heappop(self._heap)
            if _current(lease, at):
                due.append(lease)
        return due

    def next_due(self) -> float | None:
        """When the earliest scheduled renewal is due (monotonic seconds), None if none."""
        while self._heap and not _current(self._heap[0][2], self._heap[0][0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def record(
        self, leases: list[Lease], replies: list[Any], sent_at: float, now: float
    ) -> list[LossListener]:
        """Books the replies (``now``) to renewals of ``leases`` sent at ``sent_at``; returns
        the listeners of the leases found lost, to tell (outside any lock)."""
        to_tell: list[LossListener] = []
        for lease, reply in zip(leases, replies):
            if not lease.active:
                continue  # let go while the renewal was on its way
            if is_transient(reply):
                if self.failed(lease, now):
                    to_tell += self.lose(lease)
            elif not isinstance(reply, Exception) and int(reply) == 1:
                self.renewed(lease, sent_at)
            else:
                to_tell += self.lose(lease)
        return to_tell

    def _schedule(self, lease: Lease, at: float) -> None:
        lease.due = at
        heapq.heappush(self._heap, (at, next(self._order), lease))


def _current(lease: Lease, at: float) -> bool:
    """A heap entry (``lease`` due ``at``) still in force: active and not rescheduled since."""
    return lease.active and lease.due == at


def by_client(leases: list[Lease]) -> list[list[Lease]]:
    """The leases grouped by their client, for one renewal pipeline per client."""
    groups: dict[int, list[Lease]] = {}
    for lease in leases:
        groups.setdefault(id(lease.client), []).append(lease)
    return list(groups.values())


def renewal_pipeline(leases: list[Lease]) -> Any:
    """A pipeline (not a transaction) renewing each of ``leases``, all on one client."""
    pipe = leases[0].client.pipeline(transaction=False)
    for lease in leases:
        pipe.execute_command("LOCK.RENEW", lease.name, lease.owner, lease.lease_ms)
    return pipe


def is_transient(reply: Any) -> bool:
    """True for a renewal that failed on the way (connection, timeout, READONLY during a
    failover...): worth retrying. WRONGTYPE (the key now holds something else) is a loss."""
    return isinstance(reply, Exception) and not str(reply).startswith("WRONGTYPE")


def tell(listeners: list[LossListener]) -> list[Any]:
    """Calls loss listeners, logging (never raising) what they raise; returns their results."""
    results: list[Any] = []
    for listener in listeners:
        try:
            results.append(listener())
        except Exception:
            logger.exception("rlock: an on_lost callback raised")
    return results
