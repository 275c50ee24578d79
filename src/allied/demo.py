"""`allied demo`: the shipped three-nation drill, run on real nodes and summarised.

The first thing a new user runs: three nodes start on 127.0.0.1, share, match, fail, get
tampered with and recover, and the report says whether anything leaked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from allied.synthetic import Mix, generate

if TYPE_CHECKING:  # the drill's modules load matplotlib and more: only when a drill runs
    from allied.exercise import Outcome
    from allied.exercise.runner import Display


def write_jsonl(path: Path, seed: int, mix: Mix) -> int:
    """Write generated objects as JSON lines; returns how many."""
    count = 0
    with open(path, "wb") as out:
        for obj in generate(seed, mix):
            out.write(orjson.dumps(obj) + b"\n")
            count += 1
    return count


def run_demo(echo: Callable[[str], None], display: Display, output: Path | None) -> Outcome:
    from allied.exercise import load_scenario, run_exercise, shipped_scenario

    scenario = load_scenario(shipped_scenario())
    root = output or Path(tempfile.mkdtemp(prefix="allied-demo-"))
    echo(f"running the drill {scenario.name!r} ({scenario.source}) in {root}")
    outcome = run_exercise(scenario, root, display)
    for line in summary(outcome):
        echo(line)
    return outcome


def summary(outcome: Outcome) -> list[str]:
    """The few lines a drill ends with, for `allied demo` and `allied exercise run`."""
    score = outcome.score
    lines = [f"drill {'PASSED' if score['passed'] else 'FAILED'} in {score['duration_s']:.0f} s"]
    overall = score["share_latency"]["overall"]
    for hop, stats in score["share_latency"]["hops"].items():
        lines.append(
            f"  time to share {hop:<12} median {stats['median_s']:.2f} s, "
            f"95th percentile {stats['p95_s']:.2f} s ({stats['count']} objects)"
        )
    if overall["count"]:
        lines.append(f"  time to share, all hops: median {overall['median_s']:.2f} s")
    for who, found in score["detections"]["by_partner"].items():
        lines.append(f"  detections at {who}: {found['found']} (expected {found['expected']})")
    leaks = score["leaks"]
    lines.append(f"  leaks: {leaks['count']} ({leaks['checked']} hops between nodes checked)")
    tampering = score["tampering"]
    lines.append(
        f"  tampering: {tampering['detected']} of {tampering['tampered']} tampered objects "
        f"refused, {tampering['accepted']} accepted"
    )
    for outage in score["outages"]:
        recovery = outage["recovery_s"]
        shown = f"{recovery:.1f} s" if recovery is not None else "never"
        lines.append(
            f"  {outage['node']} offline {outage['offline_s']:.0f} s, recovered in {shown}"
        )
    for request in score["requests"]:
        lines.append(
            f"  {request['by']} asked {request['from']} for {request['asked']} objects: "
            f"{request['granted']} granted (expected: {request['expected']})"
        )
    for error in score["errors"]:
        lines.append(f"  inject {error['inject']} failed: {error['error']}")
    integrity = score["integrity"]
    bad = [name for name, audit in integrity.items() if not audit["ok"]]
    lines.append(
        f"  allied verify: {'all nodes ok' if not bad else 'problems at ' + ', '.join(bad)}"
    )
    lines.append(f"report: {outcome.files['html']}")
    lines.append(f"        {outcome.files['markdown']} and {outcome.files['score']}")
    return lines
