"""rlock: the Python client of the rlock Redis module.

``rlock.Lock`` is a drop-in for redis-py's ``redis.lock.Lock`` (and ``rlock.asyncio.Lock``
for ``redis.asyncio``) whose waits happen in the server, with fencing tokens, a watchdog for
locks without a timeout, per-thread reentrancy and optional replica sync. Times are seconds
(floats), as in redis-py; errors are redis-py's ``LockError`` and ``LockNotOwnedError``.
"""

from redis.exceptions import LockError, LockNotOwnedError

from rlock._protocol import (
    DEFAULT_LEASE,
    MIN_LEASE,
    HoldConflictError,
    HolderInfo,
    HoldLostError,
    LimitMismatchError,
    LockInfo,
    LossReason,
    ReplicaSyncError,
)
from rlock.election import Election, Leader
from rlock.holds import ReadWriteLock, Semaphore
from rlock.lock import Lock
from rlock.multi import DeadlockError, MultiLock

__all__ = [
    "DEFAULT_LEASE",
    "MIN_LEASE",
    "DeadlockError",
    "Election",
    "HoldConflictError",
    "HoldLostError",
    "HolderInfo",
    "Leader",
    "LimitMismatchError",
    "Lock",
    "LockError",
    "LockInfo",
    "LockNotOwnedError",
    "LossReason",
    "MultiLock",
    "ReadWriteLock",
    "ReplicaSyncError",
    "Semaphore",
]
__version__ = "0.1.0"
