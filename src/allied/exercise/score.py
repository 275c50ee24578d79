"""Scoring a drill from what the nodes hold at the end, not from what the runner believes.

Every object found at every node is judged: the hop it arrived by (from the node it names
as its source) must be one the release rules allow, with the labels as the scenario agreed
them and the partners as the scenario says they are. So a node that was configured wrongly
(a label that names one nation too many, say) is caught, though it followed its own
configuration faithfully. The rules are :func:`allied.policy.release.decide`, their one
home; only the inputs come from the scenario instead of the node.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from allied import config as config_
from allied.exercise.runner import Record
from allied.exercise.scenario import LabelSpec, Scenario
from allied.node import Node
from allied.policy.egress import release_policy
from allied.policy.release import Provenance, Recipient, decide
from allied.stix.checks import timestamp_key
from allied.stix.labels import Label, resolve_labels
from allied.store import schema


@dataclass(frozen=True)
class Row:
    id: str
    type: str
    version: str
    added: float  # seconds of the drill
    originator: str | None
    markings: list[str]
    received_from: str | None
    #: the identity whose origin signature it carries (objects received from a partner)
    signer: str | None
    json: str


def score(record: Record) -> dict[str, Any]:
    scenario = record.scenario
    origin = _parse(record.started_at)
    held = {name: _rows(record, name, origin) for name in record.directories}
    names = {identity: name for name, identity in record.identities.items()}
    stored_labels = {name: _labels(record, name) for name in record.directories}
    judge = _Judge(record, held, names, stored_labels)
    leaks = judge.leaks()
    requests = _requests(record)
    detections = _detections(record)
    delivery = _delivery(record, held)
    tampering = _tampering(record, held)
    outages = _outages(record, held, origin)
    integrity = _integrity(record)
    latency = _latency(record, held)
    passed = (
        leaks["count"] == 0
        and detections["ok"]
        and delivery["ok"]
        and all(r["ok"] for r in requests)
        and tampering["ok"]
        and all(o["recovery_s"] is not None for o in outages)
        and all(i["ok"] for i in integrity.values())
        and not any(e.error for e in record.events)
    )
    return {
        "scenario": scenario.name,
        "started_at": record.started_at,
        "duration_s": round(record.duration, 2),
        "passed": passed,
        "share_latency": latency,
        "detections": detections,
        "delivery": delivery,
        "leaks": leaks,
        "requests": requests,
        "tampering": tampering,
        "outages": outages,
        "integrity": integrity,
        "objects": {name: len(rows) for name, rows in held.items()},
        "errors": [
            {"inject": e.inject.id, "phase": e.phase, "error": e.error}
            for e in record.events
            if e.error
        ],
    }


# -- reading the nodes ----------------------------------------------------------------------


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _rows(record: Record, name: str, origin: datetime) -> dict[tuple[str, str], Row]:
    o, sets = schema.objects, schema.label_sets
    query = select(
        o.c.id, o.c.type, o.c.version, o.c.date_added, o.c.originator, o.c.markings,
        o.c.received_from, sets.c.signer, o.c.json,
    ).join(sets, sets.c.id == o.c.label_set)  # fmt: skip
    found: dict[tuple[str, str], Row] = {}
    with Node.open(record.directories[name]) as node:
        for (
            id_,
            type_,
            version,
            added,
            originator,
            markings,
            came,
            signer,
            text,
        ) in node.store.raw_rows(query):
            seconds = (_parse(added) - origin).total_seconds()
            found[(id_, version)] = Row(
                id_, type_, version, seconds, originator, orjson.loads(markings), came, signer,
                text,
            )  # fmt: skip
    return found


def _labels(record: Record, name: str) -> dict[str, Label]:
    with Node.open(record.directories[name]) as node:
        return node.store.label_markings()


# -- leaks ------------------------------------------------------------------------------------


class _Judge:
    """The release rules, fed the scenario's truth: agreed labels, partners as they are."""

    def __init__(
        self,
        record: Record,
        held: dict[str, dict[tuple[str, str], Row]],
        names: dict[str, str],
        stored_labels: dict[str, dict[str, Label]],
    ) -> None:
        self.record = record
        self.scenario: Scenario = record.scenario
        self.held = held
        self.names = names
        self.stored_labels = stored_labels
        self.policies = {
            name: release_policy(config_.load(directory))
            for name, directory in record.directories.items()
        }

    def recipient(self, name: str) -> Recipient:
        partner = self.scenario.partners[name]
        return Recipient(
            name=name,
            identity_id=self.record.identities[name],
            nation=partner.nation,
            clearances=dict(partner.clearances),
            communities=frozenset(partner.communities),
            categories=frozenset(partner.categories),
        )

    def agreed(self, label: Label) -> Label:
        """The label as the scenario agreed it, under the id the node gave it."""
        spec: LabelSpec | None = self.scenario.labels.get(label.name)
        if spec is None:
            return label
        return Label(
            marking_id=label.marking_id,
            name=spec.name,
            tlp=spec.tlp,
            policy=spec.policy,
            classification=spec.classification,
            releasable_to=spec.releasable_to,
            handling=spec.handling,
            recipients=tuple(self.record.identities[r] for r in spec.recipients),
            blind_match=spec.blind_match,
        )

    def hop(self, row: Row, sender: str, receiver: str) -> tuple[bool, tuple[str, ...]]:
        """May ``sender`` give ``row`` to ``receiver``, by the scenario's truth?"""
        known = {mid: self.agreed(label) for mid, label in self.stored_labels[sender].items()}
        known |= {
            mid: self.agreed(label)
            for mid, label in self.stored_labels[receiver].items()
            if mid not in known
        }
        labels = resolve_labels(row.markings, known)
        provenance = self.provenance(row, sender)
        decision = decide(labels, provenance, self.recipient(receiver), self.policies[sender])
        return decision.allowed, decision.reasons

    def provenance(self, row: Row, sender: str) -> Provenance:
        """Where the sender had the object from, as :meth:`Egress.provenance` reads it: made
        there, or received, its originator the partner whose signature it carries."""
        at_sender = self.held[sender].get((row.id, row.version))
        if at_sender is None:  # the sender no longer holds it: judge it as relayed
            return Provenance(False, frozenset(), "an unknown node", None)
        if at_sender.received_from is None:
            own = self.scenario.partners[sender].communities
            return Provenance(True, frozenset(own), None, sender)
        signer = at_sender.signer
        if signer is None or signer == self.record.identities[sender]:
            originator: str | None = at_sender.received_from
        else:
            originator = self.names.get(signer)
        known = self.scenario.partners.get(originator or "")
        communities = frozenset(known.communities) if known is not None else frozenset()
        return Provenance(False, communities, at_sender.received_from, originator)

    def leaks(self) -> dict[str, Any]:
        """Every hop an object took: each received version at every node (from the node it
        names as its source), and each release in every node's release journal (a version
        released twice, or released and not kept, is judged on each hop)."""
        hops: dict[tuple[str, str, str, str], tuple[Row | None, str]] = {}
        row: Row | None
        for receiver, rows in self.held.items():
            for row in rows.values():
                if row.received_from is not None:
                    hops[(row.received_from, receiver, row.id, row.version)] = (row, "received")
        for sender, directory in self.record.directories.items():
            with Node.open(directory) as node:
                entries = node.store.releases(limit=10_000_000)
            held = self.held[sender]
            for entry in entries:
                # the journal names a version by its modified timestamp, one of a cyber
                # observable (which has a single version) by when it was added
                version = timestamp_key(entry["version"]) if entry["version"] else ""
                if (entry["id"], version) not in held and (entry["id"], "") in held:
                    version = ""
                key = (sender, entry["partner"], entry["id"], version)
                if key not in hops:
                    hops[key] = (held.get((entry["id"], version)), entry["via"])
        checked = 0
        items: list[dict[str, Any]] = []
        for (sender, receiver, object_id, version), (found, how) in sorted(
            hops.items(), key=lambda item: item[0]
        ):
            row = found
            if row is not None and row.type == "marking-definition":
                continue  # a label travels with the objects it marks, which are judged
            if sender not in self.held or receiver not in self.held or row is None:
                where = "a node outside the drill" if row is not None else "an unknown version"
                items.append(
                    {"node": receiver, "object": object_id, "type": object_id.split("--")[0],
                     "version": version, "from": sender, "via": how,
                     "reasons": [f"denied: {where}"]}
                )  # fmt: skip
                continue
            checked += 1
            allowed, reasons = self.hop(row, sender, receiver)
            if not allowed:
                items.append(_leak(receiver, row, sender, reasons) | {"via": how})
        return {"checked": checked, "count": len(items), "items": items}


def _leak(node: str, row: Row, sender: str, reasons: tuple[str, ...]) -> dict[str, Any]:
    return {
        "node": node,
        "object": row.id,
        "type": row.type,
        "version": row.version,
        "from": sender,
        "reasons": [r for r in reasons if r.startswith("denied")] or list(reasons),
    }


def _requests(record: Record) -> list[dict[str, Any]]:
    found = []
    for event in record.events:
        if event.inject.kind != "request":
            continue
        outcome = event.outcome
        by, source = event.inject.get("by"), event.inject.get("from")
        expected = event.inject.get("expect")
        granted = outcome.get("granted", [])
        asked = len(record.shared.get(event.inject.get("of"), []))
        # what it was given is in the release journal of the node it asked: judged there
        ok = event.error is None and (
            (expected == "denied" and not granted)
            or (expected == "granted" and len(granted) == asked)
        )
        found.append(
            {
                "inject": event.inject.id,
                "by": by,
                "from": source,
                "expected": expected,
                "asked": asked,
                "granted": len(granted),
                "answers": outcome.get("answers", {}),
                "ok": ok,
            }
        )
    return found


# -- detections and delivery -----------------------------------------------------------------


def _detections(record: Record) -> dict[str, Any]:
    injects = []
    by_partner: dict[str, dict[str, int]] = defaultdict(lambda: {"expected": 0, "found": 0})
    ok = True
    for event in record.events:
        if event.inject.kind not in ("traffic", "blind"):
            continue
        expected = (event.inject.get("expect") or {}).get("detections")
        found = event.outcome.get("detections")
        by = event.inject.get("by")
        met = event.error is None and (expected is None or found == expected)
        ok = ok and met
        by_partner[by]["found"] += found or 0
        by_partner[by]["expected"] += expected if expected is not None else (found or 0)
        injects.append(
            {
                "inject": event.inject.id,
                "by": by,
                "of": event.inject.get("of"),
                "blind": event.inject.kind == "blind",
                "planted": event.outcome.get("planted"),
                "expected": expected,
                "found": found,
                "rows": event.outcome.get("rows"),
                "ok": met,
            }
        )
    return {"ok": ok, "by_partner": dict(by_partner), "injects": injects}


def _delivery(record: Record, held: dict[str, dict[tuple[str, str], Row]]) -> dict[str, Any]:
    ids_at = {name: {key[0] for key in rows} for name, rows in held.items()}
    injects = []
    ok = True
    for inject in record.scenario.injects:
        if inject.kind != "share":
            continue
        wanted = {item.id for item in record.shared.get(inject.id, [])}
        expect = inject.get("expect") or {}
        reach = {who: len(wanted & ids_at[who]) for who in expect.get("reach", [])}
        withheld = {who: len(wanted & ids_at[who]) for who in expect.get("withheld_from", [])}
        met = (
            bool(wanted)
            and all(n == len(wanted) for n in reach.values())
            and not any(withheld.values())
        )
        ok = ok and met
        injects.append(
            {
                "inject": inject.id,
                "by": inject.get("by"),
                "indicators": len(wanted),
                "held_by": {who: len(wanted & ids) for who, ids in ids_at.items()},
                "reach": reach,
                "withheld_from": withheld,
                "ok": met,
            }
        )
    return {"ok": ok, "injects": injects}


# -- tampering, outages, integrity -----------------------------------------------------------


def _tampering(record: Record, held: dict[str, dict[tuple[str, str], Row]]) -> dict[str, Any]:
    """Each version a relay tampered with: refused by the puller (its rejections name it),
    accepted (stored as received from that peer, unlike the originator's), or never looked
    at (fetched ahead by a pull that then failed: no harm, and no detection either)."""
    rejected: dict[tuple[str, str], set[str]] = {}
    for name, directory in record.directories.items():
        table = schema.peer_rejections
        with Node.open(directory) as node:
            for peer, object_id in node.store.raw_rows(select(table.c.peer, table.c.object_id)):
                rejected.setdefault((name, peer), set()).add(object_id)
    versions = sorted({(t.puller, t.source, t.id) for t in record.tampered})
    detected = accepted = unseen = 0
    missed: list[dict[str, str]] = []
    for puller, source, object_id in versions:
        taken = [
            row
            for key, row in held[puller].items()
            if key[0] == object_id and row.received_from == source
        ]
        genuine = _genuine(held, object_id)
        if any(orjson.loads(row.json) != genuine.get(row.version) for row in taken):
            accepted += 1
            missed.append({"puller": puller, "source": source, "object": object_id})
        elif object_id in rejected.get((puller, source), set()):
            detected += 1
        else:
            unseen += 1
    return {
        "tampered": len(versions),
        "detected": detected,
        "accepted": accepted,
        "not_applied": unseen,
        "accepted_objects": missed,
        "ok": accepted == 0 and (detected > 0 or not versions),
    }


def _genuine(held: dict[str, dict[tuple[str, str], Row]], object_id: str) -> dict[str, Any]:
    """Each version of an object, parsed, as the node that made it holds it."""
    for rows in held.values():
        made = {v: row for (i, v), row in rows.items() if i == object_id}
        if made and all(row.received_from is None for row in made.values()):
            return {v: orjson.loads(row.json) for v, row in made.items()}
    return {}


def _outages(
    record: Record, held: dict[str, dict[tuple[str, str], Row]], origin: datetime
) -> list[dict[str, Any]]:
    found = []
    scenario = record.scenario
    for name, windows in record.outages.items():
        for down, up in windows:
            links = {(name, source) for source in scenario.sources_of(name)}
            links |= {(puller, name) for puller in scenario.sources_of(name)}
            after = datetime.fromtimestamp(origin.timestamp() + up, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
            linked_at = None
            for sample in record.samples:
                if sample.at < up:
                    continue
                if all(
                    (sample.success.get(puller, {}).get(source) or "") >= after
                    for puller, source in links
                ):
                    linked_at = sample.at
                    break
            # what was shared while it was down and came to it afterwards
            arrivals = [
                row.added
                for row in held[name].values()
                if row.received_from is not None and row.added >= up and _made_during(
                    held, row, down, up
                )
            ]  # fmt: skip
            recovered = None
            if linked_at is not None:
                recovered = max([linked_at, *arrivals]) - up
            found.append(
                {
                    "node": name,
                    "down_s": round(down, 2),
                    "up_s": round(up, 2),
                    "offline_s": round(up - down, 2),
                    "caught_up_objects": len(arrivals),
                    "recovery_s": round(recovered, 2) if recovered is not None else None,
                }
            )
    return found


def _made_during(
    held: dict[str, dict[tuple[str, str], Row]], row: Row, down: float, up: float
) -> bool:
    for rows in held.values():
        first = rows.get((row.id, row.version))
        if first is not None and first.received_from is None:
            return down <= first.added <= up
    return False


def _integrity(record: Record) -> dict[str, dict[str, Any]]:
    found = {}
    for name, directory in record.directories.items():
        with Node.open(directory) as node:
            audit = node.verify()
        found[name] = {"ok": audit.ok, "objects": audit.objects, "problems": audit.problems[:10]}
    return found


# -- time to share ---------------------------------------------------------------------------


def _latency(record: Record, held: dict[str, dict[tuple[str, str], Row]]) -> dict[str, Any]:
    """Per hop (sender to receiver): from the version's arrival at the sender to its arrival
    at the receiver, for what was made during the drill. A hop that an outage of either end
    held up is counted apart: its wait is the outage's, measured by the recovery time."""
    hops: dict[str, list[float]] = defaultdict(list)
    delayed: dict[str, int] = defaultdict(int)
    windows = record.outages
    for receiver, rows in held.items():
        for key, row in rows.items():
            sender = row.received_from
            if sender is None or sender not in held:
                continue
            sent = held[sender].get(key)
            if sent is None or sent.added < 0:
                continue  # made before the drill began (the nodes' identities, say)
            hop = f"{sender}->{receiver}"
            if any(
                start < row.added and sent.added < end
                for who in (sender, receiver)
                for start, end in windows.get(who, [])
            ):
                delayed[hop] += 1
                continue
            hops[hop].append(max(0.0, row.added - sent.added))
    table = {
        hop: _stats(values) | {"outage_delayed": delayed.get(hop, 0)}
        for hop, values in sorted(hops.items())
    }
    everything = [v for values in hops.values() for v in values]
    return {
        "hops": table,
        "overall": _stats(everything),
        "samples": {hop: [round(v, 3) for v in values] for hop, values in sorted(hops.items())},
    }


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median_s": None, "p95_s": None}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return {
        "count": len(values),
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
    }
