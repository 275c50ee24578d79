"""Odd and hostile requests get clear answers, never a 500: HEAD, non-ASCII tokens, oversized
forms, control characters, ids that cannot be ids; static files carry only CSS and
scripts; logging in again and out leave no session behind; the console can be turned off."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from allied.node import Node
from allied.taxii.protocol import MEDIA_TYPE
from allied.web.app import SESSION_COOKIE
from tests.taxii.conftest import World, live_server
from tests.web.conftest import PASSWORDS, Site, hidden, log_in, post_form


def test_head_requests_are_answered_like_gets(site: Site) -> None:
    with site.client() as client:
        assert client.head("/ui/login").status_code == 200
        response = client.head("/ui/")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login")


def test_a_login_token_in_any_script_is_refused_not_a_crash(site: Site) -> None:
    with site.client() as client:
        client.get("/ui/login")
        response = client.post(
            "/ui/login", data={"name": "ann", "password": PASSWORDS["ann"], "login_token": "é"}
        )
    assert response.status_code == 403
    assert "the login form expired" in response.text


def test_a_form_with_too_many_fields_is_a_400(analyst: httpx.Client) -> None:
    token = hidden(analyst.get("/ui/new/indicator"), "csrf")
    fields = {f"f{n}": "x" for n in range(60)} | {"csrf": token}
    response = analyst.post("/ui/new/indicator", data=fields)
    assert response.status_code == 400
    assert "could not be read" in response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/search?q=%00", 400),
        ("/ui/search?originator=a%0Ab", 400),
        ("/ui/objects/a%00b", 404),
        ("/ui/objects/not-an-id/graph.json", 404),
        ("/ui/journal?object=%00", 400),
    ],
)
def test_control_characters_and_non_ids_are_refused(
    analyst: httpx.Client, path: str, status: int
) -> None:
    response = analyst.get(path)
    assert response.status_code == status
    assert "Error" in response.text or response.headers["content-type"].startswith("text/plain")


def test_dates_in_other_iso_forms_are_read_as_dates(site: Site, analyst: httpx.Client) -> None:
    dashed = analyst.get("/ui/search", params={"since": "2026-03-02", "type": "indicator"})
    compact = analyst.get("/ui/search", params={"since": "20260302", "type": "indicator"})
    assert site.world.ids["tightened"] in compact.text
    assert dashed.text.count("<tr>") == compact.text.count("<tr>")


def test_static_files_are_styles_and_scripts_only(site: Site) -> None:
    with site.client() as client:
        css = client.get("/ui/static/console.css")
        assert css.status_code == 200
        assert css.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in css.headers["content-security-policy"]
        for path in ("README.md", "vendor/README.md", "vendor/htmx.LICENSE", "../app.py"):
            assert client.get(f"/ui/static/{path}").status_code == 404, path


def test_logging_in_again_ends_the_earlier_session_and_logout_drops_the_cookie(
    site: Site,
) -> None:
    with site.client() as client:
        first = log_in(client, "ann").cookies[SESSION_COOKIE]
        assert log_in(client, "ann").status_code == 303
        page = client.get("/ui/")
        out = client.post("/ui/logout", data={"csrf": hidden(page, "csrf")})
    assert out.status_code == 303
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    with site.client() as replay:
        replay.cookies.set(SESSION_COOKIE, first, path="/ui")
        assert replay.get("/ui/").status_code == 303


def test_the_console_can_be_turned_off(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIED_CONSOLE", "false")
    with Node.open(world.directory) as node, live_server(node) as url:
        assert httpx.get(f"{url}/ui/login").status_code == 404
        root = httpx.get(f"{url}/", follow_redirects=False)
        assert root.status_code == 404 and root.headers["content-type"].startswith(MEDIA_TYPE)
        api = httpx.get(
            f"{url}/api/collections/",
            headers={"Authorization": f"Bearer {world.tokens['usa']}", "Accept": MEDIA_TYPE},
        )
        assert api.status_code == 200  # the API is served as ever


def test_partners_tokens_open_no_console_page(site: Site, tmp_path: Path) -> None:
    response = httpx.get(
        f"{site.url}/ui/",
        headers={"Authorization": f"Bearer {site.world.tokens['usa']}"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


def test_logins_at_once_wait_for_each_other_rather_than_fail(site: Site) -> None:
    outcomes: list[int] = []

    def one(name: str) -> None:
        with site.client() as client:
            outcomes.append(log_in(client, name).status_code)

    # six at once, two slots to check passwords in: four wait their turn
    threads = [threading.Thread(target=one, args=(name,)) for name in [*PASSWORDS] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [303] * 6


@pytest.mark.parametrize("field", ["name", "label", "description", "pattern"])
def test_a_control_character_in_a_form_is_a_field_error(
    site: Site, analyst: httpx.Client, field: str
) -> None:
    before = site.node.store.version_count()
    form = {"name": "x", "pattern": "[ipv4-addr:value = '203.0.113.77']", "label": "tlp:green",
            "description": "text"}  # fmt: skip
    form[field] += "\x00"
    response = post_form(analyst, "/ui/new/indicator", form)
    assert response.status_code == 422
    assert f'id="error-{field}">holds a control character' in response.text
    assert site.node.store.version_count() == before
