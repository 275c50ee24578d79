"""RFC 9162 Merkle hashing and proofs: the Certificate Transparency test vectors, a naive
recursive reference written from the RFC's definitions, and property-based checks that every
proof verifies and every altered proof or root fails."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allied.integrity.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# Leaves and roots of the 8-leaf test tree used by Certificate Transparency implementations
LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
          "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def log_of(count: int) -> MerkleLog:
    log = MerkleLog()
    for n in range(count):
        log.append(leaf_hash(n.to_bytes(4, "big")))
    return log


# -- reference implementation: the RFC's recursive definitions, literally ----------------------


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = k_of(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = k_of(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if complete else [mth(leaves)]
    k = k_of(len(leaves))
    if m <= k:
        return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


# -- tests ------------------------------------------------------------------------------------


def test_certificate_transparency_vectors() -> None:
    log = MerkleLog()
    for leaf in LEAVES:
        log.append(leaf_hash(bytes.fromhex(leaf)))
    assert [log.root(n).hex() for n in range(1, 9)] == ROOTS
    assert log.root(0) == EMPTY_ROOT


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_proofs_equal_the_rfc_definitions(size: int, data: st.DataObject) -> None:
    log = log_of(size)
    leaves = log.levels[0]
    assert log.root() == mth(leaves)
    index = data.draw(st.integers(0, size - 1))
    assert log.inclusion_proof(index) == path(index, leaves)
    old = data.draw(st.integers(1, size))
    assert log.consistency_proof(old) == subproof(old, leaves, True)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2000), st.data())
def test_every_inclusion_proof_verifies_and_any_change_fails(
    size: int, data: st.DataObject
) -> None:
    log = log_of(size)
    index = data.draw(st.integers(0, size - 1))
    proof, root, leaf = log.inclusion_proof(index), log.root(), log.levels[0][index]
    verify_inclusion(leaf, index, size, proof, root)
    bad_root = bytes([root[0] ^ 1]) + root[1:]
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, bad_root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"other"), index, size, proof, root)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        altered = [*proof]
        altered[at] = bytes([altered[at][0] ^ 0x80]) + altered[at][1:]
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, altered, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:-1], root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [*proof, root], root)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2000), st.data())
def test_every_consistency_proof_verifies_and_any_change_fails(
    size: int, data: st.DataObject
) -> None:
    log = log_of(size)
    old = data.draw(st.integers(1, size))
    proof, old_root, root = log.consistency_proof(old), log.root(old), log.root()
    verify_consistency(old, size, old_root, root, proof)
    forked = bytes([old_root[0] ^ 1]) + old_root[1:]
    with pytest.raises(ProofError):
        verify_consistency(old, size, forked, root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, size, old_root, bytes([root[0] ^ 1]) + root[1:], proof)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        altered = [*proof]
        altered[at] = bytes([altered[at][0] ^ 0x80]) + altered[at][1:]
        with pytest.raises(ProofError):
            verify_consistency(old, size, old_root, root, altered)
        with pytest.raises(ProofError):
            verify_consistency(old, size, old_root, root, proof[:-1])


def test_rewritten_history_is_detected() -> None:
    """A log that changes an old entry cannot prove it extends the head a peer kept."""
    honest = log_of(100)
    kept_size, kept_root = 60, honest.root(60)
    forged = MerkleLog()
    for n in range(120):
        forged.append(leaf_hash(b"rewritten" if n == 10 else n.to_bytes(4, "big")))
    with pytest.raises(ProofError, match="old tree head"):
        verify_consistency(kept_size, 120, kept_root, forged.root(), forged.consistency_proof(60))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.root(9), "the log has 8 leaves, not 9"),
        (lambda log: log.inclusion_proof(8), "leaf 8 is not in a tree of 8 leaves"),
        (lambda log: log.consistency_proof(0), "no consistency proof from size 0 to 8"),
    ],
)
def test_bad_requests(call: object, message: str) -> None:
    log = log_of(8)
    with pytest.raises(ProofError, match=message):
        call(log)  # type: ignore[operator]
