"""The report: one table per phase (topology and persistence), a row per fault kind.

A row's figures are over the operations invoked during that kind's episodes; "none" is the
warm-up and the quiet period after the final heal. The verdict lines say which figures must
be 0 and whether they were.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

# (column header, the checker's per-episode figure)
COLUMNS = [
    ("faults injected", "faults"),
    ("ops", "ops"),
    ("grants", "grants"),
    ("overlaps seen", "overlaps"),
    ("stale writes refused", "stale_refused"),
    ("stale writes accepted", "stale_accepted"),
    ("acked lost, one node", "lost_one_node"),
    ("acked lost, across nodes", "lost_across"),
    ("session holds ended", "lost_session"),
    ("token repeats", "repeats"),
    ("token order inversions", "inversions"),
]
HEADERS = ["fault kind", "episodes", *(h for h, _ in COLUMNS), "recovery after heal (max s)"]


def _recovery(recoveries: list[float | None]) -> str:
    if not recoveries:
        return "-"
    if None in recoveries:
        return "never"
    return f"{max(r for r in recoveries if r is not None):.1f}"


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    recoveries: dict[str, list[float | None]] = defaultdict(list)
    for episode in result["episodes"]:
        row = by_kind[episode.kind]
        if episode.number:
            row["episodes"] += 1
            recoveries[episode.kind].append(episode.recovery_s)
        for name, value in episode.stats.items():
            row[name] += value
    rows: list[list[Any]] = []
    totals: dict[str, int] = defaultdict(int)
    for kind in sorted(by_kind, key=lambda k: (k.startswith("none"), k)):
        s = by_kind[kind]
        rows.append(
            [kind, s["episodes"], *(s[name] for _, name in COLUMNS), _recovery(recoveries[kind])]
        )
        for name, value in s.items():
            totals[name] += value
    rows.append(["**all**", totals["episodes"], *(totals[name] for _, name in COLUMNS), ""])
    result["totals"] = totals
    return rows


def render(results: list[dict[str, Any]], seed: int, rerun: str, out: Path) -> tuple[str, bool]:
    """The report as Markdown, and whether every must-be-0 figure was 0."""
    lines = [f"Seed {seed}; replay with `{rerun}`; histories in `{out}`.", ""]
    ok = True
    for result in results:
        rows = _rows(result)
        totals = result["totals"]
        liveness = result["liveness_s"]
        live = all(v is not None for v in liveness.values())
        digests_equal = all(d["equal"] for d in result["digests"])
        lines += [
            f"### {result['phase']}",
            "",
            tabulate(rows, headers=HEADERS, tablefmt="github"),
            "",
        ]
        checks = [
            ("stale writes accepted", totals["stale_accepted"] == 0, totals["stale_accepted"]),
            ("token repeats", totals["repeats"] == 0, totals["repeats"]),
            ("server crashes (log lines)", not result["crash_lines"], len(result["crash_lines"])),
            (
                "replica digests equal the master's",
                digests_equal,
                ", ".join(
                    f"{d['master']}: {'equal' if d['equal'] else 'DIFFERENT'}"
                    for d in result["digests"]
                ),
            ),
            (
                "every key taken after the final heal",
                live,
                f"max {max((v for v in liveness.values() if v is not None), default=0):.1f} s"
                if live
                else str(liveness),
            ),
        ]
        if result["loss_promised_none"]:
            lost = totals["lost_one_node"]
            checks.append(
                ("acknowledged grants lost on one node (promised: none)", lost == 0, lost)
            )
        for name, passed, value in checks:
            ok = ok and passed
            lines.append(f"- {'ok' if passed else 'FAILED'}: {name}: {value}")
        if totals["inject_failed"]:
            lines.append(
                f"- note: {totals['inject_failed']} faults could not be injected "
                "(no master to aim at, or a command refused): see nemesis.jsonl"
            )
        lines += [
            f"- phase took {result['duration_s']:.0f} s; {result['ops']} operations; "
            f"register: {result['fencing']['accepted']} writes accepted, "
            f"{result['fencing']['refused']} refused",
            "",
        ]
    lines.append(
        "Verdict: " + ("every must-be-0 figure is 0" if ok else "VIOLATIONS FOUND (see above)")
    )
    return "\n".join(lines), ok
