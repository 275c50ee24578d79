"""Security of the TAXII API: who gets in, and that nothing withheld shows, whichever way a
partner asks (ids, filters, versions, manifests, cursors, ledger proofs)."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.labels import Label
from allied.taxii.service import TaxiiService
from tests.conftest import TLP_GREEN, indicator
from tests.policy.test_egress import UNKNOWN, Graph, _build, histories, oracle_for
from tests.taxii.conftest import Api, World, relationship

UNHELD = "indicator--00000000-0000-4000-8000-0000000000ff"


def endpoints(world: World) -> list[tuple[str, str]]:
    own = f"/api/collections/{world.collections['KOR NCSC']}"
    return [
        ("GET", "/taxii2/"),
        ("GET", "/api/"),
        ("GET", "/api/collections/"),
        ("GET", f"{own}/"),
        ("GET", f"{own}/objects/"),
        ("POST", f"{own}/objects/"),
        ("GET", f"{own}/objects/{world.ids['green']}/"),
        ("DELETE", f"{own}/objects/{world.ids['green']}/"),
        ("GET", f"{own}/objects/{world.ids['green']}/versions/"),
        ("GET", f"{own}/manifest/"),
        ("GET", "/api/status/00000000-0000-4000-8000-000000000000/"),
        ("GET", "/ledger/head"),
        ("GET", f"/ledger/inclusion/{world.ids['green']}"),
        ("GET", "/ledger/consistency?first=1"),
        ("GET", "/federation/withdrawn"),
        ("GET", "/ledger/peers?signer=identity--00000000-0000-4000-8000-000000000000"),
        ("GET", "/openapi.json"),
    ]


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-token", 401), ("Basic dXNhOnVzYQ==", 401), ("revoked", 403)],
)
def test_every_endpoint_needs_a_valid_token(
    node: Node, world: World, token: str | None, status: int
) -> None:
    api = Api(node, None)
    for method, path in endpoints(world):
        headers = {}
        if token == "revoked":
            headers["Authorization"] = f"Bearer {world.tokens['gone']}"
        elif token is not None:
            headers["Authorization"] = token if token.startswith("Basic") else f"Bearer {token}"
        response = api.request(method, path, token=False, headers=headers, json={"objects": []})
        assert response.status_code == status, (method, path, response.text)
        assert "objects" not in response.json()


def test_another_community_s_collection_is_invisible_and_unwritable(api: Api, world: World) -> None:
    other_id = world.collections["nato-ccdcoe"]
    unknown_id = "00000000-0000-4000-8000-000000000000"
    for suffix in ("/", "/objects/", "/manifest/", f"/objects/{world.ids['green']}/"):
        a = api.get(f"/api/collections/{other_id}{suffix}")
        b = api.get(f"/api/collections/{unknown_id}{suffix}")
        assert a.status_code == b.status_code == 404
        assert _masked(a.json(), other_id) == _masked(b.json(), unknown_id)
    posted = api.post(f"/api/collections/{other_id}/objects/", {"objects": [indicator(40)]})
    assert posted.status_code == 404


def _masked(body: dict[str, Any], name: str) -> dict[str, Any]:
    """An error message as a partner compares it: without its error id and the id asked for."""
    return {
        key: value.replace(name, "ID") if isinstance(value, str) else value
        for key, value in body.items()
        if key != "error_id"
    }


def test_a_withheld_object_answers_like_one_that_does_not_exist(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    own = f"/api/collections/{world.collections['KOR NCSC']}"
    withheld, unheld = world.ids["secret"], UNHELD
    for template in (
        "{own}/objects/{id}/",
        "{own}/objects/{id}/versions/",
        "/ledger/inclusion/{id}",
    ):
        a = est.get(template.format(own=own, id=withheld))
        b = est.get(template.format(own=own, id=unheld))
        assert a.status_code == b.status_code == 404
        assert _masked(a.json(), withheld) == _masked(b.json(), unheld)
    for version in ("all", "first", "last", "2026-03-01T10:00:00.000Z"):
        a = est.get(f"{own}/objects/{withheld}/", params={"match[version]": version})
        assert a.status_code == 404


def test_match_filters_never_reveal_a_withheld_object(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    own = f"/api/collections/{world.collections['KOR NCSC']}"
    for path in (f"{own}/objects/", f"{own}/manifest/"):
        for params in (
            {"match[id]": world.ids["secret"]},
            {"match[id]": world.ids["rel"]},
            {"match[id]": world.secret_label},
            {"match[id]": world.ids["tightened"], "match[version]": "all"},
            {"match[type]": "relationship"},
            {"match[version]": "first", "match[id]": world.ids["tightened"]},
        ):
            response = est.get(path, params=params)
            assert response.status_code == 200
            assert response.json() == {"more": False}, (path, params)
            assert "X-TAXII-Date-Added-First" not in response.headers


def test_pages_and_cursors_reveal_no_withheld_object(node: Node, world: World) -> None:
    """Paging one object at a time: as many pages as visible objects, none empty, and the
    last says there is no more even though withheld objects follow it."""
    est = Api(node, world.tokens["est"])
    usa = Api(node, world.tokens["usa"])
    path = f"/api/collections/{world.collections['KOR NCSC']}/objects/"
    visible = [o["id"] for o in est.get(path).json()["objects"]]
    pages, params = [], {"limit": "1"}
    while True:
        body = est.get(path, params=params).json()
        pages.append([o["id"] for o in body["objects"]])
        if not body["more"]:
            break
        token = body["next"]
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        response = est.get(path, params=params)
        last = response.json()["objects"][-1]
        added = response.headers["X-TAXII-Date-Added-Last"]
        assert last["id"].encode() not in raw and added.encode() not in raw  # sealed
        # another partner cannot use it, nor can a changed one be used
        assert usa.get(path, params={"next": token}).status_code == 400
        flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert est.get(path, params={"next": flipped}).status_code == 400
        # and it is bound to this endpoint
        manifest = path.replace("/objects/", "/manifest/")
        assert est.get(manifest, params={"next": token}).status_code == 400
        params = {"limit": "1", "next": token}
    assert [ids[0] for ids in pages] == visible
    assert all(len(ids) == 1 for ids in pages)


def test_a_partner_may_not_delete_what_another_posted(node: Node, world: World) -> None:
    usa = Api(node, world.tokens["usa"])
    token_file = world.directory.parent / "usa2.token"
    node.add_partner("usa2", nation="USA", communities=["kor-usa"], token_file=token_file)
    other = Api(node, token_file.read_text().strip())
    community = f"/api/collections/{world.collections['kor-usa']}/objects/"
    assert usa.post(community, {"objects": [indicator(41)]}).status_code == 202
    assert other.request("DELETE", f"{community}{indicator(41)['id']}/").status_code == 403
    assert indicator(41)["id"] in [o["id"] for o in usa.get(community).json()["objects"]]


# -- the property: TAXII gives each partner exactly what the oracle allows -------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(1, 4))
def test_taxii_pages_are_exactly_what_the_oracle_allows(
    history: tuple[Graph, list[int], int, dict[int, list[str]]], limit: int
) -> None:
    """Random graphs, import orders and relabellings (as the export property test): for
    every partner, paging through the node's own collection (latest versions, and every
    version) gives exactly the object versions the oracle allows, no more, each once; the
    manifest agrees; marking definitions come only with label sets the partner may
    receive."""
    graph, order, imports, relabel = history
    with tempfile.TemporaryDirectory() as tmp:
        node, objects, remote = _build(Path(tmp), graph, order, imports, relabel)
        try:
            service = TaxiiService(node)
            own = service.collections[0].id
            partners = {p.name: p for p in node.partners()}
            latest = {o["id"]: o for o in objects}
            versions = {i: [v.data for v in node.store.versions(i)] for i in latest}
            for name, partner in partners.items():
                base, ok = oracle_for(node, objects, remote, name)

                expected_latest = {i for i, o in latest.items() if ok(o)}
                expected_all = {
                    (i, v["modified"]) for i in expected_latest for v in versions[i] if ok(v)
                }
                got_latest = _all_pages(service, partner, own, "objects", limit, {})
                got_all = _all_pages(
                    service, partner, own, "objects", limit, {"match[version]": "all"}
                )
                manifest = _all_pages(service, partner, own, "manifest", limit, {})
                # (the node's built-in identities and definitions aside)
                stix = [o for o in got_latest if o["id"] in latest]
                assert {o["id"] for o in stix} == expected_latest, name
                assert len(stix) == len(expected_latest), name
                assert {(o["id"], o["modified"]) for o in got_all if o["id"] in latest} == (
                    expected_all
                ), name
                assert [m["id"] for m in manifest] == [o["id"] for o in got_latest], name
                markings = {o["id"] for o in got_latest if o["type"] == "marking-definition"}
                exported = {
                    json.loads(t)["id"]
                    for t in Egress(node).release(name)
                    if json.loads(t)["type"] == "marking-definition"
                }
                assert exported <= markings, name
                allowed_marks = {
                    m
                    for o in objects
                    for v in versions[o["id"]]
                    if base(v)
                    for m in v.get("object_marking_refs", [])
                } | {  # those of the node's built-in objects the partner receives
                    m
                    for o in got_latest
                    if o["id"] not in latest
                    for m in o.get("object_marking_refs", [])
                }
                assert markings <= allowed_marks - {UNKNOWN}, name
        finally:
            node.close()


def _all_pages(
    service: TaxiiService,
    partner: Any,
    collection: str,
    kind: str,
    limit: int,
    params: dict[str, str],
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    query = {**params, "limit": str(limit)}
    while True:
        get = service.get_objects if kind == "objects" else service.get_manifest
        body = json.loads(get(partner, collection, list(query.items())).body)
        page = body.get("objects", [])
        assert len(page) <= limit
        found += page
        if not body["more"]:
            return found
        assert page, "a page that says there is more is never empty"
        query = {**params, "limit": str(limit), "next": body["next"]}


# -- what a partner may post --------------------------------------------------------------------


def test_citing_a_label_in_a_post_does_not_reveal_it(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    label = f"/api/collections/{world.collections['KOR NCSC']}/objects/{world.secret_label}/"
    assert est.get(label).status_code == 404
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    citing = indicator(50, object_marking_refs=[TLP_GREEN, world.secret_label])
    assert est.post(community, {"objects": [citing]}).json()["success_count"] == 1
    assert est.get(f"{community}{citing['id']}/").status_code == 200  # its own, back
    assert est.get(label).status_code == 404
    exported = [json.loads(t)["id"] for t in Egress(node).release("est")]
    assert world.secret_label not in exported


def test_a_partner_cannot_post_a_classification_label(node: Node, world: World) -> None:
    """Labels decide who receives what: an unsigned one from a partner would let it decide
    for objects the operator marks later."""
    from allied.stix.labels import label_marking

    forged = label_marking(
        Label(
            marking_id="marking-definition--6d2d1a0c-7a57-4c5e-9a0b-1d1b3f0f8a11",
            name="NATO UNCLASSIFIED REL EST",
            tlp="clear",
            policy="NATO",
            classification="UNCLASSIFIED",
            releasable_to=("EST",),
        ),
        created="2026-03-01T10:00:00.000Z",
        created_by_ref=node.partner("est").identity_id,
    )
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    status = est.post(community, {"objects": [forged]}).json()
    assert status["failure_count"] == 1
    assert "unsigned classification label" in status["failures"][0]["message"]
    assert node.store.latest(forged["id"]) is None


@pytest.mark.parametrize("whose", ["node", "usa"])
def test_a_partner_cannot_post_as_the_node_or_another_partner(
    node: Node, world: World, whose: str
) -> None:
    creator = node.config.identity_id if whose == "node" else node.partner("usa").identity_id
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    status = est.post(community, {"objects": [indicator(51, created_by_ref=creator)]}).json()
    assert status["failure_count"] == 1
    message = status["failures"][0]["message"]
    assert "not those of this node or its partners" in message
    assert "usa" not in message.replace(creator, "")  # names no partner
    own = indicator(52, created_by_ref=node.partner("est").identity_id)
    assert est.post(community, {"objects": [own]}).json()["success_count"] == 1


def test_one_object_without_a_canonical_form_fails_alone(api: Api, world: World) -> None:
    community = f"/api/collections/{world.collections['kor-usa']}/objects/"
    huge = indicator(53, x_big=2**60)
    status = api.post(community, {"objects": [indicator(54), huge]}).json()
    assert (status["success_count"], status["failure_count"]) == (1, 1)
    assert status["failures"][0]["id"] == huge["id"]


def test_a_token_belongs_to_one_partner(node: Node, world: World) -> None:
    from allied.errors import ConfigError

    shared = world.directory.parent / "usa.token"  # already usa's
    with pytest.raises(ConfigError, match="already another partner's"):
        node.add_partner("copycat", nation="USA", communities=["kor-usa"], token_file=shared)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/taxii+json;version=2.0", "text/plain"],
)
def test_posts_must_be_taxii_2_1(api: Api, world: World, content_type: str) -> None:
    community = f"/api/collections/{world.collections['kor-usa']}/objects/"
    response = api.request(
        "POST",
        community,
        content=json.dumps({"objects": [indicator(55)]}).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415


def test_a_partner_gets_back_what_it_sent_whatever_it_refers_to(node: Node, world: World) -> None:
    """Otherwise a relationship pointing at a withheld object would come back as missing
    where one pointing at nothing the node holds comes back: a probe for what it holds."""
    est = Api(node, world.tokens["est"])
    community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
    mine = indicator(60, created_by_ref=node.partner("est").identity_id)
    to_withheld = relationship(61, mine["id"], world.ids["secret"], [TLP_GREEN])
    to_nothing = relationship(62, mine["id"], UNHELD, [TLP_GREEN])
    status = est.post(community, {"objects": [mine, to_withheld, to_nothing]}).json()
    assert status["success_count"] == 3
    for sent in (to_withheld, to_nothing):
        assert est.get(f"{community}{sent['id']}/").status_code == 200


def test_a_partner_cannot_mint_label_sets_without_end(node: Node, world: World) -> None:
    """Each distinct list of markings is a label set that every release decision and page
    query considers."""
    text = (world.directory / "node.toml").read_text()
    (world.directory / "node.toml").write_text(
        text.replace('max_partner_label_sets = "1000"', 'max_partner_label_sets = "2"')
    )
    with Node.open(world.directory) as capped:
        est = Api(capped, world.tokens["est"])
        community = f"/api/collections/{world.collections['nato-ccdcoe']}/objects/"
        unknown = [f"marking-definition--00000000-0000-4000-8000-{n:012x}" for n in range(4)]
        objects = [
            indicator(70 + n, object_marking_refs=[TLP_GREEN, m]) for n, m in enumerate(unknown)
        ]
        status = est.post(community, {"objects": objects}).json()
        assert (status["success_count"], status["failure_count"]) == (2, 2)
        assert "max_partner_label_sets" in status["failures"][0]["message"]
        # lists it has used before still go through
        again = indicator(80, object_marking_refs=[TLP_GREEN, unknown[0]])
        assert est.post(community, {"objects": [again]}).json()["success_count"] == 1
