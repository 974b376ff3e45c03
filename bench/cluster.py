#!/usr/bin/env python3
"""rlock over a Redis Cluster of 1, 3 and 6 masters on loopback (issue 24, part 3).

usage: bench/cluster.py [--server PATH] [--masters 1,3,6] [--pairs N] [--seeds N]
                        [--seconds S] [--rounds N] [--clients N] [--routing-masters N]
                        [--routing-seconds S] [--python PATH] [--rust PATH]
                        [--skip-callgrind] [--json FILE] MODULE.so

Three parts, each on clusters this script forms (cluster-enabled servers, the slots split
evenly with CLUSTER ADDSLOTSRANGE, joined by CLUSTER MEET) and stops by pid:

1. Server instructions per pair, counted by callgrind as bench/pair_cost.py counts them
   (--toggle-collect=processCommand, the same fixed seeds, layout and keyspace fill; its
   helpers are reused): N pairs on distinct keys spread over every master by hash slot, each
   master sent its keys' 100 acquires then their 100 releases, pipelined; every master's count
   summed, minus a run that only fills the keyspace, divided by N. LOCK.ACQUIRE + LOCK.RELEASE
   against SET NX PX + DEL (the floor). Repeatable, unlike timings: the figure that says
   whether a grant costs more as masters are added.
2. Timed throughput: --clients processes, each with a connection to every master, taking and
   releasing locks on keys drawn from 100,000, routed by slot and pipelined (about 100
   pairs a round per master, so that every master's pipelines are as deep at any size): grants/s, the servers' CPU (utime + stime from /proc) per grant, per master per
   grant, and grants per second per core used (grants / the CPU seconds of servers and
   clients). The servers' idle CPU (cron, cluster bus) over as long a time before the load is
   subtracted, and shown. On a machine with few cores the total cannot grow with masters; CPU
   per grant is what shows whether the spread costs anything.
3. Client-side routing: rlock.Lock (the Python client) pairs one at a time over redis-py's
   RedisCluster against the same over a plain redis.Redis to the key's master (routed by
   hand), µs and client CPU per pair; run by the venv's python (clients/python/run-bench's).
   The same for the Rust client (rlock-client's Lock over redis' ClusterConnection against a
   Connection per master), by the rlock-bench crate's cluster-routing binary.
--json FILE writes every figure there too.
"""
import argparse
import binascii
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pair_cost  # noqa: E402  (the callgrind helpers)
from pair_cost import (  # noqa: E402
    BATCH, OWNER, PAD_KEYS, PAD_TTL_MS, SERVER_ENV, TOOLS, TTL_MS, Connection, acquire,
    callgrind_total, check_all, is_token, release, resp, seed_prefix, seeds_allowed,
)

SLOTS = 16384
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crc16(data):
    """CRC16-CCITT (XMODEM), the cluster's key hash."""
    return binascii.crc_hqx(data, 0)


def key_slot(key):
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % SLOTS


def slot_ranges(masters):
    """Each master's [first, last] slots, an even split."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def master_of(slot, ranges):
    for index, (first, last) in enumerate(ranges):
        if first <= slot <= last:
            return index
    raise ValueError(slot)


def cluster_ports(count):
    """`count` free five-digit ports whose cluster bus ports (+10000) are free too."""
    ports = []
    while len(ports) < count:
        port = random.randint(20000, 40000)
        if port in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with pair_cost.socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


class Cluster:
    """`masters` cluster-enabled servers with the module, under callgrind or not; started,
    formed, and always stopped (by pid) on leaving the `with` block."""

    def __init__(self, server, module, masters, callgrind=False, seed=0):
        self.server, self.module, self.masters = server, module, masters
        self.callgrind, self.seed = callgrind, seed
        self.workdir = tempfile.mkdtemp(prefix="rlock-cl-", dir="/tmp")
        self.ports = cluster_ports(masters)
        self.ranges = slot_ranges(masters)
        self.processes = []

    def _args(self, index, port):
        node_dir = os.path.join(self.workdir, "n%d" % index)
        os.makedirs(node_dir)
        args = [os.path.abspath(self.server), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", node_dir, "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "15000", "--daemonize", "no",
                "--logfile", os.path.join(node_dir, "server.log"),
                "--loadmodule", self.module]
        if not self.callgrind:
            return args, node_dir
        # As pair_cost.py's runs: fixed seed, no ASLR, no clock-driven purging or rehashing.
        linked = os.path.join(node_dir, "server")
        os.symlink(os.path.abspath(self.server), linked)
        # A seed of its own per node: the node id comes from the same random bytes.
        seeded = seed_prefix(self.seed * 16 + index) if seeds_allowed() else []
        return (seeded + [TOOLS["setarch"], "-R", TOOLS["valgrind"], "--tool=callgrind",
                          "--toggle-collect=processCommand",
                          "--callgrind-out-file=" + os.path.join(node_dir, "callgrind.out"),
                          linked] + args[1:] +
                ["--activerehashing", "no", "--jemalloc-bg-thread", "no",
                 "--slowlog-log-slower-than", "-1"]), node_dir

    def __enter__(self):
        try:
            for index, port in enumerate(self.ports):
                args, _ = self._args(index, port)
                self.processes.append(subprocess.Popen(
                    args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SERVER_ENV))
            self.conns = [self._connect(i) for i in range(self.masters)]
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _connect(self, index):
        log = os.path.join(self.workdir, "n%d" % index, "server.log")
        for _ in range(1200):
            if self.processes[index].poll() is not None:
                raise SystemExit("a cluster node exited; see " + log)
            if os.path.exists(log) and "Ready to accept" in open(log, errors="replace").read():
                return Connection(self.ports[index])
            time.sleep(0.05)
        raise SystemExit("a cluster node did not start: " + log)

    def _form(self):
        for conn, (first, last) in zip(self.conns, self.ranges):
            reply = conn.call("CLUSTER", "ADDSLOTSRANGE", first, last)
            if reply != "OK":
                raise SystemExit("CLUSTER ADDSLOTSRANGE: %r" % reply)
        for port in self.ports[1:]:
            reply = self.conns[0].call("CLUSTER", "MEET", "127.0.0.1", port)
            if reply != "OK":
                raise SystemExit("CLUSTER MEET: %r" % reply)
        deadline = time.time() + 120
        while True:
            infos = [conn.call("CLUSTER", "INFO") for conn in self.conns]
            if all(b"cluster_state:ok" in info and
                   b"cluster_known_nodes:%d\r\n" % self.masters in info for info in infos):
                return
            if time.time() > deadline:
                raise SystemExit("the cluster did not form: %r" % infos)
            time.sleep(0.2)

    def zero_counts(self):
        """Zeroes every node's callgrind counters (by pid, through vgdb): what forming the
        cluster ran (a varying number of CLUSTER INFO polls) is not counted."""
        for pid in self.pids():
            done = subprocess.run(["callgrind_control", "--zero", str(pid)],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise SystemExit("callgrind_control --zero %d: %s" % (pid, done.stderr))

    def tag_of(self, index):
        """A hash tag (always 4 bytes) whose slot is master `index`'s."""
        for number in range(1000):
            tag = b"m%03d" % number
            if self.route(b"{%s}" % tag) == index:
                return tag
        raise SystemExit("no hash tag for master %d" % index)

    def route(self, key):
        return master_of(key_slot(key), self.ranges)

    def pids(self):
        """The servers' pids (under callgrind: valgrind's, which runs the server)."""
        return [process.pid for process in self.processes]

    def terminate(self):
        """SIGTERM to every node and wait (callgrind writes its files on the way out)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self):
        for conn in getattr(self, "conns", []):
            conn.sock.close()
        self.terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def callgrind_totals(self):
        return [callgrind_total(os.path.join(self.workdir, "n%d" % i, "callgrind.out"))
                for i in range(self.masters)]


# -- part 1: instructions per pair ------------------------------------------------------------

PAIRS = {
    "floor": (lambda k: resp("SET", k, OWNER, "NX", "PX", TTL_MS), lambda r: r == "OK",
              lambda k: resp("DEL", k), lambda r: r == 1),
    "exclusive": (lambda k: acquire(k, OWNER), is_token,
                  lambda k: release(k, OWNER), lambda r: r == 0),
}


def counted_run(server, module, masters, kind, pairs, seed):
    """The instructions every master's processCommand counted over a run of `kind`."""
    with Cluster(server, module, masters, callgrind=True, seed=seed) as cluster:
        # The cron at 1 Hz from now on, as pair_cost.py's servers (formed at the default 10).
        for conn in cluster.conns:
            check_all([conn.call("CONFIG", "SET", "hz", "1")], lambda r: r == "OK", "hz")
        time.sleep(1.5)  # the module learns from INFO that nothing listens to propagation
        for conn in cluster.conns:
            conn.call("INFO", "lock")
        # The same fill on every master (pair_cost.py's), so that its tables never resize.
        for index, conn in enumerate(cluster.conns):
            tag = cluster.tag_of(index)
            for first in range(0, PAD_KEYS, BATCH):
                check_all(conn.pipeline([
                    resp("SET", b"{%s}pad:%05d" % (tag, i), b"x" * 16, "PX", PAD_TTL_MS)
                    for i in range(first, first + BATCH)]), lambda r: r == "OK", "fill")
            lock_key = b"{%s}pad:lock" % tag
            check_all(conn.pipeline([acquire(lock_key, OWNER), release(lock_key, OWNER)]),
                      lambda r: r == 0 or is_token(r), "the first lock")
        cluster.zero_counts()
        if kind != "empty":
            make_acquire, acquired, make_release, released = PAIRS[kind]
            keys = [b"lock:%s:%07d" % (kind.encode(), i) for i in range(pairs)]
            by_master = [[] for _ in range(masters)]
            for key in keys:
                by_master[cluster.route(key)].append(key)
            for conn, mine in zip(cluster.conns, by_master):
                for first in range(0, len(mine), BATCH):
                    batch = mine[first:first + BATCH]
                    check_all(conn.pipeline([make_acquire(k) for k in batch]), acquired,
                              kind + " acquire")
                    check_all(conn.pipeline([make_release(k) for k in batch]), released,
                              kind + " release")
        for conn in cluster.conns:
            conn.sock.close()
        cluster.conns = []
        cluster.terminate()
        return sum(cluster.callgrind_totals())


def instructions(server, module, masters_list, pairs, seeds):
    rows = []
    for masters in masters_list:
        per_seed = []
        for seed in range(seeds):
            totals = {kind: counted_run(server, module, masters, kind, pairs, seed)
                      for kind in ("empty", "floor", "exclusive")}
            per_seed.append({kind: (totals[kind] - totals["empty"]) / pairs
                             for kind in ("floor", "exclusive")})
        floor = sum(s["floor"] for s in per_seed) / seeds
        plain = sum(s["exclusive"] for s in per_seed) / seeds
        rows.append({"masters": masters, "floor": round(floor), "exclusive": round(plain),
                     "ratio": round(plain / floor, 3)})
        print("  %d master(s): %.0f / %.0f instructions" % (masters, plain, floor),
              file=sys.stderr)
    return rows


# -- part 2: timed throughput -----------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


KEYSPACE = 100000
PER_MASTER = 100  # pairs a round per master: every master's pipeline as deep at any size


def read_lines(conn, count):
    """`count` one-line replies (integers, nil, errors: every reply this load gets)."""
    while conn.buf.count(b"\r\n") < count:
        chunk = conn.sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("the server closed the connection")
        conn.buf += chunk
    lines = conn.buf.split(b"\r\n", count)
    conn.buf = lines.pop()
    return lines


def load_worker(ports, ranges, seconds, seed, ready, go, out):
    """Rounds of PER_MASTER pairs per master on random keys, routed by slot, each master's acquires pipelined,
    then the releases of those granted (another worker may hold a key: nil, not released).
    The commands are built before the clock starts, so that the client spends little."""
    rng = random.Random(seed)
    conns = [Connection(port) for port in ports]
    owner = b"owner-%06d" % seed
    names = [b"lock:%06d" % i for i in range(KEYSPACE)]
    home = [master_of(key_slot(name), ranges) for name in names]
    acquires = [acquire(name, owner) for name in names]
    releases = [release(name, owner) for name in names]
    grants = 0
    ready.put(seed)
    go.wait()
    cpu_before = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        by_master = [[] for _ in ports]
        for key in set(rng.sample(range(KEYSPACE), PER_MASTER * len(ports))):
            by_master[home[key]].append(key)
        for conn, mine in zip(conns, by_master):
            if mine:
                conn.sock.sendall(b"".join([acquires[k] for k in mine]))
        got = []
        for conn, mine in zip(conns, by_master):
            lines = read_lines(conn, len(mine)) if mine else []
            got.append([k for k, line in zip(mine, lines) if line[:1] == b":"])
        for conn, mine in zip(conns, got):
            if mine:
                conn.sock.sendall(b"".join([releases[k] for k in mine]))
        for conn, mine in zip(conns, got):
            if mine and any(line != b":0" for line in read_lines(conn, len(mine))):
                raise SystemExit("a release was refused")
        grants += sum(len(mine) for mine in got)
    out.put((grants, time.process_time() - cpu_before))


def median_by(rows, field):
    """The row with the median `field` (the lower middle of an even count)."""
    ranked = sorted(rows, key=lambda row: row[field])
    return ranked[(len(ranked) - 1) // 2]


def throughput(server, module, masters_list, clients, seconds, rounds):
    """Each size `rounds` times, interleaved; the round with the median server CPU per grant
    of each size, and every round's figures under "rounds"."""
    runs = {masters: [] for masters in masters_list}
    for _ in range(rounds):
        for masters in masters_list:
            runs[masters] += throughput_once(server, module, [masters], clients, seconds)
    return [dict(median_by(runs[m], "server_cpu_us_per_grant"), rounds=runs[m])
            for m in masters_list]


def throughput_once(server, module, masters_list, clients, seconds):
    import multiprocessing
    rows = []
    for masters in masters_list:
        with Cluster(server, module, masters) as cluster:
            spawn = multiprocessing.get_context("fork")
            ready, go, out = spawn.Queue(), spawn.Event(), spawn.Queue()
            workers = [spawn.Process(target=load_worker, args=(
                cluster.ports, cluster.ranges, seconds, i, ready, go, out))
                for i in range(clients)]
            for worker in workers:
                worker.start()
            for _ in workers:
                ready.get(timeout=120)  # each worker has built its commands
            # What the servers spend idle (the cron, the cluster bus's pings) over as long.
            idle = [cpu_seconds(pid) for pid in cluster.pids()]
            time.sleep(seconds)
            idle = [cpu_seconds(pid) - cpu for pid, cpu in zip(cluster.pids(), idle)]
            go.set()
            before = [cpu_seconds(pid) for pid in cluster.pids()]
            started = time.monotonic()
            results = [out.get(timeout=seconds + 60) for _ in workers]
            wall = time.monotonic() - started
            after = [cpu_seconds(pid) for pid in cluster.pids()]
            for worker in workers:
                worker.join(30)
            stats = [conn.call("INFO", "commandstats") for conn in cluster.conns]
        grants = sum(g for g, _ in results)
        client_cpu = sum(c for _, c in results)
        # Each master's CPU under load, less what it spent idle over as long (one tick is
        # 10 ms: a short run's figure is coarse).
        server_cpu = [a - b - i * wall / seconds for a, b, i in zip(after, before, idle)]
        per_master_grants = [commandstat_calls(s, b"lock.acquire") for s in stats]
        per_master = [cpu / max(1, g) for cpu, g in zip(server_cpu, per_master_grants)]
        rows.append({
            "masters": masters, "grants_per_s": round(grants / wall),
            "server_cpu_us_per_grant": round(sum(server_cpu) / grants * 1e6, 2),
            "server_cpu_us_per_grant_per_master": [round(x * 1e6, 2) for x in per_master],
            "client_cpu_us_per_grant": round(client_cpu / grants * 1e6, 2),
            "grants_per_core_s": round(grants / (sum(server_cpu) + client_cpu)),
            "server_cores_used": round(sum(server_cpu) / wall, 2),
            "grants_per_master": per_master_grants,
            "idle_server_cores": round(sum(idle) / seconds, 3),
        })
        print("  %d master(s): %d grants/s" % (masters, grants / wall), file=sys.stderr)
    return rows


def commandstat_calls(info, command):
    for line in info.split(b"\r\n"):
        if line.startswith(b"cmdstat_" + command + b":"):
            fields = dict(f.split(b"=") for f in line.split(b":", 1)[1].split(b","))
            return int(fields[b"calls"])
    return 0


# -- part 3: client-side routing --------------------------------------------------------------

ROUTING_SCRIPT = r"""
import json, sys, time
import redis
from redis.cluster import RedisCluster
import rlock

ports = json.loads(sys.argv[1]); seconds = float(sys.argv[2])
cluster = RedisCluster(host="127.0.0.1", port=ports[0])
direct = {}
for port in ports:
    direct[port] = redis.Redis(host="127.0.0.1", port=port)
names = ["lock:%06d" % i for i in range(1000)]
port_of = {name: cluster.get_node_from_key(name).port for name in names}
def by_hand(name):
    return direct[port_of[name]]
def run(label, client_of, make):
    locks = [make(client_of(n), n) for n in names]
    for lock in locks[:50]:
        lock.acquire(); lock.release()
    pairs = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        for lock in locks:
            lock.acquire(); lock.release()
        pairs += len(locks)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"client": label, "us_per_pair": round(wall / pairs * 1e6, 1),
            "client_cpu_us_per_pair": round(cpu / pairs * 1e6, 1), "pairs": pairs}
rows = [
    run("rlock.Lock, redis.Redis routed by hand", by_hand,
        lambda c, n: rlock.Lock(c, n, timeout=10)),
    run("rlock.Lock, RedisCluster", lambda n: cluster,
        lambda c, n: rlock.Lock(c, n, timeout=10)),
    run("raw LOCK.ACQUIRE/RELEASE, redis.Redis by hand", by_hand, lambda c, n: Raw(c, n)),
    run("raw LOCK.ACQUIRE/RELEASE, RedisCluster", lambda n: cluster, lambda c, n: Raw(c, n)),
]
print(json.dumps(rows))
"""

RAW_CLASS = r"""
class Raw:
    def __init__(self, client, name):
        self.client, self.name = client, name
    def acquire(self):
        assert self.client.execute_command("LOCK.ACQUIRE", self.name, "o", 10000) is not None
    def release(self):
        assert self.client.execute_command("LOCK.RELEASE", self.name, "o") == 0
"""


def routing(server, module, masters, python, rust, seconds, rounds):
    """The Python rows (if `python` exists), then the Rust ones (if `rust` exists): each run
    `rounds` times, interleaved, on one cluster; each client's round with the median client
    CPU per pair, every round's figures under "rounds"."""
    by_client = {}
    with Cluster(server, module, masters) as cluster:
        ports = [str(port) for port in cluster.ports]
        runs = []
        if os.path.exists(python):
            runs.append([python, "-c", RAW_CLASS + ROUTING_SCRIPT, json.dumps(cluster.ports),
                         str(seconds)])
        if os.path.exists(rust):
            runs.append([rust, str(seconds), *ports])
        for _ in range(rounds):
            for args in runs:
                done = subprocess.run(args, capture_output=True, text=True,
                                      timeout=seconds * 8 + 120)
                if done.returncode != 0:
                    raise SystemExit("the routing run failed:\n" + done.stderr)
                for row in json.loads(done.stdout.strip().splitlines()[-1]):
                    by_client.setdefault(row["client"], []).append(row)
    rows = []
    for client, runs_of in by_client.items():
        if any("error" in row for row in runs_of):
            rows.append(runs_of[0])
            continue
        rows.append(dict(median_by(runs_of, "client_cpu_us_per_pair"), rounds=runs_of))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module")
    parser.add_argument("--server", default=pair_cost.DEFAULT_SERVER)
    parser.add_argument("--masters", default="1,3,6")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="per timed load (and as long idle before it)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed and routing runs of each size or client, interleaved")
    parser.add_argument("--routing-seconds", type=float, default=1.0,
                        help="per routing row and round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--routing-masters", type=int, default=3)
    parser.add_argument("--python", default=os.path.join(REPO, "target/python-venv/bin/python"),
                        help="a python with redis-py and rlock (the client's venv)")
    parser.add_argument("--rust", default=os.path.join(REPO, "target/release/cluster-routing"),
                        help="the Rust client's routing run (cargo build --release -p "
                             "rlock-bench --bin cluster-routing)")
    parser.add_argument("--skip-callgrind", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    options = parser.parse_args()
    options.module = os.path.abspath(options.module)
    masters_list = [int(m) for m in options.masters.split(",")]
    results = {"date": time.strftime("%Y-%m-%d"), "server": pair_cost.server_version(options.server),
               "cpus": os.cpu_count()}
    if not options.skip_callgrind and shutil.which("valgrind"):
        print("callgrind runs ...", file=sys.stderr)
        results["instructions"] = instructions(options.server, options.module, masters_list,
                                               options.pairs, options.seeds)
    print("timed runs ...", file=sys.stderr)
    results["throughput"] = throughput(options.server, options.module, masters_list,
                                       options.clients, options.seconds, options.rounds)
    if os.path.exists(options.python) or os.path.exists(options.rust):
        print("routing runs ...", file=sys.stderr)
        results["routing"] = routing(options.server, options.module, options.routing_masters,
                                     options.python, options.rust,
                                     options.routing_seconds, options.rounds)
    report(results, options)
    if options.json:
        os.makedirs(os.path.dirname(os.path.abspath(options.json)), exist_ok=True)
        with open(options.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


def report(results, options):
    print("rlock over a Redis Cluster on loopback (%s, %d CPUs)" % (results["server"],
                                                                   results["cpus"]))
    if "instructions" in results:
        print("\nserver instructions per pair, all masters summed (callgrind, processCommand; "
              "%d pairs on distinct keys spread by slot)" % options.pairs)
        print("%-8s %14s %14s %9s" % ("masters", "LOCK pair", "SET NX+DEL", "vs floor"))
        for row in results["instructions"]:
            print("%-8d %14d %14d %8.3fx" % (row["masters"], row["exclusive"], row["floor"],
                                             row["ratio"]))
    print("\ntimed: %d client processes, keys drawn from 100000, 100 pairs a round per master "
          "routed by slot and pipelined, %g s per cluster; the median of %d rounds by server CPU per grant" % (
              options.clients, options.seconds, options.rounds))
    print("%-8s %10s %14s %26s %14s %14s %10s %10s" % (
        "masters", "grants/s", "srv CPU µs/gr", "srv CPU µs/gr, each master", "cli CPU µs/gr",
        "grants/core-s", "srv cores", "idle cores"))
    for row in results["throughput"]:
        print("%-8d %10d %14.2f %26s %14.2f %14d %10.2f %10.3f" % (
            row["masters"], row["grants_per_s"], row["server_cpu_us_per_grant"],
            "/".join("%.1f" % x for x in row["server_cpu_us_per_grant_per_master"]),
            row["client_cpu_us_per_grant"], row["grants_per_core_s"], row["server_cores_used"],
            row["idle_server_cores"]))
    print("(server CPU: each master's utime + stime under load less its idle CPU over as long; "
          "grants/core-s: grants over the CPU seconds of servers and clients)")
    if "routing" in results:
        print("\nclient-side routing, %d masters, one pair at a time (acquire + release), "
              "1000 keys, %g s per row; the median of %d rounds by client CPU"
              % (options.routing_masters, options.routing_seconds, options.rounds))
        print("%-56s %10s %16s" % ("client", "µs/pair", "client CPU µs/pair"))
        for row in results["routing"]:
            if "error" in row:
                print("%-56s refused: %s" % (row["client"], row["error"]))
                continue
            print("%-56s %10.1f %16.1f" % (row["client"], row["us_per_pair"],
                                           row["client_cpu_us_per_pair"]))


if __name__ == "__main__":
    sys.exit(main())
