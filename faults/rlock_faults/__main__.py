"""The fault suite's driver: for each topology of the plan, start it, run the workers and the
nemesis, heal, probe liveness, compare digests, scan logs; then check every history offline
and print and write the report.

  python -m rlock_faults --repo DIR [--short] [--seed N] [--only NAME[,NAME]] [--out DIR]
Exit status: 0 when every check that must hold held, 1 when one failed, 2 on a harness error.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checker, docker, report
from .commands import command
from .nemesis import Nemesis, liveness_probe
from .topology import ClusterTopology, SentinelTopology, Topology
from .workload import run_worker

FAULTS_IMAGE = "rlock:faults"


@dataclass(frozen=True)
class Phase:
    """One topology under one persistence setting, with its workload and schedule sizes."""

    topology: str  # "sentinel" or "cluster"
    persistence: str
    replicas: int
    episodes: int
    workers: int = 6
    hold: tuple[float, float] = (3.0, 7.0)
    quiet: tuple[float, float] = (1.5, 3.0)

    @property
    def name(self) -> str:
        return f"{self.topology}/{self.persistence}" + (
            f"/replicas={self.replicas}" if self.replicas else ""
        )


FULL_PLAN = [
    Phase("sentinel", "rdb", 0, episodes=16),
    Phase("sentinel", "aof-everysec", 0, episodes=16),
    Phase("sentinel", "aof-always", 1, episodes=16),
    Phase("cluster", "aof-everysec", 0, episodes=18),
    Phase("cluster", "aof-always", 1, episodes=18),
]
SHORT_PLAN = [
    Phase("sentinel", "aof-always", 1, episodes=4, workers=4, hold=(2.5, 3.5), quiet=(1.0, 1.0)),
    Phase("cluster", "aof-everysec", 0, episodes=3, workers=4, hold=(2.5, 3.5), quiet=(1.0, 1.0)),
]
SHORT_SEED = 23


def build_image(repo: Path, base: str) -> None:
    """rlock:faults: the image of `make image` plus clockskew.so (compiled here with cc)."""
    context = repo / "target" / "faults-image"
    context.mkdir(parents=True, exist_ok=True)
    source = repo / "faults" / "image" / "clockskew.c"
    subprocess.run(
        [
            "cc",
            "-O2",
            "-shared",
            "-fPIC",
            "-Wall",
            "-o",
            str(context / "clockskew.so"),
            str(source),
        ],
        check=True,
    )
    shutil.copy(repo / "faults" / "image" / "Dockerfile", context / "Dockerfile")
    docker.docker(
        "build", "-q", "--build-arg", f"BASE={base}", "-t", FAULTS_IMAGE, str(context), timeout=600
    )


def start_register(run_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = run_dir / "register.port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlock_faults.register",
            str(run_dir / "register.jsonl"),
            str(port_file),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    for _ in range(200):
        if port_file.exists():
            return process, int(port_file.read_text())
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the register did not start")


def make_topology(phase: Phase, rng: random.Random) -> Topology:
    if phase.topology == "sentinel":
        return SentinelTopology(FAULTS_IMAGE, phase.persistence, phase.replicas, rng)
    return ClusterTopology(FAULTS_IMAGE, phase.persistence, phase.replicas, rng)


def run_phase(phase: Phase, seed: int, run_dir: Path) -> None:
    """Runs one phase; everything it learns goes to files under run_dir."""
    rng = random.Random(f"{seed}/{phase.name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(f"=== {phase.name}: starting the topology", flush=True)
    topology = make_topology(phase, rng)
    register, register_port = start_register(run_dir)
    try:
        _drive(phase, seed, run_dir, topology, rng, register_port, started)
    finally:
        register.terminate()
        register.wait(timeout=10)
        docker.remove_all()


def _drive(
    phase: Phase,
    seed: int,
    run_dir: Path,
    topology: Topology,
    rng: random.Random,
    register_port: int,
    started: float,
) -> None:
    """The workers and the nemesis on a started topology, then the final checks."""
    stop = multiprocessing.Event()
    workers = [
        multiprocessing.Process(
            target=run_worker,
            args=(
                i,
                topology.client_spec(),
                register_port,
                phase.replicas,
                seed,
                str(run_dir / f"history-c{i}.jsonl"),
                stop,
            ),
            daemon=True,
        )
        for i in range(phase.workers)
    ]
    for worker in workers:
        worker.start()
    nemesis = Nemesis(
        topology, rng, str(run_dir / "nemesis.jsonl"), [w.pid for w in workers if w.pid]
    )
    final: dict[str, Any] = {
        "phase": phase.name,
        "persistence": phase.persistence,
        "replicas": phase.replicas,
        "seed": seed,
    }
    try:
        time.sleep(3)  # warm-up without faults
        for number in range(1, phase.episodes + 1):
            nemesis.episode(number, rng.uniform(*phase.hold), rng.uniform(*phase.quiet))
            print(
                f"  episode {number}/{phase.episodes} done ({time.time() - started:.0f} s)",
                flush=True,
            )
        nemesis.record("final-heal")
        nemesis.heal_all()
        topology.wait_healthy(timeout=120)
        time.sleep(3)  # the quiet period after the final heal
        nemesis.record("quiet-end")
    finally:
        stop.set()
        nemesis.heal_all()
        for worker in workers:
            if worker.pid:
                os.kill(worker.pid, signal.SIGCONT)
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
        nemesis.close()
    final["liveness_s"] = liveness_probe(topology, bound_s=60.0)
    final["digests"] = compare_digests(topology)
    final["crash_lines"] = scan_logs(topology, run_dir)
    final["duration_s"] = round(time.time() - started, 1)
    (run_dir / "final.json").write_text(json.dumps(final, indent=1))


def compare_digests(topology: Topology) -> list[dict[str, Any]]:
    """DEBUG DIGEST of every master and its replicas, once the replicas caught up (WAIT)."""
    results = []
    for master, replicas in topology.replica_sets():
        m = master.client(10)
        command(m, "WAIT", len(replicas), 10000)
        time.sleep(0.5)
        entry: dict[str, Any] = {
            "master": master.name,
            "digest": command(m, "DEBUG", "DIGEST"),
            "keys": m.dbsize(),
            "replicas": {},
        }
        for replica in replicas:
            entry["replicas"][replica.name] = command(replica.client(10), "DEBUG", "DIGEST")
        entry["equal"] = all(d == entry["digest"] for d in entry["replicas"].values())
        results.append(entry)
    return results


CRASH_PATTERNS = (
    "REDIS BUG REPORT",
    "ASSERTION FAILED",
    "crashed by signal",
    "panicked",
    "Guru Meditation",
    "Segmentation fault",
)


def scan_logs(topology: Topology, run_dir: Path) -> list[str]:
    """Keeps every server's and Sentinel's log; returns the lines that tell of a crash."""
    lines = []
    servers = list(topology.servers) + list(getattr(topology, "sentinels", []))
    for server in servers:
        text = server.logs()
        (run_dir / f"{server.name.split('-')[-1]}.log").write_text(text)
        lines += [
            f"{server.name}: {line}"
            for line in text.splitlines()
            if any(p in line for p in CRASH_PATTERNS)
        ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--short", action="store_true", help="the short run of `make test`")
    parser.add_argument("--seed", type=int, help="replay a run (default: random; short: 23)")
    parser.add_argument(
        "--only", help="comma-separated phase names to run (e.g. cluster/aof-everysec)"
    )
    parser.add_argument("--episodes", type=int, help="episodes per phase (default: the plan's)")
    parser.add_argument("--out", type=Path, help="where histories and the report go")
    parser.add_argument("--base", default=os.environ.get("RLOCK_IMAGE", "rlock:test"))
    parser.add_argument("--check-only", action="store_true", help="re-check the histories in --out")
    args = parser.parse_args()

    seed = (
        args.seed
        if args.seed is not None
        else (SHORT_SEED if args.short else random.randrange(10**6))
    )
    plan = SHORT_PLAN if args.short else FULL_PLAN
    if args.only:
        plan = [p for p in plan if p.name in args.only.split(",")]
    if args.episodes:
        plan = [
            Phase(p.topology, p.persistence, p.replicas, args.episodes, p.workers, p.hold, p.quiet)
            for p in plan
        ]
    out = args.out or args.repo / "target" / "faults" / ("short" if args.short else f"seed-{seed}")
    rerun = f"faults/run{' --short' if args.short else ''} --seed {seed}"
    print(f"faults: seed {seed} (replay: {rerun}), results in {out}", flush=True)

    if not args.check_only:
        docker.install_cleanup()
        build_image(args.repo, args.base)
        shutil.rmtree(out, ignore_errors=True)
        started = time.time()
        try:
            for phase in plan:
                run_phase(phase, seed, out / phase.name.replace("/", "_"))
        finally:
            docker.remove_all()
        (out / "run.json").write_text(
            json.dumps(
                {
                    "seed": seed,
                    "short": args.short,
                    "rerun": rerun,
                    "duration_s": round(time.time() - started, 1),
                }
            )
        )
    results = [checker.check_phase(out / p.name.replace("/", "_")) for p in plan]
    text, ok = report.render(results, seed, rerun, out)
    print(text)
    (out / "report.md").write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    sys.exit(main())
