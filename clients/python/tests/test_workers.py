"""The seed article's scenario done right: several worker processes increment one shared value
(a non-atomic GET then SET) under the lock, and the count comes out exact."""

from __future__ import annotations

import multiprocessing

import redis

import rlock

WORKERS = 4
INCREMENTS = 50


def increment_under_lock(socket_path: str, lock_name: str, counter: str) -> list[int]:
    client = redis.Redis(unix_socket_path=socket_path)
    tokens = []
    for _ in range(INCREMENTS):
        with rlock.Lock(client, lock_name, blocking_timeout=60) as lock:
            value = int(client.get(counter) or 0)
            client.set(counter, value + 1)
            tokens.append(lock.fencing_token)
    client.close()
    return tokens


def test_workers_incrementing_under_the_lock_lose_no_update(server, r, key):
    counter = f"{key}:counter"
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(WORKERS) as pool:
        runs = [
            pool.apply_async(increment_under_lock, (server.socket_path, key, counter))
            for _ in range(WORKERS)
        ]
        tokens = [token for run in runs for token in run.get(timeout=90)]
    assert int(r.get(counter)) == WORKERS * INCREMENTS
    # every acquisition had its own fencing token
    assert len(set(tokens)) == WORKERS * INCREMENTS
    assert not r.exists(key)
