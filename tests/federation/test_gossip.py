"""Partners compare the heads a node showed each of them: a node showing different
histories to different partners is flagged by a partner that hears of both."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from sqlalchemy import select, update

from allied.federation.peers import peer
from allied.federation.sync import sync_peer
from allied.ingest.stix_import import import_file
from allied.integrity.ledger import sign_head
from allied.store import schema
from allied.store.store import now
from tests.conftest import NewDatabase, indicator, write_bundle
from tests.federation.conftest import Federation, build

# KOR hears of NATO directly and through USA
TRIANGLE = {"KOR": ["USA", "NATO"], "USA": ["NATO"], "NATO": []}


def show_usa_a_head_of_nato(federation: Federation, size: int) -> None:
    """NATO signs a head of ``size`` entries with a root of its own invention, and USA holds
    it as NATO's latest: what NATO would show USA if it kept two histories."""
    with federation.node("NATO") as nato:
        forged = sign_head(size, os.urandom(32), now(), nato.signer)
    with federation.node("USA") as usa, usa.store.write() as writer:
        writer.conn.execute(
            update(schema.peers)
            .where(schema.peers.c.name == "NATO")
            .values(head=orjson.dumps(forged.as_dict()).decode())
        )


def kor_knows_nato(federation: Federation, root: Path) -> int:
    """NATO holds an object, USA and KOR have synced from it: the size of NATO's ledger."""
    with federation.node("NATO") as nato:
        import_file(nato, write_bundle(root / "n.json", [indicator(1)]))
    federation.sync("USA")
    with federation.node("KOR") as kor:
        assert sync_peer(kor, "NATO", force=True).status == "ok"
        return int(peer(kor, "NATO").head["tree_size"])  # type: ignore[index]


def test_two_heads_of_one_size_flag_the_node_at_once(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    federation = build(tmp_path, TRIANGLE, new_database)
    try:
        size = kor_knows_nato(federation, tmp_path)
        show_usa_a_head_of_nato(federation, size)
        with federation.node("KOR") as kor:
            assert sync_peer(kor, "USA", force=True).status == "ok"
            flagged = peer(kor, "NATO").flagged
            assert flagged and "different histories" in flagged
            assert sync_peer(kor, "NATO", force=True).status == "flagged"
    finally:
        federation.close()


def test_a_larger_head_it_cannot_prove_flags_the_node_at_its_next_sync(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    federation = build(tmp_path, TRIANGLE, new_database)
    try:
        size = kor_knows_nato(federation, tmp_path)
        show_usa_a_head_of_nato(federation, size + 5)
        with federation.node("KOR") as kor:
            assert sync_peer(kor, "USA", force=True).status == "ok"
            with kor.store.engine.connect() as conn:
                views = conn.execute(select(schema.peer_views.c.via)).scalars().all()
            assert views == ["USA"]
            result = sync_peer(kor, "NATO", force=True)
            assert result.status == "flagged" and "different histories" in result.message
    finally:
        federation.close()


def test_honest_nodes_pass_the_comparison(tmp_path: Path, new_database: NewDatabase) -> None:
    federation = build(tmp_path, TRIANGLE, new_database)
    try:
        for n in range(3):
            with federation.node("NATO") as nato:
                import_file(nato, write_bundle(tmp_path / f"n{n}.json", [indicator(n)]))
            federation.sync("USA")
            results = federation.sync("KOR")
            assert [r.status for r in results] == ["ok", "ok"], results
        with federation.node("KOR") as kor:
            assert not peer(kor, "NATO").flagged
            assert {indicator(n)["id"] for n in range(3)} <= federation.ids("KOR")
    finally:
        federation.close()
