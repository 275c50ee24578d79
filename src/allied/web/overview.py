"""The console's dashboard: what the node holds by type and label, what arrived lately, how
its peers stand, its ledger head, and what needs someone's attention now."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, select

from allied.errors import NotFound
from allied.integrity import proofs
from allied.node import Node
from allied.stix.labels import TLP_LEVELS
from allied.store import schema
from allied.web.search import Filters, Hit, search

_O = schema.objects
_TLP_ORDER = {level: rank for rank, level in enumerate(TLP_LEVELS)}


@dataclass
class Overview:
    by_type: list[tuple[str, int]]
    by_tlp: list[tuple[str, int]]
    #: (name, marking id, objects) of every classification label the node holds
    by_label: list[tuple[str, str, int]]
    recent: list[Hit]
    peers: list[dict[str, Any]]
    head: dict[str, Any] | None
    versions: int
    alerts: list[str] = field(default_factory=list)


def overview(node: Node) -> Overview:
    from allied.federation.status import status

    store = node.store
    by_type: Counter[str] = Counter()
    by_tlp: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    sets = store.label_sets()
    labels = store.label_markings()
    with store.engine.connect() as conn:
        for kind, tlp, label_set, count in _latest_counts(conn):
            by_type[kind] += count
            by_tlp[tlp or "none"] += count
            markings = orjson.loads(sets[label_set][0]) if label_set in sets else []
            for marking_id in set(markings) & labels.keys():
                by_label[marking_id] += count
    try:
        head: dict[str, Any] | None = proofs.latest_head(store).as_dict()
    except NotFound:
        head = None
    peers = status(node)
    alerts = [f"peer {p['name']} is flagged: {p['flagged']}" for p in peers if p["flagged"]]
    alerts += [
        f"peer {p['name']} is failing ({p['failures']} attempts): {p['last_error']}"
        for p in peers
        if p["state"] == "failing"
    ]
    revoked = [p.name for p in store.partners() if p.revoked]
    if revoked:
        alerts.append(f"revoked partners: {', '.join(revoked)}")
    return Overview(
        by_type=sorted(by_type.items(), key=lambda item: (-item[1], item[0])),
        by_tlp=sorted(by_tlp.items(), key=lambda item: _TLP_ORDER.get(item[0], -1)),
        by_label=sorted(
            ((labels[m].name, m, by_label[m]) for m in labels),
            key=lambda row: (row[0], row[1]),
        ),
        recent=search(store, Filters()).hits[:10],
        peers=peers,
        head=head,
        versions=store.version_count(),
        alerts=alerts,
    )


def _latest_counts(conn: Connection) -> list[tuple[str, str | None, int, int]]:
    """(type, tlp, label set, objects) of the latest versions: every version counted from
    the covering index, less the versions a newer one replaced (few, found from the
    (id, version) index). Asking for the latest versions directly would read every row."""
    group = (_O.c.type, _O.c.tlp, _O.c.label_set)
    counts: Counter[tuple[str, str | None, int]] = Counter()
    for kind, tlp, label_set, count in conn.execute(select(*group, func.count()).group_by(*group)):
        counts[(kind, tlp, label_set)] += count
    newest = (
        select(_O.c.id, func.max(_O.c.version).label("version"))
        .group_by(_O.c.id)
        .having(func.count() > 1)
        .subquery()
    )
    replaced = (
        select(*group, func.count())
        .join(newest, and_(_O.c.id == newest.c.id, _O.c.version < newest.c.version))
        .group_by(*group)
    )
    for kind, tlp, label_set, count in conn.execute(replaced):
        counts[(kind, tlp, label_set)] -= count
    return [(*key, count) for key, count in counts.items() if count > 0]
