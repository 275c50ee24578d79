"""End to end: the OASIS taxii2-client library against a real server on 127.0.0.1, for
every endpoint and filter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from allied.node import Node
from tests.conftest import indicator, malware
from tests.taxii.conftest import LATER, World, live_server


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@pytest.fixture
def url(node: Node) -> Iterator[str]:
    with live_server(node) as base:
        yield base


def collections(url: str, token: str) -> dict[str, Collection]:
    server = Server(f"{url}/taxii2/", auth=Bearer(token))
    root: ApiRoot = server.default
    return {c.title: c for c in root.collections}


def ids(envelope: dict[str, Any]) -> list[str]:
    return [o["id"] for o in envelope.get("objects", [])]


def test_discovery_api_root_and_collections(url: str, world: World) -> None:
    server = Server(f"{url}/taxii2/", auth=Bearer(world.tokens["usa"]))
    assert server.title == "Allied node KOR NCSC"
    assert [root.url for root in server.api_roots] == [f"{url}/api/"]
    root = server.default
    assert root.versions == ["application/taxii+json;version=2.1"]
    assert root.max_content_length == 10485760
    found = {c.title: (c.can_read, c.can_write) for c in root.collections}
    assert found == {"KOR NCSC": (True, False), "kor-usa": (True, True)}


def test_objects_with_every_filter(url: str, world: World) -> None:
    own = collections(url, world.tokens["usa"])["KOR NCSC"]
    everything = ids(own.get_objects())
    assert world.ids["secret"] in everything and world.ids["tightened"] not in everything
    assert ids(own.get_objects(type="malware")) == [world.ids["clear"]]
    assert ids(own.get_objects(id=[world.ids["green"]])) == [world.ids["green"]]
    assert ids(own.get_objects(spec_version="2.0")) == []
    assert ids(own.get_objects(version="all", type="indicator")) == [
        world.ids["green"],
        world.ids["secret"],
    ]
    manifest = own.get_manifest(type="indicator")
    last = manifest["objects"][0]["date_added"]
    assert world.ids["green"] not in ids(own.get_objects(added_after=last))
    pages = list(as_pages(own.get_objects, per_request=2))
    assert [i for page in pages for i in ids(page)] == everything
    assert all(len(ids(page)) <= 2 for page in pages) and len(pages) > 1
    manifest_pages = list(as_pages(own.get_manifest, per_request=3))
    assert [e["id"] for p in manifest_pages for e in p["objects"]] == everything


def test_object_versions_post_status_and_delete(url: str, world: World) -> None:
    shared = collections(url, world.tokens["usa"])["kor-usa"]
    status = shared.add_objects(
        {"objects": [malware(30), malware(30, modified=LATER, name="renamed"), {"type": "x"}]}
    )
    assert status.status == "complete"
    assert (status.success_count, status.failure_count) == (2, 1)
    assert status.failures[0]["id"] == "objects[2]"
    again = ApiRoot(f"{url}/api/", auth=Bearer(world.tokens["usa"])).get_status(status.id)
    assert again.success_count == 2
    identifier = malware(30)["id"]
    assert shared.get_object(identifier)["objects"][0]["name"] == "renamed"
    first = shared.get_object(identifier, version="first")["objects"][0]
    assert first["modified"] == "2026-03-01T10:00:00.000Z"
    assert shared.object_versions(identifier)["versions"] == ["2026-03-01T10:00:00.000Z", LATER]
    shared.delete_object(identifier, version=LATER)
    assert shared.object_versions(identifier)["versions"] == ["2026-03-01T10:00:00.000Z"]
    shared.delete_object(identifier)
    with pytest.raises(requests.HTTPError) as error:
        shared.get_object(identifier)
    assert error.value.response.status_code == 404


def test_what_the_client_sees_of_errors(url: str, world: World) -> None:
    own = collections(url, world.tokens["est"])["KOR NCSC"]
    with pytest.raises(requests.HTTPError) as error:
        own.get_object(world.ids["secret"])
    assert error.value.response.status_code == 404
    assert error.value.response.json()["http_status"] == "404"
    with pytest.raises(TAXIIServiceException):
        own.add_objects({"objects": [indicator(31)]})  # read-only: the client refuses
    with pytest.raises(requests.HTTPError) as unauthorised:
        Server(f"{url}/taxii2/", auth=Bearer("wrong-token-of-sufficient-length")).refresh()
    assert unauthorised.value.response.status_code == 401


def test_ledger_endpoints_over_http(url: str, world: World) -> None:
    session = requests.Session()
    session.auth = Bearer(world.tokens["usa"])
    head = session.get(f"{url}/ledger/head", timeout=10).json()
    proof = session.get(f"{url}/ledger/inclusion/{world.ids['green']}", timeout=10).json()
    assert proof["tree_size"] == head["tree_size"]
    consistency = session.get(f"{url}/ledger/consistency", params={"first": 2}, timeout=10)
    assert consistency.json()["tree_size"] == head["tree_size"]
