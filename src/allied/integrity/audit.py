"""`allied verify`: everything the node can check about its own integrity, from scratch.

Each stored object version must parse, carry a valid origin signature (or be exactly a
standard object), agree with its index columns and its release closure (they decide who
receives it), be signed by the node if recorded as the node's own, and hash to the ledger
leaf it was given. The ledger must have every entry, each claimed by one object; its
stored subtree hashes must match the leaves; every signed tree head must be signed by one
of the node's own keys and match the tree at its size; and the head kept beside the store
must not be newer than the store (a store rolled back to an older copy) nor differ from it
(history rewritten). Every problem is reported, not only the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select

from allied.integrity.ledger import TreeHead, object_leaf, stored_heads, verify_head
from allied.integrity.merkle import MerkleLog
from allied.integrity.origin import is_standard, is_standard_id
from allied.integrity.signing import SignatureError, TrustedKey, signer_of, verify
from allied.stix.labels import Label, resolve_labels
from allied.stix.model import StixObject, from_valid
from allied.store import schema
from allied.store.closure import closures
from allied.store.store import read_label_closures


@dataclass
class Audit:
    objects: int = 0
    #: partners' posted copies (schema.posted_copies)
    copies: int = 0
    signatures: int = 0
    ledger_size: int = 0
    root: bytes = b""
    heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(
    conn: Connection,
    keys: Mapping[str, TrustedKey],
    recorded_head: Mapping[str, Any] | None,
    *,
    head_source: str = "recorded tree head",
    head_keys: Mapping[str, TrustedKey] | None = None,
    own_identity: str | None = None,
    labels: Mapping[str, Label] | None = None,
) -> Audit:
    """``keys`` verify objects; ``head_keys`` (the node's own keys, by default all of
    ``keys``) verify tree heads: only the node signs its ledger."""
    head_keys = keys if head_keys is None else head_keys
    result = Audit()
    problems = result.problems
    leaves = {
        int(idx): bytes(leaf)
        for idx, leaf in conn.execute(select(schema.ledger.c.idx, schema.ledger.c.leaf))
    }
    label_sets = {
        number: (markings, source, signer)
        for number, markings, source, signer in conn.execute(
            select(
                schema.label_sets.c.id,
                schema.label_sets.c.markings,
                schema.label_sets.c.received_from,
                schema.label_sets.c.signer,
            )
        )
    }
    claimed: dict[int, str] = {}
    objects = schema.objects
    query = select(
        objects.c.pk,
        objects.c.id,
        objects.c.type,
        objects.c.version,
        objects.c.markings,
        objects.c.label_set,
        objects.c.received_from,
        objects.c.ledger_index,
        objects.c.closure,
        objects.c.json,
        objects.c.tlp,
        objects.c.name,
        objects.c.originator,
    ).order_by(objects.c.pk)
    graph = _Graph()
    for row in conn.execute(query):
        pk, object_id, _kind, version, _markings, label_set, source, index, closure, text = row[:10]
        result.objects += 1
        name = f"{object_id} (version {version or 'only'})"
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            problems.append(f"{name}: the stored JSON is unreadable (row {pk})")
            continue
        found, parsed = _check_columns(name, data, row, label_sets, labels or {})
        problems.extend(found)
        if parsed is not None:
            graph.add(name, object_id, version, label_set, parsed.refs, closure)
        signer = _check_origin(name, object_id, data, keys, result)
        if own_identity is not None and source is None and signer not in (None, own_identity):
            problems.append(
                f"{name}: signed by {signer} but recorded as this node's own, so it "
                "would be forwarded as if this node originated it"
            )
        if index is None:
            problems.append(f"{name}: not in the ledger")
            continue
        _claim(name, int(index), data, claimed, leaves, problems)
    copies = schema.posted_copies
    query = select(
        copies.c.seq, copies.c.partner, copies.c.id, copies.c.version, copies.c.ledger_index,
        copies.c.json,
    ).order_by(copies.c.seq)  # fmt: skip
    copy: Any
    for copy in conn.execute(query):
        seq, partner, object_id, version, index, text = copy
        result.copies += 1
        name = f"{partner}'s copy of {object_id} (version {version or 'only'})"
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            problems.append(f"{name}: the stored JSON is unreadable (copy {seq})")
            continue
        if data.get("id") != object_id:
            problems.append(f"{name}: the stored JSON is that of {data.get('id')}")
        _check_origin(name, object_id, data, keys, result)
        _claim(name, int(index), data, claimed, leaves, problems)
    problems.extend(graph.check(read_label_closures(conn)))
    size = max(leaves, default=-1) + 1
    for index in range(size):
        if index not in leaves:
            problems.append(f"ledger entry {index} is missing")
        elif index not in claimed:
            problems.append(f"ledger entry {index} belongs to no stored object (deleted?)")
    tree = MerkleLog()
    for index in range(size):
        tree.append(leaves.get(index, b"\0" * 32))
    result.ledger_size = size
    result.root = tree.root()
    _check_nodes(conn, tree, problems)
    heads = stored_heads(conn)
    result.heads = len(heads)
    for head in heads:
        problems.extend(_check_head(head, tree, head_keys, f"tree head of size {head.size}"))
    if size and not heads:
        problems.append(f"the ledger of {size} entries has no signed tree head")
    if heads and heads[-1].size < size:
        problems.append(
            f"ledger entries {heads[-1].size} to {size - 1} are not covered by a signed tree head"
        )
    if recorded_head is not None:
        try:
            head = TreeHead.from_dict(recorded_head, source=head_source)
        except SignatureError as error:
            problems.append(f"{head_source}: {error.reason}")
        else:
            if head.size > size:
                problems.append(
                    f"{head_source}: this node signed a ledger of {head.size} entries at "
                    f"{head.timestamp}, but the store holds {size}: the store was rolled back "
                    "to an older copy, or entries were removed"
                )
            else:
                problems.extend(_check_head(head, tree, head_keys, head_source))
                if heads and head.size > heads[-1].size:
                    problems.append(
                        f"{head_source}: size {head.size} is beyond the store's latest signed "
                        f"tree head ({heads[-1].size})"
                    )
    elif heads:
        problems.append(f"{head_source}: missing, so a rolled-back store would go unnoticed")
    return result


def _check_origin(
    name: str,
    object_id: str,
    data: Mapping[str, Any],
    keys: Mapping[str, TrustedKey],
    result: Audit,
) -> str | None:
    """A stored object is exactly the standard one of its id, or carries a signature a
    trusted key made over it; its signer, if it verifies."""
    if is_standard_id(object_id):
        if not is_standard(data):
            result.problems.append(f"{name}: not the standard object of that id")
        return None
    try:
        signer = verify(data, keys)
    except SignatureError as error:
        result.problems.append(f"{name}: {error.reason}")
        return None
    result.signatures += 1
    return signer


def _claim(
    name: str,
    index: int,
    data: Mapping[str, Any],
    claimed: dict[int, str],
    leaves: Mapping[int, bytes],
    problems: list[str],
) -> None:
    """A stored version claims its ledger entry, whose leaf must be its own."""
    if index in claimed:
        problems.append(f"{name}: ledger entry {index} is also claimed by {claimed[index]}")
    claimed[index] = name
    leaf = leaves.get(index)
    if leaf is None:
        problems.append(f"{name}: its ledger entry {index} is missing")
    elif leaf != object_leaf(data):
        problems.append(
            f"{name}: does not match its ledger entry {index} (altered after it was "
            "stored, or ledger entries moved)"
        )


def _check_columns(
    name: str,
    data: dict[str, Any],
    row: Any,
    label_sets: Mapping[int, tuple[str, str | None, str | None]],
    labels: Mapping[str, Label],
) -> tuple[list[str], StixObject | None]:
    """The index columns the release decision and listings read must say what the object
    says."""
    _pk, object_id, kind, version, markings, label_set, source, *_rest = row
    if data.get("id") != object_id:
        return [f"{name}: the stored JSON has id {data.get('id')!r}"], None
    try:
        parsed: StixObject = from_valid(data)
    except (KeyError, TypeError, orjson.JSONEncodeError):
        return [f"{name}: the stored JSON is not a STIX object"], None
    expected = orjson.dumps(parsed.marking_refs).decode()
    found = []
    if markings != expected:
        found.append(f"{name}: its label columns say {markings}, the object says {expected}")
    # the set also keys on the signer of what came from a partner (TLP:GREEN is judged on
    # the originator's communities), as the store files it
    signer = signer_of(data) if source is not None else None
    if label_sets.get(label_set) != (markings, source, signer):
        found.append(
            f"{name}: its label set {label_set} does not match its markings and originator"
        )
    if kind != parsed.type or version != parsed.version:
        found.append(
            f"{name}: its type and version columns say {kind} {version!r}, the object says "
            f"{parsed.type} {parsed.version!r}"
        )
    tlp, title, originator = row[10], row[11], row[12]
    expected_tlp = resolve_labels(parsed.marking_refs, labels).tlp if parsed.marking_refs else None
    if tlp != expected_tlp:
        found.append(f"{name}: its TLP column says {tlp}, its markings say {expected_tlp}")
    if title != (data.get("name") or data.get("value")) or originator != parsed.created_by_ref:
        found.append(f"{name}: its name or originator column differs from the object")
    return found, parsed


class _Graph:
    """Every version's label set and references, to recompute the label closures that
    egress filters on (allied.store.closure) and compare them with the stored ones."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.label_sets: list[int] = []
        self.targets: list[tuple[str, ...]] = []
        self.stored: list[int | None] = []
        self.latest: dict[str, int] = {}
        self._versions: list[str] = []

    def add(
        self,
        name: str,
        object_id: str,
        version: str,
        label_set: int,
        refs: tuple[str, ...],
        closure: int | None,
    ) -> None:
        index = len(self.names)
        self.names.append(name)
        self.label_sets.append(label_set)
        self.targets.append(refs)
        self.stored.append(closure)
        self._versions.append(version)
        best = self.latest.get(object_id)
        if best is None or version > self._versions[best]:
            self.latest[object_id] = index

    def check(self, stored_closures: Mapping[int, frozenset[int]]) -> list[str]:
        expected = closures(self.label_sets, self.targets, self.latest, {})
        found = []
        for name, number, members in zip(self.names, self.stored, expected, strict=True):
            if number is None or stored_closures.get(number) != members:
                found.append(
                    f"{name}: its release closure does not match its references and labels "
                    "(who may receive it was altered)"
                )
        return found


def _check_nodes(conn: Connection, tree: MerkleLog, problems: list[str]) -> None:
    nodes = schema.ledger_nodes
    present: set[tuple[int, int]] = set()
    for level, index, digest in conn.execute(select(nodes.c.level, nodes.c.idx, nodes.c.hash)):
        level, index = int(level), int(index)
        present.add((level, index))
        if level >= len(tree.levels) or index >= len(tree.levels[level]):
            problems.append(f"ledger node (level {level}, index {index}) is beyond the tree")
        elif tree.levels[level][index] != bytes(digest):
            problems.append(
                f"ledger node (level {level}, index {index}) does not match the entries below it"
            )
    for level in range(1, len(tree.levels)):
        for index in range(len(tree.levels[level])):
            if (level, index) not in present:
                problems.append(f"ledger node (level {level}, index {index}) is missing")


def _check_head(
    head: TreeHead, tree: MerkleLog, keys: Mapping[str, TrustedKey], source: str
) -> list[str]:
    found = []
    try:
        verify_head(head, keys, source=source)
    except SignatureError as error:
        found.append(f"{source}: {error.reason}")
    if head.size > len(tree):
        found.append(f"{source}: the ledger has only {len(tree)} entries")
    elif tree.root(head.size) != head.root:
        found.append(
            f"{source} (signed {head.timestamp}) does not match the ledger: history was rewritten"
        )
    return found
