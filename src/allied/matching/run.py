"""``allied match``: the node's indicators against log files, as signed sightings.

The plain core the command line calls: which indicators are live, compiling them, running
an engine, turning hits into sightings and storing them (signed by this node, in the ledger)
through the same admission as an import.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from allied.matching.index import PatternIndex
from allied.matching.matchset import Group, Hit, Lookups
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


def match_logs(
    node: Node,
    engine: Engine,
    paths: Sequence[Path],
    fmt: str,
    *,
    mapping: Mapping[str, str] | None = None,
    label: str | None = None,
    store: bool = True,
    cache: bool = True,
) -> MatchReport:
    """Match ``paths`` against the node's live indicators and store a sighting per hit.
    ``label`` (a label's name): the sightings are marked with it and so may leave the node
    under it; without one they carry no marking and stay inside the node (fail closed).
    ``cache``: keep compiled patterns in the node's directory (:mod:`allied.matching.index`)."""
    report = MatchReport()
    markings: tuple[str, ...] = ()
    if label is not None:
        marking_id, tlp = node.store.label(label)
        markings = (TLP2_IDS[tlp], marking_id)
    index = PatternIndex.load(node.store, node.config.directory if cache else None)
    try:
        report.unsupported, report.indicators = index.unsupported, index.count
        started = time.perf_counter()
        groups, read = engine.groups(paths, fmt, index.lookups, mapping)
        hits = index.matchset(groups).hits(groups)
        report.seconds = time.perf_counter() - started
    finally:
        index.close()
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
    validation is a bug here, and stores nothing). An observable already stored (its id is
    derived from its value, and a stored id and version is never stored again) is not
    signed anew: the stored one stands, in the bundle too."""
    origin = node.origin()
    observed = [data["id"] for data in objects if data["type"] not in _NOT_OBSERVABLES]
    held = node.store.latest_json_of(observed)
    fresh = [n for n, data in enumerate(objects) if data["id"] not in held]
    admitted = [origin.admit(parse_object(objects[n])) for n in fresh]
    with node.write() as writer:
        added = writer.add(admitted)
    for n, obj in zip(fresh, admitted, strict=True):  # what was stored: the signed objects
        objects[n] = dict(obj.data)
    for n, data in enumerate(objects):
        if data["id"] in held:
            objects[n] = orjson.loads(held[data["id"]])
    return added.stored


_NOT_OBSERVABLES = ("sighting", "observed-data")
