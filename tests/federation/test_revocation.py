"""Revocations and tightened labels travel: within one sync they reach every node that may
hold them, and a node that may no longer receive an object stops releasing it."""

from __future__ import annotations

from typing import Any

import orjson

from allied.federation.peers import peer
from allied.federation.sync import SyncResult
from allied.federation.sync import _withdraw as withdraw
from allied.ingest.stix_import import import_file
from allied.policy.egress import Egress
from allied.stix.labels import TLP2_IDS
from tests.conftest import indicator, write_bundle
from tests.federation.conftest import Federation

GREEN, RED = TLP2_IDS["green"], TLP2_IDS["red"]
LATER = "2026-04-01T00:00:00.000Z"


def publish(federation: Federation, name: str, objects: list[dict[str, Any]], tag: str) -> None:
    with federation.node(name) as node:
        import_file(node, write_bundle(federation.root / f"{name}-{tag}.json", objects))


def one_round(federation: Federation) -> None:
    federation.sync("USA")
    federation.sync("NATO")


def test_revocation_and_tightening_reach_every_node(federation: Federation) -> None:
    with federation.node("KOR") as kor:
        creator = kor.config.identity_id
        for_usa = kor.add_label("RED for USA", tlp="red", recipients=["USA"])
    revoked, tightened = indicator(1, created_by_ref=creator), indicator(2, created_by_ref=creator)
    publish(federation, "KOR", [revoked, tightened], "first")
    one_round(federation)
    assert {revoked["id"], tightened["id"]} <= federation.ids("NATO")
    with federation.node("NATO") as nato:
        assert Egress(nato).explain(tightened["id"], "USA").allowed
    publish(
        federation,
        "KOR",
        [
            indicator(1, created_by_ref=creator, modified=LATER, revoked=True),
            indicator(
                2, created_by_ref=creator, modified=LATER, object_marking_refs=[RED, for_usa]
            ),
        ],
        "second",
    )
    usa_results = federation.sync("USA")
    nato_results = federation.sync("NATO")
    assert [r.status for r in usa_results + nato_results] == ["ok"] * 3
    for name in ("USA", "NATO"):
        with federation.node(name) as node:
            assert '"revoked":true' in node.store.latest(revoked["id"]).json, name
    with federation.node("USA") as usa:
        assert usa.store.latest(tightened["id"]).version.startswith("2026-04-01")
    with federation.node("NATO") as nato:
        # the tightened version never reached NATO; the old one is withdrawn
        assert len(nato.store.versions(tightened["id"])) == 1
        assert nato.store.withdrawn_by(tightened["id"]) == "USA"
        explained = Egress(nato).explain(tightened["id"], "USA")
        assert not explained.allowed
        assert "withdrawn by peer USA" in explained.reasons[0]
        assert tightened["id"] not in _released(nato, "USA")  # nor in an export
    [nato_from_usa] = nato_results
    assert nato_from_usa.withdrawn == 1


def test_a_withdrawal_is_lifted_when_the_object_is_releasable_again(
    federation: Federation,
) -> None:
    with federation.node("KOR") as kor:
        creator = kor.config.identity_id
        for_usa = kor.add_label("RED for USA", tlp="red", recipients=["USA"])
    publish(federation, "KOR", [indicator(3, created_by_ref=creator)], "first")
    one_round(federation)
    tight = indicator(3, created_by_ref=creator, modified=LATER, object_marking_refs=[RED, for_usa])
    publish(federation, "KOR", [tight], "tight")
    one_round(federation)
    with federation.node("NATO") as nato:
        assert nato.store.withdrawn_by(indicator(3)["id"]) == "USA"
    loosened = indicator(3, created_by_ref=creator, modified="2026-05-01T00:00:00.000Z")
    publish(federation, "KOR", [loosened], "loose")
    one_round(federation)
    with federation.node("NATO") as nato:
        assert nato.store.withdrawn_by(indicator(3)["id"]) is None
        assert Egress(nato).explain(indicator(3)["id"], "USA").allowed


def test_a_peer_cannot_withdraw_what_it_did_not_send(federation: Federation) -> None:
    """USA may only silence at NATO what NATO received from USA."""
    publish(federation, "NATO", [indicator(4)], "own")
    notice = [(indicator(4)["id"], "2026-06-01T00:00:00.000000Z")]
    with federation.node("NATO") as nato:
        withdraw(nato, peer(nato, "USA"), notice, SyncResult("USA", "ok"))
        assert nato.store.withdrawn_by(indicator(4)["id"]) is None


def _released(node: Any, partner: str) -> set[str]:
    return {orjson.loads(text)["id"] for text in Egress(node).release(partner)}
