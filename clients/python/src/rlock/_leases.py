"""The watchdog's bookkeeping: which leases to renew when. No I/O and no locking here: the
thread watchdog (rlock._watchdog) and the asyncio one (rlock.asyncio) drive it, each
serialising access in its own way.

One lease stands for one holding (server, key, owner) held through any number of Lock objects
and reentries; it is renewed at a third of its length (as Redisson does) until the last hold
without ttl is let go, the server says the lock is gone, or every holder is gone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from rlock._holdings import Holding
from rlock._protocol import KeyName, parse_lost, release_args

logger = logging.getLogger("rlock")

#: After a failed renewal (a connection error), the next try comes this soon, in seconds at most.
RETRY_AFTER = 1.0

LossListener = Callable[[], Any]


@dataclass(eq=False)
class Lease:
    """The watchdog's renewals of one holding (a lock held without a fixed ttl).

    ``renewed_at`` is the monotonic time (seconds) a successful grant or renewal was last sent
    or seen; the lock surely expires ``lease_ms`` after it unless renewed again. ``holds``
    counts the holding's holds taken without a ttl; renewing stops when it reaches 0, when
    the server says the lock is gone, or when every holder is gone.
    """

    holding: Holding
    client: Any
    lease_ms: int
    renewed_at: float
    holds: int = 0
    active: bool = True
    due: float = 0.0
    listeners: list[weakref.WeakMethod[LossListener]] = field(default_factory=list)

    @property
    def name(self) -> KeyName:
        return self.holding.name

    @property
    def owner(self) -> bytes:
        return self.holding.owner

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the lease."""
        return self.lease_ms / 3000

    def renewal_ms(self, now: float) -> int:
        """The ttl of a renewal sent ``now``: the lease, or longer while a grant with a fixed
        ttl keeps the hold anyway (LOCK.RENEW sets the expiry exactly: it must not cut it)."""
        return max(self.lease_ms, math.ceil((self.holding.floor - now) * 1000))

    def listen(self, listener: LossListener) -> None:
        """Adds a loss listener, a bound method held weakly (a Lock object nobody refers to
        any more is gone, and its hold with it)."""
        if listener not in self._listeners():
            self.listeners.append(weakref.WeakMethod(listener))

    def unlisten(self, listener: LossListener) -> None:
        self.listeners = [ref for ref in self.listeners if ref() not in (None, listener)]

    def _listeners(self) -> list[LossListener]:
        return [listener for ref in self.listeners if (listener := ref()) is not None]


class LeaseBook:
    """The leases being renewed, and a heap of when each is next due."""

    def __init__(self) -> None:
        self._leases: set[Lease] = set()
        self._heap: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._leases)

    def hold(self, holding: Holding, client: Any, lease_ms: int, now: float) -> Lease:
        """Counts one more hold without ttl on ``holding`` (its lease made on the first),
        granted at ``now``."""
        lease = holding.lease
        if lease is None or not lease.active:
            lease = holding.lease = Lease(holding, client, lease_ms, now)
            self._leases.add(lease)
        lease.lease_ms = max(lease.lease_ms, lease_ms)
        lease.holds += 1
        self.renewed(lease, now)
        return lease

    def let_go(self, lease: Lease) -> None:
        """Counts one hold without ttl less; at none the lease is no longer renewed."""
        lease.holds -= 1
        if lease.holds <= 0:
            self.drop(lease)

    def drop(self, lease: Lease) -> None:
        """Stops renewing the lease, whatever its holds."""
        lease.active = False
        self._leases.discard(lease)
        if lease.holding.lease is lease:
            lease.holding.lease = None

    def lose(self, lease: Lease) -> list[LossListener]:
        """Marks the holding lost and the lease dropped; returns the listeners to tell
        (outside any lock)."""
        lease.holding.lost = True
        self.drop(lease)
        return lease._listeners()

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
                continue  # released (or being released) while the renewal was on its way
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
        # Every grant reschedules its lease and leaves the old entry behind; the watchdog
        # drops stale entries only as it wakes, which a lock taken again and again no longer
        # makes it do. Past twice the live entries they are swept out (amortised O(1)).
        if len(self._heap) > 2 * len(self._leases) + 64:
            self._heap = [entry for entry in self._heap if _current(entry[2], entry[0])]
            heapq.heapify(self._heap)


def _current(lease: Lease, at: float) -> bool:
    """A heap entry (``lease`` due ``at``) still in force: active and not rescheduled since."""
    return lease.active and lease.due == at


def newly_lost(leases: list[Lease], active_before: list[bool]) -> list[Lease]:
    """The leases a renewal round found lost (active before it, lost and dropped after)."""
    return [
        lease
        for lease, active in zip(leases, active_before)
        if active and not lease.active and lease.holding.lost and lease.holding.loss is None
    ]


def loss_pipeline(leases: list[Lease]) -> Any:
    """A pipeline asking LOCK.LOST for each of ``leases`` (all on one client)."""
    pipe = leases[0].client.pipeline(transaction=False)
    for lease in leases:
        pipe.execute_command("LOCK.LOST", lease.name, lease.owner)
    return pipe


def record_losses(leases: list[Lease], replies: list[Any]) -> None:
    """Keeps the server's reasons (LOCK.LOST replies; errors and nil: none) on the holdings."""
    for lease, reply in zip(leases, replies):
        if isinstance(reply, Exception):
            continue
        try:
            lease.holding.loss = parse_lost(reply)
        except (KeyError, ValueError, TypeError, IndexError):
            continue


def by_client(leases: list[Lease]) -> list[list[Lease]]:
    """The leases grouped by their client, for one renewal pipeline per client."""
    groups: dict[int, list[Lease]] = {}
    for lease in leases:
        groups.setdefault(id(lease.client), []).append(lease)
    return list(groups.values())


def renewal_pipeline(leases: list[Lease], now: float) -> Any:
    """A pipeline (not a transaction) renewing each of ``leases``, all on one client."""
    pipe = leases[0].client.pipeline(transaction=False)
    for lease in leases:
        pipe.execute_command("LOCK.RENEW", lease.name, lease.owner, lease.renewal_ms(now))
    return pipe


def release_pipeline(client: Any, holding: Holding) -> Any:
    """A pipeline giving back every hold of ``holding`` (its holders are gone): one
    LOCK.RELEASE per hold, each with its HELD count, so a retry changes nothing."""
    pipe = client.pipeline(transaction=False)
    for count in range(holding.count, 0, -1):
        pipe.execute_command(*release_args(holding.name, holding.owner, count))
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
