"""``rlock.multi_asyncio.MultiLock``: ``rlock.MultiLock`` for ``redis.asyncio`` clients.

The same commands and errors (``DeadlockError``); the watchdog is an asyncio task.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import redis
from redis.exceptions import LockError, ResponseError

from rlock._protocol import (
    DEFAULT_LEASE,
    MIN_LEASE,
    HoldLostError,
    KeyName,
    LossReason,
    Seconds,
    parse_lost,
    seconds_to_ms,
    wait_ms,
)
from rlock.multi import check_names, deadlock_error, macquire_args


class MultiLock:
    """A lock over several keys for asyncio (see ``rlock.MultiLock``): ``async with``."""

    def __init__(
        self,
        redis_client: Any,
        names: Sequence[KeyName],
        timeout: Seconds | None = None,
        blocking: bool = True,
        blocking_timeout: Seconds | None = None,
        shared: bool = False,
        owner: str | bytes | None = None,
    ) -> None:
        self.redis = redis_client
        self.names = check_names(names)
        self.watched = timeout is None
        lease = DEFAULT_LEASE if timeout is None else max(float(timeout), 0.001)
        if self.watched and lease < MIN_LEASE:
            raise ValueError(f"a watched lease must be at least {MIN_LEASE} s")
        self.ttl_ms = seconds_to_ms(lease, "timeout")
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self.shared = shared
        if owner is None:
            owner = uuid.uuid4().hex
        self.owner = owner.encode() if isinstance(owner, str) else owner
        self.tokens: list[int] | None = None
        #: Why the server says the first key's hold was lost, once a release found none held.
        self.lost_reason: LossReason | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def acquire(
        self, blocking: bool | None = None, blocking_timeout: Seconds | None = None
    ) -> bool:
        """Takes every key or none; True when taken. ``DeadlockError`` when refused."""
        block = self.blocking if blocking is None else blocking
        limit = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        args = macquire_args(
            self.names, self.owner, self.ttl_ms, self.shared, wait_ms(block, limit)
        )
        try:
            reply = await self.redis.execute_command(*args)
        except ResponseError as error:
            raise deadlock_error(error) or error from None
        if reply is None:
            return False
        self.tokens = [int(token) for token in reply]
        if self.watched:
            self._watchdog = asyncio.create_task(self._renew_until_cancelled())
        return True

    async def release(self) -> None:
        """Releases every key; ``LockNotOwnedError`` if none was held."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.tokens = None
        reply = await self.redis.execute_command(
            "LOCK.MRELEASE", len(self.names), *self.names, self.owner
        )
        if all(count is None for count in reply):
            self.lost_reason = await self._ask_lost()
            raise HoldLostError(
                "cannot release a MultiLock whose keys are no longer held", self.lost_reason
            )

    async def _ask_lost(self) -> LossReason | None:
        """LOCK.LOST for the first key; None when the server cannot tell."""
        try:
            return parse_lost(
                await self.redis.execute_command("LOCK.LOST", self.names[0], self.owner)
            )
        except Exception:
            return None

    async def renew(self) -> bool:
        """Resets every key's lease; True when every key was still held."""
        reply = await self.redis.execute_command(
            "LOCK.MRENEW", len(self.names), *self.names, self.owner, self.ttl_ms
        )
        return all(int(ok) == 1 for ok in reply)

    async def _renew_until_cancelled(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.renew():
                    return
            except (redis.RedisError, OSError):
                continue

    async def __aenter__(self) -> MultiLock:
        if await self.acquire():
            return self
        raise LockError("unable to acquire the MultiLock's keys", lock_name=str(self.names))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()
