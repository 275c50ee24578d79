"""The console's dashboard: what the node holds by type and label, what arrived lately, how
its peers stand, its ledger head, and what needs someone's attention now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from allied.errors import NotFound
from allied.integrity import proofs
from allied.node import Node
from allied.store import schema
from allied.store.store import is_latest
from allied.web.search import Filters, Hit, search

_O = schema.objects


@dataclass
class Overview:
    by_type: list[tuple[str, int]]
    by_tlp: list[tuple[str, int]]
    by_label: list[tuple[str, int]]
    recent: list[Hit]
    peers: list[dict[str, Any]]
    head: dict[str, Any] | None
    versions: int
    alerts: list[str] = field(default_factory=list)


def overview(node: Node) -> Overview:
    from allied.federation.status import status

    store = node.store
    with store.engine.connect() as conn:
        by_tlp = conn.execute(
            select(func.coalesce(_O.c.tlp, "none"), func.count(func.distinct(_O.c.id)))
            .group_by(_O.c.tlp)
            .order_by(_O.c.tlp)
        ).all()
        by_label = [
            (name, _count_marked(conn, marking_id)) for name, marking_id, _tlp in store.labels()
        ]
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
        by_type=sorted(store.counts_by_type().items(), key=lambda item: (-item[1], item[0])),
        by_tlp=[(str(level), int(count)) for level, count in by_tlp],
        by_label=by_label,
        recent=search(store, Filters()).hits[:10],
        peers=peers,
        head=head,
        versions=store.version_count(),
        alerts=alerts,
    )


def _count_marked(conn: Connection, marking_id: str) -> int:
    """Objects whose latest version carries the marking (markings hold quoted ids)."""
    latest = is_latest()
    query = select(func.count()).where(latest, _O.c.markings.like(f'%"{marking_id}"%'))
    return int(conn.execute(query).scalar_one())
