"""`allied demo`: a node in a temporary folder, filled with generated intelligence.

The first thing a new user runs; a later version turns it into a multinational drill.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.policy.egress import Egress
from allied.synthetic import Mix, generate


def write_jsonl(path: Path, seed: int, mix: Mix) -> int:
    """Write generated objects as JSON lines; returns how many."""
    count = 0
    with open(path, "wb") as out:
        for obj in generate(seed, mix):
            out.write(orjson.dumps(obj) + b"\n")
            count += 1
    return count


def run_demo(echo: Callable[[str], None], *, indicators: int = 2000, seed: int = 7) -> None:
    with tempfile.TemporaryDirectory(prefix="allied-demo-") as tmp:
        root = Path(tmp)
        node_dir = root / "node-est"
        cfg = init_node(
            node_dir,
            name="Estonian National CSIRT",
            nation="EST",
            org="National cyber-security centre",
            communities=["nato-ccdcoe", "kor-usa-cyber-council"],
        )
        echo(f"initialised node {cfg.name} ({cfg.nation}) in {node_dir}")
        echo(f"  identity {cfg.identity_id}")
        sample = root / "sample.jsonl"
        written = write_jsonl(sample, seed, Mix.for_indicators(indicators))
        echo(f"generated {written} STIX 2.1 objects (seed {seed}) into {sample.name}")
        with Node.open(node_dir) as node:
            node.add_partner(
                "kr-ncsc",
                nation="KOR",
                clearances=["NATO=CONFIDENTIAL"],
                communities=["kor-usa-cyber-council"],
            )
            node.add_partner(
                "ccdcoe", nation="NATO", clearances=["NATO=SECRET"], communities=["nato-ccdcoe"]
            )
            echo("enrolled partners kr-ncsc (KOR) and ccdcoe (NATO)")
            started = time.perf_counter()
            report = import_file(node, sample)
            elapsed = time.perf_counter() - started
            echo(
                f"imported {report.stored} objects in {elapsed:.2f} s "
                f"({report.stored / elapsed:,.0f} objects/s, full validation)"
            )
            again = import_file(node, sample)
            echo(
                f"re-import of the same file: {again.stored} stored, "
                f"{again.duplicates} duplicates (versions are immutable)"
            )
            echo("objects by type:")
            for kind, count in sorted(node.store.counts_by_type().items()):
                echo(f"  {kind:<22} {count:>7}")
            tlp: dict[str, int] = {}
            for row in node.store.summaries():
                key = row.tlp or "none (stays in node)"
                tlp[key] = tlp.get(key, 0) + 1
            echo("objects by TLP:")
            for level, count in sorted(tlp.items()):
                echo(f"  {level:<22} {count:>7}")
            egress = Egress(node)
            total = sum(node.store.counts_by_type().values())
            for partner in ("kr-ncsc", "ccdcoe"):
                started = time.perf_counter()
                released = sum(1 for _ in egress.release(partner))
                elapsed = time.perf_counter() - started
                echo(
                    f"export --for {partner}: {released} of {total} objects may be released "
                    f"(decided in {elapsed:.2f} s)"
                )
            withheld = next(
                row.id
                for row in node.store.release_index()
                if row.type == "report" and not egress.explain(row.id, "kr-ncsc").allowed
            )
            explanation = egress.explain(withheld, "kr-ncsc")
            echo(f"explain {withheld} --for kr-ncsc: denied")
            for reason in explanation.reasons[:3]:
                echo(f"  {reason}")
            started = time.perf_counter()
            audit = node.verify()
            elapsed = time.perf_counter() - started
            head = node.store.tree_heads()[-1]
            echo(
                f"verify: {audit.objects} object versions, {audit.signatures} origin signatures, "
                f"ledger of {audit.ledger_size} entries: "
                + ("all verified" if audit.ok else f"{len(audit.problems)} problems")
                + f" ({elapsed:.2f} s)"
            )
            echo(f"signed tree head: size {head.size}, root {head.as_dict()['root_hash']}")
