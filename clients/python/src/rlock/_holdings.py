"""Holdings: what this process holds, one record per server, key and owner.

The server counts one hold count per owner and key, whichever Lock object, thread or
connection the calls come from; a Holding is this process' copy of that count, shared by
every Lock object that holds under the owner (nested ``with`` blocks of one thread, the read
and write locks of a ReadWriteLock). Each LOCK.ACQUIRE and LOCK.RELEASE carries it as ``HELD
n``, so that a call resent by redis-py's retry has exactly one effect on the server.

No I/O here. A Holding's ``mutex`` serialises the calls on it (its count must not change
between reading ``n`` and the reply); the asyncio Lock uses ``async_mutex`` instead.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from rlock._protocol import KeyName, LossReason

if TYPE_CHECKING:
    from rlock._leases import Lease

#: What tells one server from another in a client's connection settings.
_SERVER_SETTINGS = ("host", "port", "path", "db")


class Holder:
    """One Lock object's share of a holding, in one thread or task (its context): how many
    of the holding's holds it took, and weak references telling whether it is gone (the Lock
    object collected, or the thread ended, or the task done): then nobody can release them."""

    def __init__(self, lock: object, context: object | None) -> None:
        self.count = 0
        self._lock = weakref.ref(lock)
        self._context = None if context is None else weakref.ref(context)

    def of(self, lock: object) -> bool:
        """Whether this is ``lock``'s share."""
        return self._lock() is lock

    def gone(self) -> bool:
        if self._lock() is None:
            return True
        if self._context is None:
            return False
        context = self._context()
        return context is None or not _alive(context)


def _alive(context: Any) -> bool:
    """A thread that has not ended, or an asyncio task that is not done."""
    is_alive = getattr(context, "is_alive", None)
    if is_alive is not None:
        return bool(is_alive())
    return not context.done()


class Holding:
    """One owner's hold on one key of one server, as this process counts it.

    ``count`` is the owner's hold count as the server has it (what ``HELD`` states), the sum
    of its holders' counts. ``lost`` is set once the server answered that the owner holds
    nothing while ``count`` said otherwise; from then on every acquire and release of it
    raises ``LockNotOwnedError``, one release per hold, until ``count`` is back to 0.
    ``session`` is the dedicated connection of a session hold, from the first grant until the
    server answers 0 (a session hold is bound to the connection that first took it).
    ``floor`` is a monotonic time before which a grant with a fixed ttl keeps the hold anyway:
    the watchdog never renews it shorter than that.
    """

    def __init__(self, name: KeyName, owner: bytes) -> None:
        self.name = name
        self.owner = owner
        self.count = 0
        self.fencing_token: int | None = None
        self.lost = False
        #: Why the server says the hold was lost (LOCK.LOST), once a loss was found.
        self.loss: LossReason | None = None
        self.session: Any = None
        self.lease: Lease | None = None
        self.floor = 0.0
        self.holders: list[Holder] = []
        self.mutex = threading.Lock()
        self.async_mutex: Any = None

    def abandoned(self) -> bool:
        """True when it holds something and every holder of it is gone."""
        return self.count > 0 and all(h.gone() for h in self.holders if h.count > 0)

    def count_hold(self, holder: Holder, fencing_token: int) -> None:
        """One more hold, by ``holder``, granted with ``fencing_token``."""
        if self.count == 0:
            self.fencing_token = fencing_token
        self.count += 1
        holder.count += 1
        if holder not in self.holders:
            self.holders.append(holder)

    def count_release(self, holder: Holder) -> None:
        """One hold less, of ``holder``."""
        holder.count -= 1
        self.count -= 1
        if holder.count <= 0 and holder in self.holders:
            self.holders.remove(holder)
        if self.count <= 0:
            self.clear()

    def clear(self) -> None:
        """Nothing held any more (released, or given up)."""
        for holder in self.holders:
            holder.count = 0
        self.holders.clear()
        self.count = 0
        self.fencing_token = None
        self.lost = False
        self.loss = None
        self.floor = 0.0


_registry: weakref.WeakValueDictionary[tuple[Hashable, bytes, bytes], Holding] = (
    weakref.WeakValueDictionary()
)
_registry_mutex = threading.Lock()


def holding(client: Any, name: KeyName, owner: bytes) -> Holding:
    """The holding of ``owner`` on ``name`` of the server ``client`` talks to, made on first
    use. It lives as long as a Lock object's state (or the watchdog) refers to it: a
    holding nobody refers to holds nothing this process could still release."""
    return holding_at(server_of(client), key_bytes(name), name, owner)


def holding_at(server: Hashable, name_bytes: bytes, name: KeyName, owner: bytes) -> Holding:
    """``holding`` for a server and key name already found (``server_of``, ``key_bytes``):
    a Lock finds them once, not on every acquire."""
    key = (server, name_bytes, owner)
    with _registry_mutex:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Holding(name, owner)
        return found


def server_of(client: Any) -> Hashable:
    """What identifies the server (and database) of a redis-py client: two clients with the
    same connection settings share holdings, as the server shares the owner's count."""
    pool = getattr(client, "connection_pool", None)
    settings = getattr(pool, "connection_kwargs", None)
    if not isinstance(settings, dict):
        return ("client", id(client))
    where = tuple(repr(settings.get(name)) for name in _SERVER_SETTINGS)
    return (type(pool).__module__, getattr(pool, "service_name", None), where)


def key_bytes(name: KeyName) -> bytes:
    return name.encode() if isinstance(name, str) else bytes(name)


def _forget_in_child() -> None:
    # A forked child holds none of its parent's locks (its owner ids are new too); the
    # mutex may have been held by another thread of the parent.
    global _registry, _registry_mutex
    _registry = weakref.WeakValueDictionary()
    _registry_mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
