#!/usr/bin/env python3
"""Server instructions per lock + unlock pair, for every kind of hold and for the unsafe floor
(SET NX PX + DEL), counted by callgrind: repeatable on a noisy machine, unlike any timing.

usage: bench/pair_cost.py [--server PATH] [--pairs N] [--batch N] [--kinds K,K,...] [--seeds N]
                          [--server-args ARGS] [--check BOUND_FILE --name SERVER_NAME]
                          [--keep DIR] [--json PATH] MODULE.so

Each kind runs on its own server (redis-server under valgrind --tool=callgrind
--toggle-collect=processCommand: the lookup, ACL, the command itself and its reply, nothing of
the event loop) with `--save "" --appendonly no`, the module loaded in every run. The client
speaks raw RESP and sends N pairs on distinct keys, pipelined: 100 acquires, then their 100
releases, with a 16-byte owner and a 30 s ttl. Every reply is checked (a refused acquire would
measure the wrong thing).

A figure is the difference of two runs, so that what both share cancels out: every run first
fills the keyspace with 1500 keys that outlive it (the tables then never shrink or grow while
pairs run, and `--activerehashing no` leaves all rehashing to commands, in a fixed order), and
kinds that need a key held beforehand subtract the run of that hold alone:
  floor, exclusive, shared, limit, session: minus the run that only fills the keyspace;
  the client-side locks (SET NX PX + redis-py's compare-and-delete script, Redisson's scripts,
  by EVALSHA): minus the run that only loads the scripts and fills the keyspace;
  reentry (the holder acquires again, then releases once): minus the exclusive run;
  shared-beside (a second reader joins one already there): minus the shared run.

Counts repeat to the instruction (to ~0.1% between invocations: the server's once-a-second
cron allocates between commands), because what moved them is fixed: the hash seed (read from
fixed bytes in a private mount namespace, where that is allowed), ASLR (setarch -R), jemalloc's
clock-driven purging, the slowlog, and the length of every path, port and environment variable
the server starts with (its layout in memory moves the allocator's and libc's counts). Each
figure is the mean over --seeds fixed seeds (3), each seed's plain-pair ratio printed.

--check BOUND_FILE --name NAME: measure the floor and the exclusive pair only, print both and
their ratio, and exit 1 if the ratio exceeds the bound the file gives for NAME (a line
`NAME ratio`), 2 when no count could be made (valgrind missing, no bound for NAME).
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEFAULT_SERVER = "/usr/bin/redis-server"
BATCH = 100
# Locks held at once in a run (--batch): acquires are pipelined this many at a time, then
# their releases. The keyspace fill keeps BATCH.
HELD_AT_ONCE = [BATCH]
TTL_MS = 30000
OWNER = b"owner-0123456789"  # 16 bytes, as a client's id with a thread suffix would be
OTHER_OWNER = b"reader-012345678"
PAD_KEYS = 1500
PAD_TTL_MS = 3600 * 1000
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
# The server's whole environment: jemalloc purges by the clock (decay) unless told not to.
SERVER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MALLOC_CONF": JEMALLOC_CONF,
              "JE_MALLOC_CONF": JEMALLOC_CONF}
# The tools, by absolute path (the server's PATH is fixed).
TOOLS = {name: shutil.which(name) or name for name in ("setarch", "valgrind", "unshare", "sh")}


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise SystemExit("the server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise SystemExit("the server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if kind == b"_":
            return None
        raise SystemExit("unexpected reply line %r" % line)

    def pipeline(self, commands):
        self.sock.sendall(b"".join(commands))
        return [self.reply() for _ in commands]

    def call(self, *args):
        return self.pipeline([resp(*args)])[0]


def acquire(key, owner, *options):
    return resp("LOCK.ACQUIRE", key, owner, TTL_MS, *options)


def release(key, owner):
    return resp("LOCK.RELEASE", key, owner)


def is_token(reply):
    return isinstance(reply, int) and not isinstance(reply, bool) and reply > 0


# Each kind: (before its pairs: command per key and its check, or None),
# the pair's acquire and release with their checks, and the run it is measured against.
# The client-side locks' scripts, as bench/src/scripts.rs has them (make bench's other parts).
COMPARE_AND_DELETE = (b'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",'
                      b'KEYS[1]) else return 0 end')
REDISSON_ACQUIRE = (b"if ((redis.call('exists', KEYS[1]) == 0) "
                    b"or (redis.call('hexists', KEYS[1], ARGV[2]) == 1)) then "
                    b"redis.call('hincrby', KEYS[1], ARGV[2], 1); "
                    b"redis.call('pexpire', KEYS[1], ARGV[1]); "
                    b"return nil; "
                    b"end; "
                    b"return redis.call('pttl', KEYS[1]);")
REDISSON_RELEASE = (b"if (redis.call('hexists', KEYS[1], ARGV[3]) == 0) then "
                    b"return nil;"
                    b"end; "
                    b"local counter = redis.call('hincrby', KEYS[1], ARGV[3], -1); "
                    b"if (counter > 0) then "
                    b"redis.call('pexpire', KEYS[1], ARGV[2]); "
                    b"return 0; "
                    b"else "
                    b"redis.call('del', KEYS[1]); "
                    b"redis.call('publish', KEYS[2], ARGV[1]); "
                    b"return 1; "
                    b"end; "
                    b"return nil;")
SCRIPTS = [COMPARE_AND_DELETE, REDISSON_ACQUIRE, REDISSON_RELEASE]


def sha1(script):
    return hashlib.sha1(script).hexdigest()


def exclusive_pair(*options):
    return (lambda k: acquire(k, OWNER, *options), is_token,
            lambda k: release(k, OWNER), lambda r: r == 0)


KINDS = {
    "floor": {
        "label": "floor: SET NX PX + DEL",
        "pair": (lambda k: resp("SET", k, OWNER, "NX", "PX", TTL_MS), lambda r: r == "OK",
                 lambda k: resp("DEL", k), lambda r: r == 1),
        "base": "empty",
    },
    "exclusive": {
        "label": "exclusive: LOCK.ACQUIRE + LOCK.RELEASE",
        "pair": exclusive_pair(),
        "base": "empty",
    },
    "reentry": {
        "label": "reentry: the holder's ACQUIRE (count 2) + RELEASE (count 1)",
        "hold": (lambda k: acquire(k, OWNER), is_token, lambda k: release(k, OWNER),
                 lambda r: r == 0),
        "pair": (lambda k: acquire(k, OWNER), is_token,
                 lambda k: release(k, OWNER), lambda r: r == 1),
        "base": "exclusive",
    },
    "shared": {
        "label": "shared: ACQUIRE SHARED + RELEASE (a free key)",
        "pair": exclusive_pair("SHARED"),
        "base": "empty",
    },
    "shared-beside": {
        "label": "shared beside one reader: a second reader's pair",
        "hold": (lambda k: acquire(k, OTHER_OWNER, "SHARED"), is_token,
                 lambda k: release(k, OTHER_OWNER), lambda r: r == 0),
        "pair": exclusive_pair("SHARED"),
        "base": "shared",
    },
    "limit": {
        "label": "LIMIT 3: ACQUIRE LIMIT 3 + RELEASE (a free key)",
        "pair": exclusive_pair("LIMIT", 3),
        "base": "empty",
    },
    "session": {
        "label": "SESSION: ACQUIRE SESSION + RELEASE (exclusive)",
        "pair": exclusive_pair("SESSION"),
        "base": "empty",
    },
    "several": {
        "label": "several keys: MACQUIRE 2 keys + MRELEASE (a pair of keys)",
        "pair": (lambda k: resp("LOCK.MACQUIRE", 2, k, k + b":b", OWNER, TTL_MS),
                 lambda r: isinstance(r, list) and len(r) == 2 and all(map(is_token, r)),
                 lambda k: resp("LOCK.MRELEASE", 2, k, k + b":b", OWNER),
                 lambda r: r == 2 or r == [0, 0]),
        "base": "empty",
    },
    "bare": {
        "label": "the same API calls, nothing else (bench/modules/bare)",
        "pair": exclusive_pair(),
        "base": "bare-empty",
        "module": "bare",
    },
    "setnx-lua": {
        "label": "client-side: SET NX PX + Lua compare-and-delete",
        "pair": (lambda k: resp("SET", k, OWNER, "NX", "PX", TTL_MS), lambda r: r == "OK",
                 lambda k: resp("EVALSHA", sha1(COMPARE_AND_DELETE), 1, k, OWNER),
                 lambda r: r == 1),
        "base": "scripts",
    },
    "redisson": {
        "label": "client-side: Redisson's acquire + release scripts",
        "pair": (lambda k: resp("EVALSHA", sha1(REDISSON_ACQUIRE), 1, k, TTL_MS, OWNER),
                 lambda r: r is None,
                 lambda k: resp("EVALSHA", sha1(REDISSON_RELEASE), 2, k,
                                b"redisson_lock__channel:{" + k + b"}", "0", TTL_MS, OWNER),
                 lambda r: r == 1),
        "base": "scripts",
    },
}

# Runs that measure nothing themselves: what other runs' pairs are counted against.
BASES = ("empty", "scripts", "bare-empty")
# Runs that load bench/modules/bare (--bare-module) instead of rlock: the least a module
# can do with the API calls of rlock's pair, no bookkeeping.
BARE_RUNS = ("bare", "bare-empty")


# The server seeds its hash tables (the command table among them) from /dev/urandom: a
# command's lookup then costs a different number of compares in each run, up to a few hundred
# instructions per command. Where mount namespaces are allowed (root), the server reads fixed
# bytes instead, and a run counts the same every time; each figure is the mean over a few such
# seeds, so that no one seed's collisions decide it.
SEEDS_ALLOWED = []


def seeds_allowed():
    """Whether a server can be given fixed random bytes here (a private mount namespace)."""
    if not SEEDS_ALLOWED:
        probe = subprocess.run(seed_prefix(0) + ["head", "-c", "4", "/dev/urandom"],
                               capture_output=True, env=SERVER_ENV)
        SEEDS_ALLOWED.append(probe.returncode == 0 and probe.stdout == seed_bytes(0)[:4])
    return SEEDS_ALLOWED[0]


def seed_bytes(seed):
    return hashlib.sha256(b"rlock pair cost seed %d" % seed).digest() * 2


def seed_prefix(seed):
    """A command prefix that runs a command with /dev/urandom reading seed `seed`'s bytes."""
    path = "/tmp/rlock-pair-cost-seed-%d" % seed
    with open(path, "wb") as out:
        out.write(seed_bytes(seed))
    return [TOOLS["unshare"], "--mount", "--propagation", "private", TOOLS["sh"], "-c",
            'mount --bind "$0" /dev/urandom && exec "$@"', path]


def free_port():
    """A free loopback port of five digits (see one_run)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 10000:
            return port


def check_all(replies, check, what):
    for reply in replies:
        if not check(reply):
            raise SystemExit("%s: unexpected reply %r" % (what, reply))


def drive(conn, kind, pairs):
    """The measured commands of one run (nothing for the empty one)."""
    if kind in BASES:
        return
    spec = KINDS[kind]
    make_acquire, acquired, make_release, released = spec["pair"]
    hold = spec.get("hold")
    held = HELD_AT_ONCE[0]
    for first in range(0, pairs, held):
        # The same names in every kind's run (each run is its own server): a key's length
        # moves every hash and compare of it, and a name with the kind's in it made the
        # exclusive pair's keys 4 bytes longer than the floor's.
        keys = [b"lock:%017d" % i for i in range(first, min(pairs, first + held))]
        if hold:
            check_all(conn.pipeline([hold[0](k) for k in keys]), hold[1], kind + " hold")
        check_all(conn.pipeline([make_acquire(k) for k in keys]), acquired, kind + " acquire")
        check_all(conn.pipeline([make_release(k) for k in keys]), released, kind + " release")
        if hold:
            check_all(conn.pipeline([hold[2](k) for k in keys]), hold[3], kind + " unhold")


def wait_ready(log, process):
    for _ in range(1200):
        if process.poll() is not None:
            raise SystemExit("the server under valgrind exited; see " + log)
        if os.path.exists(log) and "Ready to accept" in open(log, errors="replace").read():
            return
        time.sleep(0.05)
    raise SystemExit("the server under valgrind did not start: " + log)


def instructions(server, modules, kind, pairs, keep, extra, seed):
    """processCommand's instructions over a run of `kind` (after the keyspace fill)."""
    module = modules["bare" if kind in BARE_RUNS else "rlock"]
    for _ in range(5):
        total = one_run(server, module, kind, pairs, keep, extra, seed)
        if total is not None:
            return total
    raise SystemExit("the module never saw replication idle in time")


def one_run(server, module, kind, pairs, keep, extra, seed):
    """A run's count, or None if the module still propagated when the run began."""
    # Everything the server is started with has the same length in every run and checkout
    # (the paths, the port's digits, the environment): a process's layout in memory moves
    # with it, and with the layout what the allocator and libc's string functions count.
    workdir = tempfile.mkdtemp(prefix="rlock-pair-", dir="/tmp")
    port = free_port()
    out = os.path.join(workdir, "callgrind.out")
    log = os.path.join(workdir, "server.log")
    linked_server = os.path.join(workdir, "server")
    linked_module = os.path.join(workdir, "rlock.so")
    os.symlink(os.path.abspath(server), linked_server)
    os.symlink(module, linked_module)
    seeded = seed_prefix(seed) if seeds_allowed() else []
    args = seeded + [TOOLS["setarch"], "-R", TOOLS["valgrind"], "--tool=callgrind",
            "--toggle-collect=processCommand", "--callgrind-out-file=" + out, linked_server,
            "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
            "--save", "", "--appendonly", "no", "--activerehashing", "no",
            "--jemalloc-bg-thread", "no", "--hz", "1", "--slowlog-log-slower-than", "-1",
            "--daemonize", "no", "--logfile", log, *extra, "--loadmodule", linked_module]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=SERVER_ENV)
    try:
        wait_ready(log, process)
        conn = Connection(port)
        # Nothing listens to propagated changes (no AOF, no save points, no replica): the
        # module learns the last from INFO a second after it loads; until then it propagates.
        # One INFO per run, so that every run counts the same commands: a run that asked too
        # early is thrown away.
        # (With save points or an AOF it never is: then only the INFO is made, for the same
        # commands in every run.)
        time.sleep(1.5)
        idle = b"lock_replication_idle:1" in conn.call("INFO", "lock")
        if not idle and not extra and kind not in BARE_RUNS:
            return None
        # The client-side kinds and their base load the scripts (loading cancels out); no
        # other run does, so that their counts never depend on which kinds are measured.
        if kind == "scripts" or KINDS.get(kind, {}).get("base") == "scripts":
            check_all(conn.pipeline([resp("SCRIPT", "LOAD", script) for script in SCRIPTS]),
                      lambda r: r in [sha1(script).encode() for script in SCRIPTS],
                      "SCRIPT LOAD")
        for first in range(0, PAD_KEYS, BATCH):
            check_all(conn.pipeline([resp("SET", b"pad:%05d" % i, b"x" * 16, "PX", PAD_TTL_MS)
                                     for i in range(first, first + BATCH)]),
                      lambda r: r == "OK", "keyspace fill")
        # One lock taken and released in every run: rlock subscribes to expiry events when
        # the first lock goes (events.rs), and from then on every keyspace event on the server
        # walks that subscription, the floor's too. Both sides are counted in that state, the
        # state of a server whose locks are in use (bench/command_tax.py shows both).
        check_all(conn.pipeline([acquire(b"pad:lock", OWNER), release(b"pad:lock", OWNER)]),
                  lambda r: r == 0 or is_token(r), "the first lock")
        drive(conn, kind, pairs)
        conn.sock.close()
        # SIGTERM: the server shuts down outside processCommand and callgrind writes its file.
        process.send_signal(signal.SIGTERM)
        process.wait()
        total = callgrind_total(out)
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(out, os.path.join(keep, "callgrind.%s.%d.out" % (kind, seed)))
        return total
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def callgrind_total(path):
    """The instructions a callgrind file counted."""
    text = open(path).read()
    return int(re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M).group(1))


def measure(server, modules, kinds, pairs, keep, extra, seeds):
    """Instructions per pair of each kind (the mean over `seeds` seeds), and each seed's."""
    needed = []

    def need(kind):
        if kind in needed:
            return
        if kind not in BASES:
            need(KINDS[kind]["base"])
        needed.append(kind)

    for kind in kinds:
        need(kind)
    # Two servers at a time: counts do not depend on timing, only the wall clock does.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = {(kind, seed): pool.submit(instructions, server, modules, kind, pairs, keep, extra,
                                          seed)
                for seed in range(seeds) for kind in needed}
        totals = {key: run.result() for key, run in runs.items()}
    by_seed = [{kind: (totals[kind, seed] - totals[KINDS[kind]["base"], seed]) / pairs
                for kind in kinds} for seed in range(seeds)]
    per_pair = {kind: sum(one[kind] for one in by_seed) / seeds for kind in kinds}
    return per_pair, by_seed


def server_version(server):
    text = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    return " ".join(text.split()[:3])


def server_name(server):
    """"redis-server 7.0.15" from "Redis server v=7.0.15 sha=...", as the charts say it."""
    words = subprocess.run([server, "--version"], capture_output=True, text=True).stdout.split()
    product = words[0].lower() if words else "server"
    version = next((w[2:] for w in words if w.startswith("v=")), "unknown version")
    return "%s-server %s" % (product, version)


def write_json(path, server, pairs, kinds, per_pair, seeds):
    """Instructions per pair by kind (the floor among them), the server and the date."""
    results = {
        "server": server_name(server),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "pairs_per_run": pairs,
        "seeds": seeds,
        "pairs": [{"kind": kind, "label": KINDS[kind]["label"], "instructions": per_pair[kind]}
                  for kind in kinds],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as out:
        json.dump(results, out, indent=1)
        out.write("\n")
    print("results as JSON: %s" % path)


def read_bound(path, name):
    """The ratio the file gives for server `name`, or None."""
    for line in open(path):
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] == name:
            return float(fields[1])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seeds", type=int, default=3,
                        help="hash seeds to average over (each one run per kind)")
    parser.add_argument("--check", metavar="BOUND_FILE")
    parser.add_argument("--name", help="the server's line in BOUND_FILE (redis-7.0, ...)")
    parser.add_argument("--keep", metavar="DIR", help="keep each run's callgrind file there")
    parser.add_argument("--server-args", default="", metavar="ARGS",
                        help='more server arguments, e.g. "--save \'3600 1\'" or '
                             '"--appendonly yes" (then the module propagates)')
    parser.add_argument("--batch", type=int, default=BATCH, metavar="N",
                        help="locks held at once: N acquires pipelined, then their N releases "
                             "(default %d)" % BATCH)
    parser.add_argument("--bare-module", metavar="PATH",
                        help="bench/modules/bare's build, for the bare row (default: "
                             "librlock_bench_bare.so beside MODULE; the row is left out "
                             "without it)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the instructions per pair there, for rlock-bench charts")
    options = parser.parse_args()
    options.module = os.path.abspath(options.module)
    HELD_AT_ONCE[0] = max(1, options.batch)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    bound = None
    if options.check:
        bound = read_bound(options.check, options.name)
        if bound is None:
            print("no bound for %r in %s" % (options.name, options.check), file=sys.stderr)
            return 2
    bare = options.bare_module or os.path.join(os.path.dirname(options.module),
                                               "librlock_bench_bare.so")
    modules = {"rlock": options.module, "bare": os.path.abspath(bare)}
    if options.check:
        kinds = ["floor", "exclusive"]
    else:
        kinds = options.kinds.split(",")
        if not os.path.exists(modules["bare"]) and "bare" in kinds:
            print("no %s: the bare row is left out (cargo build --release -p "
                  "rlock-bench-bare)" % modules["bare"], file=sys.stderr)
            kinds.remove("bare")
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit("unknown kind %r (known: %s)" % (kind, ", ".join(KINDS)))
    seeded = seeds_allowed()
    started = time.time()
    extra = tuple(shlex.split(options.server_args))
    per_pair, by_seed = measure(options.server, modules, kinds, options.pairs,
                                options.keep, extra, max(1, options.seeds))
    floor = per_pair.get("floor")
    print("server instructions per pair (callgrind, processCommand inclusive; %s; %d pairs "
          "on distinct keys, pipelined %d acquires then their %d releases)"
          % (server_version(options.server), options.pairs, options.batch, options.batch))
    print("each figure: the mean over %d server hash seeds" % len(by_seed))
    if extra:
        print("server arguments added: %s" % " ".join(extra))
    plain = per_pair.get("exclusive")
    print("%-62s %12s %9s %14s" % ("pair", "instructions", "vs floor", "over exclusive"))
    for kind in kinds:
        ratio = "%.3fx" % (per_pair[kind] / floor) if floor else ""
        over = ""
        if plain and kind not in ("floor", "exclusive", "bare"):
            over = "%+.0f" % (per_pair[kind] - plain)
        print("%-62s %12.0f %9s %14s" % (KINDS[kind]["label"], per_pair[kind], ratio, over))
    if floor and plain:
        print("the plain pair per seed: " + "  ".join(
            "%.3fx" % (one["exclusive"] / one["floor"]) for one in by_seed))
    print("(%.0f s)" % (time.time() - started))
    if options.json:
        write_json(options.json, options.server, options.pairs, kinds, per_pair, len(by_seed))
    if not seeded:
        print("note: no private mount namespace here (not root?): each run's hash seed is "
              "random, and counts vary by up to a few hundred instructions per pair")
    if bound is not None:
        ratio = per_pair["exclusive"] / floor
        if ratio > bound:
            print("FAIL: the plain pair costs %.3fx the floor (%.0f against %.0f instructions), "
                  "above the bound %.2fx in %s" % (ratio, per_pair["exclusive"], floor, bound,
                                                    options.check))
            return 1
        print("ok: the plain pair costs %.3fx the floor (%.0f against %.0f instructions), "
              "within the bound %.2fx in %s" % (ratio, per_pair["exclusive"], floor, bound,
                                                 options.check))
    return 0


if __name__ == "__main__":
    sys.exit(main())
