"""Dedicated connections for session holds.

A session hold is bound to the connection that first took it and ends when that connection
closes, so it cannot go over a pooled connection (which serves others and may be dropped) nor
be retried: redis-py's retry reconnects the same Connection object, and the hold, granted to
the old socket, ends with it while the reply of the retry says it is held. So each holding's
session connection is one of its own, made with the client's connection settings, outside its
pool (it does not count against ``max_connections``), with no retries. It is closed when the
server answers 0 for the owner's last release, never RESET (RESET does not end session holds);
if it is garbage collected first, redis-py closes its socket and the server ends its holds.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry


def _settings(client: Any, retry: Any) -> tuple[Any, dict[str, Any]]:
    pool = client.connection_pool
    return pool.connection_class, {**pool.connection_kwargs, "retry": retry}


def open_session(client: Any) -> Any:
    """A single-connection client to ``client``'s server, without retries."""
    connection_class, settings = _settings(client, Retry(NoBackoff(), 0))
    pool = redis.ConnectionPool(connection_class=connection_class, max_connections=1, **settings)
    return redis.Redis(connection_pool=pool, single_connection_client=True)


def close_session(session: Any) -> None:
    """Closes the socket (the server ends the session holds on it) and the client."""
    try:
        session.connection_pool.disconnect()
    finally:
        session.close()


async def open_async_session(client: Any) -> Any:
    """As :func:`open_session`, for a ``redis.asyncio`` client."""
    connection_class, settings = _settings(client, AsyncRetry(NoBackoff(), 0))
    pool = redis.asyncio.ConnectionPool(
        connection_class=connection_class, max_connections=1, **settings
    )
    session = redis.asyncio.Redis(connection_pool=pool, single_connection_client=True)
    try:
        await session.initialize()
    except BaseException:
        await close_async_session(session)
        raise
    return session


async def close_async_session(session: Any) -> None:
    """As :func:`close_session`, for a ``redis.asyncio`` session client."""
    try:
        await session.connection_pool.disconnect()
    finally:
        await session.aclose()
