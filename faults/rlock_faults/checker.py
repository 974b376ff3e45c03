"""The offline checker: reads a phase's recorded history and knows nothing of rlock's code.

Inputs (one phase directory): the workers' histories (history-c*.jsonl: invoke, grant, fail,
register, release, with the clients' clock), the register's log (register.jsonl, in the order
it decided), the nemesis' log (nemesis.jsonl) and final.json (liveness, digests, crash lines).

Checks, per fault episode (an operation belongs to the episode during which it was invoked):
1. fencing: the register's accepted writes per key carry rising tokens (an equal token only
   from the same hold), so no write was accepted from a holder behind a later-token writer;
2. overlaps: holds that overlapped in the clients' view (from grant to the start of release),
   beyond what the kind allows (exclusive: 1 holder; shared key: readers together or one
   writer; LIMIT 2: 2 holders), counted; expected under pauses and oversleeping;
3. acknowledged grants lost: a hold certainly valid (from its grant's reply to its request
   time plus ttl, less a clock-skew margin, or to its release) when another conflicting hold
   was granted, or whose release found it gone before its ttl ran out; split into losses
   across nodes (another node granted the key meanwhile: a failover or split brain) and on
   one node (no other node granted it: a restart's lost data, or mutual exclusion broken);
4. token repeats: two holds of a key with the same token; and token order: a hold granted
   after another's grant was acknowledged must carry a higher token;
5. liveness after the final heal, and time to recover after each heal (first grant per key);
6. crash lines in the servers' logs; replicas' digests equal to their master's.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .workload import LIMIT, LIMIT_KEY, SHARED_KEY

CAPACITY = {"exclusive": 1, "session": 1, "writer": 1, "reader": 1, "limit": LIMIT}
MARGIN_S = 0.05  # the clients' and servers' scheduling slack in the "certainly valid" window
# How long after the nemesis writes a clock offset a server may still run on the old one: the
# image's clockskew shim rereads its offset file at most every 100 ms (faults/image/clockskew.c),
# plus scheduling slack. A skew that ends jumps the clock, and holds granted just before the
# server saw the jump lose that much of their lease.
SKEW_TAKES_EFFECT_S = 0.25


@dataclass
class Op:
    opid: str
    client: str
    key: str
    kind: str
    ttl: float
    t_invoke: float
    node: str = ""
    token: int | None = None
    t_grant: float | None = None
    error: str | None = None
    write: str | None = None  # "accepted", "refused", "error", None (no write)
    t_release: float | None = None
    t_released: float | None = None  # when the release's reply came
    release: str | None = None
    episode: int = 0
    skew_s: float = 0.0

    @property
    def granted(self) -> bool:
        return self.token is not None and self.t_grant is not None

    def seen_end(self) -> float:
        """The end of the hold in the client's view: the start of its release."""
        assert self.t_grant is not None
        return self.t_release if self.t_release is not None else self.t_invoke + self.ttl

    def certain_end(self) -> float:
        """Until when the hold was surely valid on the server (the same host clock)."""
        end = self.t_invoke + self.ttl - MARGIN_S - self.skew_s
        return min(end, self.t_release) if self.t_release is not None else end


@dataclass
class Episode:
    number: int
    kind: str
    start: float
    healed: float | None = None
    end: float | None = None
    injected: bool = True
    stats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recovery_s: float | None = None


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
    return rows


def load_ops(phase_dir: Path) -> list[Op]:
    ops: dict[str, Op] = {}
    for path in sorted(phase_dir.glob("history-c*.jsonl")):
        for row in _read(path):
            ev, opid = row["ev"], row["opid"]
            if ev == "invoke":
                ops[opid] = Op(
                    opid,
                    row["client"],
                    row["key"],
                    row["kind"],
                    row["ttl"],
                    row["t"],
                    node=row.get("node", ""),
                )
            elif opid not in ops:
                continue
            elif ev == "grant":
                ops[opid].token, ops[opid].t_grant = int(row["token"]), row["t"]
            elif ev == "fail":
                ops[opid].error = row["error"]
            elif ev == "register":
                accepted = row.get("accepted")
                ops[opid].write = (
                    "error" if accepted is None else ("accepted" if accepted else "refused")
                )
            elif ev == "release":
                ops[opid].t_release, ops[opid].release = row["t_start"], row["outcome"]
                ops[opid].t_released = row["t"]
    return sorted(ops.values(), key=lambda o: o.t_invoke)


def load_episodes(nemesis: list[dict[str, Any]]) -> list[Episode]:
    episodes: list[Episode] = [Episode(0, "none (warm-up, final quiet)", 0.0)]
    for row in nemesis:
        if row["ev"] == "episode":
            episodes.append(Episode(row["number"], row["kind"], row["t"]))
        elif row["ev"] == "healed" and len(episodes) > 1:
            episodes[-1].healed = row["t"]
        elif row["ev"] == "episode-end" and len(episodes) > 1:
            episodes[-1].end = row["t"]
        elif row["ev"] == "inject" and len(episodes) > 1:
            episodes[-1].stats["faults"] += 1
        elif row["ev"] == "inject-failed" and len(episodes) > 1:
            episodes[-1].injected = False
            episodes[-1].stats["inject_failed"] += 1
    return episodes


def skew_windows(nemesis: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """(start, end, |offset| s) of every clock skew the nemesis set, the end being when the
    server surely runs on the next offset (SKEW_TAKES_EFFECT_S after it was written)."""
    windows: list[tuple[float, float, float]] = []
    open_at: dict[str, tuple[float, float]] = {}
    for row in nemesis:
        if row["ev"] != "clock":
            continue
        server, offset = row["server"], abs(float(row["offset_s"]))
        if server in open_at:
            start, size = open_at.pop(server)
            windows.append((start, row["t"] + SKEW_TAKES_EFFECT_S, size))
        if offset:
            open_at[server] = (row["t"], offset)
    windows += [(start, float("inf"), size) for start, size in open_at.values()]
    return windows


def _episode_of(episodes: list[Episode], t: float) -> Episode:
    current = episodes[0]
    for episode in episodes[1:]:
        if episode.start <= t and (episode.end is None or t < episode.end):
            return episode
        if episode.start > t:
            break
    return current


def _conflicts(a: Op, b: Op) -> bool:
    """Whether two holds of one key may not be held at once."""
    if a.key == LIMIT_KEY:
        return False  # counted by capacity, not pairwise
    if a.key == SHARED_KEY:
        return not (a.kind == "reader" and b.kind == "reader")
    return True


def _overlapping(ops: list[Op], end: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Pairs of conflicting holds of one key whose [grant, end] intervals intersect.

    Returns the earlier-granted side of each pair (the one that lost its lock, if either did)
    and the pairs. For the LIMIT key, a hold granted while LIMIT others were held counts.
    """
    losers: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.granted:
            by_key[op.key].append(op)
    for key, holds in by_key.items():
        holds.sort(key=lambda o: o.t_grant or 0.0)
        active: list[Op] = []
        for op in holds:
            assert op.t_grant is not None
            active = [a for a in active if getattr(a, end)() > op.t_grant]
            if key == LIMIT_KEY:
                if len(active) >= LIMIT:
                    first = min(active, key=lambda a: a.t_grant or 0.0)
                    losers.add(first.opid)
                    pairs.add((first.opid, op.opid))
            else:
                for a in active:
                    if _conflicts(a, op):
                        losers.add(a.opid)
                        pairs.add((a.opid, op.opid))
            if getattr(op, end)() > op.t_grant:
                active.append(op)
    return losers, pairs


def _another_node_between(ops: list[Op], lost: Op, until: float) -> bool:
    """Whether the key was granted by another node than the lost hold's between its grant
    and `until`: the hold was lost across a failover (or a split brain), not on one node."""
    start = lost.t_grant or 0.0
    return any(
        op.key == lost.key and op.granted and op.node != lost.node
        and start <= (op.t_grant or 0.0) <= until
        for op in ops
    )  # fmt: skip


def check_register(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fencing at the register: accepted tokens rise per key, in the register's own order."""
    highest: dict[str, tuple[int, str]] = {}
    stale_accepted: list[dict[str, Any]] = []
    refused = accepted = 0
    for row in rows:
        if row.get("op") != "write":
            continue
        key, token, opid = row["key"], int(row["token"]), row["opid"]
        if not row["accepted"]:
            refused += 1
            continue
        accepted += 1
        best = highest.get(key)
        if best is not None and (token < best[0] or (token == best[0] and opid != best[1])):
            stale_accepted.append({"write": row, "behind": {"token": best[0], "opid": best[1]}})
        if best is None or token >= best[0]:
            highest[key] = (token, opid)
    return {"accepted": accepted, "refused": refused, "stale_accepted": stale_accepted}


def token_checks(ops: list[Op]) -> tuple[list[tuple[Op, Op]], list[tuple[Op, Op]]]:
    """(repeats, inversions): same token on two holds of a key; a later grant with a lower
    token than one whose grant was acknowledged before the later one was asked for."""
    repeats, inversions = [], []
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.granted:
            by_key[op.key].append(op)
    for holds in by_key.values():
        seen: dict[int, Op] = {}
        for op in holds:
            assert op.token is not None
            if op.token in seen:
                repeats.append((seen[op.token], op))
            seen[op.token] = op
        acked = sorted(holds, key=lambda o: o.t_grant or 0.0)
        times = [o.t_grant or 0.0 for o in acked]
        best: list[Op] = []
        for o in acked:
            best.append(o if not best or (o.token or 0) > (best[-1].token or 0) else best[-1])
        for op in holds:
            i = bisect.bisect_left(times, op.t_invoke)
            if i > 0 and (best[i - 1].token or 0) >= (op.token or 0) and best[i - 1] is not op:
                inversions.append((best[i - 1], op))
    return repeats, inversions


def check_phase(phase_dir: Path) -> dict[str, Any]:
    """Every check over one phase; returns plain data for the report."""
    nemesis = _read(phase_dir / "nemesis.jsonl")
    final = json.loads((phase_dir / "final.json").read_text())
    ops = load_ops(phase_dir)
    episodes = load_episodes(nemesis)
    windows = skew_windows(nemesis)
    for op in ops:
        episode = _episode_of(episodes, op.t_invoke)
        op.episode = episode.number
        op.skew_s = max(
            (
                size
                for start, end, size in windows
                if start < op.t_invoke + op.ttl and end > op.t_invoke
            ),
            default=0.0,
        )
    register_rows = _read(phase_dir / "register.jsonl")
    fencing = check_register(register_rows)
    _seen_losers, seen_pairs = _overlapping(ops, "seen_end")
    _certain_losers, certain_pairs = _overlapping(ops, "certain_end")
    repeats, inversions = token_checks(ops)
    by_opid = {op.opid: op for op in ops}

    lost: dict[str, float] = {}  # opid -> until when its node was asked about it
    for earlier, later in sorted(certain_pairs):
        lost[earlier] = max(lost.get(earlier, 0.0), by_opid[later].t_grant or 0.0)
    for op in ops:
        # A release answered "not held" before the ttl could have run out: the hold was gone.
        # (Judged by the reply's time: a release that started in time may arrive late.)
        gone = op.granted and op.release == "not-owned" and op.t_released is not None
        if gone and (op.t_released or 0.0) < op.t_invoke + op.ttl - MARGIN_S - op.skew_s:
            lost[op.opid] = max(lost.get(op.opid, 0.0), op.t_released or 0.0)
    lost_plain = {o for o in lost if by_opid[o].kind != "session"}
    lost_session = set(lost) - lost_plain
    lost_across = {o for o in lost_plain if _another_node_between(ops, by_opid[o], lost[o])}
    lost_one_node = lost_plain - lost_across

    stale_refused_by_op = {
        r["opid"] for r in register_rows if r.get("op") == "write" and not r["accepted"]
    }
    stale_accepted_ops = {s["write"]["opid"] for s in fencing["stale_accepted"]}
    for op in ops:
        stats = episodes[op.episode].stats if op.episode < len(episodes) else episodes[0].stats
        stats["ops"] += 1
        stats["grants"] += op.granted
        stats["stale_refused"] += op.opid in stale_refused_by_op
        stats["stale_accepted"] += op.opid in stale_accepted_ops
        stats["overlaps"] += sum(1 for a, _b in seen_pairs if a == op.opid)
        stats["lost_one_node"] += op.opid in lost_one_node
        stats["lost_across"] += op.opid in lost_across
        stats["lost_session"] += op.opid in lost_session
    for _first, second in repeats:
        episodes[by_opid[second.opid].episode].stats["repeats"] += 1
    for first, second in inversions:
        episodes[second.episode].stats["inversions"] += 1
        episodes[second.episode].stats["inversions_skewed"] += second.skew_s > 0 or first.skew_s > 0
    for episode in episodes[1:]:
        if episode.healed is None:
            continue
        firsts = []
        keys = {op.key for op in ops}
        for key in keys:
            after = [
                op.t_grant
                for op in ops
                if op.key == key and op.granted and op.t_invoke >= episode.healed
            ]
            if after:
                firsts.append(min(a for a in after if a is not None) - episode.healed)
        episode.recovery_s = round(max(firsts), 2) if len(firsts) == len(keys) else None

    examples = {
        "stale_accepted": fencing["stale_accepted"][:5],
        "repeats": [[vars(a), vars(b)] for a, b in repeats[:5]],
        "inversions": [[vars(a), vars(b)] for a, b in inversions[:5]],
        "lost_one_node": [vars(by_opid[o]) for o in sorted(lost_one_node)[:5]],
        "lost_across": [vars(by_opid[o]) for o in sorted(lost_across)[:5]],
        "certain_overlaps": [
            [vars(by_opid[a]), vars(by_opid[b])] for a, b in sorted(certain_pairs)[:5]
        ],
    }
    (phase_dir / "check.json").write_text(json.dumps(examples, indent=1, default=str))
    return {
        "phase": final["phase"],
        "persistence": final["persistence"],
        "replicas": final["replicas"],
        "loss_promised_none": final["persistence"] == "aof-always" and final["replicas"] >= 1,
        "episodes": episodes,
        "fencing": fencing,
        "liveness_s": final["liveness_s"],
        "digests": final["digests"],
        "crash_lines": final["crash_lines"],
        "duration_s": final["duration_s"],
        "ops": len(ops),
        "overlap_pairs": len(seen_pairs),
        "phase_dir": str(phase_dir),
    }
