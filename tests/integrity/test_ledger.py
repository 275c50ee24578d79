"""The stored ledger: appended in batches to a real SQLite store, it gives the same tree
heads and proofs as the in-memory tree, and its signed heads verify."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allied.integrity.ledger import Appender, StoredTree, sign_head, verify_head
from allied.integrity.merkle import (
    MerkleLog,
    frontier_of,
    frontier_root,
    verify_consistency,
    verify_inclusion,
)
from allied.integrity.signing import SignatureError, Signer, TrustedKey
from allied.store.store import Store
from tests.conftest import IDENTITY


def leaf(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


@given(st.integers(0, 300))
def test_the_frontier_gives_the_root(size: int) -> None:
    log = MerkleLog()
    for n in range(size):
        log.append(leaf(n))
    edge = [log.complete(level, index) for level, index in frontier_of(size)]
    assert frontier_root(edge) == log.root()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=8), data=st.data())
def test_stored_tree_matches_the_tree_in_memory(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("ledger") / "store.db"
    store = Store.open(f"sqlite:///{path}")
    log = MerkleLog()
    try:
        for count in batches:  # one transaction per batch: the edge is reloaded each time
            with store.write() as writer:
                appender = Appender(writer.conn)
                leaves = [leaf(len(log) + n) for n in range(count)]
                appender.append(leaves)
                for value in leaves:
                    log.append(value)
                assert appender.root() == log.root()
        size = len(log)
        with store.engine.connect() as conn:
            tree = StoredTree(conn)
            assert len(tree) == size
            old = data.draw(st.integers(1, size))
            index = data.draw(st.integers(0, size - 1))
            assert tree.root(old) == log.root(old)
            path_ = tree.inclusion_proof(index)
            assert path_ == log.inclusion_proof(index)
            verify_inclusion(log.complete(0, index), index, size, path_, log.root())
            proof = tree.consistency_proof(old)
            assert proof == log.consistency_proof(old)
            if old < size:
                verify_consistency(old, size, log.root(old), log.root(), proof)
    finally:
        store.close()


def test_signed_heads_verify_and_refuse_any_change() -> None:
    key = Ed25519PrivateKey.generate()
    signer = Signer.of(key, IDENTITY)
    keys = {signer.key_id: TrustedKey.of(key.public_key(), IDENTITY)}
    head = sign_head(5, leaf(1), "2026-11-23T00:00:00.000000Z", signer)
    verify_head(head, keys, source="head")
    for changed in (
        sign_head(
            5,
            leaf(1),
            "2026-11-23T00:00:00.000000Z",
            Signer.of(Ed25519PrivateKey.generate(), IDENTITY),
        ),
        type(head)(6, head.root, head.timestamp, head.signer, head.key_id, head.signature),
        type(head)(5, leaf(2), head.timestamp, head.signer, head.key_id, head.signature),
    ):
        with pytest.raises(SignatureError):
            verify_head(changed, keys, source="head")
