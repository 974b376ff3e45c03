"""``rlock.election_asyncio.Election``: ``rlock.Election`` for ``redis.asyncio`` clients.

The same election (a FIFO campaign for a session hold renewed by the event loop's watchdog,
``is_leader`` a local deadline, epochs as fencing tokens, the candidate's value in the owner
string); ``campaign``, ``resign`` and ``leader`` are coroutines, ``observe`` an async
iterator, ``lost`` an ``asyncio.Event`` and ``on_lost`` may be a coroutine function.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Callable

from redis.exceptions import LockNotOwnedError

from rlock import _protocol
from rlock._protocol import KeyName, Seconds
from rlock.asyncio import Lock
from rlock.election import (
    DEFAULT_ELECTION_LEASE,
    DRIFT_MARGIN,
    Leader,
    leader_of,
    observe_slice_ms,
    owner_for,
    parse_observed,
    value_of,
)

__all__ = ["Election", "Leader"]


class Election:
    """As :class:`rlock.Election`, for ``redis.asyncio``: ``on_lost(election)`` runs in the
    watchdog task (a coroutine function is awaited in the background)."""

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
        self.lost = asyncio.Event()
        self._lock = Lock(
            redis, name, lease=lease, thread_local=False, session=True, on_lost=self._told_lost
        )
        self._margin = self._lock.settings.lease_ms / 1000 * DRIFT_MARGIN
        self.value: bytes | None = None

    async def campaign(self, value: Any, timeout: Seconds | None = None) -> int | None:
        """As :meth:`rlock.Election.campaign`: the epoch (int) once leading, None when not
        elected within ``timeout`` seconds; cancellation-safe (a grant that came with the
        cancellation is given back)."""
        if self._lock.fencing_token is not None:
            raise _protocol.lock_error("This Election already leads; resign first", self.name)
        owner = owner_for(value)
        self.lost.clear()
        if not await self._lock.acquire(blocking=True, blocking_timeout=timeout, token=owner):
            return None
        self.value = value_of(owner)
        return self._lock.fencing_token

    @property
    def epoch(self) -> int | None:
        """The epoch (fencing token) of this candidate's leadership, None when not leading."""
        return self._lock.fencing_token

    @property
    def leader_until(self) -> float | None:
        """As :attr:`rlock.Election.leader_until` (a ``time.monotonic()`` deadline)."""
        holding = self._lock._held_holding()
        if holding is None or holding.lost:
            return None
        lease = holding.lease
        if lease is None or not lease.active:
            return None
        return lease.renewed_at + lease.lease_ms / 1000 - self._margin

    @property
    def is_leader(self) -> bool:
        """As :attr:`rlock.Election.is_leader`: a local deadline, no round trip."""
        until = self.leader_until
        return until is not None and time.monotonic() < until

    async def resign(self) -> bool:
        """As :meth:`rlock.Election.resign`: True when the leadership was still held."""
        if self._lock.fencing_token is None:
            return False
        try:
            await self._lock.release()
        except LockNotOwnedError:
            return False
        finally:
            self.value = None
        return True

    async def leader(self) -> Leader | None:
        """The leader now, as the server has it: ``Leader(value, epoch)``, None when none."""
        return leader_of(await self._lock.info())

    async def observe(self, since: int | None = None) -> AsyncIterator[Leader | None]:
        """As :meth:`rlock.Election.observe`: the leader now, then each change once, in
        order (a ``Leader``, or None when the key became free)."""
        seen = since
        block_ms = observe_slice_ms(self.redis)
        if seen is None:
            reply = await self.redis.execute_command("LOCK.OBSERVE", self.name, 0, "TIMEOUT", 1)
            seen, leader = (0, None) if reply is None else parse_observed(reply)
            yield leader
        while True:
            args: list[Any] = ["LOCK.OBSERVE", self.name, seen]
            if block_ms:
                args += ["TIMEOUT", block_ms]
            reply = await self.redis.execute_command(*args)
            if reply is None:
                continue
            epoch, leader = parse_observed(reply)
            if epoch != seen:
                seen = epoch
                yield leader

    def _told_lost(self, lock: Any) -> Any:
        self.lost.set()
        return self.on_lost(self) if self.on_lost is not None else None
