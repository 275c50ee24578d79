"""The KOR node of the TAXII tests with console accounts, served by a real uvicorn server on
127.0.0.1, and a browser-like HTTP client for it (cookies kept, forms posted with their
CSRF tokens)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from allied.node import Node
from allied.web.accounts import Accounts
from tests.conftest import NewDatabase
from tests.taxii.conftest import World, build_world, live_server

PASSWORDS = {
    "ada": "admin password 0001",
    "ann": "analyst password 0002",
    "vic": "viewer password 0003",
}
ROLES = {"ada": "admin", "ann": "analyst", "vic": "viewer"}
_HIDDEN = re.compile(r'name="(csrf|login_token)" value="([^"]+)"')


@dataclass
class Site:
    world: World
    url: str
    node: Node

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)


def hidden(page: httpx.Response, name: str) -> str:
    """The value of the form's hidden field ``name`` (csrf or login_token)."""
    for found, value in _HIDDEN.findall(page.text):
        if found == name:
            return value
    raise AssertionError(f"no hidden {name} field on {page.url}")


def log_in(client: httpx.Client, name: str, password: str | None = None) -> httpx.Response:
    """Open the login form and post it, as a browser does; the POST's response."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    return client.post(
        "/ui/login",
        data={
            "name": name,
            "password": PASSWORDS[name] if password is None else password,
            "login_token": hidden(form, "login_token"),
        },
    )


def post_form(
    client: httpx.Client, path: str, data: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    """POST a form of the page at ``path`` with the session's CSRF token taken from it."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": hidden(page, "csrf"), **data}, **kwargs)


def make_accounts(node: Node) -> None:
    accounts = Accounts(node.store)
    for name, role in ROLES.items():
        accounts.add(name, role, PASSWORDS[name])


@pytest.fixture
def world(tmp_path: Path, new_database: NewDatabase) -> World:
    built = build_world(tmp_path / "kor", new_database())
    with built.node() as node:
        make_accounts(node)
    return built


@pytest.fixture
def site(world: World) -> Iterator[Site]:
    with world.node() as node, live_server(node) as url:
        yield Site(world, url, node)


@pytest.fixture
def analyst(site: Site) -> Iterator[httpx.Client]:
    with site.client() as client:
        assert log_in(client, "ann").status_code == 303
        yield client
