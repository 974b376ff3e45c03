"""rlock.Lock: redis-py's Lock, backed by the rlock module's native commands."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Callable, Literal

from redis.exceptions import LockError, RedisError, ResponseError
from redis.retry import Retry

from rlock import _owners, _protocol
from rlock._base import LockBase
from rlock._holdings import Holding
from rlock._leases import logger
from rlock._protocol import (
    LockInfo,
    LossReason,
    ReplicaSyncError,
    Seconds,
    lock_error,
    not_owned,
)
from rlock._sessions import close_session, open_session
from rlock._settings import (
    GIVE_BACK_BACKOFF,
    give_back_retries,
    socket_timeout_ms,
    wait_slices,
)
from rlock._watchdog import ThreadWatchdog, end_abandoned, watchdog

OnLost = Callable[["Lock"], Any]


class ThreadState(threading.local):
    """A Lock's holding state, per thread; ``token`` (the owner id while held) is None in
    every thread until that thread acquires (redis-py's is missing outside the creator)."""

    def __init__(self) -> None:
        self.token: bytes | None = None


class Lock(LockBase):
    """A distributed lock with the constructor and methods of redis-py's ``redis.lock.Lock``.

    Swap it in with ``redis_client.lock(name, lock_class=rlock.Lock, ...)`` or by constructing
    it directly. Differences from redis-py's Lock, all on the server: a blocked ``acquire``
    waits in line in the server (first come, first served; ``sleep`` is accepted and unused),
    each acquisition gets a fencing token (``fencing_token``), the lock is reentrant for the
    thread holding it, and a lock without ``timeout`` is kept alive by a watchdog instead of
    living forever.

    Arguments, times in seconds (floats allowed):

    - ``timeout``: the lock's ttl. ``None`` (or 0): watched, held with ``lease`` and renewed
      every ``lease / 3`` by one shared daemon thread until released.
    - ``blocking`` / ``blocking_timeout``: whether ``acquire`` waits, and how long (``None``:
      for as long as it takes).
    - ``thread_local``: each thread is its own owner (default). With False the owner is this
      Lock object, whichever thread uses it (e.g. to release in another thread).
    - ``raise_on_release_error``: whether leaving a ``with`` block raises when the lock was
      no longer held (else a warning is logged).
    - ``lease``: keyword only, the lease of a watched lock (default 30, at least
      ``rlock.MIN_LEASE``, 1 s: the watchdog must get a renewal through in two thirds of it).
    - ``on_lost``: keyword only, called as ``on_lost(lock)`` in the watchdog thread when a
      renewal finds a watched lock gone (expired, deleted, lost in a failover); never for a
      lock being released.
    - ``replicas`` / ``replica_timeout``: keyword only; with ``replicas`` N > 0, each
      acquisition waits (``WAIT N``, in the same round trip) up to ``replica_timeout``
      (default 1) for N replicas to have it, else releases it and raises ``ReplicaSyncError``.
    - ``shared`` / ``limit`` / ``session``: keyword only, the kind of hold (``SHARED``,
      ``LIMIT n``, ``SESSION``); see :class:`rlock.ReadWriteLock` and :class:`rlock.Semaphore`.
      A session hold is bound to the connection that first takes it: one dedicated connection
      per owner and key (shared by every Lock object holding under that owner), made with the
      client's settings outside its pool and never retried, closed when the server answers 0
      for the owner's last release; the hold also ends when that connection closes.

    Every LOCK.ACQUIRE and LOCK.RELEASE carries the owner's hold count (``HELD n``), so that
    a call resent by redis-py's retry has exactly one effect; an acquire or release cut short
    (a timeout, a dropped connection) gives back what it may have taken. A reentry never
    shortens the hold (the server keeps the later expiry).

    Raises ValueError (or TypeError) for a time that the server cannot take (at most 30 days,
    at least 1 ms after rounding up) and for a watched ``lease`` below ``rlock.MIN_LEASE``.
    """

    def _holder_local(self) -> ThreadState:
        return ThreadState()

    # -- what redis-py's Lock offers --------------------------------------------------------

    def __enter__(self) -> Lock:
        if self._adopt_acquisition() or self.acquire():
            return self
        raise lock_error("Unable to acquire lock within the time specified", self.name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except LockError:
            if self.raise_on_release_error:
                raise
            logger.warning("Lock was unlocked or no longer owned when exiting context manager.")

    def acquire(
        self,
        sleep: Seconds | None = None,
        blocking: bool | None = None,
        blocking_timeout: Seconds | None = None,
        token: Any | None = None,
    ) -> bool:
        """Takes the lock; True once held, False when it could not be had in time.

        ``blocking`` (default: the constructor's) False tries once. Else the call waits in the
        server's queue up to ``blocking_timeout`` seconds (``None``: the constructor's, and
        there ``None`` means no limit). ``token`` is the owner id (str or bytes, at most 1024
        bytes); by default the thread's own, so that a thread holding the lock reenters it
        (each acquire then needs one release). ``sleep`` is ignored: nothing polls.
        Afterwards ``fencing_token`` holds the acquisition's fencing token.

        Raises ``LockNotOwnedError`` for a reentry (this owner holds the lock already) when
        the hold was lost meanwhile (expired, deleted, its session connection closed): it is
        never taken afresh under the outer holder's feet. Raises ``ReplicaSyncError`` (a
        ``LockError``) when ``replicas`` were asked for and too few acknowledged (the
        acquisition is released first), and redis-py's errors for connection problems and
        timeouts: a grant that may have come with them is given back first.
        """
        del sleep  # the wait happens in the server
        owner = self._owner_for(token)
        wait = self._wait_ms(blocking, blocking_timeout)
        holding = self._holding_of(owner)
        with holding.mutex:
            if holding.abandoned():
                self._end_abandoned(holding)
            held = self._held_before(holding)
            sent_at = time.monotonic()
            try:
                fencing_token = self._acquire_on_server(holding, held, wait)
            except (ResponseError, ReplicaSyncError):
                self._after_no_grant(holding)  # refused: nothing changed on the server
                raise
            except BaseException:
                self._give_back(holding, held)  # cut short: it may have been granted
                self._after_no_grant(holding)
                raise
            if fencing_token is None:
                self._after_no_grant(holding)
                if held:
                    self._mark_lost(holding)
                    raise self._lost_error("reenter", holding, self._ask_lost(holding.owner))
                return False
            self._count_hold(holding, fencing_token, sent_at)
            return True

    def release(self) -> None:
        """Lets go of one acquisition; the lock is free once every acquisition is released.

        Raises ``LockError`` when this thread does not hold the lock, and
        ``LockNotOwnedError`` when it held it but lost it meanwhile (expired, deleted, its
        session connection closed); a release whose reply was lost and that redis-py retried
        after the first attempt had freed the lock also finds it gone (HELD makes the retry
        change nothing). On a connection error the hold is forgotten here (and no longer
        renewed) before the error is raised: the lock then expires by itself if the release
        did not get through.
        """
        holding, holder = self._releasing()
        with holding.mutex:
            if holding.lost:
                error = self._lost_error("release", holding, None)
                self._count_release(holding, holder)
                raise error
            self._before_release(holding)
            args = _protocol.release_args(self.name, holding.owner, holding.count)
            try:
                remaining = _protocol.as_int(self._release_call(args))
            except BaseException:
                self._mark_lost(holding)  # released or not: this process cannot tell
                self._count_release(holding, holder)
                raise
            lost = None
            if remaining is None:
                self._mark_lost(holding)
                lost = self._lost_error("release", holding, self._ask_lost(holding.owner))
            self._count_release(holding, holder)
        if lost is not None:
            raise lost

    def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> Literal[True]:
        """Adds ``additional_time`` seconds to the lock's remaining ttl (or, with
        ``replace_ttl``, sets the ttl to it). Only for a lock with a ``timeout``: a watched
        lock is renewed by the watchdog.

        Raises ``LockError`` when the lock is not held or has no timeout, and
        ``LockNotOwnedError`` when it is no longer held by this owner.
        """
        args = self._extend_args(additional_time, replace_ttl)
        if not self._extend_script(keys=[self.name], args=args, client=self.redis):
            raise self._renew_refused("extend")
        return True

    def reacquire(self) -> Literal[True]:
        """Resets the ttl of the held lock to ``timeout``. Only for a lock with a timeout.

        Raises ``LockError`` when the lock is not held or has no timeout, and
        ``LockNotOwnedError`` when it is no longer held by this owner.
        """
        owner = self._held_owner("reacquire")
        renewed = self.redis.execute_command("LOCK.RENEW", self.name, owner, self.settings.ttl_ms)
        if not renewed:
            raise self._renew_refused("reacquire")
        return True

    def locked(self) -> bool:
        """True when anyone holds the lock."""
        return self.info() is not None

    def owned(self) -> bool:
        """True when this thread (this owner) holds the lock, as the server sees it now."""
        owner = self.local.token
        if owner is None or self.lost:
            return False
        return self._holds(self.info(), owner)

    # -- what rlock adds --------------------------------------------------------------------

    def info(self) -> LockInfo | None:
        """The lock as the server has it now (owner, count, ttl in seconds, fencing token,
        waiters), or None when it is free."""
        return _protocol.parse_info(self.redis.execute_command("LOCK.INFO", self.name))

    # -- internals --------------------------------------------------------------------------

    def _ask_lost(self, owner: bytes) -> LossReason | None:
        """Why the server says ``owner`` lost its hold (LOCK.LOST), on the failure path only;
        None when it cannot tell: an older server or an ACL refusing the command never hides
        the LockNotOwnedError being raised."""
        try:
            reply = self.redis.execute_command("LOCK.LOST", self.name, owner)
            return _protocol.parse_lost(reply)
        except Exception as error:
            logger.debug("rlock: LOCK.LOST %r failed: %s", self.name, error)
            return None

    def _renew_refused(self, action: str) -> LockError:
        """The LockNotOwnedError of an extend or reacquire the server refused."""
        holding = self._held_holding()
        owner: bytes = self.local.token
        if holding is None:
            return not_owned(action, self.name, self._ask_lost(owner))
        return self._lost_error(action, holding, self._ask_lost(owner))

    def _default_owner(self) -> bytes:
        return _owners.thread_owner() if self.thread_local else _owners.new_owner()

    def _context(self) -> object | None:
        return threading.current_thread() if self.thread_local else None

    def _acquire_on_server(self, holding: Holding, held: int, wait: int | None) -> int | None:
        if held:
            return self._acquire_once(holding, held, None)  # a reentry never waits
        for one_wait in wait_slices(wait, socket_timeout_ms(self.redis)):
            token = self._acquire_once(holding, held, one_wait)
            if token is not None:
                return token
        return None

    def _acquire_once(self, holding: Holding, held: int, wait: int | None) -> int | None:
        args = self._acquire_args(holding.owner, wait, held)
        client = self._acquiring_client(holding)
        try:
            if not self.settings.replicas:
                return _protocol.as_int(client.execute_command(*args))
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*args)
            pipe.execute_command("WAIT", self.settings.replicas, self.settings.replica_timeout_ms)
            token_reply, acknowledged = pipe.execute()
        except ResponseError as error:
            if (typed := self._typed(error)) is None:
                raise
            raise typed from error
        token = _protocol.as_int(token_reply)
        if (shortfall := self._replica_shortfall(token, acknowledged)) is not None:
            self.redis.execute_command(*_protocol.release_args(self.name, holding.owner, held + 1))
            raise shortfall
        return token

    def _acquiring_client(self, holding: Holding) -> Any:
        """The client LOCK.ACQUIRE goes over: the Redis client, or for a new session hold
        the holding's dedicated connection (see rlock._sessions)."""
        if not self._needs_session(holding):
            return self.redis
        if holding.session is None:
            holding.session = open_session(self.redis)
        return holding.session

    def _give_back(self, holding: Holding, held: int) -> None:
        """Undoes the grant an acquire from ``held`` may have had although its reply never
        came (a socket timeout, a dropped connection, an interrupt): the release with HELD
        ``held + 1`` changes nothing if there was none. It goes over another connection than
        the abandoned call's, which the server reads first (it was written first)."""
        try:
            self._release_call(_protocol.release_args(self.name, holding.owner, held + 1))
        except RedisError as error:
            logger.warning("rlock: giving back an unfinished acquire of %r: %s", self.name, error)
            if held:
                self._mark_lost(holding)  # the count on the server is unknown now

    def _release_call(self, args: list[Any]) -> Any:
        """Sends a LOCK.RELEASE with HELD; over a client that does not retry by itself it is
        resent a few times on connection errors and timeouts (HELD makes a resent release
        change nothing, and one that never gets through leaves the hold to its ttl)."""
        retry = Retry(GIVE_BACK_BACKOFF, give_back_retries(self.redis))
        return retry.call_with_retry(lambda: self.redis.execute_command(*args), lambda _: None)

    def _end_abandoned(self, holding: Holding) -> None:
        if holding.lease is not None:
            watchdog().drop(holding.lease)
        end_abandoned(self.redis, holding)

    def _close_session(self, client: Any) -> None:
        close_session(client)

    def _watchdog(self) -> ThreadWatchdog:
        return watchdog()
