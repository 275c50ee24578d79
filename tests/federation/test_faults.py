"""Faults: a peer down or hanging during a sync, and the syncing node killed midway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy import select

from allied.federation.peers import add_peer
from allied.federation.status import status
from allied.federation.sync import sync_all, sync_peer
from allied.ingest.stix_import import import_file
from allied.store import schema
from tests.conftest import indicator, write_bundle
from tests.federation.conftest import ALLIED, Federation


def publish(federation: Federation, name: str, objects: list[dict[str, Any]]) -> None:
    path = federation.root / f"{name}-{objects[0]['id']}.json"
    with federation.node(name) as node:
        import_file(node, write_bundle(path, objects))


def test_a_peer_that_is_down_is_retried_later(federation: Federation) -> None:
    publish(federation, "KOR", [indicator(1)])
    publish(federation, "NATO", [indicator(2)])
    federation.stop("NATO")
    from_kor, from_nato = federation.sync("USA")
    assert (from_kor.status, from_kor.received > 0) == ("ok", True)
    assert from_nato.status == "failed" and "peer NATO" in from_nato.message
    with federation.node("USA") as usa:
        row = {r["name"]: r for r in status(usa)}["NATO"]
        assert (row["state"], row["failures"]) == ("failing", 1)
        assert row["next_attempt"] is not None and row["last_error"]
        # until its time comes, a pass leaves it alone
        assert sync_peer(usa, "NATO").status == "skipped"
    federation.start("NATO")
    _, back = federation.sync("USA")
    assert (back.status, back.received > 0) == ("ok", True)
    assert indicator(2)["id"] in federation.ids("USA")
    with federation.node("USA") as usa:
        row = {r["name"]: r for r in status(usa)}["NATO"]
        assert (row["state"], row["failures"], row["last_error"]) == ("ok", 0, None)


def test_a_hanging_peer_does_not_hold_up_the_others(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that accepts connections and never answers times out on its own."""
    publish(federation, "KOR", [indicator(3)])
    monkeypatch.setenv("ALLIED_SYNC_TIMEOUT", "2")
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        token = federation.root / "hole.token"
        token.write_text("x" * 43)
        with federation.node("USA") as usa:
            add_peer(usa, "HOLE", f"http://127.0.0.1:{hole.getsockname()[1]}/", partner="NATO",
                     token_file=token)  # fmt: skip
            started = time.monotonic()
            results = {r.peer: r for r in sync_all(usa, force=True)}
            took = time.monotonic() - started
    assert results["KOR"].status == "ok" and results["KOR"].received > 0
    assert results["HOLE"].status == "failed" and "timed out" in results["HOLE"].message
    assert took < 20  # the hanging peer's one timeout, not one per peer


def test_killing_the_syncing_node_midway_loses_and_duplicates_nothing(
    federation: Federation,
) -> None:
    total = 1500
    publish(federation, "KOR", [indicator(n) for n in range(100, 100 + total)])
    usa = federation.directories["USA"]
    env = {**os.environ, "ALLIED_NODE": "", "ALLIED_SYNC_PAGE_SIZE": "10"}
    process = subprocess.Popen(
        [ALLIED, "--node", str(usa), "sync", "--once", "--peer", "KOR"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while received(federation) < 100:
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    midway = received(federation)
    assert 0 < midway < total
    [result] = [r for r in federation.sync("USA") if r.peer == "KOR"]
    assert result.status == "ok" and result.rejected == 0
    held = federation.ids("USA")
    assert {indicator(n)["id"] for n in range(100, 100 + total)} <= held
    with federation.node("USA") as node:
        audit = node.verify()
        assert audit.ok, audit.problems
        assert received(federation) == node.store.version_count() - before_sync(node)


def received(federation: Federation) -> int:
    with federation.node("USA") as node, node.store.engine.connect() as conn:
        peers = schema.peers
        query = select(peers.c.received).where(peers.c.name == "KOR")
        return int(conn.execute(query).scalar() or 0)


def before_sync(node: Any) -> int:
    """Object versions USA held of its own before it synced: those not received from KOR."""
    objects = schema.objects
    with node.store.engine.connect() as conn:
        query = select(objects.c.pk).where(
            (objects.c.received_from != "KOR") | objects.c.received_from.is_(None)
        )
        return len(conn.execute(query).all())
