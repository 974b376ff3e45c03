"""One typed door to redis-py's untyped `execute_command`."""

from __future__ import annotations

from typing import Any

import redis


def command(client: redis.Redis, *args: Any) -> Any:
    """Sends one command; returns redis-py's reply. Raises redis.RedisError as redis-py does."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
