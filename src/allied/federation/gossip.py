"""Checking a peer's ledger on every sync: the head it signs now must extend every head it
signed before (RFC 9162 consistency), or it rewrote its history.

A peer's heads are verified with the key pinned for its partner entry only: a head signed
by anyone else is no head of that peer. What a peer proves is checked here, locally; a
peer that cannot prove that its new tree extends the old one is treated as one that
rewrote history, since an honest peer always can.

Partners also compare notes: after each sync, this node asks the peer for the heads it holds
of this node's other peers (:func:`collect_views`), and at each of those peers' next sync
checks that what the peer showed the other one and what it shows this node are one history
(:func:`check_views`). A node showing different histories to different partners cannot
prove that, and is flagged.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from allied.errors import AlliedError
from allied.federation.remote import Remote, RemoteError
from allied.integrity.ledger import TreeHead, verify_head
from allied.integrity.merkle import ProofError, verify_consistency
from allied.integrity.signing import SignatureError, TrustedKey
from allied.store.store import Partner


class HistoryError(AlliedError):
    """The peer's ledger contradicts a head it signed before: syncing from it stops."""


def check_head(
    partner: Partner, key: TrustedKey, new: TreeHead, old: TreeHead | None, remote: Remote
) -> None:
    """Raise HistoryError unless ``new`` is signed by ``partner``'s pinned ``key`` and
    extends ``old``; SignatureError if the head is not the peer's at all."""
    source = f"peer {remote.name}: tree head of size {new.size}"
    if new.signer != partner.identity_id:
        raise SignatureError(source, f"signed by {new.signer}, not by {partner.identity_id}")
    verify_head(new, {key.key_id: key}, source=source)
    if old is None:
        return
    if new.size < old.size:
        raise HistoryError(
            f"peer {remote.name} rolled its ledger back: it signed {old.size} entries at "
            f"{old.timestamp}, and now signs {new.size}"
        )
    check_extends(f"one signed at {old.timestamp}, one now", old, new, remote)


def _b64(proof: dict[str, Any], name: str) -> bytes:
    return base64.b64decode(proof[name], validate=True)


def check_extends(name: str, first: TreeHead, second: TreeHead, remote: Remote) -> None:
    """Raise HistoryError unless the smaller of two verified heads of ``remote``'s node is
    a prefix of the larger (one history), as the node itself proves."""
    small, large = (first, second) if first.size <= second.size else (second, first)
    if small.size == large.size:
        if small.root != large.root:
            raise HistoryError(
                f"peer {remote.name} signed two different heads of {small.size} entries "
                f"({name}): it rewrote its history, or shows partners different histories"
            )
        return
    if small.size == 0:
        return
    try:
        proof = remote.consistency(small.size, large.size)
    except RemoteError as error:
        if error.status not in (400, 404):
            raise  # unreachable: try again later
        raise HistoryError(
            f"peer {remote.name} denies a head of {large.size} entries it signed ({name}): "
            f"it rewrote its history, or shows partners different histories"
        ) from None
    try:
        old_root, root = _b64(proof, "old_root_hash"), _b64(proof, "root_hash")
        path = [base64.b64decode(step, validate=True) for step in proof["proof"]]
        if old_root != small.root or root != large.root:
            raise ProofError("the roots it proves are not those it signed")
        verify_consistency(small.size, large.size, small.root, large.root, path)
    except (KeyError, TypeError, ValueError, binascii.Error, ProofError) as error:
        raise HistoryError(
            f"peer {remote.name} cannot prove that its heads of {small.size} and {large.size} "
            f"entries are one history ({name}; {error}): it rewrote its history, or shows "
            "partners different histories"
        ) from None
