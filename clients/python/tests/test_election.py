"""rlock.Election: FIFO campaigns, resignation, a killed, paused or disconnected leader
replaced, observers told every epoch in order, epochs rising across a failover."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import start_server, wait_until

import rlock


def waiters(r, key) -> int:
    info = rlock.Lock(r, key).info()
    return 0 if info is None else info.waiters


class Campaign:
    """A candidate campaigning in a thread of its own."""

    def __init__(self, election: rlock.Election, value: str) -> None:
        self.election = election
        self.epoch: int | None = None
        self.won = threading.Event()
        self.won_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(value,), daemon=True)
        self.thread.start()

    def _run(self, value: str) -> None:
        self.epoch = self.election.campaign(value, timeout=30)
        self.won_at = time.monotonic()
        self.won.set()


CHILD = textwrap.dedent(
    """
    import sys, threading, time, redis, rlock
    r = redis.Redis(unix_socket_path=sys.argv[1], client_name=sys.argv[3])
    election = rlock.Election(r, sys.argv[2], lease=1)
    epoch = election.campaign("child")
    last_until = [election.leader_until]

    def record_deadline():
        while True:
            until = election.leader_until
            if until is not None:
                last_until[0] = until
            time.sleep(0.02)

    threading.Thread(target=record_deadline, daemon=True).start()
    print("epoch", epoch, flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print("report", election.is_leader, last_until[0], flush=True)
    """
)


def leader_child(server, key, name="child-leader"):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.socket_path, key, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline().split()
    assert line[0] == "epoch", line
    return child, int(line[1])


def stop_child(child) -> None:
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_three_candidates_lead_in_the_order_they_queued_and_resign_hands_over(r, key):
    first = rlock.Election(r, key)
    epoch = first.campaign("a")
    assert epoch is not None
    assert first.is_leader
    assert first.leader() == rlock.Leader(b"a", epoch)
    second = Campaign(rlock.Election(r, key), "b")
    wait_until(lambda: waiters(r, key) == 1, what="b to queue")
    third = Campaign(rlock.Election(r, key), "c")
    wait_until(lambda: waiters(r, key) == 2, what="c to queue")
    assert first.resign()
    assert not first.is_leader
    assert second.won.wait(10)
    assert not third.won.is_set()
    assert second.election.is_leader
    assert second.epoch > epoch
    assert first.leader() == rlock.Leader(b"b", second.epoch)
    assert second.election.resign()
    assert third.won.wait(10)
    assert third.epoch > second.epoch
    assert third.election.leader().value == b"c"
    assert third.election.resign()
    assert first.leader() is None
    assert not first.resign(), "not leading: nothing to resign"


def test_a_killed_leader_is_replaced_by_the_next_candidate(server, r, key):
    child, child_epoch = leader_child(server, key)
    try:
        rival = Campaign(rlock.Election(r, key, lease=30), "rival")
        wait_until(lambda: waiters(r, key) == 1, what="the rival to queue")
        os.kill(child.pid, signal.SIGKILL)
        assert rival.won.wait(20)
        assert rival.epoch > child_epoch
        assert rival.election.is_leader
        rival.election.resign()
    finally:
        stop_child(child)


def test_a_paused_leader_knows_it_lost_before_the_rival_won(server, r, key):
    child, child_epoch = leader_child(server, key)
    try:
        os.kill(child.pid, signal.SIGSTOP)
        rival = Campaign(rlock.Election(r, key, lease=30), "rival")
        assert rival.won.wait(20), "the paused leader's lease ran out"
        assert rival.epoch > child_epoch
        os.kill(child.pid, signal.SIGCONT)
        child.stdin.write("report\n")
        child.stdin.flush()
        words = child.stdout.readline().split()
        assert words[:2] == ["report", "False"], words
        # the child's deadline (CLOCK_MONOTONIC, one clock on one machine) had passed
        # before the rival's campaign returned
        assert float(words[2]) < rival.won_at
        rival.election.resign()
    finally:
        stop_child(child)


def test_a_killed_connection_tells_on_lost_and_a_rival_wins(server, r, key):
    told = threading.Event()
    calls = []

    def on_lost(election):
        calls.append(election)
        told.set()

    leader = rlock.Election(
        server.client(client_name="election-leader"), key, lease=1, on_lost=on_lost
    )
    epoch = leader.campaign("leader")
    rival = Campaign(rlock.Election(r, key), "rival")
    wait_until(lambda: waiters(r, key) == 1, what="the rival to queue")
    for client in r.client_list():
        if client.get("name") == "election-leader":
            r.execute_command("CLIENT", "KILL", "ID", client["id"])
    assert rival.won.wait(10)
    assert rival.epoch > epoch
    assert told.wait(10)
    assert calls == [leader]
    assert leader.lost.is_set()
    assert not leader.is_leader
    assert not leader.resign()
    rival.election.resign()


def test_observers_see_every_epoch_in_order(r, key):
    seen: list[rlock.Leader | None] = []
    changed = threading.Condition()

    def watch() -> None:
        for leader in rlock.Election(r, key).observe():
            with changed:
                seen.append(leader)
                changed.notify_all()
            if len(seen) >= 7:
                return

    def wait_seen(n: int) -> None:
        with changed:
            assert changed.wait_for(lambda: len(seen) >= n, 10), seen

    observer = threading.Thread(target=watch, daemon=True)
    observer.start()
    wait_seen(1)
    assert seen == [None]
    epochs = []
    told = 1
    for value in ("a", "b", "c"):
        election = rlock.Election(r, key)
        epochs.append(election.campaign(value))
        told += 1
        wait_seen(told)
        election.resign()
        told += 1
        wait_seen(told)
    observer.join(10)
    assert seen[1::2] == [rlock.Leader(v, e) for v, e in zip((b"a", b"b", b"c"), epochs)]
    assert seen[2::2] == [None, None, None]
    assert epochs == sorted(epochs)


@pytest.fixture
def replicated(fresh_server):
    replica = start_server("--replicaof", "127.0.0.1", str(fresh_server.port))
    replica_client = replica.client()
    wait_until(
        lambda: replica_client.info("replication")["master_link_status"] == "up",
        what="the replica to finish its first sync",
    )
    yield fresh_server, replica
    replica_client.close()
    replica.stop()
    shutil.rmtree(replica.dir, ignore_errors=True)


def test_epochs_rise_across_a_failover(replicated, key):
    master_server, replica_server = replicated
    master, replica = master_server.client(), replica_server.client()
    old = rlock.Election(master, key, lease=1)
    old_epoch = old.campaign("old")
    assert master.execute_command("WAIT", 1, 5000) == 1
    assert rlock.Election(replica, key).leader() == rlock.Leader(b"old", old_epoch)
    replica.execute_command("REPLICAOF", "NO", "ONE")
    new = rlock.Election(replica, key, lease=30)
    new_epoch = new.campaign("new", timeout=30)  # the old hold ends by its lease there
    assert new_epoch is not None
    assert new_epoch > old_epoch
    assert new.leader() == rlock.Leader(b"new", new_epoch)
    new.resign()
    old.resign()
    master.close()
    replica.close()


def test_a_campaign_not_won_in_time_returns_none_and_leaves_no_hold(r, key):
    leader = rlock.Election(r, key)
    epoch = leader.campaign("leader")
    late = rlock.Election(r, key)
    assert late.campaign("late", timeout=0.05) is None
    assert not late.is_leader
    assert late.epoch is None
    assert waiters(r, key) == 0
    with pytest.raises(rlock.LockError):
        leader.campaign("again")
    with pytest.raises(ValueError):
        late.campaign("x" * 1008)
    assert leader.leader() == rlock.Leader(b"leader", epoch)
    assert leader.resign()
