"""``allied match``: the node's indicators against log files, as signed sightings.

The plain core the command line calls: which indicators are live, compiling them, running
an engine, turning hits into sightings and storing them (signed by this node, in the ledger)
through the same admission as an import.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from allied.matching.compile import Compiled, try_compile
from allied.matching.matchset import Group, Hit, Lookups, MatchSet
from allied.matching.sightings import sighting_objects
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from allied.stix.model import parse_object


class Engine(Protocol):
    name: str

    def groups(
        self,
        paths: Sequence[Path],
        fmt: str,
        lookups: Lookups,
        mapping: Mapping[str, str] | None = None,
    ) -> tuple[list[Group], Any]: ...

    def close(self) -> None: ...


@dataclass
class MatchReport:
    rows: int = 0
    seconds: float = 0.0
    indicators: int = 0
    hits: list[Hit] = field(default_factory=list)
    #: (indicator id, pattern, why it is not matched)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)
    malformed: int = 0
    problems: list[tuple[str, int, str]] = field(default_factory=list)
    stored: int = 0
    objects: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
            "indicators": self.indicators,
            "hits": [
                {
                    "indicator": hit.indicator,
                    "count": hit.count,
                    "first_seen": hit.first_seen.isoformat() if hit.first_seen else None,
                    "last_seen": hit.last_seen.isoformat() if hit.last_seen else None,
                }
                for hit in self.hits
            ],
            "unsupported": [
                {"indicator": i, "pattern": p, "reason": r} for i, p, r in self.unsupported
            ],
            "malformed": self.malformed,
            "problems": [{"file": f, "line": n, "reason": r} for f, n, r in self.problems],
            "stored": self.stored,
        }


def live_indicators(
    node: Node, now: datetime | None = None
) -> tuple[dict[str, Compiled], list[tuple[str, str, str]]]:
    """The latest version of each indicator that is neither revoked nor out of its validity
    window, compiled; and those that cannot be matched, with the reason."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    compiled: dict[str, Compiled] = {}
    unsupported: list[tuple[str, str, str]] = []
    for text in node.store.latest_json("indicator"):
        data = orjson.loads(text)
        if data.get("revoked") or data.get("pattern_type") != "stix":
            if data.get("pattern_type") not in (None, "stix") and not data.get("revoked"):
                reason = f"unsupported: pattern_type {data.get('pattern_type')}"
                unsupported.append((data["id"], str(data.get("pattern")), reason))
            continue
        if str(data.get("valid_from", "")) > moment:
            continue
        until = data.get("valid_until")
        if until is not None and str(until) <= moment:
            continue
        result = try_compile(str(data["pattern"]))
        if isinstance(result, str):
            unsupported.append((data["id"], str(data["pattern"]), result))
        elif result.conjunctions:
            compiled[data["id"]] = result
        else:
            unsupported.append((data["id"], str(data["pattern"]), "can never match one row"))
    return compiled, unsupported


def match_logs(
    node: Node,
    engine: Engine,
    paths: Sequence[Path],
    fmt: str,
    *,
    mapping: Mapping[str, str] | None = None,
    label: str | None = None,
    store: bool = True,
) -> MatchReport:
    """Match ``paths`` against the node's live indicators and store a sighting per hit.
    ``label`` (a label's name): the sightings are marked with it and so may leave the node
    under it; without one they carry no marking and stay inside the node (fail closed)."""
    report = MatchReport()
    markings: tuple[str, ...] = ()
    if label is not None:
        marking_id, tlp = node.store.label(label)
        markings = (TLP2_IDS[tlp], marking_id)
    compiled, report.unsupported = live_indicators(node)
    report.indicators = len(compiled)
    matchset = MatchSet(compiled)
    started = time.perf_counter()
    groups, read = engine.groups(paths, fmt, matchset.lookups, mapping)
    hits = matchset.hits(groups)
    report.seconds = time.perf_counter() - started
    report.rows, report.malformed, report.problems = read.rows, read.malformed, read.problems
    report.hits = sorted(hits.values(), key=lambda hit: (-hit.count, hit.indicator))
    identity = node.config.identity_id
    for hit in report.hits:
        report.objects += sighting_objects(hit, identity=identity, markings=markings)
    if store and report.objects:
        report.stored = _store(node, report.objects)
    return report


def _store(node: Node, objects: list[dict[str, Any]]) -> int:
    """Signed by this node, with ledger entries, in one transaction (an object that fails
    validation is a bug here, and stores nothing)."""
    origin = node.origin()
    admitted = [origin.admit(parse_object(data)) for data in objects]
    with node.write() as writer:
        added = writer.add(admitted)
    for n, obj in enumerate(admitted):  # what was stored: the signed objects
        objects[n] = dict(obj.data)
    return added.stored
