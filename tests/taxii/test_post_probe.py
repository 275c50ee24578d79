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
from sqlalchemy import insert

from allied.ingest.envelope import post_objects
from allied.ingest.stix_import import import_file
from allied.integrity.signing import SIGNATURE_EXTENSION_ID
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from allied.store import schema
from allied.taxii.service import TaxiiService
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


def _order(api: Api, world: World, ids: list[str]) -> dict[str, Any]:
    """How objects just posted sit in the partner's views: their order in both collections,
    whether they share a time, and the order of their ledger entries."""
    seen: dict[str, Any] = {}
    for name in ("nato-ccdcoe", "KOR NCSC"):
        manifest = api.get(
            f"/api/collections/{world.collections[name]}/manifest/",
            params={"match[id]": ",".join(ids), "match[version]": "all"},
        ).json()["objects"]
        seen[name] = [ids.index(entry["id"]) for entry in manifest]
        seen[f"{name} one time"] = len({entry["date_added"] for entry in manifest}) == 1
    leaves = [api.get(f"/ledger/inclusion/{i}").json()["leaf_index"] for i in ids]
    seen["ledger order"] = sorted(range(len(ids)), key=lambda n: leaves[n])
    return seen


def test_an_envelope_keeps_its_order_whatever_it_holds(node: Node, world: World) -> None:
    """Copies are written in the same pass as the other objects: same time, ledger entries
    and collection places in the envelope's order."""
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    for first_is_new in (True, False):
        new = indicator(0x70 + first_is_new, object_marking_refs=[TLP_GREEN])
        held_id = 2 if first_is_new else 5  # both withheld from est
        probe, twin = twins(held_id, 0x72 + first_is_new, object_marking_refs=[TLP_GREEN])
        other = indicator(0x74 + first_is_new, object_marking_refs=[TLP_GREEN])
        held = [new, probe] if first_is_new else [probe, new]
        unheld = [other, twin] if first_is_new else [twin, other]
        est.post(community, {"objects": held})
        est.post(community, {"objects": unheld})
        a = _order(est, world, [o["id"] for o in held])
        b = _order(est, world, [o["id"] for o in unheld])
        assert a == b
        assert a["nato-ccdcoe"] == a["KOR NCSC"] == a["ledger order"] == [0, 1]
        assert a["KOR NCSC one time"] and a["nato-ccdcoe one time"]


def test_the_first_of_two_equal_versions_in_an_envelope_counts(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    names = {}
    for n in (2, 0x80):
        pair = [indicator(n, name=name, object_marking_refs=[TLP_GREEN]) for name in "AB"]
        est.post(community, {"objects": pair})
        names[n] = est.get(f"{community}{pair[0]['id']}/").json()["objects"][0]["name"]
    assert names[2] == names[0x80] == "A"


def test_a_partner_reads_back_the_marking_definitions_it_posted(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    seen = []
    for marking_id in (
        world.secret_label,
        "marking-definition--00000000-0000-4000-8000-0000000000aa",
    ):
        definition = {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": marking_id,
            "created": "2026-03-01T10:00:00.000Z",
            "name": "est's statement",
            "definition_type": "statement",
            "definition": {"statement": "handle with care"},
        }
        size = est.get("/ledger/head").json()["tree_size"]
        status = est.post(community, {"objects": [definition]}).json()
        again = est.post(community, {"objects": [definition]}).json()
        seen.append(
            (
                status["success_count"],
                again["success_count"],
                est.get("/ledger/head").json()["tree_size"] - size,
                est.get(f"{community}{marking_id}/").status_code,
                est.get(f"/ledger/inclusion/{marking_id}").status_code,
            )
        )
    assert seen[0] == seen[1] == (1, 1, 1, 200, 200)


def test_a_marking_definition_that_refers_is_refused_either_way(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    outcomes = []
    for marking_id in (
        world.secret_label,
        "marking-definition--00000000-0000-4000-8000-0000000000ab",
    ):
        definition = {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": marking_id,
            "created": "2026-03-01T10:00:00.000Z",
            "definition_type": "statement",
            "definition": {"statement": "x"},
            "x_probe_ref": indicator(1)["id"],
        }
        status = est.post(community, {"objects": [definition]}).json()
        outcomes.append((status["success_count"], status["failure_count"]))
    assert outcomes[0] == outcomes[1]


def test_copies_count_towards_the_partner_s_label_sets(node: Node, world: World) -> None:
    text = (world.directory / "node.toml").read_text()
    (world.directory / "node.toml").write_text(
        text.replace('max_partner_label_sets = "1000"', 'max_partner_label_sets = "2"')
    )
    accepted = []
    for probe_id in (2, 0x90):
        with Node.open(world.directory) as capped:
            est = Api(capped, world.tokens["est"])
            community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
            n = 0x91 + 4 * (probe_id == 2)
            markings = [marking(f"00000000-0000-4000-8000-{n + k:012x}") for k in range(3)]
            est.post(community, {"objects": [indicator(n, object_marking_refs=[markings[0]])]})
            est.post(
                community, {"objects": [indicator(probe_id, object_marking_refs=[markings[1]])]}
            )
            last = est.post(
                community, {"objects": [indicator(n + 1, object_marking_refs=[markings[2]])]}
            )
            accepted.append(last.json()["success_count"])
    assert accepted == [0, 0]


def marking(suffix: str) -> str:
    return f"marking-definition--{suffix}"


def test_a_post_racing_a_new_label_set_is_judged_on_the_store_as_it_is(
    node: Node, world: World
) -> None:
    """The request's view is taken when it is authenticated; a label set committed before
    the write must not make the partner's own new version a copy it never sees."""
    service = TaxiiService(node)
    est = service.authenticate(world.tokens["est"])
    assert est is not None
    mine = node.partner("est").identity_id
    fresh = "marking-definition--00000000-0000-4000-8000-0000000000cc"
    v1 = indicator(0xA0, created_by_ref=mine, object_marking_refs=[TLP_GREEN, fresh])
    post_objects(node, [v1], partner="est")  # meanwhile: a new label set and closure
    v2 = indicator(0xA0, created_by_ref=mine, modified=LATER,
                   object_marking_refs=[TLP_GREEN, fresh])  # fmt: skip
    cid = world.collections["nato-ccdcoe"]
    status = orjson.loads(service.post_objects(est, cid, {"objects": [v2]}, requested=LATER).body)
    assert status["success_count"] == 1
    api = Api(node, world.tokens["est"])
    own = world.collections["KOR NCSC"]
    versions = api.get(f"/api/collections/{own}/objects/{v1['id']}/versions/").json()
    assert len(versions["versions"]) == 2  # both are its own objects, not copies


def test_posting_onto_a_withdrawn_object_looks_like_posting_onto_a_new_one(
    node: Node, world: World
) -> None:
    est = Api(node, world.tokens["est"])
    with node.store.write() as writer:
        writer.conn.execute(
            insert(schema.withdrawals).values(
                object_id=world.ids["green"], peer="x", withdrawn="2026-01-01T00:00:00.000000Z"
            )
        )
    withdrawn, unheld = twins(1, 0xB0, modified=LATER, object_marking_refs=[TLP_GREEN])
    assert observe(est, world, withdrawn) == observe(est, world, unheld)
