"""The TAXII 2.1 API in-process (httpx over ASGI): every endpoint, filter, header and error."""

from __future__ import annotations

import json
import logging
import uuid
from base64 import b64decode
from typing import Any

import pytest

from allied.integrity.ledger import TreeHead, object_leaf, verify_head
from allied.integrity.merkle import verify_consistency, verify_inclusion
from allied.node import Node
from allied.taxii.protocol import MEDIA_TYPE
from tests.conftest import TLP_AMBER, indicator, malware
from tests.taxii.conftest import LATER, Api, World


def own(world: World) -> str:
    return f"/api/collections/{world.collections['KOR NCSC']}"


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json().get("objects", [])]


def all_pages(api: Api, path: str, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        response = api.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        found += body.get("objects", [])
        if not body["more"]:
            assert "next" not in body
            return found
        query = {**params, "next": body["next"]}


# -- discovery, roots, collections ------------------------------------------------------------


def test_discovery_and_api_root(api: Api) -> None:
    response = api.get("/taxii2/")
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["api_roots"] == ["http://testserver/api/"]
    assert body["default"] == "http://testserver/api/"
    root = api.get("/api/").json()
    assert root["versions"] == [MEDIA_TYPE]
    assert root["max_content_length"] == 10485760


def test_discovery_needs_a_token_unless_configured(api: Api, world: World) -> None:
    assert api.get("/taxii2/", token=None).status_code == 401
    text = (world.directory / "node.toml").read_text()
    (world.directory / "node.toml").write_text(
        text.replace('anonymous_discovery = "False"', 'anonymous_discovery = "true"')
    )
    with world.node() as node:
        open_api = Api(node, None)
        assert open_api.get("/taxii2/").status_code == 200
        assert open_api.get("/api/").status_code == 401  # only discovery is ever anonymous


def test_collections_are_the_partners_communities_and_the_node_s_own(
    api: Api, node: Node, world: World
) -> None:
    listed = {c["title"]: c for c in api.get("/api/collections/").json()["collections"]}
    assert set(listed) == {"KOR NCSC", "kor-usa"}
    assert listed["KOR NCSC"]["can_write"] is False
    assert listed["kor-usa"]["can_write"] is True
    assert listed["kor-usa"]["media_types"] == ["application/stix+json;version=2.1"]
    est = Api(node, world.tokens["est"])
    titles = {c["title"] for c in est.get("/api/collections/").json()["collections"]}
    assert titles == {"KOR NCSC", "nato-ccdcoe"}
    one = api.get(f"/api/collections/{world.collections['kor-usa']}/").json()
    assert one["id"] == world.collections["kor-usa"]
    # another community's collection is as if it did not exist
    other = api.get(f"/api/collections/{world.collections['nato-ccdcoe']}/")
    unknown = api.get("/api/collections/00000000-0000-4000-8000-000000000000/")
    assert other.status_code == unknown.status_code == 404
    assert other.json()["title"] == unknown.json()["title"] == "Not Found"


# -- objects -----------------------------------------------------------------------------------


def test_objects_are_what_the_partner_may_receive(api: Api, node: Node, world: World) -> None:
    usa = ids_of(api.get(f"{own(world)}/objects/"))
    assert world.ids["green"] in usa and world.ids["secret"] in usa
    assert world.ids["rel"] in usa and world.ids["clear"] in usa
    assert world.ids["tightened"] not in usa  # withdrawn by its RED version
    assert world.secret_label in usa  # the label travels with what it marks
    est = ids_of(Api(node, world.tokens["est"]).get(f"{own(world)}/objects/"))
    assert world.ids["secret"] not in est
    assert world.ids["rel"] not in est  # refers to the withheld indicator
    assert world.secret_label not in est
    assert world.ids["green"] in est


def test_pagination_with_limit_and_next(api: Api, world: World) -> None:
    everything = ids_of(api.get(f"{own(world)}/objects/"))
    first = api.get(f"{own(world)}/objects/", params={"limit": "2"})
    body = first.json()
    assert body["more"] is True and len(body["objects"]) == 2
    assert first.headers["X-TAXII-Date-Added-First"] <= first.headers["X-TAXII-Date-Added-Last"]
    paged = [o["id"] for o in all_pages(api, f"{own(world)}/objects/", limit="2")]
    assert paged == everything
    assert len(paged) == len(set(paged))


def test_added_after_is_strictly_after(api: Api, world: World) -> None:
    response = api.get(f"{own(world)}/objects/")
    last = response.headers["X-TAXII-Date-Added-Last"]
    assert ids_of(api.get(f"{own(world)}/objects/", params={"added_after": last})) == []
    manifest = api.get(f"{own(world)}/manifest/").json()["objects"]
    middle = manifest[len(manifest) // 2]["date_added"]
    later = ids_of(api.get(f"{own(world)}/objects/", params={"added_after": middle}))
    assert later == [m["id"] for m in manifest if m["date_added"] > middle]
    assert later


def test_match_filters(api: Api, world: World) -> None:
    path = f"{own(world)}/objects/"
    assert ids_of(api.get(path, params={"match[type]": "malware"})) == [world.ids["clear"]]
    both = ids_of(api.get(path, params={"match[id]": f"{world.ids['green']},{world.ids['clear']}"}))
    assert sorted(both) == sorted([world.ids["green"], world.ids["clear"]])
    assert ids_of(api.get(path, params={"match[spec_version]": "2.0"})) == []
    assert world.ids["green"] in ids_of(api.get(path, params={"match[spec_version]": "2.0,2.1"}))
    assert (
        ids_of(api.get(path, params={"match[type]": "indicator", "match[id]": world.ids["clear"]}))
        == []
    )


def test_versions_first_last_all_and_by_timestamp(api: Api, node: Node, world: World) -> None:
    identifier = indicator(9)["id"]
    api_post(api, world, [indicator(9), indicator(9, modified=LATER, name="changed")])
    path = f"/api/collections/{world.collections['kor-usa']}/objects/{identifier}/"

    def versions(**params: str) -> list[str]:
        return [o["modified"] for o in api.get(path, params=params).json().get("objects", [])]

    assert versions() == [LATER]
    assert versions(**{"match[version]": "first"}) == ["2026-03-01T10:00:00.000Z"]
    assert sorted(versions(**{"match[version]": "all"})) == ["2026-03-01T10:00:00.000Z", LATER]
    assert versions(**{"match[version]": "first,last"}) == ["2026-03-01T10:00:00.000Z", LATER]
    assert versions(**{"match[version]": "2026-03-01T10:00:00Z"}) == ["2026-03-01T10:00:00.000Z"]
    listed = api.get(path + "versions/").json()
    assert listed["versions"] == ["2026-03-01T10:00:00.000Z", LATER]
    assert listed["more"] is False


def test_a_tightened_label_withdraws_every_version(api: Api, world: World) -> None:
    path = f"{own(world)}/objects/{world.ids['tightened']}/"
    assert api.get(path, params={"match[version]": "all"}).status_code == 404
    assert api.get(path + "versions/").status_code == 404
    manifest = api.get(f"{own(world)}/manifest/", params={"match[version]": "all"}).json()
    assert world.ids["tightened"] not in [m["id"] for m in manifest["objects"]]


def test_manifest(api: Api, world: World) -> None:
    response = api.get(f"{own(world)}/manifest/", params={"match[type]": "indicator"})
    entries = response.json()["objects"]
    assert {e["id"] for e in entries} == {world.ids["green"], world.ids["secret"]}
    for entry in entries:
        assert entry["media_type"] == "application/stix+json;version=2.1"
        assert entry["version"] == "2026-03-01T10:00:00.000Z"
        assert entry["date_added"].endswith("Z")
    assert response.headers["X-TAXII-Date-Added-First"] == entries[0]["date_added"]


def test_object_by_id(api: Api, world: World) -> None:
    response = api.get(f"{own(world)}/objects/{world.ids['green']}/")
    assert ids_of(response) == [world.ids["green"]]
    assert response.json()["objects"][0]["name"] == "bad address 1"
    empty = api.get(
        f"{own(world)}/objects/{world.ids['green']}/", params={"match[spec_version]": "2.0"}
    )
    assert empty.status_code == 200 and "objects" not in empty.json()


# -- posting -----------------------------------------------------------------------------------


def api_post(
    api: Api, world: World, objects: list[dict[str, Any]], title: str = "kor-usa"
) -> dict[str, Any]:
    response = api.post(
        f"/api/collections/{world.collections[title]}/objects/", {"objects": objects}
    )
    assert response.status_code == 202, response.text
    status: dict[str, Any] = response.json()
    return status


def test_post_reports_each_object_and_the_status_can_be_read_back(
    api: Api, node: Node, world: World
) -> None:
    bad = indicator(11, pattern="[ipv4-addr:value = ")
    status = api_post(api, world, [indicator(10), bad, {"type": "x"}])
    assert status["status"] == "complete"
    assert (status["total_count"], status["success_count"], status["failure_count"]) == (3, 1, 2)
    assert status["successes"] == [
        {"id": indicator(10)["id"], "version": indicator(10)["modified"]}
    ]
    failed = {f["id"]: f["message"] for f in status["failures"]}
    assert "pattern" in failed[bad["id"]]
    assert "objects[2]" in failed
    again = api.get(f"/api/status/{status['id']}/")
    assert again.json() == status
    # another partner cannot read it
    assert Api(node, world.tokens["est"]).get(f"/api/status/{status['id']}/").status_code == 404
    # the node signed the posted object as publisher and recorded who posted it
    stored = node.store.latest(indicator(10)["id"])
    assert stored is not None and stored.received_from == "usa"
    assert node.verify().ok


def test_posted_objects_are_in_the_community_collection(api: Api, node: Node, world: World) -> None:
    api_post(api, world, [indicator(12)])
    community = f"/api/collections/{world.collections['kor-usa']}/objects/"
    assert ids_of(api.get(community)) == [indicator(12)["id"]]
    assert indicator(12)["id"] in ids_of(api.get(f"{own(world)}/objects/"))
    # posting the same object again is a success, not a second copy
    status = api_post(api, world, [indicator(12)])
    assert status["success_count"] == 1
    assert ids_of(api.get(community)) == [indicator(12)["id"]]


def test_a_partner_reads_back_what_it_posted_but_others_follow_the_labels(
    api: Api, node: Node, world: World
) -> None:
    amber = indicator(13, object_marking_refs=[TLP_AMBER])
    api_post(api, world, [amber])
    assert amber["id"] in ids_of(api.get(f"{own(world)}/objects/"))
    est = Api(node, world.tokens["est"])
    assert amber["id"] not in ids_of(est.get(f"{own(world)}/objects/"))  # AMBER is never forwarded


def test_only_the_poster_publishes_new_versions_of_what_it_posted(
    api: Api, node: Node, world: World
) -> None:
    api_post(api, world, [malware(14)])
    token_file = world.directory.parent / "usa2.token"
    node.add_partner("usa2", nation="USA", communities=["kor-usa"], token_file=token_file)
    other = Api(node, token_file.read_text().strip())
    status = api_post(other, world, [malware(14, modified=LATER, name="relabelled")])
    assert status["failure_count"] == 1
    message = status["failures"][0]["message"]
    assert "only the originator publishes new versions" in message
    assert "usa" not in message and "identity--" not in message  # names nobody


def test_many_contradicting_objects_do_not_sink_the_rest_of_the_envelope(
    api: Api, node: Node, world: World
) -> None:
    """Every object that contradicts the store is refused with its reason, in one pass:
    the honest objects beside them are stored, however many contradict."""
    api_post(api, world, [malware(n) for n in range(100, 130)])
    token_file = world.directory.parent / "usa3.token"
    node.add_partner("usa3", nation="USA", communities=["kor-usa"], token_file=token_file)
    other = Api(node, token_file.read_text().strip())
    relabelled = [malware(n, modified=LATER, name="relabelled") for n in range(100, 130)]
    fresh = [indicator(n) for n in range(130, 135)]
    status = api_post(other, world, [*relabelled[:15], *fresh, *relabelled[15:]])
    assert (status["success_count"], status["failure_count"]) == (5, 30)
    assert {s["id"] for s in status["successes"]} == {obj["id"] for obj in fresh}
    failed = {f["id"]: f["message"] for f in status["failures"]}
    assert set(failed) == {obj["id"] for obj in relabelled}
    assert all("only the originator publishes new versions" in m for m in failed.values())
    for obj in relabelled:
        stored = node.store.latest(obj["id"])
        assert stored is not None and stored.data["name"] != "relabelled"
    assert node.verify().ok


def test_many_redefined_marking_definitions_do_not_sink_the_rest_of_the_envelope(
    api: Api, node: Node, world: World
) -> None:
    """A marking definition never changes: every redefinition in an envelope is refused
    with its reason in one pass, and the other objects are stored."""

    def statement(n: int, text: str) -> dict[str, Any]:
        return {
            "type": "marking-definition", "spec_version": "2.1",
            "id": f"marking-definition--{uuid.uuid5(uuid.NAMESPACE_URL, f'statement-{n}')}",
            "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
            "definition": {"statement": text},
        }  # fmt: skip

    first = api_post(api, world, [statement(n, f"(c) {n}") for n in range(25)])
    assert first["success_count"] == 25
    redefined = [statement(n, f"(c) someone else {n}") for n in range(25)]
    fresh = [indicator(n) for n in range(140, 145)]
    status = api_post(api, world, [*redefined[:10], *fresh, *redefined[10:]])
    assert (status["success_count"], status["failure_count"]) == (5, 25)
    assert {s["id"] for s in status["successes"]} == {obj["id"] for obj in fresh}
    failed = {f["id"]: f["message"] for f in status["failures"]}
    assert set(failed) == {obj["id"] for obj in redefined}
    assert all("cannot change" in message for message in failed.values())
    assert node.verify().ok


def test_post_limits_and_media_types(api: Api, node: Node, world: World) -> None:
    path = f"/api/collections/{world.collections['kor-usa']}/objects/"
    wrong_type = api.request("POST", path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    not_json = api.request("POST", path, content=b"{nope", headers={"Content-Type": MEDIA_TYPE})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["description"]
    no_objects = api.post(path, {"things": []})
    assert no_objects.status_code == 422
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    too_deep = api.post(path, {"objects": [{"x": deep}]})
    assert too_deep.status_code == 400 and "deeper" in too_deep.json()["description"]
    huge = api.request(
        "POST", path, content=b" " * (10485760 + 1), headers={"Content-Type": MEDIA_TYPE}
    )
    assert huge.status_code == 413
    many = api.post(path, {"objects": [{}] * 10001})
    assert many.status_code == 413 and "10000" in many.json()["description"]
    read_only = api.post(f"{own(world)}/objects/", {"objects": [indicator(15)]})
    assert read_only.status_code == 403


def test_first_and_last_are_those_of_the_community_collection(api: Api, world: World) -> None:
    api_post(api, world, [malware(17), malware(17, modified=LATER, name="v2")])
    path = f"/api/collections/{world.collections['kor-usa']}/objects/{malware(17)['id']}/"
    assert api.request("DELETE", path, params={"match[version]": LATER}).status_code == 200
    last = api.get(path).json()["objects"]
    assert [o["modified"] for o in last] == ["2026-03-01T10:00:00.000Z"]
    listed = ids_of(api.get(f"/api/collections/{world.collections['kor-usa']}/objects/"))
    assert malware(17)["id"] in listed
    # the node's own collection still has both, the latest last
    own_last = api.get(f"{own(world)}/objects/{malware(17)['id']}/").json()["objects"]
    assert [o["modified"] for o in own_last] == [LATER]


def test_delete_takes_only_what_the_partner_posted_out_of_a_community_collection(
    api: Api, node: Node, world: World
) -> None:
    api_post(api, world, [indicator(16)])
    community = f"/api/collections/{world.collections['kor-usa']}/objects/"
    assert api.request("DELETE", f"{community}{indicator(16)['id']}/").status_code == 200
    assert ids_of(api.get(community)) == []
    assert api.get(f"{community}{indicator(16)['id']}/").status_code == 404
    # it stays in the node (and its ledger)
    assert indicator(16)["id"] in ids_of(api.get(f"{own(world)}/objects/"))
    forbidden = api.request("DELETE", f"{own(world)}/objects/{world.ids['green']}/")
    assert forbidden.status_code == 403


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"added_after": "yesterday"}, "added_after"),
        ({"match[version]": "newest"}, "match[version]"),
        ({"match[id]": "not-an-id"}, "match[id]"),
        ({"match[type]": "Bad Type"}, "match[type]"),
        ({"match[colour]": "red"}, "match[colour]"),
        ({"next": "forged"}, "next"),
        ({"sort": "id"}, "sort"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    api: Api, world: World, params: dict[str, str], needle: str
) -> None:
    response = api.get(f"{own(world)}/objects/", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["http_status"] == "400"
    assert needle in body["description"]


def test_errors_are_taxii_messages(api: Api, world: World) -> None:
    response = api.get("/api/nowhere/")
    assert response.status_code == 404
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.json()["http_status"] == "404"
    method = api.request("PUT", f"{own(world)}/objects/")
    assert method.status_code == 405 and method.json()["title"] == "Method Not Allowed"
    old = api.get("/api/", headers={"Accept": "application/taxii+json;version=2.0"})
    assert old.status_code == 406
    unauthenticated = api.get("/api/", token=None)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"


def test_an_unexpected_failure_is_a_500_without_a_trace(
    api: Api, world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api.app.state.taxii.service, "get_manifest", broken)
    with caplog.at_level(logging.ERROR, logger="allied.taxii"):
        response = api.get(f"{own(world)}/manifest/")
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    error_id = response.json()["error_id"]
    assert error_id in response.json()["description"]
    assert "secret internal detail" in caplog.text and error_id in caplog.text


def test_the_access_log_has_one_json_line_per_request_and_no_secret(
    api: Api, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="allied.access"):
        api.get(f"{own(world)}/objects/")
        api.get("/api/", token="wrong-token-value-that-is-long-enough")
    lines = [json.loads(r.message) for r in caplog.records if r.name == "allied.access"]
    assert [(line["partner"], line["status"]) for line in lines] == [("usa", 200), (None, 401)]
    assert world.tokens["usa"] not in caplog.text
    assert "wrong-token-value" not in caplog.text


# -- ledger --------------------------------------------------------------------------------------


def test_ledger_head_and_proofs_verify(api: Api, node: Node, world: World) -> None:
    head = TreeHead.from_dict(api.get("/ledger/head").json(), source="the API")
    verify_head(head, node.own_keys(), source="the API")
    assert head.size == node.store.tree_heads()[-1].size
    proof = api.get(f"/ledger/inclusion/{world.ids['green']}").json()
    assert proof["tree_size"] == head.size and proof["id"] == world.ids["green"]
    stored = node.store.latest(world.ids["green"])
    assert stored is not None
    leaf = object_leaf(stored.data)
    assert b64decode(proof["leaf_hash"]) == leaf
    verify_inclusion(
        leaf, proof["leaf_index"], head.size, [b64decode(p) for p in proof["proof"]], head.root
    )
    sizes = [h.size for h in node.store.tree_heads()]
    between = api.get(
        "/ledger/consistency", params={"first": str(sizes[0]), "second": str(sizes[1])}
    ).json()
    assert between["tree_size"] == sizes[1]
    verify_consistency(
        sizes[0],
        sizes[1],
        b64decode(between["old_root_hash"]),
        b64decode(between["root_hash"]),
        [b64decode(p) for p in between["proof"]],
    )
    latest = api.get("/ledger/consistency", params={"first": "3"}).json()
    assert latest["old_size"] == 3 and latest["tree_size"] == head.size
    assert api.get("/ledger/consistency", params={"first": "x"}).status_code == 400
    assert api.get("/ledger/consistency").status_code == 400
    unknown = api.get("/ledger/consistency", params={"first": "1", "second": "999999"})
    assert unknown.status_code == 404


def test_no_inclusion_proof_for_a_withheld_object(node: Node, world: World) -> None:
    est = Api(node, world.tokens["est"])
    withheld = est.get(f"/ledger/inclusion/{world.ids['secret']}")
    missing = est.get("/ledger/inclusion/indicator--00000000-0000-4000-8000-0000000000ff")
    assert withheld.status_code == missing.status_code == 404
    assert (
        Api(node, world.tokens["usa"]).get(f"/ledger/inclusion/{world.ids['secret']}").status_code
        == 200
    )
    bad = est.get(f"/ledger/inclusion/{world.ids['green']}", params={"version": "soon"})
    assert bad.status_code == 400
