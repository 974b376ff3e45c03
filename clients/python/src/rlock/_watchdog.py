"""The thread watchdog: one daemon thread per process renews every watched lock.

The thread starts with the first watched lock and ends when none is left. Renewals due at the
same moment go to the server in one pipeline per client.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from redis.exceptions import RedisError

from rlock._leases import (
    Lease,
    LeaseBook,
    LossListener,
    by_client,
    logger,
    renewal_pipeline,
    tell,
)
from rlock._protocol import KeyName


class ThreadWatchdog:
    def __init__(self) -> None:
        self._book = LeaseBook()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(
        self,
        client: Any,
        name: KeyName,
        owner: bytes,
        lease_ms: int,
        granted_at: float,
        holder: threading.Thread | None,
    ) -> Lease:
        """Starts (or counts one more hold on) renewing ``name`` for ``owner``."""
        with self._changed:
            lease = self._book.hold(client, name, owner, lease_ms, granted_at, holder)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rlock-watchdog", daemon=True
                )
                self._thread.start()
            self._changed.notify()
            return lease

    def let_go(self, lease: Lease, listener: LossListener | None = None) -> None:
        """Counts one hold less (and forgets ``listener``); at none, renewing stops."""
        with self._changed:
            self._book.let_go(lease, listener)

    def drop(self, lease: Lease) -> None:
        """Stops renewing at once (the server says the lock is no longer held)."""
        with self._changed:
            self._book.drop(lease)

    def listen(self, lease: Lease, listener: LossListener) -> None:
        with self._changed:
            lease.listeners.append(listener)

    def _run(self) -> None:
        while True:
            due = self._wait_for_due()
            if due is None:
                return
            self._renew(due)

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
                self._changed.wait(None if next_due is None else next_due - now)

    def _renew(self, due: list[Lease]) -> None:
        for leases in by_client(due):
            self._renew_on_one_client(leases)

    def _renew_on_one_client(self, leases: list[Lease]) -> None:
        leases = self._without_dead_holders(leases)
        if not leases:
            return
        sent_at = time.monotonic()
        try:
            replies: list[Any] = renewal_pipeline(leases).execute(raise_on_error=False)
        except RedisError as error:
            logger.warning("rlock: renewing %d lock(s) failed: %s", len(leases), error)
            replies = [error] * len(leases)
        with self._changed:
            to_tell = self._book.record(leases, replies, sent_at, time.monotonic())
            self._changed.notify()
        tell(to_tell)

    def _without_dead_holders(self, leases: list[Lease]) -> list[Lease]:
        alive = []
        for lease in leases:
            if lease.holder_gone():
                logger.warning(
                    "rlock: %r's holder thread ended without releasing it; no longer renewed",
                    lease.name,
                )
                self.drop(lease)
            else:
                alive.append(lease)
        return alive


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
