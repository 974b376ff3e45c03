"""The topologies under test, in containers on networks of their own.

Sentinel: a master and two replicas on a "data" network (replication and Sentinel's traffic)
and a "front" network (the clients'), three Sentinels on both. Cutting a server off "data"
leaves it reachable by its clients: a master isolated with its clients (a split brain).
Sentinel reports data addresses; clients map them to the same server's front address.

Cluster: three masters with a replica each on one network (clients reach the nodes at the
addresses the cluster announces).

Every server preloads clockskew.so (its wall clock offset read from /data/clock-offset, 0
until the nemesis writes one) and runs with `enable-debug-command` for the final digests.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from .commands import command
from .docker import container_logs, create_container, create_network, docker

PASSWORD = "rlock-faults"
CLOCK_SHIM = "/usr/local/lib/rlock/clockskew.so"
CLOCK_OFFSET_FILE = "/data/clock-offset"

PERSISTENCE: dict[str, list[str]] = {
    "rdb": ["--appendonly", "no", "--save", "1 1"],
    "aof-everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "aof-always": ["--appendonly", "yes", "--appendfsync", "always"],
}


@dataclass
class Server:
    """One redis-server container; `ip` is its address on the network the servers share."""

    name: str
    container_id: str
    ip: str
    front_ip: str | None = None
    networks: dict[str, str] = field(default_factory=dict)  # network id -> our address on it
    paused: bool = False
    stopped: bool = False
    disconnected: set[str] = field(default_factory=set)
    skewed: bool = False

    def client(self, timeout: float = 3.0) -> redis.Redis:
        """A client from the suite itself (the nemesis, the final checks)."""
        return redis.Redis(
            host=self.front_ip or self.ip,
            port=6379,
            password=PASSWORD,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )

    def logs(self) -> str:
        return container_logs(self.container_id)


def _server_env() -> list[str]:
    return [
        "-e", f"RLOCK_PASSWORD={PASSWORD}",
        "-e", f"LD_PRELOAD={CLOCK_SHIM}",
        "-e", f"RLOCK_CLOCK_OFFSET_FILE={CLOCK_OFFSET_FILE}",
    ]  # fmt: skip


def _server_args(persistence: str) -> list[str]:
    return [
        *PERSISTENCE[persistence],
        "--enable-debug-command",
        "yes",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]


def _subnets(rng: random.Random, count: int) -> list[list[str]]:
    """Candidate /24 prefixes for `count` networks, drawn so parallel runs rarely collide."""
    return [
        [f"10.{rng.randrange(150, 200)}.{rng.randrange(256)}" for _ in range(30)]
        for _ in range(count)
    ]


def _wait(what: str, condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def _start_server(
    image: str, name: str, network: str, ip: str, persistence: str, extra: list[str]
) -> Server:
    container_id = create_container(
        [
            "--name",
            name,
            "--network",
            network,
            "--ip",
            ip,
            *_server_env(),
            image,
            *_server_args(persistence),
            *extra,
        ]
    )
    return Server(name=name, container_id=container_id, ip=ip, networks={network: ip})


def _init_clock(server: Server) -> None:
    docker("exec", server.container_id, "sh", "-c", f"echo 0 > {CLOCK_OFFSET_FILE}")


class Topology:
    """What the nemesis and the checker need of a topology."""

    name: str
    persistence: str
    replicas: int
    servers: list[Server]
    kinds: list[str]

    def client_spec(self) -> dict[str, Any]:
        """What a worker process needs to reach the servers (plain data, picklable)."""
        raise NotImplementedError

    def masters(self) -> list[Server]:
        raise NotImplementedError

    def wait_healthy(self, timeout: float = 90.0) -> None:
        raise NotImplementedError

    def replica_sets(self) -> list[tuple[Server, list[Server]]]:
        """(master, its replicas) for the final digest comparison."""
        raise NotImplementedError


class SentinelTopology(Topology):
    def __init__(self, image: str, persistence: str, replicas: int, rng: random.Random) -> None:
        self.name = f"sentinel/{persistence}" + (f"/replicas={replicas}" if replicas else "")
        self.persistence, self.replicas = persistence, replicas
        self.kinds = [
            "partition-master",
            "partition-replicas",
            "partition-sentinels",
            "partition-clients",
            "kill-master",
            "kill-restart",
            "pause-master",
            "pause-client",
            "clock-skew",
            "sentinel-failover",
        ]
        (self.data_net, data), (self.front_net, front) = (
            create_network(candidates) for candidates in _subnets(rng, 2)
        )
        self.prefixes = (data, front)
        tag = self.data_net[:6]
        self.servers = []
        for i in range(3):
            extra = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "3"]
            server = _start_server(
                image,
                f"rlock-faults-{tag}-redis{i}",
                self.data_net,
                f"{data}.{10 + i}",
                persistence,
                extra,
            )
            server.front_ip = f"{front}.{10 + i}"
            docker(
                "network", "connect", "--ip", server.front_ip, self.front_net, server.container_id
            )
            server.networks[self.front_net] = server.front_ip
            self.servers.append(server)
        self.sentinels: list[Server] = []
        for i in range(3):
            self.sentinels.append(self._sentinel(image, tag, i, data, front))
        for server in self.servers + self.sentinels:
            docker("start", server.container_id)
        for server in self.servers:
            _wait(f"{server.name} answers", lambda s=server: s.client().ping())
            _init_clock(server)
        # Replicas by REPLICAOF, not on the command line: a restarted server must not come
        # back as the replica of whoever was master at the start (the image's config file is
        # read-only, so Sentinel's CONFIG REWRITE cannot record roles). A restarted node comes
        # back as a master and Sentinel turns it into a replica of the current one.
        for server in self.servers[1:]:
            command(server.client(), "REPLICAOF", self.servers[0].ip, 6379)
        self.wait_healthy()

    def _sentinel(self, image: str, tag: str, i: int, data: str, front: str) -> Server:
        conf = "\\n".join(
            [
                "port 26379",
                "bind 0.0.0.0",
                "protected-mode no",
                f"sentinel monitor m {data}.10 6379 2",
                f"sentinel auth-pass m {PASSWORD}",
                "sentinel down-after-milliseconds m 2000",
                "sentinel failover-timeout m 6000",
                "sentinel parallel-syncs m 2",
            ]
        )
        conf_path = "/data/sentinel.conf"
        script = f"printf '{conf}\\n' > {conf_path} && exec redis-server {conf_path} --sentinel"
        container_id = create_container(
            [
                "--name",
                f"rlock-faults-{tag}-sentinel{i}",
                "--network",
                self.data_net,
                "--ip",
                f"{data}.{20 + i}",
                "--entrypoint",
                "sh",
                image,
                "-c",
                script,
            ]
        )
        sentinel = Server(f"sentinel{i}", container_id, f"{data}.{20 + i}", f"{front}.{20 + i}")
        sentinel.networks = {self.data_net: sentinel.ip}
        docker("network", "connect", "--ip", f"{front}.{20 + i}", self.front_net, container_id)
        sentinel.networks[self.front_net] = f"{front}.{20 + i}"
        return sentinel

    def address_map(self) -> dict[str, str]:
        return {s.ip: s.front_ip or s.ip for s in self.servers}

    def client_spec(self) -> dict[str, Any]:
        return {
            "kind": "sentinel",
            "sentinels": [s.front_ip for s in self.sentinels],
            "address_map": self.address_map(),
            "password": PASSWORD,
        }

    def sentinel_master(self) -> str | None:
        """The data address most Sentinels name as master, or None without a majority."""
        votes: dict[str, int] = {}
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):
                c = redis.Redis(
                    host=sentinel.front_ip or sentinel.ip,
                    port=26379,
                    socket_timeout=2,
                    decode_responses=True,
                )
                ip, _port = command(c, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")
                votes[ip] = votes.get(ip, 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def masters(self) -> list[Server]:
        ip = self.sentinel_master()
        return [s for s in self.servers if s.ip == ip]

    def _healthy(self) -> bool:
        masters = self.masters()
        if not masters:
            return False
        master = masters[0]
        info = master.client().info("replication")
        if info.get("role") != "master" or int(info.get("connected_slaves", 0)) != 2:
            return False
        for server in self.servers:
            if server is master:
                continue
            r = server.client().info("replication")
            if r.get("role") != "slave" or r.get("master_link_status") != "up":
                return False
            if r.get("master_host") != master.ip:
                return False
        for sentinel in self.sentinels:
            c = redis.Redis(
                host=sentinel.front_ip or sentinel.ip,
                port=26379,
                socket_timeout=2,
                decode_responses=True,
            )
            fields = command(c, "SENTINEL", "MASTER", "m")
            flat = (
                dict(zip(fields[::2], fields[1::2], strict=False))
                if isinstance(fields, list)
                else fields
            )
            if str(flat.get("flags")) != "master" or int(flat.get("num-other-sentinels", 0)) != 2:
                return False
        return True

    def wait_healthy(self, timeout: float = 90.0) -> None:
        _wait(
            f"{self.name}: one master, two linked replicas, three Sentinels agreeing",
            self._healthy,
            timeout,
        )

    def replica_sets(self) -> list[tuple[Server, list[Server]]]:
        master = self.masters()[0]
        return [(master, [s for s in self.servers if s is not master])]


class ClusterTopology(Topology):
    def __init__(self, image: str, persistence: str, replicas: int, rng: random.Random) -> None:
        self.name = f"cluster/{persistence}" + (f"/replicas={replicas}" if replicas else "")
        self.persistence, self.replicas = persistence, replicas
        self.kinds = [
            "partition-master",
            "kill-master",
            "kill-restart",
            "pause-master",
            "pause-client",
            "clock-skew",
            "cluster-failover",
            "cluster-takeover",
            "slot-migration",
        ]
        self.net, prefix = create_network(_subnets(rng, 1)[0])
        tag = self.net[:6]
        self.servers = []
        for i in range(6):
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "3000",
                "--cluster-config-file",
                "/data/nodes.conf",
            ]
            self.servers.append(
                _start_server(
                    image,
                    f"rlock-faults-{tag}-node{i}",
                    self.net,
                    f"{prefix}.{10 + i}",
                    persistence,
                    extra,
                )
            )
        for server in self.servers:
            docker("start", server.container_id)
        for server in self.servers:
            _wait(f"{server.name} answers", lambda s=server: s.client().ping())
            _init_clock(server)
        addresses = [f"{s.ip}:6379" for s in self.servers]
        docker(
            "exec",
            self.servers[0].container_id,
            "redis-cli",
            "-a",
            PASSWORD,
            "--no-auth-warning",
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "1",
            "--cluster-yes",
            timeout=120,
        )
        self.wait_healthy()

    def client_spec(self) -> dict[str, Any]:
        return {"kind": "cluster", "nodes": [s.ip for s in self.servers], "password": PASSWORD}

    def nodes_view(self, server: Server) -> list[dict[str, Any]]:
        """CLUSTER NODES as seen by `server`: id, ip, flags, master id, slots."""
        rows = []
        for line in command(server.client(), "CLUSTER", "NODES").splitlines():
            parts = line.split()
            rows.append(
                {
                    "id": parts[0],
                    "ip": parts[1].split(":")[0],
                    "flags": parts[2].split(","),
                    "master": parts[3],
                    "state": parts[7],
                    "slots": parts[8:],
                }
            )
        return rows

    def by_ip(self, ip: str) -> Server:
        return next(s for s in self.servers if s.ip == ip)

    def masters(self) -> list[Server]:
        for server in self.servers:
            if server.stopped or server.paused or server.disconnected:
                continue
            with contextlib.suppress(Exception):
                view = self.nodes_view(server)
                return [
                    self.by_ip(r["ip"])
                    for r in view
                    if "master" in r["flags"] and "fail" not in r["flags"] and r["slots"]
                ]
        return []

    def _healthy(self) -> bool:
        for server in self.servers:
            c = server.client()
            if command(c, "CLUSTER", "INFO").find("cluster_state:ok") < 0:
                return False
            view = self.nodes_view(server)
            if any("fail" in r["flags"] or "fail?" in r["flags"] for r in view):
                return False
            if any(r["state"] != "connected" for r in view if "myself" not in r["flags"]):
                return False
            info = c.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        masters = [
            r for r in self.nodes_view(self.servers[0]) if "master" in r["flags"] and r["slots"]
        ]
        return len(masters) == 3

    def wait_healthy(self, timeout: float = 90.0) -> None:
        _wait(
            f"{self.name}: cluster_state ok on all six, three masters, replicas linked",
            self._healthy,
            timeout,
        )

    def replica_sets(self) -> list[tuple[Server, list[Server]]]:
        view = self.nodes_view(self.servers[0])
        sets = []
        for row in view:
            if "master" in row["flags"] and row["slots"]:
                replicas = [self.by_ip(r["ip"]) for r in view if r["master"] == row["id"]]
                sets.append((self.by_ip(row["ip"]), replicas))
        return sets
