"""A node with partners, labels and objects for the TAXII tests, and clients for its API:
in-process (httpx over ASGI) and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.taxii.app import create_app
from allied.taxii.protocol import MEDIA_TYPE
from allied.taxii.service import TaxiiService
from tests.conftest import (
    STAMP,
    TLP_AMBER,
    TLP_GREEN,
    TLP_RED,
    NewDatabase,
    indicator,
    malware,
    write_bundle,
)

TLP_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
LATER = "2026-03-02T10:00:00.000Z"


@dataclass
class World:
    """The node and what the tests need to know about it."""

    directory: Path
    tokens: dict[str, str]
    secret_label: str
    collections: dict[str, str]  # title -> id
    ids: dict[str, str]

    def node(self) -> Node:
        return Node.open(self.directory)


def relationship(n: int, source: str, target: str, markings: list[str]) -> dict[str, Any]:
    return {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{n:08x}-0000-4000-8000-000000000002",
        "created": STAMP,
        "modified": STAMP,
        "relationship_type": "indicates",
        "source_ref": source,
        "target_ref": target,
        "object_marking_refs": markings,
    }


def build_world(directory: Path, database: str = "") -> World:
    """KOR's node; partner usa (kor-usa community, NATO SECRET), est (nato-ccdcoe, NATO
    RESTRICTED) and gone (revoked). Objects: a GREEN indicator, an AMBER one labelled NATO
    SECRET REL USA, CLEAR malware, a relationship from the secret indicator to the malware,
    and an indicator whose second version tightened GREEN to RED."""
    init_node(
        directory,
        name="KOR NCSC",
        nation="KOR",
        communities=["kor-usa", "nato-ccdcoe"],
        database=database,
    )
    tokens: dict[str, str] = {}
    with Node.open(directory) as node:
        for name, nation, clearance, community in (
            ("usa", "USA", "NATO=SECRET", "kor-usa"),
            ("est", "EST", "NATO=RESTRICTED", "nato-ccdcoe"),
            ("gone", "USA", "NATO=SECRET", "kor-usa"),
        ):
            token_file = directory.parent / f"{name}.token"
            node.add_partner(
                name,
                nation=nation,
                clearances=[clearance],
                communities=[community],
                token_file=token_file,
            )
            tokens[name] = token_file.read_text().strip()
        with node.write() as writer:
            writer.revoke_partner("gone")
        secret = node.add_label(
            "NATO SECRET REL USA",
            tlp="amber",
            policy="NATO",
            classification="SECRET",
            releasable_to=["USA"],
        )
        ids = {
            "green": indicator(1)["id"],
            "secret": indicator(2)["id"],
            "clear": malware(3)["id"],
            "rel": relationship(4, indicator(2)["id"], malware(3)["id"], [TLP_GREEN])["id"],
            "tightened": indicator(5)["id"],
        }
        objects = [
            indicator(1),
            indicator(2, object_marking_refs=[TLP_AMBER, secret]),
            malware(3, object_marking_refs=[TLP_CLEAR]),
            relationship(4, ids["secret"], ids["clear"], [TLP_GREEN]),
            indicator(5),
            indicator(5, modified=LATER, object_marking_refs=[TLP_RED]),
        ]
        import_file(node, write_bundle(directory.parent / "world.json", objects))
        service = TaxiiService(node)
        collections = {c.title: c.id for c in service.collections}
    return World(directory, tokens, secret, collections, ids)


@pytest.fixture
def world(tmp_path: Path, new_database: NewDatabase) -> World:
    return build_world(tmp_path / "kor", new_database())


class Api:
    """The node's API in-process, through httpx's ASGI transport."""

    def __init__(self, node: Node, token: str | None) -> None:
        self.app = create_app(node)
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | bool | None = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {"Accept": MEDIA_TYPE}
        chosen = self.token if token is True else token
        if isinstance(chosen, str):
            sent["Authorization"] = f"Bearer {chosen}"
        sent.update(headers or {})

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, path, headers=sent, **kwargs)

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, document: Any, **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": MEDIA_TYPE, **kwargs.pop("headers", {})}
        return self.request("POST", path, json=document, headers=headers, **kwargs)


@pytest.fixture
def node(world: World) -> Iterator[Node]:
    with world.node() as opened:
        yield opened


@pytest.fixture
def api(node: Node, world: World) -> Api:
    return Api(node, world.tokens["usa"])


@contextmanager
def live_server(node: Node) -> Iterator[str]:
    """A real uvicorn server for ``node`` on 127.0.0.1 (a free port), in a thread; stopped
    when the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(node), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
