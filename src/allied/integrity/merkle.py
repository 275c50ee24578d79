"""Merkle tree hashing and proofs, as RFC 9162 (Certificate Transparency 2.0) section 2.1
defines them: the one home of the ledger's hashing.

Leaf hash ``SHA-256(0x00 || entry)``, interior node ``SHA-256(0x01 || left || right)``; a tree
of n leaves splits at k, the largest power of two below n. :class:`MerkleLog` keeps the hash
of every complete, aligned power-of-two subtree (in memory; :mod:`allied.integrity.ledger`
keeps them in the store), so appending costs O(1) amortised and any root, inclusion proof or
consistency proof needs O(log n) hashes. The verifiers follow the
RFC's algorithms (2.1.3.2, 2.1.4.2) step by step and raise on any mismatch: a proof is
either valid or an exception.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

from allied.errors import AlliedError

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(AlliedError):
    """A Merkle proof that does not prove what it claims."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


class Tree(ABC):
    """An RFC 9162 tree over some storage of its complete, aligned subtrees: the tree head
    and proofs are computed here once, whether the hashes live in memory or in the store."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def complete(self, level: int, index: int) -> bytes:
        """The hash of leaves [index * 2**level, (index + 1) * 2**level), all present."""

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end): a stored hash when complete, else split as RFC 9162."""
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            return self.complete(size.bit_length() - 1, start // size)
        k = _split(size)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The tree head of the first ``size`` leaves (all of them by default)."""
        size = len(self) if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[size]) of RFC 9162 section 2.1.4.1."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 < old_size <= size:
            raise ProofError(f"no consistency proof from size {old_size} to {size}")
        proof: list[bytes] = []
        start, end, m, complete = 0, size, old_size, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            proof.append(self._subtree(start, end))
        proof.reverse()
        return proof

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ProofError(f"the log has {len(self)} leaves, not {size}")


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The tree head from the complete subtrees that make up a tree, largest (leftmost)
    first: RFC 9162 splits at the largest power of two, so the head folds from the right."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def frontier_of(size: int) -> list[tuple[int, int]]:
    """(level, index) of the complete subtrees a tree of ``size`` leaves is made of, leftmost
    first: one per bit of ``size``."""
    found = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            found.append((level, start >> level))
            start += 1 << level
    return found


class MerkleLog(Tree):
    """An append-only list of leaf hashes with every complete aligned subtree's hash, in
    memory."""

    def __init__(self) -> None:
        # levels[h][i]: hash of leaves [i * 2**h, (i + 1) * 2**h)
        self.levels: list[list[bytes]] = [[]]

    def __len__(self) -> int:
        return len(self.levels[0])

    def complete(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index."""
        index = len(self.levels[0])
        self.levels[0].append(leaf)
        height, position = 0, index
        while position % 2 == 1:
            below = self.levels[height]
            if len(self.levels) == height + 1:
                self.levels.append([])
            self.levels[height + 1].append(node_hash(below[position - 1], below[position]))
            height, position = height + 1, position // 2
        return index


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2: that ``leaf`` is entry ``index`` of the tree ``root``."""
    # 1. the index must lie in the tree
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    # 2.-3. walk from the leaf to the root
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        # 3.1 a proof longer than the path is invalid
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 4. the walk must end at the root, with the computed hash equal to it
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("inclusion proof does not lead to the tree head")


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: that the tree ``old_root`` is a prefix of the tree ``root``."""
    # 1. sizes must be ordered; equal sizes need no proof, only equal roots
    if not 0 < old_size <= size:
        raise ProofError(f"no consistency between sizes {old_size} and {size}")
    if old_size == size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != root:
            raise ProofError("the same size has two different tree heads")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    # 2. if old_size is a power of two, the old root is the first node of the path
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.-4. set up the walk
    fn, sn = old_size - 1, size - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    # 5. both hashes start at the first path node
    fr = sr = path[0]
    # 6. walk the rest of the path
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path")
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7. both roots must come out, at the end of the path
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old tree head")
    if sr != root:
        raise ProofError("consistency proof does not lead to the new tree head")
