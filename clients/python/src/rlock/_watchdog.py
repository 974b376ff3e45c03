"""The thread watchdog: one daemon thread per process renews every watched lock.

The thread starts with the first watched lock and ends when none is left. Renewals due at the
same moment go to the server in one pipeline per client. An acquire wakes the thread only when
its renewal is due before the moment the thread sleeps until: a lock taken and released over
and over in one process neither wakes it nor makes it end and start anew each time (a thread
switch per acquire, on few cores a visible share of a pair's cost). A lock whose holders are
all gone (the Lock objects collected, the threads ended) is released instead of renewed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

from redis.exceptions import RedisError

from rlock._holdings import Holding
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
from rlock._sessions import close_session


class ThreadWatchdog:
    def __init__(self) -> None:
        self._book = LeaseBook()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        #: When the sleeping thread wakes by itself (math.inf: never); None while it is not
        #: sleeping (starting, or renewing): then it reads the book before it sleeps again.
        self._wakes_at: float | None = None

    def hold(self, holding: Holding, client: Any, lease_ms: int) -> Lease:
        """Starts (or counts one more hold on) renewing ``holding``."""
        with self._changed:
            lease = self._book.hold(holding, client, lease_ms, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rlock-watchdog", daemon=True
                )
                self._thread.start()
            elif self._wakes_at is not None and lease.due < self._wakes_at:
                self._changed.notify()
            return lease

    def let_go(self, lease: Lease) -> None:
        """Counts one hold less; at none, renewing stops."""
        with self._changed:
            self._book.let_go(lease)

    def drop(self, lease: Lease) -> None:
        """Stops renewing at once (released, or no longer held)."""
        with self._changed:
            self._book.drop(lease)

    def _run(self) -> None:
        while True:
            due = self._wait_for_due()
            if due is None:
                return
            try:
                self._renew(due)
            except Exception:
                # One thread renews every lock of the process: whatever one renewal raises (a
                # client closed under it, a bug), the others must go on being renewed.
                logger.exception("rlock: the watchdog caught an error and goes on")

    def _wait_for_due(self) -> list[Lease] | None:
        """Sleeps until some renewals are due; None (and the thread forgotten) when idle."""
        with self._changed:
            while True:
                if not self._book:
                    self._thread = None
                    return None
                now = time.monotonic()
                next_due = self._book.next_due()
                if next_due is not None and next_due <= now:
                    return self._book.take_due(now)
                self._wakes_at = math.inf if next_due is None else next_due
                try:
                    self._changed.wait(None if next_due is None else next_due - now)
                finally:
                    self._wakes_at = None

    def _renew(self, due: list[Lease]) -> None:
        for leases in by_client(due):
            self._renew_on_one_client([lease for lease in leases if not self._ended(lease)])

    def _renew_on_one_client(self, leases: list[Lease]) -> None:
        if not leases:
            return
        sent_at = time.monotonic()
        try:
            pipe = renewal_pipeline(leases, sent_at)
            replies: list[Any] = pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as error:
            logger.warning("rlock: renewing %d lock(s) failed: %s", len(leases), error)
            replies = [error] * len(leases)
        active_before = [lease.active for lease in leases]
        with self._changed:
            to_tell = self._book.record(leases, replies, sent_at, time.monotonic())
            self._changed.notify()
        if lost := newly_lost(leases, active_before):
            try:
                record_losses(lost, loss_pipeline(lost).execute(raise_on_error=False))
            except Exception as error:  # the loss is told anyway, without its reason
                logger.debug("rlock: LOCK.LOST failed: %s", error)
        tell(to_tell)

    def _ended(self, lease: Lease) -> bool:
        """Releases the lease's holding when every holder of it is gone (nobody else could);
        True then. A holding busy with a call has a live holder: it is renewed."""
        holding = lease.holding
        if not holding.abandoned() or not holding.mutex.acquire(blocking=False):
            return False
        try:
            if not holding.abandoned():
                return False
            logger.warning("rlock: %r's holders ended without releasing it; released", lease.name)
            self.drop(lease)
            end_abandoned(lease.client, holding)
            return True
        finally:
            holding.mutex.release()


def end_abandoned(client: Any, holding: Holding) -> None:
    """Gives back every hold of ``holding``, whose holders are gone (called with its mutex
    held); on a connection error the holds are left to run out."""
    try:
        release_pipeline(client, holding).execute(raise_on_error=False)
    except (RedisError, OSError) as error:
        # OSError: the holder's client was closed under it (its socket gone).
        logger.warning("rlock: releasing abandoned %r failed: %s", holding.name, error)
    holding.clear()
    session, holding.session = holding.session, None
    if session is not None:
        close_session(session)


_watchdog = ThreadWatchdog()


def watchdog() -> ThreadWatchdog:
    """The process' watchdog."""
    return _watchdog


def _new_in_child() -> None:
    # The child has no watchdog thread and holds none of its parent's locks.
    global _watchdog
    _watchdog = ThreadWatchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_in_child)
