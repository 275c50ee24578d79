"""A peer (or whatever sits between two nodes) that tampers with what it serves: each
object it altered, relabelled, forged or replayed is refused and reported; a peer whose
ledger contradicts what it signed before is flagged and no longer synced from."""

from __future__ import annotations

import base64
import copy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from allied.federation.peers import peer, rejections
from allied.federation.status import status
from allied.ingest.stix_import import import_file
from allied.integrity.signing import SIGNATURE_EXTENSION_ID
from allied.stix.labels import TLP2_IDS
from tests.conftest import indicator, restore_store, snapshot_store, write_bundle
from tests.federation.conftest import Federation
from tests.federation.relay import relay

GREEN, AMBER, CLEAR = TLP2_IDS["green"], TLP2_IDS["amber"], TLP2_IDS["clear"]


def publish(federation: Federation, name: str, objects: list[dict[str, Any]]) -> None:
    with federation.node(name) as node:
        import_file(
            node, write_bundle(federation.root / f"{name}-{objects[0]['id']}.json", objects)
        )


def test_tampered_objects_are_refused_and_reported(federation: Federation) -> None:
    ids = {what: indicator(n)["id"] for n, what in enumerate(
        ["altered", "stripped", "downgraded", "forged", "untouched"], start=40)}  # fmt: skip
    with federation.node("USA") as usa:
        creator = usa.config.identity_id
    publish(federation, "USA", [
        indicator(40, created_by_ref=creator),
        indicator(41, created_by_ref=creator, object_marking_refs=[AMBER]),
        indicator(42, created_by_ref=creator, object_marking_refs=[AMBER]),
        indicator(43, created_by_ref=creator),
        indicator(44, created_by_ref=creator),
    ])  # fmt: skip

    def tamper(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for obj in copy.deepcopy(objects):
            if obj["id"] == ids["altered"]:
                obj["pattern"] = "[ipv4-addr:value = '203.0.113.99']"
            elif obj["id"] == ids["stripped"]:
                obj.pop("object_marking_refs")
            elif obj["id"] == ids["downgraded"]:
                obj["object_marking_refs"] = [CLEAR]
            elif obj["id"] == ids["forged"]:
                signature = obj["extensions"][SIGNATURE_EXTENSION_ID]
                signature["signature"] = base64.b64encode(bytes(64)).decode()
            out.append(obj)
        return out

    with relay(federation.urls["USA"], tamper) as url:
        federation.repoint("NATO", "USA", url)
        [result] = federation.sync("NATO")
    assert result.status == "ok"
    assert result.rejected == 4
    held = federation.ids("NATO")
    assert ids["untouched"] in held
    assert not {ids[k] for k in ("altered", "stripped", "downgraded", "forged")} & held
    with federation.node("NATO") as nato:
        reasons = {r["id"]: r["reason"] for r in rejections(nato, "USA", limit=10)}
        assert set(reasons) == {ids[k] for k in ("altered", "stripped", "downgraded", "forged")}
        assert all("signature" in reason for reason in reasons.values()), reasons
        [row] = status(nato)
        assert row["rejected"] == 4 and len(row["recent_rejections"]) == 4
        assert nato.verify().ok


def test_a_replayed_old_version_is_refused_and_changes_nothing(federation: Federation) -> None:
    with federation.node("USA") as usa:
        creator = usa.config.identity_id
    first = indicator(50, created_by_ref=creator)
    publish(federation, "USA", [first])
    federation.sync("NATO")
    revoked = indicator(50, created_by_ref=creator, modified="2026-04-01T00:00:00.000Z",
                        revoked=True)  # fmt: skip
    publish(federation, "USA", [revoked])
    with federation.node("USA") as usa:
        [old, _new] = usa.store.versions(first["id"])
        old_text = old.json

    def replay(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(old_text) if o["id"] == first["id"] else o for o in objects]

    with relay(federation.urls["USA"], replay) as url:
        federation.repoint("NATO", "USA", url)
        [result] = federation.sync("NATO")
    assert result.rejected == 1
    with federation.node("NATO") as nato:
        # the old version only: the revocation was held back
        assert len(nato.store.versions(first["id"])) == 1
        [reason] = rejections(nato, "USA")
        assert reason["id"] == first["id"] and "served again" in reason["reason"]
    federation.repoint("NATO", "USA", federation.urls["USA"])
    [honest] = federation.sync("NATO", full=True)
    assert honest.received == 1
    with federation.node("NATO") as nato:
        assert nato.store.latest(first["id"]).json.find('"revoked":true') > 0


@contextmanager
def usa_restored_later(federation: Federation, first: int, then: int) -> Iterator[None]:
    """USA publishes indicator ``first``, saves a copy of itself, publishes ``then``, NATO
    syncs; inside the block USA is stopped and back on the saved copy, started after it."""
    publish(federation, "USA", [indicator(first)])
    federation.stop("USA")
    usa_dir = federation.directories["USA"]
    saved = federation.root / "usa-before"
    shutil.copytree(usa_dir, saved)
    store_saved = snapshot_store(usa_dir, saved / "store.db")
    federation.start("USA")
    publish(federation, "USA", [indicator(then)])
    [synced] = federation.sync("NATO")
    assert synced.status == "ok"
    federation.stop("USA")
    shutil.rmtree(usa_dir)
    shutil.copytree(saved, usa_dir)
    restore_store(usa_dir, store_saved)
    yield
    federation.start("USA")


def test_a_peer_that_rewrites_its_history_is_flagged(federation: Federation) -> None:
    # USA's operator restores the older copy and goes on: a different history
    with usa_restored_later(federation, 60, 61):
        publish(federation, "USA", [indicator(62), indicator(63), indicator(64)])
    [flagged] = federation.sync("NATO")
    assert flagged.status == "flagged"
    assert "rewrote its history" in flagged.message
    with federation.node("NATO") as nato:
        assert peer(nato, "USA").flagged
        assert indicator(62)["id"] not in federation.ids("NATO")
    # and it stays stopped until an operator acts
    [again] = federation.sync("NATO")
    assert again.status == "flagged" and again.pages == 0


def test_a_peer_that_rolls_its_ledger_back_is_flagged(federation: Federation) -> None:
    with usa_restored_later(federation, 70, 71):
        pass
    [flagged] = federation.sync("NATO")
    assert flagged.status == "flagged" and "rolled its ledger back" in flagged.message
