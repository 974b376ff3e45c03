"""Owner ids: who holds a lock, as the server sees it.

A thread (or, in rlock.asyncio, a task) gets one random id for its whole life, shared by all
locks it takes in this process: that is what makes a lock reentrant for the thread that holds
it, through any Lock object. A random id rather than the thread's ident, because idents are
reused once a thread ends, and a new thread must never inherit a dead thread's locks.
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from typing import Any

_threads = threading.local()
_tasks: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def new_owner() -> bytes:
    """A fresh, globally unique owner id (32 hex digits)."""
    return uuid.uuid4().hex.encode()


def thread_owner() -> bytes:
    """The calling thread's owner id, made on first use."""
    owner: bytes | None = getattr(_threads, "owner", None)
    if owner is None:
        owner = _threads.owner = new_owner()
    return owner


def task_owner(task: Any) -> bytes:
    """An asyncio task's owner id, made on first use and forgotten with the task."""
    owner = _tasks.get(task)
    if owner is None:
        owner = _tasks[task] = new_owner()
    return owner


def _forget_in_child() -> None:
    # A forked child is another holder: it must not reenter its parent's locks.
    global _threads
    _threads = threading.local()
    _tasks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
