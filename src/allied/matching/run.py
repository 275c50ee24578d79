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
from nacl.signing import VerifyKey

from allied.integrity.keys import parse_public_key
from allied.matching.blind import (
    Answer,
    BlindError,
    Offer,
    elements_to_wire,
    kind_of,
    match_values,
)
from allied.matching.compile import Atom, Compiled
from allied.matching.duck import DuckDBEngine
from allied.matching.index import PatternIndex
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
    markings = _markings(node, label)
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
    _sightings(node, report, hits, markings, store)
    return report


def blind_match_logs(
    node: Node,
    engine: DuckDBEngine,
    paths: Sequence[Path],
    fmt: str,
    peer_name: str,
    *,
    mapping: Mapping[str, str] | None = None,
    label: str | None = None,
    store: bool = True,
) -> MatchReport:
    """Match ``paths`` against the indicators peer ``peer_name`` holds and lets this node
    blind-match (docs/blind-matching.md): the peer sees only how many distinct values were
    asked about. For the values that hit, the same sightings as a clear match would give
    (a second scan counts their rows, first and last seen)."""
    from allied.federation import peers
    from allied.federation.remote import Remote

    markings = _markings(node, label)
    peer = peers.peer(node, peer_name)
    owner = node.store.partner(peer.partner)
    if not owner.public_key:
        raise BlindError(f"partner {owner.name} has no pinned key: its answers cannot be checked")
    verify_key = VerifyKey(
        parse_public_key(owner.public_key, source=f"partner {owner.name}").public_bytes_raw()
    )
    report = MatchReport()
    started = time.perf_counter()
    values, read = engine.distinct_values(paths, fmt, BLIND_FIELDS, mapping)
    timeout = float(node.config.setting("sync_timeout"))
    with Remote(peer_name, peer.url, peers.token(node, peer_name), timeout=timeout) as remote:
        offer = Offer.from_wire(remote.post_json("blind/sessions", {}))
        path = f"blind/sessions/{offer.session}/evaluate"

        def evaluate(elements: list[bytes]) -> Answer:
            return Answer.from_wire(remote.post_json(path, elements_to_wire(elements)))

        kinds = {(kind_of(name), value): name for name, value in values}
        found = match_values(kinds, offer, verify_key, evaluate, identity=node.config.identity_id)
    # what hit, as patterns of their own: each indicator, the values of it that hit
    compiled: dict[str, list[tuple[Atom, ...]]] = {}
    for hit in found:
        fields = [name for name in BLIND_FIELDS if kind_of(name) == hit.kind]
        for entry in hit.indicators:
            atoms = compiled.setdefault(str(entry["id"]), [])
            atoms += [(Atom(name, hit.value),) for name in fields]
    matchset = MatchSet({i: Compiled(tuple(c)) for i, c in compiled.items()})
    hits: dict[str, Hit] = {}
    if not matchset.empty:
        groups, _ = engine.groups(paths, fmt, matchset.lookups, mapping)
        hits = matchset.hits(groups)
    report.seconds = time.perf_counter() - started
    report.indicators = offer.offered
    report.rows, report.malformed, report.problems = read.rows, read.malformed, read.problems
    _sightings(node, report, hits, markings, store)
    return report


#: the fields blind matching asks about: every one a single value can be compared on
BLIND_FIELDS = ("src_ip", "dst_ip", "domain", "url", "email", "md5", "sha1", "sha256", "sha512")


def _markings(node: Node, label: str | None) -> tuple[str, ...]:
    if label is None:
        return ()
    marking_id, tlp = node.store.label(label)
    return (TLP2_IDS[tlp], marking_id)


def _sightings(
    node: Node,
    report: MatchReport,
    hits: Mapping[str, Hit],
    markings: tuple[str, ...],
    store: bool,
) -> None:
    report.hits = sorted(hits.values(), key=lambda hit: (-hit.count, hit.indicator))
    identity = node.config.identity_id
    for hit in report.hits:
        report.objects += sighting_objects(hit, identity=identity, markings=markings)
    if store and report.objects:
        report.stored = _store(node, report.objects)


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
