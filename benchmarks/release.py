"""Release benchmark: decisions per second, and what filtering costs an export.

One command, one run:

    .venv/bin/python benchmarks/release.py [--objects 100000] [--partners 10]

1. Decisions over objects x partners pairs (1,000,000 by default) from generated intelligence:
   the pure `decide()` on every pair, and the memoised decision the egress path actually uses
   (one `decide()` per distinct label set, provenance and partner).
2. Export of a node holding the objects: unfiltered (every latest version) against
   `export --for PARTNER` (the egress path: index pass, reference rule, companion markings),
   both written to a file, best of several rounds each, interleaved.

Figures are printed and written into benchmarks/RESULTS.md (section "Release").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from allied.demo import write_jsonl
from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.policy.egress import Egress
from allied.policy.release import decide, resolve_labels
from allied.synthetic import Mix
from report import machine, write_section

SECTION = "## Release"
NATIONS = ["KOR", "USA", "EST", "NATO", "DEU"]
LEVELS = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
COMMUNITIES = ["nato-ccdcoe", "kor-usa-cyber-council", "five-eyes", "baltic"]


def enrol(node: Node, count: int) -> list[str]:
    names = []
    for n in range(count):
        name = f"partner-{n}"
        node.add_partner(
            name,
            nation=NATIONS[n % len(NATIONS)],
            clearances=[f"NATO={LEVELS[n % len(LEVELS)]}"],
            communities=[COMMUNITIES[n % len(COMMUNITIES)], COMMUNITIES[(n + 1) % 4]],
            categories=["CYBER-OPS"] if n % 3 == 0 else [],
        )
        names.append(name)
    node.add_partner(
        "all-access",
        nation="USA",
        clearances=["NATO=SECRET"],
        communities=["NATO", *COMMUNITIES],
        categories=["CYBER-OPS"],
    )
    return names


def write_export(path: Path, texts: Iterable[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"type": "bundle", "id": "bundle--0b9e2f56-8a0a-4f3c-9d1e-6b5a4c3d2e1f", ')
        out.write('"objects": [')
        for count, text in enumerate(texts, start=1):
            out.write("\n" if count == 1 else ",\n")
            out.write(text)
        out.write("\n]}\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    command = "python benchmarks/release.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="allied-bench-") as tmp:
        directory = Path(tmp)
        source = directory / "objects.jsonl"
        # Mix.for_indicators(n) makes about 1.68 n objects in all: relationships, reports...
        written = write_jsonl(source, 7, Mix.for_indicators(int(args.objects / 1.68)))
        init_node(directory / "node", name="Benchmark", nation="EST",
                  communities=["nato-ccdcoe", "kor-usa-cyber-council"])  # fmt: skip
        with Node.open(directory / "node") as node:
            names = enrol(node, args.partners)
            import_file(node, source)
            egress = Egress(node)
            rows = [r for r in node.store.release_index() if r.type != "marking-definition"]
            pairs = len(rows) * len(names)
            print(f"{written} objects generated, {len(rows)} decidable, {pairs:,} pairs")

            labels = node.store.label_markings()
            recipients = [egress.recipient(name) for name in names]
            resolved = [
                (resolve_labels(orjson.loads(r.markings), labels), egress.provenance(None))
                for r in rows
            ]
            policy = egress._policy
            started = time.perf_counter()
            allowed_pure = sum(
                decide(labelset, provenance, who, policy).allowed
                for who in recipients
                for labelset, provenance in resolved
            )
            pure_rate = pairs / (time.perf_counter() - started)
            print(f"decide(), every pair: {pure_rate:,.0f} decisions/s")

            fresh = Egress(node)
            started = time.perf_counter()
            allowed_cached = sum(
                fresh.decide(r.markings, r.received_from, r.signer, who).allowed
                for who in recipients
                for r in rows
            )
            cached_rate = pairs / (time.perf_counter() - started)
            print(f"egress decision (memoised): {cached_rate:,.0f} decisions/s")
            assert allowed_pure == allowed_cached, "memoised and pure decisions disagree"

            out = directory / "export.json"
            times: dict[str, list[float]] = {"unfiltered": [], names[1]: [], "all-access": []}
            sizes: dict[str, int] = {}
            for _ in range(args.rounds):
                for who in times:
                    started = time.perf_counter()
                    if who == "unfiltered":
                        texts: Iterable[str] = node.store.latest_json()
                    else:
                        texts = Egress(node).release(who)
                    sizes[who] = write_export(out, texts)
                    times[who].append(time.perf_counter() - started)
            best = {who: min(values) for who, values in times.items()}
            overhead = {
                who: (best[who] / best["unfiltered"] - 1) * 100 for who in (names[1], "all-access")
            }
            for who in times:
                print(f"export {who}: {best[who]:.2f} s, {sizes[who]} objects")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    body = "\n".join(
        [
            SECTION,
            "",
            f"- date: {today}",
            f"- machine: {machine()}",
            f"- command: `{command.strip()}`",
            f"- input: {written:,} generated objects (seed 7: indicators, malware, campaigns, "
            f"relationships, sightings, reports under mixed TLP and classification labels), "
            f"{len(names)} partners of different nations, clearances and communities",
            "",
            "| what | figure |",
            "|---|---:|",
            f"| `decide()` on every one of {pairs:,} (object, partner) pairs | "
            f"{pure_rate:,.0f} decisions/s |",
            f"| egress decision, memoised per label set, same {pairs:,} pairs | "
            f"{cached_rate:,.0f} decisions/s |",
            f"| export, unfiltered ({sizes['unfiltered']:,} objects), best of {args.rounds} | "
            f"{best['unfiltered']:.2f} s |",
            f"| export `--for {names[1]}` ({sizes[names[1]]:,} objects) | {best[names[1]]:.2f} s "
            f"({overhead[names[1]]:+.1f}%) |",
            f"| export `--for all-access` ({sizes['all-access']:,} objects: all but TLP:RED and "
            f"what refers to it) | {best['all-access']:.2f} s ({overhead['all-access']:+.1f}%) |",
            "",
            f"Status: decisions goal {'met' if cached_rate >= 500_000 else 'NOT met'}; "
            f"export overhead goal {'met' if max(overhead.values()) < 10 else 'NOT met'}.",
            "",
            "Goals: at least 500,000 decisions/s and under 10% export overhead. The egress path",
            "decides once per distinct (markings, provenance, partner): the decision is pure, so",
            "memoising it is exact; the pure rate shows the cost of a decision never seen before.",
            "The export overhead is that of the filtered export against the unfiltered one in",
            "the same run, both read through the database driver's cursor; the all-access",
            "partner receives nearly everything, so its figure is the cost of filtering itself.",
            "The reference rule is applied through the label closures the store keeps at import",
            "(its cost is in the ingest figures), so the export filters rows in SQL: a filtered",
            "export costs less than the unfiltered one because it writes fewer objects. Medians: "
            + ", ".join(f"{who} {statistics.median(v):.2f} s" for who, v in times.items())
            + ".",
        ]
    )
    print(body)
    if not args.no_write:
        write_section(SECTION, body + "\n")


if __name__ == "__main__":
    main()
