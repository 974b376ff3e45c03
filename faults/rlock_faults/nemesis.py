"""The nemesis: fault episodes on a schedule drawn from the run's seed.

Episodes run one after another: inject one fault (its kind, target and parameters drawn from
the seeded generator), hold it, heal it, wait until the topology is whole again, then a quiet
gap. Every kind of the topology comes once in each shuffled round, so a run covers them all.
Each step is recorded (JSON lines) with the host's clock; the checker attributes operations
to the episode during which they were invoked.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import redis

from .commands import command
from .docker import DockerError, docker
from .topology import CLOCK_OFFSET_FILE, ClusterTopology, SentinelTopology, Server, Topology
from .workload import ALL_KEYS, LIMIT, LIMIT_KEY, SHARED_KEY


class Nemesis:
    def __init__(
        self, topology: Topology, rng: random.Random, log_path: str, worker_pids: list[int]
    ) -> None:
        self.topology = topology
        self.rng = rng
        self._log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed by close()
        self.worker_pids = worker_pids
        self.paused_pids: list[int] = []
        self._round: list[str] = []

    def close(self) -> None:
        self._log.close()

    def record(self, event: str, **fields: Any) -> None:
        self._log.write(json.dumps({"ev": event, "t": time.time(), **fields}) + "\n")

    def next_kind(self) -> str:
        if not self._round:
            self._round = list(self.topology.kinds)
            self.rng.shuffle(self._round)
        return self._round.pop()

    # -- one episode ---------------------------------------------------------------------

    def episode(self, number: int, hold: float, quiet: float) -> None:
        kind = self.next_kind()
        inject = getattr(self, "_" + kind.replace("-", "_"))
        self.record("episode", number=number, kind=kind)
        try:
            heal: Callable[[], None] | None = inject(hold)
        except (DockerError, redis.RedisError, RuntimeError, StopIteration) as e:
            self.record("inject-failed", number=number, kind=kind, error=str(e)[:300])
            heal = None
        self._background(hold)  # also after a fault that heals itself (a failover takes time)
        if heal is not None:
            heal()
        self.record("healed", number=number, kind=kind)
        self.heal_all()
        try:
            self.topology.wait_healthy(timeout=90)
            self.record("whole", number=number)
        except RuntimeError as e:
            self.record("not-whole", number=number, error=str(e)[:300])
        time.sleep(quiet)
        self.record("episode-end", number=number, kind=kind)

    def _background(self, hold: float) -> None:
        """Sleeps `hold` s while lesser faults come and go: a client's pause (a GC pause of a
        second or two) and one server's clock skewed, each in some episodes."""
        deadline = time.time() + hold
        if self.rng.random() < 0.5 and self.worker_pids:
            time.sleep(self.rng.uniform(0, hold / 2))
            pid = self.rng.choice(self.worker_pids)
            pause = self.rng.uniform(0.5, 2.0)
            self.record("inject", what="SIGSTOP of a client (background)", target=pid,
                        background=True, pause_s=round(pause, 2))  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                time.sleep(pause)
                os.kill(pid, signal.SIGCONT)
        if self.rng.random() < 0.3:
            server = self.rng.choice(self.topology.servers)
            offset = self.rng.choice([-1, 1]) * round(self.rng.uniform(0.2, 1.0), 3)
            self.record("inject", what="clock skew (background)", target=server.name,
                        background=True, offset_s=offset)  # fmt: skip
            self._set_clock(server, offset)
        time.sleep(max(0.0, deadline - time.time()))

    # -- healing -------------------------------------------------------------------------

    def heal_all(self) -> None:
        """Undoes every fault still in place: clocks, pauses, stops, network cuts."""
        for pid in self.paused_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused_pids.clear()
        servers = list(self.topology.servers)
        servers += getattr(self.topology, "sentinels", [])
        for server in servers:
            if server.paused:
                docker("kill", "-s", "CONT", server.container_id, check=False)
                server.paused = False
            if server.stopped:
                docker("start", server.container_id, check=False)
                server.stopped = False
            for network in sorted(server.disconnected):
                docker(
                    "network",
                    "connect",
                    "--ip",
                    server.networks[network],
                    network,
                    server.container_id,
                    check=False,
                )
            server.disconnected.clear()
            if server.skewed:
                self._set_clock(server, 0.0)

    # -- building blocks -----------------------------------------------------------------

    def _master(self) -> Server:
        masters = self.topology.masters()
        if not masters:
            raise RuntimeError("no master to aim at")
        return self.rng.choice(masters)

    def _disconnect(self, server: Server, network: str) -> None:
        docker("network", "disconnect", "-f", network, server.container_id)
        server.disconnected.add(network)

    def _kill(self, server: Server) -> None:
        docker("kill", "-s", "KILL", server.container_id)
        server.stopped = True

    def _pause(self, server: Server) -> None:
        docker("kill", "-s", "STOP", server.container_id)
        server.paused = True

    def _set_clock(self, server: Server, offset_s: float) -> None:
        docker(
            "exec",
            server.container_id,
            "sh",
            "-c",
            f"echo {round(offset_s * 1000)} > {CLOCK_OFFSET_FILE}",
            check=False,
        )
        server.skewed = offset_s != 0.0
        self.record("clock", server=server.name, offset_s=offset_s)

    # -- faults of both topologies: each returns its heal (or None when it heals itself) --

    def _kill_master(self, _hold: float) -> Callable[[], None]:
        master = self._master()
        self.record("inject", what="kill -9, restart at heal", target=master.name)
        self._kill(master)
        return self.heal_all

    def _kill_restart(self, _hold: float) -> None:
        master = self._master()
        self.record(
            "inject",
            what="kill -9 and restart at once",
            target=master.name,
            persistence=self.topology.persistence,
        )
        self._kill(master)
        docker("start", master.container_id)
        master.stopped = False

    def _pause_master(self, _hold: float) -> Callable[[], None]:
        master = self._master()
        self.record("inject", what="SIGSTOP", target=master.name)
        self._pause(master)
        return self.heal_all

    def _pause_client(self, _hold: float) -> Callable[[], None]:
        pids = self.rng.sample(self.worker_pids, k=min(2, len(self.worker_pids)))
        self.record("inject", what="SIGSTOP of clients", target=pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self.paused_pids.append(pid)
        return self.heal_all

    def _clock_skew(self, _hold: float) -> Callable[[], None]:
        server = self.rng.choice(self.topology.servers)
        offset = self.rng.choice([-1, 1]) * round(self.rng.uniform(0.3, 2.0), 3)
        self.record("inject", what="clock skew", target=server.name, offset_s=offset)
        self._set_clock(server, offset)
        return self.heal_all

    def _partition_master(self, _hold: float) -> Callable[[], None]:
        master = self._master()
        if isinstance(self.topology, SentinelTopology):
            self.record(
                "inject",
                what="master cut from replicas and Sentinels, clients keep it",
                target=master.name,
            )
            self._disconnect(master, self.topology.data_net)
        else:
            assert isinstance(self.topology, ClusterTopology)
            self.record("inject", what="master cut from the cluster", target=master.name)
            self._disconnect(master, self.topology.net)
        return self.heal_all

    # -- Sentinel only -------------------------------------------------------------------

    def _sentinel_topology(self) -> SentinelTopology:
        assert isinstance(self.topology, SentinelTopology)
        return self.topology

    def _partition_replicas(self, _hold: float) -> Callable[[], None]:
        topology = self._sentinel_topology()
        master = self._master()
        replicas = [s for s in topology.servers if s is not master]
        self.record(
            "inject", what="replicas cut from the master", target=[s.name for s in replicas]
        )
        for replica in replicas:
            self._disconnect(replica, topology.data_net)
        return self.heal_all

    def _partition_sentinels(self, _hold: float) -> Callable[[], None]:
        topology = self._sentinel_topology()
        cut = self.rng.sample(topology.sentinels, k=2)
        master = self._master()
        self.record(
            "inject",
            what="two Sentinels cut off, then the master paused",
            target=[s.name for s in cut] + [master.name],
        )
        for sentinel in cut:
            self._disconnect(sentinel, topology.data_net)
        self._pause(master)  # no majority may fail it over: clients wait for it
        return self.heal_all

    def _partition_clients(self, _hold: float) -> Callable[[], None]:
        topology = self._sentinel_topology()
        master = self._master()
        self.record("inject", what="master cut from its clients", target=master.name)
        self._disconnect(master, topology.front_net)
        return self.heal_all

    def _sentinel_failover(self, _hold: float) -> None:
        topology = self._sentinel_topology()
        sentinel = self.rng.choice(topology.sentinels)
        self.record("inject", what="SENTINEL FAILOVER", target=sentinel.name)
        c = redis.Redis(host=sentinel.front_ip or sentinel.ip, port=26379, socket_timeout=5)
        command(c, "SENTINEL", "FAILOVER", "m")

    # -- cluster only --------------------------------------------------------------------

    def _cluster_topology(self) -> ClusterTopology:
        assert isinstance(self.topology, ClusterTopology)
        return self.topology

    def _a_replica(self) -> Server:
        topology = self._cluster_topology()
        view = topology.nodes_view(topology.servers[0])
        replicas = [r for r in view if "slave" in r["flags"] and "fail" not in r["flags"]]
        return topology.by_ip(self.rng.choice(replicas)["ip"])

    def _cluster_failover(self, _hold: float) -> None:
        replica = self._a_replica()
        self.record("inject", what="CLUSTER FAILOVER", target=replica.name)
        command(replica.client(), "CLUSTER", "FAILOVER")

    def _cluster_takeover(self, _hold: float) -> None:
        replica = self._a_replica()
        self.record("inject", what="CLUSTER FAILOVER TAKEOVER", target=replica.name)
        command(replica.client(), "CLUSTER", "FAILOVER", "TAKEOVER")

    def _slot_migration(self, _hold: float) -> None:
        topology = self._cluster_topology()
        key = self.rng.choice(ALL_KEYS)
        slot = redis.crc.key_slot(key.encode())
        view = topology.nodes_view(topology.servers[0])
        masters = [r for r in view if "master" in r["flags"] and r["slots"]]
        source_row = next(r for r in masters if _serves(r["slots"], slot))
        target_row = self.rng.choice([r for r in masters if r is not source_row])
        source, target = topology.by_ip(source_row["ip"]), topology.by_ip(target_row["ip"])
        self.record(
            "inject", what="slot migration", target=[source.name, target.name], key=key, slot=slot
        )
        s, t = source.client(10), target.client(10)
        # Move it while held: wait a little for a worker's hold, else hold it ourselves.
        for _ in range(30):
            if s.exists(key):
                break
            time.sleep(0.1)
        else:
            kind = ["LIMIT", LIMIT] if key == LIMIT_KEY else ["SHARED"] if key == SHARED_KEY else []
            command(s, "LOCK.ACQUIRE", key, "nemesis-migration", 5000, *kind)
        info = command(s, "LOCK.INFO", key)
        self.record("held-before-move", key=key, info=str(info)[:200])
        command(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_row["id"])
        command(s, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_row["id"])
        moved = 0
        for _ in range(100):
            keys = command(s, "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            command(
                s,
                "MIGRATE",
                target.ip,
                6379,
                "",
                0,
                5000,
                "AUTH",
                topology_password(),
                "KEYS",
                *keys,
            )
            moved += len(keys)
        for c in (t, s):
            command(c, "CLUSTER", "SETSLOT", slot, "NODE", target_row["id"])
        for other in masters:
            if other is not source_row and other is not target_row:
                command(
                    topology.by_ip(other["ip"]).client(),
                    "CLUSTER",
                    "SETSLOT",
                    slot,
                    "NODE",
                    target_row["id"],
                )
        self.record("migrated", slot=slot, keys=moved)


def _serves(slots: list[str], slot: int) -> bool:
    for item in slots:
        if item.startswith("["):
            continue
        first, _, last = item.partition("-")
        if int(first) <= slot <= int(last or first):
            return True
    return False


def topology_password() -> str:
    from .topology import PASSWORD

    return PASSWORD


def liveness_probe(topology: Topology, bound_s: float) -> dict[str, float | None]:
    """Seconds until each key could be taken after the final heal (None: not within bound)."""
    import rlock

    from .workload import ClusterRouter, SentinelRouter

    spec = topology.client_spec()
    router = SentinelRouter(spec) if spec["kind"] == "sentinel" else ClusterRouter(spec)
    results: dict[str, float | None] = {}
    for key in ALL_KEYS:
        start = time.monotonic()
        results[key] = None
        while time.monotonic() - start < bound_s:
            try:
                r, _ = router.client_for(key)
                lock = rlock.Lock(
                    r,
                    key,
                    timeout=60,
                    blocking_timeout=5,
                    thread_local=False,
                    shared=key == SHARED_KEY,
                    limit=LIMIT if key == LIMIT_KEY else None,
                )
                if lock.acquire(token=f"probe-{key}"):
                    results[key] = round(time.monotonic() - start, 3)
                    break
            except (redis.RedisError, rlock.LockError):
                router.invalidate(key)
                time.sleep(0.5)
    return results
