"""Replica sync: with replicas=N the acquire waits (pipelined WAIT N) for N replicas, and an
acquisition too few replicas acknowledged is released and reported."""

from __future__ import annotations

import shutil

import pytest
from conftest import start_server, wait_until

import rlock


@pytest.fixture
def replicated(fresh_server):
    """The fresh server with one replica attached (over loopback TCP)."""
    replica = start_server("--replicaof", "127.0.0.1", str(fresh_server.port))
    master, replica_client = fresh_server.client(), replica.client()
    # "up" once the first sync is done: before that, the replica acknowledges nothing (the
    # master delays a diskless sync by 5 s, as long as the tests' replica_timeout).
    wait_until(
        lambda: replica_client.info("replication")["master_link_status"] == "up",
        what="the replica to finish its first sync",
    )
    yield fresh_server, replica
    replica_client.close()
    master.close()
    replica.stop()
    shutil.rmtree(replica.dir, ignore_errors=True)


def wait_calls(client) -> int:
    return client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)


def test_zero_replicas_sends_no_wait(r, key):
    before = wait_calls(r)
    lock = rlock.Lock(r, key, timeout=10, replicas=0)
    assert lock.acquire()
    lock.release()
    assert wait_calls(r) == before


def test_one_replica_acknowledges_the_lock(replicated, key):
    master_server, replica_server = replicated
    master, replica = master_server.client(), replica_server.client()
    lock = rlock.Lock(master, key, timeout=10, replicas=1, replica_timeout=5)
    assert lock.acquire()
    # WAIT returned 1, so the replica has the lock already
    info = rlock.Lock(replica, key).info()
    assert info is not None
    assert info.owner == lock.local.token
    lock.release()
    master.close()
    replica.close()


def test_too_few_replicas_releases_and_raises(fresh_server, key):
    master = fresh_server.client()
    lock = rlock.Lock(master, key, timeout=10, replicas=1, replica_timeout=0.05)
    with pytest.raises(rlock.ReplicaSyncError) as raised:
        lock.acquire()
    assert (raised.value.acknowledged, raised.value.required) == (0, 1)
    assert not lock.locked()
    assert lock.fencing_token is None
    master.close()


def test_too_few_replicas_on_reentry_undoes_only_the_reentry(fresh_server, key):
    master = fresh_server.client()
    lock = rlock.Lock(master, key, timeout=10)
    assert lock.acquire()
    strict = rlock.Lock(master, key, timeout=10, replicas=1, replica_timeout=0.05)
    with pytest.raises(rlock.ReplicaSyncError):
        strict.acquire()
    assert lock.info().count == 1
    lock.release()
    master.close()
