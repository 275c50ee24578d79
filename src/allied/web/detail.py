"""What the console shows of one object: its versions and labels, whether its signature and
ledger entry check out, what it is related to, when it was sighted, and who may receive it.

The node's own people see everything it holds (as ``allied show`` does); what partners may
receive is the release decision's answer (:class:`allied.policy.egress.Egress`), asked here
exactly as the TAXII API and sync ask it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select

from allied.errors import AlliedError, NotFound
from allied.integrity import proofs
from allied.integrity.origin import is_standard_id
from allied.integrity.signing import SignatureError, has_signature, verify
from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.banner import Banner, banner
from allied.stix.labels import TLP_BY_ID, Label, resolve_labels
from allied.store import schema
from allied.store.store import StoredObject

#: a graph bigger than this shows only the first neighbours found (a hub such as an
#: identity may be referred to by millions of objects)
MAX_GRAPH_NODES = 150
_O = schema.objects


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str


@dataclass(frozen=True)
class Receiver:
    partner: str
    nation: str
    allowed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Bar:
    day: str
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass
class Detail:
    latest: StoredObject
    data: dict[str, Any]
    versions: list[StoredObject]
    banner: Banner
    signature: Check
    ledger: Check
    #: label names by marking id, for the marking list
    labels: dict[str, str] = field(default_factory=dict)
    originator: str | None = None


def describe(node: Node, object_id: str) -> Detail:
    versions = node.store.versions(object_id)
    if not versions:
        raise NotFound(f"no object {object_id} in this node")
    latest = versions[-1]
    data = latest.data
    known = node.store.label_markings()
    markings = list(data.get("object_marking_refs") or [])
    return Detail(
        latest=latest,
        data=data,
        versions=list(reversed(versions)),
        banner=banner(resolve_labels(markings, known)),
        signature=_signature(node, data),
        ledger=_ledger(node, object_id),
        labels={ref: _marking_name(ref, known) for ref in markings},
        originator=_who(node, data.get("created_by_ref")),
    )


def _marking_name(ref: str, known: Mapping[str, Label]) -> str:
    if ref in known:
        return known[ref].name
    level = TLP_BY_ID.get(ref)
    return f"TLP:{level.upper()}" if level else ref


def _who(node: Node, identity: Any) -> str | None:
    if not isinstance(identity, str):
        return None
    if identity == node.config.identity_id:
        return f"{node.config.name} (this node)"
    for partner in node.partners():
        if partner.identity_id == identity:
            return f"{partner.name} ({partner.nation})"
    return identity


def _signature(node: Node, data: dict[str, Any]) -> Check:
    if is_standard_id(str(data.get("id"))):
        return Check(True, "a standard object every node holds unsigned")
    if not has_signature(data):
        return Check(False, "not signed")
    try:
        signer = verify(data, node.trusted_keys(include_revoked=True))
    except SignatureError as error:
        return Check(False, f"does not verify: {error.reason}")
    return Check(True, f"verified: signed by {_who(node, signer)}")


def _ledger(node: Node, object_id: str) -> Check:
    try:
        proof = proofs.inclusion(node.store, object_id)
    except NotFound as error:
        return Check(False, error.message)
    except AlliedError as error:  # a proof that does not verify
        return Check(False, f"the inclusion proof does not verify: {error.message}")
    return Check(
        True,
        f"entry {proof['leaf_index']} of the ledger; its inclusion proof verifies against "
        f"the signed tree head of size {proof['tree_size']}",
    )


def receivers(node: Node, object_id: str) -> list[Receiver]:
    """The release decision for every enrolled partner, with its reasons."""
    egress = Egress(node)
    found = []
    for partner in node.partners():
        explained = egress.explain(object_id, partner.name)
        found.append(Receiver(partner.name, partner.nation, explained.allowed, explained.reasons))
    return found


def graph(node: Node, object_id: str) -> dict[str, Any]:
    """The object, what it refers to and what refers to it, as nodes and edges; a
    relationship is drawn as an edge between its ends, labelled with its type."""
    focus = node.store.latest(object_id)
    if focus is None:
        raise NotFound(f"no object {object_id} in this node")
    with node.store.engine.connect() as conn:
        referrers = list(
            conn.execute(
                select(schema.object_refs.c.source)
                .where(schema.object_refs.c.target == object_id)
                .limit(MAX_GRAPH_NODES)
            ).scalars()
        )
    objects: dict[str, dict[str, Any]] = {object_id: focus.data}
    for text in node.store.latest_json_of([*referrers, *_refs(focus.data)]).values():
        data = orjson.loads(text)
        objects[data["id"]] = data
    edges: list[dict[str, str]] = []
    ends: set[str] = set()
    for data in list(objects.values()):
        if data["type"] == "relationship":
            source, target = str(data["source_ref"]), str(data["target_ref"])
            kind = str(data.get("relationship_type", ""))
            edges.append({"source": source, "target": target, "label": kind})
            ends.update((source, target))
    missing = [ref for ref in ends if ref not in objects]
    for text in node.store.latest_json_of(missing).values():
        data = orjson.loads(text)
        objects[data["id"]] = data
    for data in objects.values():
        if data["type"] == "relationship":
            continue
        for ref, label in _labelled_refs(data):
            if ref in objects and objects[ref]["type"] != "relationship":
                edges.append({"source": data["id"], "target": ref, "label": label})
    nodes = [
        {
            "id": oid,
            "label": _name(data),
            "type": data["type"],
            "href": f"/ui/objects/{oid}",
            "focus": oid == object_id,
        }
        for oid, data in objects.items()
        if data["type"] != "relationship" or oid == object_id
    ][:MAX_GRAPH_NODES]
    shown = {n["id"] for n in nodes}
    edges = [e for e in edges if e["source"] in shown and e["target"] in shown]
    return {"nodes": nodes, "edges": edges}


_SKIPPED_REFS = frozenset({"created_by_ref", "object_marking_refs"})


def _labelled_refs(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, property) for each reference but the creator and markings (every object has
    those: drawn, they would tie everything to one identity)."""
    found = []
    for key, value in data.items():
        if key in _SKIPPED_REFS:
            continue
        if key.endswith("_ref") and isinstance(value, str):
            found.append((value, key.removesuffix("_ref").replace("_", " ")))
        elif key.endswith("_refs") and isinstance(value, list):
            label = key.removesuffix("_refs").replace("_", " ")
            found.extend((item, label) for item in value if isinstance(item, str))
    return found


def _refs(data: dict[str, Any]) -> list[str]:
    return [ref for ref, _label in _labelled_refs(data)]


def _name(data: dict[str, Any]) -> str:
    name = data.get("name") or data.get("value") or data.get("pattern")
    return str(name) if name else data["type"]


def sightings(node: Node, object_id: str, *, width: float = 720, height: float = 160) -> list[Bar]:
    """Sightings of the object per day (by first seen, counting each sighting's ``count``),
    as bars of a chart ``width`` by ``height``."""
    with node.store.engine.connect() as conn:
        sources = list(
            conn.execute(
                select(schema.object_refs.c.source).where(
                    schema.object_refs.c.target == object_id,
                    schema.object_refs.c.source.like("sighting--%"),
                )
            ).scalars()
        )
    days: Counter[str] = Counter()
    for text in node.store.latest_json_of(sources).values():
        data = orjson.loads(text)
        if data.get("sighting_of_ref") != object_id:
            continue
        when = str(data.get("first_seen") or data.get("created") or "")[:10]
        count = data.get("count", 1)
        days[when] += count if isinstance(count, int) and count > 0 else 1
    if not days:
        return []
    ordered = sorted(days.items())
    top = max(days.values())
    step = width / len(ordered)
    bars = []
    for index, (day, count) in enumerate(ordered):
        tall = (height - 20) * count / top
        bars.append(Bar(day, count, index * step + step * 0.1, height - tall, step * 0.8, tall))
    return bars
