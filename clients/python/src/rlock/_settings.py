"""Constructor settings and wait arithmetic shared by the sync and the asyncio Lock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from redis.backoff import ExponentialWithJitterBackoff

from rlock import _protocol
from rlock._protocol import KeyName, Seconds


def encode_owner(token: Any) -> bytes:
    """An owner id as bytes, encoded as redis-py encodes values (str as UTF-8)."""
    if isinstance(token, bytes):
        return token
    if isinstance(token, memoryview):
        return token.tobytes()
    if isinstance(token, (int, float)) and not isinstance(token, bool):
        return repr(token).encode()
    if isinstance(token, str):
        return token.encode()
    raise TypeError(f"a lock token must be str or bytes, not {type(token).__name__}")


class LockSettings:
    """What both the sync and the asyncio Lock check and convert in their constructors."""

    def __init__(
        self,
        name: KeyName,
        timeout: Seconds | None,
        lease: Seconds,
        replicas: int,
        replica_timeout: Seconds,
        shared: bool = False,
        limit: int | None = None,
        session: bool = False,
    ) -> None:
        # redis-py treats any false timeout (None, 0) as "no expiry": here, "watched".
        self.ttl_ms = _protocol.seconds_to_ms(timeout, "timeout") if timeout else None
        self.lease_ms = _protocol.seconds_to_ms(lease, "lease")
        if self.ttl_ms is None and lease < _protocol.MIN_LEASE:
            raise ValueError(
                f"lease must be at least {_protocol.MIN_LEASE} seconds for a lock without "
                f"timeout (the watchdog must renew it in time), not {lease!r}"
            )
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas must be a whole number >= 0, not {replicas!r}")
        self.replicas = replicas
        self.replica_timeout_ms = _protocol.seconds_to_ms(replica_timeout, "replica_timeout")
        self.name = name
        self.hold_options = _protocol.hold_options(shared, limit, session)
        self.session = bool(session)

    @property
    def watched(self) -> bool:
        """True when the lock has no timeout: the watchdog renews its lease while held."""
        return self.ttl_ms is None

    @property
    def grant_ms(self) -> int:
        """The ttl sent with each acquire: the timeout, or the lease for a watched lock."""
        return self.ttl_ms if self.ttl_ms is not None else self.lease_ms


def socket_timeout_ms(client: Any) -> int | None:
    """The client's socket timeout in ms, if any: a wait in the server must end before it."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    seconds = kwargs.get("socket_timeout")
    return int(seconds * 1000) if seconds else None


#: A LOCK.RELEASE (a release, or a give-back undoing an acquire whose reply never came) over a
#: client that does not retry is tried this many times more, the first soon after: its HELD
#: count makes a repeat change nothing, and a hold left behind would last until its ttl.
GIVE_BACK_RETRIES = 3
GIVE_BACK_BACKOFF = ExponentialWithJitterBackoff(cap=1.0, base=0.05)


def give_back_retries(client: Any) -> int:
    """How many times more a LOCK.RELEASE over ``client`` is tried on top of the client's
    own retries: none when the client retries by itself."""
    retry = client.get_retry() if hasattr(client, "get_retry") else None
    retries = retry.get_retries() if retry is not None else 0
    return 0 if retries > 0 else GIVE_BACK_RETRIES


def wait_slices(wait: int | None, socket_ms: int | None) -> Iterator[int | None]:
    """The WAIT of each LOCK.ACQUIRE call for a wait of ``wait`` ms (None: one try, 0: no
    limit), until one is granted.

    A wait longer than three quarters of the client's socket timeout is cut into calls that
    each end in time, at the price of queueing anew (at the back) for each; the calls stop
    once the whole wait has passed.
    """
    if wait is None or socket_ms is None:
        yield wait
        return
    slice_ms = max(1, socket_ms * 3 // 4)
    if wait == 0:
        while True:
            yield slice_ms
    deadline = time.monotonic() + wait / 1000
    one_wait = min(wait, slice_ms)
    while True:
        yield one_wait
        left_ms = int((deadline - time.monotonic()) * 1000)
        if one_wait == wait or left_ms <= 0:
            return
        one_wait = min(one_wait, left_ms)
