#!/usr/bin/env python3
"""What loading rlock costs every other command: server instructions per SET, GET, INCR, HSET,
EXPIRE, SET + DEL and a MULTI/EXEC of them (callgrind, counting processCommand and everything
under it), side by side, per server: without any module; with bench/modules/names, which
registers rlock's command names and nothing else; with rlock loaded and no lock ever taken;
with locks in use (50 held, 50 taken and released before; the other columns have 50 plain
keys with a ttl under the same names); and with locks in use after one lock expired (the
server unlinked it).

usage: bench/command_tax.py [--server PATH ...] [--names NAMES.so] MODULE.so
       (needs valgrind; a few minutes per server; without --server: Redis 7.0 and, when
       target/servers/list names it, Valkey 9.1; NAMES.so defaults to the build of
       `cargo build --release -p rlock-bench-names`)

Why the names-only column: a module's commands enter the server's command table, and which
names share a bucket under the fixed hash seed moves the cost of a command's lookup (and of
EXPIRE's lookup of the PEXPIREAT it propagates) by tens of instructions, up or down, whatever
the module does. rlock's own cost is its columns against "names"; the "extra" of "names" is the
command table's.

Each figure is a difference of two server runs (5 and 15 rounds over the same 1000 keys), so
start-up, the first round's inserts and table growth cancel out; the client speaks raw RESP,
so no command but the measured ones reaches the server. The server runs as bench/pair_cost.py
runs it (a fixed hash seed where mount namespaces are allowed, no ASLR, no clock-driven
purging in jemalloc, hz 1, no slowlog, paths of one length), so runs repeat to within a few
instructions; without the fixed seed a command's table lookups differ from run to run by up
to ~150 instructions.
"""
import argparse
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
import pair_cost  # noqa: E402  (the repeatable server set-up)
from pair_cost import resp  # noqa: E402

KEYS = 1000
FEW, MANY = 5, 15
LOCKS_HELD = 50


def unit(name, i):
    """The commands of one measured unit on key number i."""
    key = b"key:%08d" % i
    if name == "SET":
        return [resp("SET", key, "value-01")]
    if name == "GET":
        return [resp("GET", key)]
    if name == "INCR":
        return [resp("INCR", b"n:" + key)]
    if name == "HSET":
        return [resp("HSET", b"h:" + key, "field", "value-01")]
    if name == "EXPIRE":
        return [resp("EXPIRE", key, 3600)]
    if name == "SET+DEL":
        return [resp("SET", b"d:" + key, "value-01"), resp("DEL", b"d:" + key)]
    if name == "MULTI/EXEC":
        return [resp("MULTI"), resp("SET", key, "value-01"), resp("GET", key),
                resp("INCR", b"n:" + key), resp("HSET", b"h:" + key, "field", "value-01"),
                resp("EXPIRE", key, 3600), resp("SET", b"d:" + key, "value-01"),
                resp("DEL", b"d:" + key), resp("EXEC")]
    raise SystemExit("unknown unit " + name)


# Each unit, and the units run before its rounds in both runs (so that GET finds values).
UNITS = [("SET", []), ("GET", ["SET"]), ("INCR", []), ("HSET", []), ("EXPIRE", ["SET"]),
         ("SET+DEL", []), ("MULTI/EXEC", [])]
# Without any module; with bench/modules/names registering rlock's command names and nothing
# else (the command table as with rlock: which names share a bucket under the fixed hash seed
# moves a lookup's cost by tens of instructions either way, and so does EXPIRE's lookup of the
# PEXPIREAT it propagates, whatever the module does); with rlock and no lock ever taken; with
# locks in use; and the same after a lock expired (the server unlinked it: Redis 7.0
# subscribes to "expired" events then). rlock's own cost is its columns against "names".
SETUPS = ("none", "names", "loaded", "locks", "expired")


def prepare(conn, setup):
    """The keyspace before the rounds: LOCKS_HELD keys with a ttl under the same names in
    every setup (a key with a ttl makes every command look at the expiry table, which is not
    rlock's cost), taken as locks in "locks" (and as many more taken and released, so that a
    lock was unlinked), set as strings with PX in the others (and as many set and deleted)."""
    names = [b"lock:%04d" % i for i in range(2 * LOCKS_HELD)]
    if setup == "expired":
        expiring = b"lock:expiring"
        pair_cost.check_all(conn.pipeline([resp("LOCK.ACQUIRE", expiring, pair_cost.OWNER, 1)]),
                            pair_cost.is_token, "taking the expiring lock")
        time.sleep(0.05)
        # EXISTS finds it expired (the server expires it lazily) and answers 0.
        pair_cost.check_all(conn.pipeline([resp("EXISTS", expiring)]), lambda r: r == 0,
                            "expiring")
    if setup in ("locks", "expired"):
        take = [pair_cost.acquire(k, pair_cost.OWNER) for k in names]
        drop = [pair_cost.release(k, pair_cost.OWNER) for k in names[LOCKS_HELD:]]
        taken, dropped = pair_cost.is_token, (lambda r: r == 0)
    else:
        take = [resp("SET", k, pair_cost.OWNER, "PX", pair_cost.TTL_MS) for k in names]
        drop = [resp("DEL", k) for k in names[LOCKS_HELD:]]
        taken, dropped = (lambda r: r == "OK"), (lambda r: r == 1)
    pair_cost.check_all(conn.pipeline(take), taken, "taking")
    pair_cost.check_all(conn.pipeline(drop), dropped, "dropping")


def instructions(server, modules, setup, rounds, seed):
    """processCommand's instructions over `rounds` (unit names) on KEYS keys each."""
    # Paths, port and environment of the same length in every run (see pair_cost.one_run).
    workdir = tempfile.mkdtemp(prefix="rlock-tax-", dir="/tmp")
    out = os.path.join(workdir, "callgrind.out")
    log = os.path.join(workdir, "server.log")
    linked_server = os.path.join(workdir, "server")
    os.symlink(os.path.abspath(server), linked_server)
    port = pair_cost.free_port()
    seeded = pair_cost.seed_prefix(seed) if pair_cost.seeds_allowed() else []
    args = seeded + [pair_cost.TOOLS["setarch"], "-R", pair_cost.TOOLS["valgrind"],
                     "--tool=callgrind", "--toggle-collect=processCommand",
                     "--callgrind-out-file=" + out, linked_server, "--port", str(port),
                     "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
                     "--appendonly", "no", "--activerehashing", "no",
                     "--jemalloc-bg-thread", "no", "--hz", "1",
                     "--slowlog-log-slower-than", "-1", "--daemonize", "no", "--logfile", log]
    if setup == "names":
        linked_module = os.path.join(workdir, "names.so")
        os.symlink(modules["names"], linked_module)
        args += ["--loadmodule", linked_module] + modules["commands"]
    elif setup != "none":
        linked_module = os.path.join(workdir, "rlock.so")
        os.symlink(modules["rlock"], linked_module)
        args += ["--loadmodule", linked_module]
    server_process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=pair_cost.SERVER_ENV)
    try:
        pair_cost.wait_ready(log, server_process)
        conn = pair_cost.Connection(port)
        prepare(conn, setup)
        for name in rounds:
            for first in range(0, KEYS, 100):
                commands = [c for i in range(first, first + 100) for c in unit(name, i)]
                pair_cost.check_all(conn.pipeline(commands),
                                    lambda r: not isinstance(r, RuntimeError), name)
        conn.sock.close()
        # SIGTERM: the server shuts down outside processCommand and callgrind writes its file.
        server_process.send_signal(signal.SIGTERM)
        server_process.wait()
        return pair_cost.callgrind_total(out), module_hooks(out)
    finally:
        if server_process.poll() is None:
            server_process.kill()
            server_process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# The server functions through which any module's hooks run for a command that is not the
# module's (none calls another): the walk of keyspace subscribers, the key-unlink notice (with
# its KEY server event on Redis 7.2+ and Valkey, which walks every server-event listener) and
# the command filters. Their cost does not move with the command table's layout.
HOOKS = ("moduleNotifyKeyspaceEvent", "moduleNotifyKeyUnlink", "moduleCallCommandFilters")


def module_hooks(out):
    """The instructions of HOOKS and everything under them in a callgrind file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                          check=True, capture_output=True, text=True).stdout
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and any(fields[-2].endswith(":" + hook) for hook in HOOKS):
            total += int(fields[0].replace(",", ""))
    return total


def per_unit(server, modules, setup, name, before, seed, pool):
    """(instructions, of which module hooks) per unit: the difference of two runs' counts."""
    few = pool.submit(instructions, server, modules, setup, before + [name] * FEW, seed)
    many = pool.submit(instructions, server, modules, setup, before + [name] * MANY, seed)
    units = (MANY - FEW) * KEYS
    return lambda: tuple((m - f) / units for m, f in zip(many.result(), few.result()))


def module_commands(server, module):
    """The command names `module` registers, in the order it registers them (LOCK.HELP's, then
    the internal ones HELP leaves out), asked of a server that loads it (not under valgrind):
    the order decides where each lands in the command table."""
    workdir = tempfile.mkdtemp(prefix="rlock-tax-names-", dir="/tmp")
    log = os.path.join(workdir, "server.log")
    port = pair_cost.free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                                workdir, "--save", "", "--appendonly", "no", "--daemonize", "no",
                                "--logfile", log, "--loadmodule", module],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pair_cost.wait_ready(log, process)
        conn = pair_cost.Connection(port)
        lines = conn.call("LOCK.HELP")
        listed = conn.call("COMMAND", "LIST", "FILTERBY", "MODULE", "lock")
        conn.sock.close()
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    def text(item):
        return item.decode() if isinstance(item, bytes) else str(item)

    help_lines = [text(line) for line in lines]
    names = [line.split()[0].lower() for line in help_lines
             if line.startswith("LOCK.") and not line.startswith("LOCK.<")]
    registered = sorted(text(name) for name in listed)
    if not set(names) <= set(registered):
        raise SystemExit("LOCK.HELP lists %r, the server %r" % (names, registered))
    # The internal commands (LOCK.APPLY, LOCK.TOKENS) are registered last, unlisted by HELP.
    return names + [name for name in registered if name not in names]


def table(server, modules):
    modules = dict(modules, commands=module_commands(server, modules["rlock"]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pending = {(name, setup): per_unit(server, modules, setup, name, before, 0, pool)
                   for name, before in UNITS for setup in SETUPS}
        counts = {key: result() for key, result in pending.items()}
    print("%s: server instructions per command (callgrind, processCommand inclusive);"
          % pair_cost.server_version(server))
    print("'names': a module registering rlock's %d command names and nothing else; rlock's "
          "own cost is its columns against it" % len(modules["commands"]))
    print_rows(counts, 0, against_names=True)
    print("of which in the server's module hooks (%s, inclusive): layout-free, what any "
          "module's hooks cost the command" % ", ".join(HOOKS))
    print_rows(counts, 1, against_names=False)


def print_rows(counts, index, against_names):
    """One table: figure `index` of each unit's counts per setup, rlock's setups against the
    names-only module's (all of processCommand) or against no module (the hooks, which the
    names-only module has none of)."""
    print("%-11s %9s %9s %6s | %9s %6s | %9s %6s | %9s %6s"
          % ("command", "no module", "names", "extra", "loaded", "+rlock", "locks used",
             "+rlock", "an expiry", "+rlock"))
    for name, _ in UNITS:
        none, names, loaded, locks, expired = (counts[name, setup][index] for setup in SETUPS)
        base = names if against_names else none
        print("%-11s %9.0f %9.0f %+6.0f | %9.0f %+6.0f | %9.0f %+6.0f | %9.0f %+6.0f"
              % (name, none, names, names - none, loaded, loaded - base, locks, locks - base,
                 expired, expired - base))


def default_names_module():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                        "librlock_bench_names.so")


def default_servers():
    """Redis 7.0, and Valkey 9.1 if `make servers` built it (target/servers/list)."""
    servers = [pair_cost.DEFAULT_SERVER]
    listed = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target",
                          "servers", "list")
    if os.path.exists(listed):
        for line in open(listed):
            fields = line.split()
            if len(fields) == 2 and fields[0] == "valkey-9.1":
                servers.append(fields[1])
    return servers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module")
    parser.add_argument("--server", action="append",
                        help="a server binary (repeatable; default: Redis 7.0 and Valkey 9.1)")
    parser.add_argument("--names", help="the names-only module (default: "
                                         "target/release/librlock_bench_names.so)")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not pair_cost.seeds_allowed():
        print("note: no private mount namespace here: counts vary by up to ~150 a command")
    modules = {"rlock": os.path.abspath(options.module),
               "names": os.path.abspath(options.names or default_names_module())}
    if not os.path.exists(modules["names"]):
        print("no %s: cargo build --release -p rlock-bench-names" % modules["names"],
              file=sys.stderr)
        return 2
    for server in options.server or default_servers():
        table(server, modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
