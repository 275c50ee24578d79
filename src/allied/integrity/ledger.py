"""The ledger as the store keeps it: RFC 9162 leaves and complete subtrees in two tables,
and signed tree heads.

Every accepted object version is one leaf: ``SHA-256(0x00 || RFC 8785 bytes of the stored
object)``. Appending writes the leaf and the complete subtrees it closes (one on average), so
an append costs O(1) amortised, and a tree head or proof reads O(log n) stored hashes. The
rows are written in the transaction that stores the objects, so store and ledger cannot
disagree except by tampering, which ``allied verify`` looks for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from nacl.exceptions import BadSignatureError
from sqlalchemy import Connection, func, insert, select

from allied.integrity.canonical import canonical
from allied.integrity.merkle import (
    ProofError,
    Tree,
    frontier_of,
    frontier_root,
    leaf_hash,
    node_hash,
)
from allied.integrity.signing import ALGORITHM, SignatureError, Signer, TrustedKey
from allied.store import schema

_T = TypeVar("_T")
_L = schema.ledger
_N = schema.ledger_nodes
_H = schema.tree_heads
#: the most entries a ledger holds: its indexes are 32-bit integers in PostgreSQL, so a
#: larger size, from a partner or a request, names no tree any store can have
MAX_TREE_SIZE = 2**31 - 1


def object_leaf(data: Mapping[str, Any]) -> bytes:
    """The leaf hash of one stored object version."""
    return leaf_hash(canonical(data))


class StoredTree(Tree):
    """The ledger's tree read from the store (within one connection).

    A head or proof needs O(log n) stored hashes; they are found first by running the same
    computation over placeholders, then read in two statements, so a proof costs two round
    trips to the database however large the tree."""

    _PLACEHOLDER = bytes(32)

    def __init__(self, conn: Connection, size: int | None = None) -> None:
        self._conn = conn
        self._size = ledger_size(conn) if size is None else size
        self._wanted: set[tuple[int, int]] | None = None
        self._known: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return self._size

    def complete(self, level: int, index: int) -> bytes:
        found = self._known.get((level, index))
        if found is not None:
            return found
        if self._wanted is not None:
            self._wanted.add((level, index))
            return self._PLACEHOLDER
        self._fetch({(level, index)})
        found = self._known.get((level, index))
        if found is None:
            raise ProofError(
                f"ledger: no stored hash for level {level}, index {index} (see 'allied verify')"
            )
        return found

    def _fetch(self, keys: set[tuple[int, int]]) -> None:
        """Point lookups by primary key, all in one statement."""
        mark = "?" if self._conn.dialect.paramstyle == "qmark" else "%s"
        leaf = f"SELECT 0, idx, leaf FROM ledger WHERE idx = {mark}"
        node = f"SELECT level, idx, hash FROM ledger_nodes WHERE level = {mark} AND idx = {mark}"
        parts: list[str] = []
        params: list[int] = []
        for level, index in sorted(keys):
            if level == 0:
                parts.append(leaf)
                params.append(index)
            else:
                parts.append(node)
                params.extend((level, index))
        cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(" UNION ALL ".join(parts), params)
            for level, index, digest in cursor.fetchall():
                self._known[(int(level), int(index))] = bytes(digest)
        finally:
            cursor.close()

    def _prefetched(self, compute: Callable[[], _T]) -> _T:
        self._wanted = set()
        try:
            compute()
            wanted = self._wanted - set(self._known)
        finally:
            self._wanted = None
        if wanted:
            self._fetch(wanted)
        return compute()

    def root(self, size: int | None = None) -> bytes:
        return self._prefetched(lambda: Tree.root(self, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self._prefetched(lambda: Tree.inclusion_proof(self, index, size))

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        return self._prefetched(lambda: Tree.consistency_proof(self, old_size, size))

    def consistency(self, old_size: int, size: int | None = None) -> tuple[bytes, list[bytes]]:
        """The root at ``old_size`` and the consistency proof from it, read together."""
        return self._prefetched(
            lambda: (Tree.root(self, old_size), Tree.consistency_proof(self, old_size, size))
        )


def ledger_size(conn: Connection) -> int:
    """Leaves in the ledger: one more than the highest index (a deleted leaf is for
    ``verify`` to find, not a reason to reuse an index)."""
    top = conn.execute(select(func.max(_L.c.idx))).scalar()
    return 0 if top is None else int(top) + 1


class Appender:
    """Appends leaves within a write transaction, keeping the right edge of the tree (one
    complete subtree per bit of its size) in memory."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.size = ledger_size(conn)
        tree = StoredTree(conn, self.size)
        # (level, hash) of the complete subtrees making up the tree, leftmost first
        self._edge: list[tuple[int, bytes]] = [
            (level, tree.complete(level, index)) for level, index in frontier_of(self.size)
        ]
        self.appended = 0

    def append(self, leaves: Iterable[bytes]) -> None:
        rows: list[tuple[int, bytes]] = []
        nodes: list[tuple[int, int, bytes]] = []
        edge = self._edge
        for leaf in leaves:
            index = self.size
            rows.append((index, leaf))
            level, digest = 0, leaf
            while edge and edge[-1][0] == level:
                _, left = edge.pop()
                digest = node_hash(left, digest)
                level += 1
                nodes.append((level, index >> level, digest))
            edge.append((level, digest))
            self.size += 1
            self.appended += 1
        # through the driver: an import appends a leaf and about one node per object, and
        # the per-row processing of a Core insert would cost more than the hashing
        mark = "?" if self._conn.dialect.paramstyle == "qmark" else "%s"
        if rows:
            self._conn.exec_driver_sql(
                f"INSERT INTO ledger (idx, leaf) VALUES ({mark}, {mark})", rows
            )
        if nodes:
            self._conn.exec_driver_sql(
                f"INSERT INTO ledger_nodes (level, idx, hash) VALUES ({mark}, {mark}, {mark})",
                nodes,
            )

    def root(self) -> bytes:
        return frontier_root([digest for _level, digest in self._edge])


# -- signed tree heads ----------------------------------------------------------------------


@dataclass(frozen=True)
class TreeHead:
    """A tree size and root, signed by the node that holds the ledger."""

    size: int
    root: bytes
    timestamp: str
    signer: str
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return head_bytes(self.size, self.root, self.timestamp, self.signer, self.key_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.size,
            "root_hash": base64.b64encode(self.root).decode(),
            "timestamp": self.timestamp,
            "signer": self.signer,
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str) -> TreeHead:
        try:
            size = int(data["tree_size"])
            if not 0 <= size <= MAX_TREE_SIZE:
                raise ValueError(f"tree_size {size} is not within 0..{MAX_TREE_SIZE}")
            return cls(
                size=size,
                root=base64.b64decode(data["root_hash"], validate=True),
                timestamp=str(data["timestamp"]),
                signer=str(data["signer"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise SignatureError(source, f"not a signed tree head ({error})") from None


def head_bytes(size: int, root: bytes, timestamp: str, signer: str, key_id: str) -> bytes:
    """What a tree head signature covers: its fields in RFC 8785 form."""
    return canonical(
        {
            "tree_size": size,
            "root_hash": base64.b64encode(root).decode(),
            "timestamp": timestamp,
            "signer": signer,
            "key_id": key_id,
            "algorithm": ALGORITHM,
        }
    )


def sign_head(size: int, root: bytes, timestamp: str, signer: Signer) -> TreeHead:
    message = head_bytes(size, root, timestamp, signer.identity, signer.key_id)
    return TreeHead(size, root, timestamp, signer.identity, signer.key_id, signer.sign(message))


def verify_head(head: TreeHead, keys: Mapping[str, TrustedKey], *, source: str) -> None:
    """Raises SignatureError unless a trusted key of the head's signer signed it."""
    key = keys.get(head.key_id)
    if key is None:
        raise SignatureError(source, f"tree head signed with unknown key {head.key_id}")
    if key.owner != head.signer:
        raise SignatureError(
            source, f"key {head.key_id} belongs to {key.owner}, not to {head.signer}"
        )
    try:
        key.key.verify(head.signed_bytes(), head.signature)
    except (BadSignatureError, ValueError):
        raise SignatureError(
            source, f"tree head signature by {head.signer} does not match"
        ) from None


def store_head(conn: Connection, head: TreeHead) -> None:
    conn.execute(
        insert(_H).values(
            size=head.size,
            root=head.root,
            timestamp=head.timestamp,
            signer=head.signer,
            key_id=head.key_id,
            signature=head.signature,
        )
    )


def stored_heads(conn: Connection) -> list[TreeHead]:
    """Every signed tree head, oldest first."""
    rows = conn.execute(
        select(
            _H.c.size, _H.c.root, _H.c.timestamp, _H.c.signer, _H.c.key_id, _H.c.signature
        ).order_by(_H.c.size)
    )
    return [
        TreeHead(int(size), bytes(root), timestamp, signer, kid, bytes(signature))
        for size, root, timestamp, signer, kid, signature in rows
    ]


def stored_head(conn: Connection, size: int | None = None) -> TreeHead | None:
    """The signed tree head of ``size`` entries, or the latest: one row, where a node that
    signs a head per write holds many."""
    query = select(_H.c.size, _H.c.root, _H.c.timestamp, _H.c.signer, _H.c.key_id, _H.c.signature)
    query = query.where(_H.c.size == size) if size is not None else query
    row = conn.execute(query.order_by(_H.c.size.desc()).limit(1)).first()
    if row is None:
        return None
    found, root, timestamp, signer, kid, signature = row
    return TreeHead(int(found), bytes(root), timestamp, signer, kid, bytes(signature))


def head_json(head: TreeHead) -> bytes:
    return orjson.dumps(head.as_dict(), option=orjson.OPT_INDENT_2)
