"""The peers a node pulls from: where they are, who they are, how to authenticate, and where
each sync stands.

A peer is another node's TAXII API, bound to a partner of this node's directory: the
partner's pinned key verifies the peer's tree heads (and the objects it originates), its
name is what everything received from the peer is recorded as coming from. The token this
node presents to the peer is a credential: it is kept in a 0600 file in the node's peers
folder, never in the store or a log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import delete, insert, select, update

from allied.errors import ConfigError, NotFound
from allied.integrity.ledger import TreeHead
from allied.node import Node
from allied.store import schema
from allied.store.store import Partner, now

PEERS_DIR = "peers"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_COLLECTION = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_P = schema.peers


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    partner: str
    collection: str | None
    created: str
    cursor: str | None = None
    resume: str | None = None
    withdrawn_cursor: str | None = None
    push_to: str | None = None
    push_added: str | None = None
    push_position: int | None = None
    pushed: int = 0
    head: dict[str, Any] | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt: str | None = None
    flagged: str | None = None
    received: int = 0
    rejected: int = 0

    @property
    def tree_head(self) -> TreeHead | None:
        """The peer's last verified signed tree head."""
        if self.head is None:
            return None
        return TreeHead.from_dict(self.head, source=f"peer {self.name}: stored tree head")


def token_path(node: Node, name: str) -> Path:
    return node.config.directory / PEERS_DIR / f"{name}.token"


def add_peer(
    node: Node,
    name: str,
    url: str,
    *,
    partner: str,
    token_file: Path,
    collection: str | None = None,
    push_to: str | None = None,
) -> Peer:
    """Register peer ``name`` at ``url``, the node of enrolled ``partner``; the token in
    ``token_file`` is copied into the node's peers folder (0600). With ``push_to`` (a
    TAXII collection id at the peer), each sync also posts there what this node may give
    the partner."""
    if _NAME.match(name) is None:
        raise ConfigError(f"peer name {name!r}: use letters, digits, '.', '_' or '-'")
    url = _base_url(url)
    known = _partner(node, partner)
    if known.public_key is None:
        raise ConfigError(
            f"--partner {partner}: no public key is pinned for it; enrol it with --key, so "
            "that what its node serves can be verified"
        )
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"--token-file {token_file}: cannot read ({error.strerror or error})"
        ) from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file {token_file}: expected one token, on one line")
    if any(p.name == name for p in peers(node)):
        raise ConfigError(f"peer {name} exists already; remove it first")
    folder = node.config.directory / PEERS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    path = token_path(node, name)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    for value, option in ((collection, "--collection"), (push_to, "--push-to")):
        if value is not None and _COLLECTION.match(value) is None:
            raise ConfigError(f"{option} {value!r}: expected a TAXII collection id (a UUID)")
    peer = Peer(name, url, partner, collection, now(), push_to=push_to)
    with node.store.write() as writer:
        writer.conn.execute(
            insert(_P).values(
                name=name,
                url=url,
                partner=partner,
                collection=collection,
                created=peer.created,
                failures=0,
                received=0,
                rejected=0,
                push_to=push_to,
                pushed=0,
            )
        )
    return peer


def remove_peer(node: Node, name: str) -> None:
    with node.store.write() as writer:
        gone = writer.conn.execute(delete(_P).where(_P.c.name == name)).rowcount
    if not gone:
        raise NotFound(f"no peer {name}")
    token_path(node, name).unlink(missing_ok=True)


def peers(node: Node) -> list[Peer]:
    with node.store.engine.connect() as conn:
        return [_peer(row) for row in conn.execute(select(_P).order_by(_P.c.name))]


def peer(node: Node, name: str) -> Peer:
    for found in peers(node):
        if found.name == name:
            return found
    raise NotFound(f"no peer {name}")


def token(node: Node, name: str) -> str:
    path = token_path(node, name)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"peer {name}: cannot read its token {path}: {error.strerror}") from None


def accept(node: Node, name: str) -> None:
    """The operator has looked into a flagged peer and takes its history as it is now: the
    flag and the head it contradicted are dropped, and syncing resumes."""
    peer(node, name)
    with node.store.write() as writer:
        writer.conn.execute(
            update(_P)
            .where(_P.c.name == name)
            .values(flagged=None, head=None, failures=0, next_attempt=None)
        )


def rejections(node: Node, name: str, limit: int = 5) -> list[dict[str, str]]:
    """The latest objects ``name`` served that were refused, newest first."""
    table = schema.peer_rejections
    query = (
        select(table.c.object_id, table.c.version, table.c.reason, table.c.at)
        .where(table.c.peer == name)
        .order_by(table.c.seq.desc())
        .limit(limit)
    )
    with node.store.engine.connect() as conn:
        return [
            {"id": object_id, "version": version, "reason": reason, "at": at}
            for object_id, version, reason, at in conn.execute(query)
        ]


def _partner(node: Node, name: str) -> Partner:
    try:
        known = node.partner(name)
    except NotFound as error:
        raise ConfigError(
            f"--partner {name}: no such partner to sync with ({error.message})"
        ) from None
    if known.revoked:
        raise ConfigError(f"--partner {name}: the partner is revoked")
    return known


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"peer URL {url!r}: expected http(s)://HOST[:PORT]/")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"peer URL {url!r}: no query, fragment or credentials in it")
    return url if url.endswith("/") else url + "/"


def _peer(row: Any) -> Peer:
    values = dict(row._mapping)
    head = values.pop("head")
    return Peer(**values, head=orjson.loads(head) if head else None)
