"""Where each peer stands, for `allied peer status` and the operator's monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from allied.federation.peers import peers, rejections
from allied.node import Node


def status(node: Node) -> list[dict[str, Any]]:
    """One entry per peer: its state (``ok``, ``failing``, ``flagged``, ``new``), when it
    last succeeded and how long ago (the lag of what this node holds of it), its errors,
    what it served that was refused, and its last verified tree head."""
    rows = []
    current = datetime.now(UTC)
    for peer in peers(node):
        if peer.flagged:
            state = "flagged"
        elif peer.failures:
            state = "failing"
        elif peer.last_success is None:
            state = "new"
        else:
            state = "ok"
        head = peer.head or {}
        rows.append(
            {
                "name": peer.name,
                "url": peer.url,
                "partner": peer.partner,
                "state": state,
                "flagged": peer.flagged,
                "last_attempt": peer.last_attempt,
                "last_success": peer.last_success,
                "lag_seconds": _seconds_since(peer.last_success, current),
                "failures": peer.failures,
                "next_attempt": peer.next_attempt,
                "last_error": peer.last_error,
                "received": peer.received,
                "rejected": peer.rejected,
                "push_to": peer.push_to,
                "pushed": peer.pushed,
                "recent_rejections": rejections(node, peer.name),
                "cursor": peer.cursor,
                "tree_size": head.get("tree_size"),
                "tree_head_timestamp": head.get("timestamp"),
            }
        )
    return rows


def _seconds_since(stamp: str | None, current: datetime) -> float | None:
    if stamp is None:
        return None
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round((current - then).total_seconds(), 3)
