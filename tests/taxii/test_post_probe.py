"""Posting must not tell a partner what the node holds out of its sight.

A partner that may write knows ids: those of cyber observables derive from their values, so
posting ``ipv4-addr`` 203.0.113.7 asks "do you hold this address?". Whatever it posts, it
must see the same answer, the same object coming back, the same versions, manifest, proof,
tree growth and deletion, whether or not the node holds that id under labels it may not
receive. Each test posts twins, one onto a withheld id and one onto an id the node does not
hold, and compares everything the partner can observe.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from allied.ingest.stix_import import import_file
from allied.integrity.signing import SIGNATURE_EXTENSION_ID
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from tests.conftest import TLP_AMBER, TLP_GREEN, indicator, write_bundle
from tests.taxii.conftest import LATER, Api, World

_SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")  # STIX 2.1, 2.9


def address(value: str, markings: list[str]) -> dict[str, Any]:
    sco_id = uuid.uuid5(_SCO_NAMESPACE, orjson.dumps({"value": value}).decode())
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": f"ipv4-addr--{sco_id}",
        "value": value,
        "object_marking_refs": markings,
    }


def twins(withheld: int, unheld: int, **overrides: Any) -> tuple[dict[str, Any], ...]:
    """Two indicators alike but for their ids."""
    same = {"name": "probe", "pattern": "[ipv4-addr:value = '198.51.100.77']", **overrides}
    return indicator(withheld, **same), indicator(unheld, **same)


def observe(api: Api, world: World, posted: dict[str, Any], *masks: str) -> dict[str, Any]:
    """Post ``posted`` to the partner's community collection and gather everything the
    partner can see of it, with its id (and ``masks``) masked."""
    community = f"/api/collections/{world.collections['nato-ccdcoe']}"
    own = f"/api/collections/{world.collections['KOR NCSC']}"
    oid = posted["id"]
    size_before = api.get("/ledger/head").json()["tree_size"]
    status = api.post(f"{community}/objects/", {"objects": [posted]})
    size_after = api.get("/ledger/head").json()["tree_size"]
    seen: dict[str, Any] = {
        "post": (status.status_code, _counts(status.json())),
        "ledger growth": size_after - size_before,
    }
    for name, path in (
        ("community", f"{community}/objects/{oid}/"),
        ("own", f"{own}/objects/{oid}/"),
        ("community versions", f"{community}/objects/{oid}/versions/"),
        ("own versions", f"{own}/objects/{oid}/versions/"),
    ):
        response = api.get(path)
        body = response.json()
        for obj in body.get("objects", []):
            obj.get("extensions", {}).pop(SIGNATURE_EXTENSION_ID, None)
        seen[name] = (response.status_code, _masked(body, oid, *masks))
    for name, path in (("community manifest", community), ("own manifest", own)):
        response = api.get(f"{path}/manifest/", params={"match[id]": oid})
        seen[name] = (response.status_code, len(response.json().get("objects", [])))
    proof = api.get(f"/ledger/inclusion/{oid}")
    seen["proof"] = (proof.status_code, proof.json().get("version"))
    seen["delete"] = api.request("DELETE", f"{community}/objects/{oid}/").status_code
    seen["after delete"] = (
        api.get(f"{community}/objects/{oid}/").status_code,
        api.get(f"{own}/objects/{oid}/").status_code,
    )
    again = api.post(f"{community}/objects/", {"objects": [posted]})
    seen["posted again"] = (
        _counts(again.json()),
        api.get(f"{community}/objects/{oid}/").status_code,
        api.get("/ledger/head").json()["tree_size"] - size_after,
    )
    return seen


def _counts(status: dict[str, Any]) -> tuple[int, int, int]:
    return status["success_count"], status["failure_count"], status["pending_count"]


def _masked(value: Any, *masks: str) -> Any:
    """``value`` with ``masks`` replaced, and the times objects were added (which are the
    versions of cyber observables: they have no ``modified``)."""
    text = orjson.dumps(value)
    for mask in masks:
        text = text.replace(mask.encode(), b"MASKED")
    return orjson.loads(_ADDED.sub(b'"ADDED"', text))


_ADDED = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"')


def test_posting_onto_a_withheld_id_looks_like_posting_onto_a_new_one(
    node: Node, world: World
) -> None:
    est = Api(node, world.tokens["est"])
    withheld, unheld = twins(2, 0xEE, object_marking_refs=[TLP_GREEN])
    a, b = observe(est, world, withheld), observe(est, world, unheld)
    assert a == b
    # and what came back is what was posted, not the node's object
    assert a["community"][0] == 200
    assert a["community"][1]["objects"][0]["name"] == "probe"
    assert a["post"] == (202, (1, 0, 0)) and a["ledger growth"] == 1


def test_a_new_version_of_a_withheld_object_is_no_conflict(node: Node, world: World) -> None:
    """Refusing a version as not from the originator would say the object exists."""
    est = Api(node, world.tokens["est"])
    withheld, unheld = twins(2, 0xEF, modified=LATER, object_marking_refs=[TLP_GREEN])
    a, b = observe(est, world, withheld), observe(est, world, unheld)
    assert a == b
    assert a["post"] == (202, (1, 0, 0))


def test_an_observable_probe_learns_nothing(node: Node, world: World) -> None:
    secret = [TLP2_IDS["amber"], world.secret_label]
    held = address("203.0.113.7", secret)
    import_file(node, write_bundle(world.directory.parent / "sco.json", [held]))
    est = Api(node, world.tokens["est"])
    a = observe(est, world, address("203.0.113.7", [TLP_GREEN]), "203.0.113.7")
    b = observe(est, world, address("203.0.113.8", [TLP_GREEN]), "203.0.113.8")
    assert a == b
    assert a["own"][1]["objects"][0]["object_marking_refs"] == [TLP_GREEN]


def test_the_node_keeps_its_own_object_and_others_never_see_the_copy(
    node: Node, world: World
) -> None:
    est, usa = Api(node, world.tokens["est"]), Api(node, world.tokens["usa"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    own = f"/api/collections/{world.collections['KOR NCSC']}/objects/"
    copy = indicator(2, name="est's text", object_marking_refs=[TLP_GREEN])
    assert est.post(community, {"objects": [copy]}).json()["success_count"] == 1
    original = usa.get(f"{own}{copy['id']}/").json()["objects"]
    assert [o["name"] for o in original] == ["bad address 2"]
    assert original[0]["object_marking_refs"] == [TLP_AMBER, world.secret_label]
    assert "est's text" not in usa.get(own, params={"limit": 1000}).text
    # the copy is in the node's ledger, verified with everything else
    result = node.verify()
    assert result.ok, result.problems
    assert result.copies == 1


def test_the_copy_gives_way_once_the_partner_may_see_the_node_s_object(
    node: Node, world: World
) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    own = f"/api/collections/{world.collections['KOR NCSC']}/objects/"
    copy = indicator(2, name="est's text", object_marking_refs=[TLP_GREEN])
    est.post(community, {"objects": [copy]})
    assert est.get(f"{own}{copy['id']}/").json()["objects"][0]["name"] == "est's text"
    released = indicator(2, modified="2026-04-01T10:00:00.000Z", name="now releasable")
    import_file(node, write_bundle(world.directory.parent / "later.json", [released]))
    fresh = Api(node, world.tokens["est"])  # the state is read per request anyway
    names = [o["name"] for o in fresh.get(f"{own}{copy['id']}/").json()["objects"]]
    assert names == ["now releasable"]
    versions = fresh.get(f"{own}{copy['id']}/versions/").json()["versions"]
    assert versions == ["2026-04-01T10:00:00.000Z"]
    assert fresh.get(f"{community}{copy['id']}/").status_code == 404


def test_copies_of_one_partner_stay_apart_from_another_s(node: Node, world: World) -> None:
    token_file = world.directory.parent / "est2.token"
    node.add_partner(
        "est2",
        nation="EST",
        clearances=["NATO=RESTRICTED"],
        communities=["nato-ccdcoe"],
        token_file=token_file,
    )
    est, est2 = Api(node, world.tokens["est"]), Api(node, token_file.read_text().strip())
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    est.post(community, {"objects": [indicator(2, name="one", object_marking_refs=[TLP_GREEN])]})
    est2.post(community, {"objects": [indicator(2, name="two", object_marking_refs=[TLP_GREEN])]})
    assert [o["name"] for o in est.get(community).json()["objects"]] == ["one"]
    assert [o["name"] for o in est2.get(community).json()["objects"]] == ["two"]
    assert est2.request("DELETE", f"{community}{indicator(2)['id']}/").status_code == 200
    assert [o["name"] for o in est.get(community).json()["objects"]] == ["one"]


def test_pages_mix_copies_and_objects_in_the_order_they_were_added(
    node: Node, world: World
) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    posted = []
    for n in range(6):  # alternately onto a withheld id (2) and onto new ones
        obj = indicator(2 if n % 2 == 0 else 90 + n, modified=f"2026-05-0{n + 1}T00:00:00.000Z")
        obj["object_marking_refs"] = [TLP_GREEN]
        est.post(community, {"objects": [obj]})
        posted.append((obj["id"], obj["modified"]))
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, "match[version]": "all"}
        if cursor:
            params["next"] = cursor
        body = est.get(community, params=params).json()
        seen += [(o["id"], o["modified"]) for o in body.get("objects", [])]
        cursor = body.get("next")
        if not body["more"]:
            break
    assert seen == posted


def test_a_tampered_copy_is_caught_by_verify(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    est.post(community, {"objects": [indicator(2, name="est's text")]})
    with node.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE posted_copies SET json = replace(json, 'est''s text', 'altered')"
        )
    problems = node.verify().problems
    assert any(p.startswith(f"est's copy of {indicator(2)['id']}") for p in problems), problems
