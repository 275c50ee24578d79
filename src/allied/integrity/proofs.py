"""Ledger proofs for one node, ready to hand out: what `allied ledger` prints and the API
will serve. Each proof is checked with the RFC 9162 verifier before it leaves, so a node
never hands out a proof that does not hold."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select

from allied.errors import ConfigError, NotFound
from allied.integrity.ledger import StoredTree, TreeHead, stored_head
from allied.integrity.merkle import verify_consistency, verify_inclusion
from allied.stix.checks import TIMESTAMP, timestamp_key
from allied.store import schema
from allied.store.store import Store

_O = schema.objects


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def latest_head(store: Store) -> TreeHead:
    with store.engine.connect() as conn:
        head = stored_head(conn)
    if head is None:
        raise NotFound("the ledger has no signed tree head yet")
    return head


def inclusion(
    store: Store, object_id: str, version: str | None = None, *, copy_of: str | None = None
) -> dict[str, Any]:
    """The inclusion proof of an object version (the latest by default) in the latest signed
    tree head; of partner ``copy_of``'s posted copy of it, if given."""
    table = _O if copy_of is None else schema.posted_copies
    query = select(table.c.version, table.c.ledger_index).where(table.c.id == object_id)
    if copy_of is not None:
        query = query.where(table.c.partner == copy_of)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(table.c.version)).all()
        if version is not None:
            if TIMESTAMP.match(version) is None:
                raise ConfigError(
                    f"--version {version!r}: expected a timestamp such as 2026-03-01T10:00:00.000Z"
                )
            rows = [row for row in rows if row[0] == timestamp_key(version)]
        if not rows:
            what = f"version {version} of {object_id}" if version else object_id
            raise NotFound(f"no {what} in this node")
        stored_version, index = rows[-1]
        head = stored_head(conn)
        if head is None or index is None or index >= head.size:
            raise NotFound(f"{object_id} is not yet covered by a signed tree head")
        tree = StoredTree(conn)
        leaf = tree.complete(0, index)
        path = tree.inclusion_proof(index, head.size)
    verify_inclusion(leaf, index, head.size, path, head.root)
    return {
        "id": object_id,
        "version": stored_version,
        "leaf_index": index,
        "leaf_hash": _b64(leaf),
        "tree_size": head.size,
        "root_hash": _b64(head.root),
        "proof": [_b64(step) for step in path],
        "tree_head": head.as_dict(),
    }


def consistency(store: Store, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """The consistency proof from the ledger's first ``old_size`` entries to the signed tree
    head of ``new_size`` entries (the latest by default)."""
    with store.engine.connect() as conn:
        head = stored_head(conn, new_size)
        if head is None:
            raise NotFound(
                f"this node signed no tree head of {new_size} entries"
                if new_size is not None
                else "the ledger has no signed tree head yet"
            )
        if old_size < 0:
            raise ConfigError(f"a tree size is 0 or more, not {old_size}")
        if old_size > head.size:
            raise NotFound(f"the signed tree head has {head.size} entries, not {old_size}")
        tree = StoredTree(conn)
        old_root, path = tree.consistency(old_size, head.size)
    verify_consistency(old_size, head.size, old_root, head.root, path)
    return {
        "old_size": old_size,
        "old_root_hash": _b64(old_root),
        "tree_size": head.size,
        "root_hash": _b64(head.root),
        "proof": [_b64(step) for step in path],
        "tree_head": head.as_dict(),
    }
