"""The clients: worker processes taking locks through the Python client, as users would.

Each worker loops until told to stop: it picks a key and a kind of hold, acquires it with a
fixed ttl (`rlock.Lock(..., timeout=ttl)`, a fresh owner id per operation), writes (exclusive
holds) or reads (shared and LIMIT holds) at the fenced register inside the hold, sometimes
sleeps past its ttl first, then releases. Every step goes to the worker's own JSON-lines
history as it happens, with the worker's local clock (`time.time()`, the host's; the nemesis
never skews the clients' clock).

Masters are found as a user would: Sentinel's GET-MASTER-ADDR-BY-NAME, or the cluster's
CLUSTER SLOTS map (refreshed on MOVED, ASK, CLUSTERDOWN and connection errors; the Python
client has no cluster mode of its own, so each operation goes to the key's master directly).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from multiprocessing.synchronize import Event
from typing import Any

import redis
import redis.crc
import rlock
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .commands import command
from .register import RegisterClient

# The keys and what holds them: exclusive keys (some operations as SESSION holds), a key
# shared by readers and taken exclusively by writers, and a LIMIT 2 semaphore key.
EXCLUSIVE_KEYS = ["x:0", "x:1", "x:2"]
SHARED_KEY = "rw:0"
LIMIT_KEY = "sem:0"
LIMIT = 2
ALL_KEYS = [*EXCLUSIVE_KEYS, SHARED_KEY, LIMIT_KEY]


def _redis(host: str, password: str) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=6379,
        password=password,
        socket_timeout=3,
        socket_connect_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


class SentinelRouter:
    """The master Sentinel names, by its front address; forgotten after an error."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._client: redis.Redis | None = None
        self._address = ""

    def client_for(self, _key: str) -> tuple[redis.Redis, str]:
        if self._client is None:
            sentinels = list(self.spec["sentinels"])
            random.shuffle(sentinels)
            for host in sentinels:
                with contextlib.suppress(redis.RedisError):
                    s = redis.Redis(
                        host=host,
                        port=26379,
                        socket_timeout=1,
                        socket_connect_timeout=1,
                        decode_responses=True,
                    )
                    ip, _port = command(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")
                    s.close()
                    self._address = self.spec["address_map"].get(ip, ip)
                    self._client = _redis(self._address, self.spec["password"])
                    break
            else:
                raise redis.ConnectionError("no Sentinel answered")
        return self._client, self._address

    def invalidate(self, _key: str) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


class ClusterRouter:
    """The slot map from CLUSTER SLOTS of any node; one client per node address."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._slots: list[tuple[int, int, str]] = []
        self._clients: dict[str, redis.Redis] = {}

    def _client(self, address: str) -> redis.Redis:
        if address not in self._clients:
            self._clients[address] = _redis(address, self.spec["password"])
        return self._clients[address]

    def _refresh(self) -> None:
        nodes = list(self.spec["nodes"])
        random.shuffle(nodes)
        for address in nodes:
            with contextlib.suppress(redis.RedisError):
                reply = command(self._client(address), "CLUSTER", "SLOTS")
                self._slots = [(int(r[0]), int(r[1]), r[2][0].decode()) for r in reply]
                return
        raise redis.ConnectionError("no cluster node answered CLUSTER SLOTS")

    def client_for(self, key: str) -> tuple[redis.Redis, str]:
        if not self._slots:
            self._refresh()
        slot = redis.crc.key_slot(key.encode())
        for first, last, address in self._slots:
            if first <= slot <= last:
                return self._client(address), address
        self._slots = []
        raise redis.ConnectionError(f"slot {slot} is not served")

    def invalidate(self, _key: str) -> None:
        self._slots = []


class History:
    """The worker's history file: one JSON object a line, flushed at once."""

    def __init__(self, path: str, client: str) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the worker
        self.client = client

    def record(self, event: str, opid: str, **fields: Any) -> None:
        self._file.write(
            json.dumps(
                {"ev": event, "opid": opid, "client": self.client, "t": time.time(), **fields}
            )
            + "\n"
        )


def _pick(rng: random.Random) -> tuple[str, str]:
    """(key, kind): kind is exclusive, session, reader, writer or limit."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(EXCLUSIVE_KEYS), "exclusive"
    if roll < 0.6:
        return rng.choice(EXCLUSIVE_KEYS), "session"
    if roll < 0.72:
        return SHARED_KEY, "reader"
    if roll < 0.82:
        return SHARED_KEY, "writer"
    return LIMIT_KEY, "limit"


def _make_lock(r: redis.Redis, key: str, kind: str, ttl: float, replicas: int) -> rlock.Lock:
    return rlock.Lock(
        r,
        key,
        timeout=ttl,
        blocking_timeout=1.5,
        thread_local=False,
        replicas=replicas,
        replica_timeout=0.5,
        session=kind == "session",
        shared=kind == "reader",
        limit=LIMIT if kind == "limit" else None,
    )


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:120]}"


def run_worker(
    index: int,
    spec: dict[str, Any],
    register_port: int,
    replicas: int,
    seed: int,
    history_path: str,
    stop: Event,
) -> None:
    """The worker's loop (the target of a multiprocessing.Process)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the suite stops workers through `stop`
    # The client's warnings (a given-back acquire, a lost hold) go next to the history.
    logging.basicConfig(filename=history_path.replace(".jsonl", ".log"), force=True)
    rng = random.Random(seed * 1000 + index)
    client = f"c{index}"
    router = SentinelRouter(spec) if spec["kind"] == "sentinel" else ClusterRouter(spec)
    history = History(history_path, client)
    register = RegisterClient(register_port)
    sleeper = index % 4 == 3  # one worker in four sometimes outlives its ttl inside the hold
    n = 0
    while not stop.is_set():
        n += 1
        opid = f"{client}-{n}"
        key, kind = _pick(rng)
        ttl = round(rng.uniform(1.5, 3.0), 3)
        one_operation(
            router,
            register,
            history,
            opid,
            key,
            kind,
            ttl,
            replicas,
            sleeper and rng.random() < 0.25,
            rng,
        )
    register.close()


def one_operation(
    router: SentinelRouter | ClusterRouter,
    register: RegisterClient,
    history: History,
    opid: str,
    key: str,
    kind: str,
    ttl: float,
    replicas: int,
    oversleep: bool,
    rng: random.Random,
) -> None:
    try:
        r, address = router.client_for(key)
    except redis.RedisError as e:
        history.record("unavailable", opid, key=key, kind=kind, error=_error(e))
        time.sleep(0.2)
        return
    lock = _make_lock(r, key, kind, ttl, replicas)
    history.record("invoke", opid, key=key, kind=kind, ttl=ttl, node=address, replicas=replicas)
    try:
        acquired = lock.acquire(token=opid)
    except (redis.RedisError, rlock.LockError) as e:
        history.record("fail", opid, key=key, error=_error(e))
        router.invalidate(key)
        time.sleep(0.1)
        return
    if not acquired:
        history.record("fail", opid, key=key, error="not acquired within blocking_timeout")
        return
    token = lock.fencing_token
    t_granted = time.time()
    history.record("grant", opid, key=key, token=token)
    if oversleep:
        time.sleep(ttl + rng.uniform(0.2, 1.0))
    else:
        time.sleep(rng.uniform(0.0, 0.15))
    request = {
        "op": "write" if kind in ("exclusive", "session", "writer") else "read",
        "client": history.client,
        "opid": opid,
        "key": key,
        "token": token,
        "t_acquired": t_granted,
        "t_sent": time.time(),
    }
    try:
        reply = register.send(request)
        history.record(
            "register",
            opid,
            key=key,
            token=token,
            accepted=reply["accepted"],
            op=request["op"],
            t_sent=request["t_sent"],
        )
    except OSError as e:
        history.record("register", opid, key=key, token=token, error=_error(e))
    t_release = time.time()
    try:
        lock.release()
        outcome = "released"
    except rlock.LockNotOwnedError:
        outcome = "not-owned"
    except (redis.RedisError, rlock.LockError) as e:
        outcome = _error(e)
        router.invalidate(key)
    history.record("release", opid, key=key, outcome=outcome, t_start=t_release)
