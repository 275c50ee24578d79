"""A pull against a scripted peer (no HTTP): what a fault mid-pull keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from allied.federation import peers as peer_table
from allied.federation import sync
from allied.federation.remote import Page, RemoteError
from allied.node import Node
from tests.conftest import indicator, peer_key, signed_as


class Scripted:
    """A peer serving one object a page; the fetch of page ``fail_at`` raises, as a
    dropped connection would. A resume token "pN" starts at page N."""

    def __init__(self, pages: list[list[dict[str, Any]]], fail_at: int | None = None) -> None:
        self.served, self.fail_at = pages, fail_at

    def _from(self, start: int) -> Iterator[Page]:
        for n in range(start, len(self.served)):
            if n == self.fail_at:
                raise RemoteError("peer us: connection reset")
            more = n + 1 < len(self.served)
            stamp = f"2024-01-01T00:00:{n:02d}.000000Z"
            yield Page(self.served[n], stamp, more, f"p{n + 1}" if more else None)

    def pages(
        self, url: str, *, added_after: str | None, resume: str | None, limit: int
    ) -> Iterator[Page]:
        if resume is not None:
            return self._from(int(resume[1:]))
        return self._from(0 if added_after is None else int(added_after[17:19]) + 1)


def test_pages_fetched_before_a_fault_are_stored(node: Node, tmp_path: Path) -> None:
    """A peer that always drops the connection at the fourth page: the three before it are
    stored, and the next pull goes on from there."""
    pem, key = peer_key(tmp_path, "us")
    us = node.add_partner("us", nation="USA", communities=["council"], key_file=pem)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    peer_table.add_peer(node, "us", "http://127.0.0.1:9/", partner="us", token_file=token)
    served = [[obj] for obj in signed_as([indicator(n) for n in range(1, 9)], key, us.identity_id)]
    before = node.store.version_count()
    with pytest.raises(RemoteError):
        result = sync.SyncResult("us", sync.OK)
        peer = peer_table.peer(node, "us")
        sync._pull(node, peer, Scripted(served, fail_at=3), "http://127.0.0.1:9/c/", result,
                   full=False)  # type: ignore[arg-type]  # fmt: skip
    assert node.store.version_count() == before + 3
    result = sync.SyncResult("us", sync.OK)
    sync._pull(node, peer_table.peer(node, "us"), Scripted(served), "http://127.0.0.1:9/c/",
               result, full=False)  # type: ignore[arg-type]  # fmt: skip
    assert node.store.version_count() == before + 8


def _peer(node: Node, tmp_path: Path) -> list[list[dict[str, Any]]]:
    pem, key = peer_key(tmp_path, "us")
    us = node.add_partner("us", nation="USA", communities=["council"], key_file=pem)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    peer_table.add_peer(node, "us", "http://127.0.0.1:9/", partner="us", token_file=token)
    return [[obj] for obj in signed_as([indicator(n) for n in range(1, 9)], key, us.identity_id)]


def _pull(node: Node, peer: Any, *, full: bool = False) -> sync.SyncResult:
    result = sync.SyncResult("us", sync.OK)
    sync._pull(node, peer_table.peer(node, "us"), peer, "http://127.0.0.1:9/c/", result,
               full=full)  # fmt: skip
    return result


def test_a_full_pull_that_fails_past_the_cursor_leaves_no_false_replays(
    node: Node, tmp_path: Path
) -> None:
    """A full pull stores what lies past the old cursor, then drops: the cursor moved with
    it, so the next pull does not take those versions, served again, for replays."""
    served = _peer(node, tmp_path)
    before = node.store.version_count()
    _pull(node, Scripted(served[:4]))
    with pytest.raises(RemoteError):
        _pull(node, Scripted(served, fail_at=6), full=True)
    assert node.store.version_count() == before + 6
    after = _pull(node, Scripted(served))
    assert (after.received, after.rejected) == (2, 0)
    assert node.store.version_count() == before + 8


class Refusing(Scripted):
    """A peer that no longer honours resume tokens (400), and drops at ``fail_at``."""

    def pages(
        self, url: str, *, added_after: str | None, resume: str | None, limit: int
    ) -> Iterator[Page]:
        if resume is not None:
            raise RemoteError("peer us: bad next token", 400)
        return super().pages(url, added_after=added_after, resume=None, limit=limit)


def test_a_refused_resume_token_is_kept_until_the_fallback_stores_a_page(
    node: Node, tmp_path: Path
) -> None:
    """The fallback pull from the cursor fails before storing anything: the next pull still
    knows where the last one stopped, and takes nothing for a replay."""
    served = _peer(node, tmp_path)
    before = node.store.version_count()
    with pytest.raises(RemoteError):
        _pull(node, Scripted(served, fail_at=2))
    assert node.store.version_count() == before + 2
    with pytest.raises(RemoteError):
        _pull(node, Refusing(served, fail_at=0))
    after = _pull(node, Refusing(served))  # from the cursor, over the two pages held
    assert (after.received, after.rejected) == (6, 0)
    assert node.store.version_count() == before + 8
