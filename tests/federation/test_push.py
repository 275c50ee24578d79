"""Pushing: a node posts to a peer what the peer's partner entry may receive, and no more."""

from __future__ import annotations

from pathlib import Path

from allied.federation.peers import add_peer, remove_peer
from allied.ingest.stix_import import import_file
from allied.stix.labels import TLP2_IDS
from allied.taxii.service import community_collection_id
from tests.conftest import NewDatabase, indicator, write_bundle
from tests.federation.conftest import Federation, build

# KOR pushes to USA; nobody pulls from KOR
ONE_WAY = {"KOR": ["USA"], "USA": [], "NATO": []}


def test_a_node_pushes_what_its_peer_may_receive(tmp_path: Path, new_database: NewDatabase) -> None:
    root = tmp_path
    federation: Federation = build(root, ONE_WAY, new_database)
    try:
        collection = community_collection_id(federation.identities["USA"], "kor-usa")
        with federation.node("KOR") as kor:
            remove_peer(kor, "USA")
            add_peer(kor, "USA", federation.urls["USA"], partner="USA",
                     token_file=root / "KOR-at-USA.token", push_to=collection)  # fmt: skip
            mine = kor.add_label("KOR ONLY", tlp="green", policy="NATO",
                                 classification="RESTRICTED", releasable_to=["KOR"])  # fmt: skip
            creator = kor.config.identity_id
            shared = indicator(1, created_by_ref=creator)
            kept = indicator(2, created_by_ref=creator,
                             object_marking_refs=[TLP2_IDS["green"], mine])  # fmt: skip
            import_file(kor, write_bundle(root / "kor.json", [shared, kept]))
        [result] = federation.sync("KOR")
        assert result.status == "ok" and result.pushed > 0, result
        with federation.node("USA") as usa:
            [stored] = usa.store.versions(shared["id"])
            assert stored.received_from == "KOR"
            assert usa.store.versions(kept["id"]) == []
            assert usa.verify().ok
        with federation.node("KOR") as kor:
            pushed = {r["id"] for r in kor.store.releases(partner="USA") if r["via"] == "push USA"}
            assert shared["id"] in pushed and kept["id"] not in pushed
        [again] = federation.sync("KOR")
        assert (again.status, again.pushed) == ("ok", 0)
    finally:
        federation.close()
