"""Objects travel between real nodes as their labels allow, and no further."""

from __future__ import annotations

import shutil
from typing import Any

from allied.ingest.stix_import import import_file
from allied.policy.egress import Egress
from allied.stix.labels import TLP2_IDS
from tests.conftest import indicator, restore_store, snapshot_store, write_bundle
from tests.federation.conftest import Federation
from tests.federation.relay import relay


def publish(federation: Federation, name: str, objects: list[dict[str, Any]]) -> None:
    with federation.node(name) as node:
        import_file(node, write_bundle(federation.root / f"{name}-publish.json", objects))


def labelled(n: int, *markings: str, **fields: Any) -> dict[str, Any]:
    return indicator(n, object_marking_refs=list(markings), **fields)


def test_each_object_reaches_exactly_whom_its_labels_allow(federation: Federation) -> None:
    with federation.node("KOR") as kor:
        restricted = kor.add_label(
            "NATO RESTRICTED REL KOR, USA",
            tlp="green",
            policy="NATO",
            classification="RESTRICTED",
            releasable_to=["KOR", "USA"],
        )
        for_usa = kor.add_label("RED for USA", tlp="red", recipients=["USA"])
        creator = kor.config.identity_id
    objects = {
        "green": labelled(1, TLP2_IDS["green"], created_by_ref=creator),
        "amber": labelled(2, TLP2_IDS["amber"], created_by_ref=creator),
        "restricted": labelled(3, TLP2_IDS["green"], restricted, created_by_ref=creator),
        "red": labelled(4, TLP2_IDS["red"], for_usa, created_by_ref=creator),
    }
    publish(federation, "KOR", list(objects.values()))
    [usa_from_kor, _] = federation.sync("USA")
    assert (usa_from_kor.status, usa_from_kor.rejected) == ("ok", 0), usa_from_kor
    assert usa_from_kor.received >= 4
    [nato_from_usa] = federation.sync("NATO")
    assert nato_from_usa.status == "ok", nato_from_usa
    ids = {key: obj["id"] for key, obj in objects.items()}
    usa, nato = federation.ids("USA"), federation.ids("NATO")
    assert {ids["green"], ids["amber"], ids["restricted"], ids["red"]} <= usa
    assert ids["green"] in nato
    assert ids["amber"] not in nato  # AMBER from its originator is never forwarded
    assert ids["restricted"] not in nato  # NATO is not in releasable_to
    assert ids["red"] not in nato  # only its named recipient
    assert restricted not in nato  # nor the label's definition


def test_what_a_node_receives_is_verified_and_recorded_as_from_its_peer(
    federation: Federation,
) -> None:
    publish(federation, "KOR", [labelled(11, TLP2_IDS["green"])])
    federation.sync("USA")
    federation.sync("NATO")
    with federation.node("NATO") as nato:
        [stored] = nato.store.versions(indicator(11)["id"])
        assert stored.received_from == "USA"
        result = nato.verify()
        assert result.ok, result.problems


def test_a_second_sync_applies_nothing_twice(federation: Federation) -> None:
    publish(federation, "KOR", [labelled(n, TLP2_IDS["green"]) for n in range(20, 30)])
    [first, _] = federation.sync("USA")
    assert first.received >= 10
    [again, _] = federation.sync("USA")
    assert (again.status, again.received, again.rejected) == ("ok", 0, 0)
    [full, _] = federation.sync("USA", full=True)
    assert (full.status, full.received) == ("ok", 0)
    with federation.node("USA") as usa:
        assert usa.verify().ok


def test_a_label_released_after_the_peer_cursor_passed_it_still_reaches_the_peer(
    federation: Federation,
) -> None:
    """Two labels made at KOR, one used at once: USA's cursor then passes the other's
    definition, released only when an object uses it later. USA asks for it by id, so it
    knows the label and can pass KOR's GREEN object on to NATO."""
    with federation.node("KOR") as kor:
        first = kor.add_label("first green", tlp="green")
        later = kor.add_label("later green", tlp="green")
        creator = kor.config.identity_id
    publish(federation, "KOR", [labelled(41, first, created_by_ref=creator)])
    federation.sync("USA")
    with federation.node("USA") as usa:
        assert usa.store.latest(first) is not None
        assert usa.store.latest(later) is None  # not released yet: nothing uses it
    publish(federation, "KOR", [labelled(42, later, created_by_ref=creator)])
    [from_kor, _] = federation.sync("USA")
    assert (from_kor.status, from_kor.rejected) == ("ok", 0), from_kor
    with federation.node("USA") as usa:
        assert usa.store.latest(later) is not None
        assert usa.verify().ok
    [from_usa] = federation.sync("NATO")
    assert from_usa.status == "ok", from_usa
    assert {indicator(41)["id"], indicator(42)["id"], first, later} <= federation.ids("NATO")


def test_a_label_the_peer_withholds_keeps_its_objects_inside_the_node(
    federation: Federation,
) -> None:
    """If the label's definition never comes (a peer, or a relay, drops it), the objects are
    stored all the same, but never passed on: an unknown label denies (fail closed)."""
    with federation.node("KOR") as kor:
        first = kor.add_label("first green", tlp="green")
        later = kor.add_label("later green", tlp="green")
        creator = kor.config.identity_id
    publish(federation, "KOR", [labelled(51, first, created_by_ref=creator)])
    federation.sync("USA")

    def drop_labels(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [obj for obj in objects if obj.get("id") != later]

    publish(federation, "KOR", [labelled(52, later, created_by_ref=creator)])
    with relay(federation.urls["KOR"], drop_labels) as url:
        federation.repoint("USA", "KOR", url)
        [from_kor, _] = federation.sync("USA")
    assert (from_kor.status, from_kor.rejected) == ("ok", 0), from_kor
    with federation.node("USA") as usa:
        assert usa.store.latest(indicator(52)["id"]) is not None
        assert usa.store.latest(later) is None
    federation.sync("NATO")
    nato = federation.ids("NATO")
    assert indicator(51)["id"] in nato and indicator(52)["id"] not in nato


def test_own_objects_pulled_back_after_a_restore_are_the_nodes_own_again(
    federation: Federation,
) -> None:
    """KOR restores an old backup, losing an AMBER object it shared; USA gives it back.
    Signed by KOR and created by KOR, it is KOR's own again: released as its originator
    releases it (AMBER to a direct partner), not as something received (never forwarded)."""
    backup = federation.root / "kor-backup"
    federation.stop("KOR")
    shutil.copytree(federation.directories["KOR"], backup)
    store_backup = snapshot_store(federation.directories["KOR"], backup / "store.db")
    federation.start("KOR")
    with federation.node("KOR") as kor:
        creator = kor.config.identity_id
    publish(federation, "KOR", [labelled(61, TLP2_IDS["amber"], created_by_ref=creator)])
    federation.sync("USA")
    federation.stop("KOR")
    shutil.rmtree(federation.directories["KOR"])
    shutil.copytree(backup, federation.directories["KOR"])
    restore_store(federation.directories["KOR"], store_backup)
    federation.start("KOR")
    with federation.node("KOR") as kor:
        assert kor.store.latest(indicator(61)["id"]) is None  # lost with the restore
    [from_usa] = federation.sync("KOR")
    assert (from_usa.status, from_usa.rejected) == ("ok", 0), from_usa
    with federation.node("KOR") as kor:
        [stored] = kor.store.versions(indicator(61)["id"])
        assert stored.received_from is None
        explanation = Egress(kor).explain(indicator(61)["id"], "NATO")
        assert explanation.allowed, explanation.reasons
        assert kor.verify().ok
