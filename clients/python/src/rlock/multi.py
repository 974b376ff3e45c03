"""``MultiLock``: several keys taken in one step, all or nothing, in the server.

One ``LOCK.MACQUIRE numkeys key ... owner ttl [SHARED] [WAIT timeout]`` takes every key (each
with its own fencing token) or none, and a waiting call waits in every key's queue at once:
it is granted all its keys in one step and never holds some while waiting for others, so two
``MultiLock`` s over the same keys in any order cannot deadlock. A wait the server sees would
close a cycle of waits (with single-key locks too) raises ``DeadlockError`` at once.

In Redis Cluster the keys must share a slot: give them one hash tag (``{bank}:acct:7``).
Times are seconds (floats), as in redis-py.
"""

from __future__ import annotations

import threading
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


class DeadlockError(LockError):
    """The server refused a wait that would close a cycle of waits (its ``DEADLOCK`` error).

    ``cycle`` is the server's description, e.g. ``'k2' is held by 'B', which waits for 'k1',
    held by 'A'``. Nothing was taken; release what you hold and retry, or give up.
    """

    def __init__(self, cycle: str) -> None:
        super().__init__(f"deadlock refused: {cycle}")
        self.cycle = cycle


def deadlock_error(error: ResponseError) -> DeadlockError | None:
    """The ``DeadlockError`` for a ``DEADLOCK ...`` reply, else None."""
    text = str(error)
    if text.startswith("DEADLOCK "):
        return DeadlockError(text[len("DEADLOCK ") :])
    return None


def macquire_args(
    names: Sequence[KeyName], owner: bytes, ttl_ms: int, shared: bool, wait: int | None
) -> list[Any]:
    """LOCK.MACQUIRE's arguments; ``wait`` None sends no WAIT (one try)."""
    args: list[Any] = ["LOCK.MACQUIRE", len(names), *names, owner, ttl_ms]
    if shared:
        args.append("SHARED")
    if wait is not None:
        args += ["WAIT", wait]
    return args


def check_names(names: Sequence[KeyName]) -> list[KeyName]:
    """The names as a list; ValueError for none or a name given twice (the server refuses)."""
    listed = list(names)
    if not listed:
        raise ValueError("a MultiLock needs at least one key")
    if len({bytes(n, "utf-8") if isinstance(n, str) else bytes(n) for n in listed}) != len(listed):
        raise ValueError("a MultiLock's keys must be distinct")
    return listed


class MultiLock:
    """A lock over several keys, taken and released together.

    ``timeout`` is the lease in seconds; None (the default) keeps a watchdog thread renewing
    every key (``LOCK.MRENEW``) every third of ``DEFAULT_LEASE`` while held. ``blocking`` and
    ``blocking_timeout`` (seconds, None: no limit) are redis-py's. ``shared`` takes every key
    for reading. ``tokens`` are the fencing tokens in key order while held.

    Usage (the two-account transfer)::

        with rlock.MultiLock(r, ["{bank}:acct:7", "{bank}:acct:9"], timeout=10) as held:
            move_money(tokens=held.tokens)

    Raises ``DeadlockError`` when the server refuses the wait, ``LockError`` when the keys
    cannot be taken within ``blocking_timeout`` (in ``with``) and ``LockNotOwnedError`` when
    ``release`` finds none of the keys held.
    """

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
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def acquire(
        self, blocking: bool | None = None, blocking_timeout: Seconds | None = None
    ) -> bool:
        """Takes every key or none; True when taken. ``DeadlockError`` when refused."""
        block = self.blocking if blocking is None else blocking
        limit = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        args = macquire_args(
            self.names, self.owner, self.ttl_ms, self.shared, wait_ms(block, limit)
        )
        try:
            reply = self.redis.execute_command(*args)
        except ResponseError as error:
            raise deadlock_error(error) or error from None
        if reply is None:
            return False
        self.tokens = [int(token) for token in reply]
        if self.watched:
            self._start_watchdog()
        return True

    def release(self) -> None:
        """Releases every key (``LOCK.MRELEASE``); ``LockNotOwnedError`` if none was held."""
        self._stop_watchdog()
        self.tokens = None
        reply = self.redis.execute_command(
            "LOCK.MRELEASE", len(self.names), *self.names, self.owner
        )
        if all(count is None for count in reply):
            self.lost_reason = self._ask_lost()
            raise HoldLostError(
                "cannot release a MultiLock whose keys are no longer held", self.lost_reason
            )

    def _ask_lost(self) -> LossReason | None:
        """LOCK.LOST for the first key; None when the server cannot tell."""
        try:
            return parse_lost(self.redis.execute_command("LOCK.LOST", self.names[0], self.owner))
        except Exception:
            return None

    def renew(self) -> bool:
        """Resets every key's lease; True when every key was still held."""
        reply = self.redis.execute_command(
            "LOCK.MRENEW", len(self.names), *self.names, self.owner, self.ttl_ms
        )
        return all(int(ok) == 1 for ok in reply)

    def locked(self) -> bool:
        """Whether this MultiLock believes it holds its keys."""
        return self.tokens is not None

    def _start_watchdog(self) -> None:
        self._stop.clear()
        period = self.ttl_ms / 3000

        def renew_until_stopped() -> None:
            while not self._stop.wait(period):
                try:
                    if not self.renew():
                        return
                except (redis.RedisError, OSError):
                    continue

        self._watchdog = threading.Thread(target=renew_until_stopped, daemon=True)
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        self._stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join()
        self._watchdog = None

    def __enter__(self) -> MultiLock:
        if self.acquire():
            return self
        raise LockError("unable to acquire the MultiLock's keys", lock_name=str(self.names))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
