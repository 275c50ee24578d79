"""The console's defences, over real HTTP: login required everywhere under /ui, CSRF tokens
on every form, roles, session fixation, the login rate limit, cookie and header settings, and
partners' text rendered inert."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from allied.ingest.stix_import import import_file
from allied.web.app import SESSION_COOKIE, Console
from tests.conftest import STAMP, TLP_GREEN, write_bundle
from tests.web.conftest import PASSWORDS, Site, hidden, log_in, post_form

INDICATOR = {
    "name": "console test",
    "pattern": "[ipv4-addr:value = '198.51.100.23']",
    "label": "tlp:green",
}


def _paths(site: Site) -> list[tuple[str, str]]:
    """(method, path) of every console route but static files and the login form, with
    path parameters filled in."""
    app = Console(site.node).application()
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        path = "/ui" + route.path.replace("{object_id}", site.world.ids["green"])
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return [(m, p) for m, p in found if p != "/ui/login"]


def _count(site: Site) -> int:
    return site.node.store.version_count()


def test_every_page_needs_a_login(site: Site) -> None:
    paths = _paths(site)
    assert len(paths) >= 12  # every route was found, posts included
    with site.client() as client:
        for method, path in paths:
            response = client.request(
                method, path, data={"csrf": "x"} if method == "POST" else None
            )
            if method == "GET":
                assert response.status_code == 303, path
                assert response.headers["location"].startswith("/ui/login?next="), path
            else:
                assert response.status_code == 401, path
            assert "console test" not in response.text
        assert client.get("/ui/static/console.css").status_code == 200  # no data in there
        assert client.get("/ui/login").status_code == 200


def test_a_form_without_its_csrf_token_changes_nothing(site: Site, analyst: httpx.Client) -> None:
    before = _count(site)
    page = analyst.get("/ui/new/indicator")
    token = hidden(page, "csrf")
    for data in (INDICATOR, {**INDICATOR, "csrf": ""}, {**INDICATOR, "csrf": token + "x"}):
        response = analyst.post("/ui/new/indicator", data=data)
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert _count(site) == before
    assert analyst.post("/ui/new/indicator", data={**INDICATOR, "csrf": token}).status_code == 303
    assert _count(site) == before + 1


def test_another_sessions_csrf_token_does_not_do(site: Site, analyst: httpx.Client) -> None:
    with site.client() as other:
        assert log_in(other, "ada").status_code == 303
        foreign = hidden(other.get("/ui/new/indicator"), "csrf")
    before = _count(site)
    response = analyst.post("/ui/new/indicator", data={**INDICATOR, "csrf": foreign})
    assert response.status_code == 403
    assert _count(site) == before


def test_a_post_from_another_site_is_refused(site: Site, analyst: httpx.Client) -> None:
    before = _count(site)
    response = post_form(
        analyst, "/ui/new/indicator", INDICATOR, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "evil.example" in response.text
    assert _count(site) == before


def test_logout_needs_the_token_and_ends_the_session_on_the_server(
    site: Site, analyst: httpx.Client
) -> None:
    cookie = analyst.cookies[SESSION_COOKIE]
    assert analyst.post("/ui/logout", data={"csrf": "forged"}).status_code == 403
    assert analyst.get("/ui/").status_code == 200  # a forged logout did not end it
    page = analyst.get("/ui/")
    assert analyst.post("/ui/logout", data={"csrf": hidden(page, "csrf")}).status_code == 303
    with site.client() as replay:  # the old cookie, kept by someone, no longer works
        replay.cookies.set(SESSION_COOKIE, cookie, path="/ui")
        assert replay.get("/ui/").status_code == 303


def test_a_session_cookie_planted_before_login_is_not_adopted(site: Site) -> None:
    planted = "attacker-chosen-session-value-0123456789"
    with site.client() as victim:
        victim.cookies.set(SESSION_COOKIE, planted, path="/ui")
        response = log_in(victim, "ann")
        assert response.status_code == 303
        issued = response.cookies[SESSION_COOKIE]
        assert issued != planted
    with site.client() as attacker:
        attacker.cookies.set(SESSION_COOKIE, planted, path="/ui")
        assert attacker.get("/ui/").status_code == 303  # still logged out


def test_each_login_issues_a_new_session(site: Site) -> None:
    with site.client() as client:
        first = log_in(client, "ann").cookies[SESSION_COOKIE]
        second = log_in(client, "ann").cookies[SESSION_COOKIE]
    assert first != second


def test_the_session_cookie_is_httponly_strict_and_scoped(site: Site) -> None:
    with site.client() as client:
        header = log_in(client, "ann").headers["set-cookie"]
    session = next(part for part in header.split(", ") if part.startswith(SESSION_COOKIE))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Path=/ui" in session
    assert "Max-Age" not in session  # ends with the browser, or earlier on the server


def test_the_login_form_must_be_the_one_this_site_served(site: Site) -> None:
    with site.client() as client:
        response = client.post(
            "/ui/login", data={"name": "ann", "password": PASSWORDS["ann"], "login_token": "x"}
        )
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.cookies


def test_logins_are_rate_limited(site: Site) -> None:
    with site.client() as client:
        for _ in range(5):
            response = log_in(client, "vic", "wrong password")
            assert response.status_code == 401
            assert "wrong account name or password" in response.text
        response = log_in(client, "vic")  # the right password, too late
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert SESSION_COOKIE not in response.cookies
        assert log_in(client, "ann").status_code == 303  # other accounts are not locked


def test_a_viewer_cannot_change_anything(site: Site) -> None:
    before = _count(site)
    with site.client() as viewer:
        assert log_in(viewer, "vic").status_code == 303
        token = hidden(viewer.get("/ui/"), "csrf")
        for path in ("/ui/new/indicator", "/ui/new/report"):
            assert viewer.get(path).status_code == 403
            response = viewer.post(path, data={**INDICATOR, "csrf": token})
            assert response.status_code == 403
            assert "analyst role" in response.text
        assert viewer.get("/ui/accounts").status_code == 403
        page = viewer.get("/ui/").text
        assert "/ui/new/indicator" not in page  # no link to what it may not do
    assert _count(site) == before


def test_only_an_admin_sees_the_accounts(site: Site, analyst: httpx.Client) -> None:
    assert analyst.get("/ui/accounts").status_code == 403
    with site.client() as admin:
        assert log_in(admin, "ada").status_code == 303
        page = admin.get("/ui/accounts")
    assert page.status_code == 200
    assert all(name in page.text for name in PASSWORDS)
    assert "argon2" not in page.text


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/ui/", "/ui/\\evil", "/elsewhere"]
)
def test_after_login_only_console_pages_are_a_destination(site: Site, target: str) -> None:
    with site.client() as client:
        form = client.get("/ui/login", params={"next": target})
        response = client.post(
            "/ui/login",
            params={"next": target},
            data={"name": "ann", "password": PASSWORDS["ann"],
                  "login_token": hidden(form, "login_token")},
        )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"


def test_pages_forbid_inline_script_framing_and_caching(analyst: httpx.Client) -> None:
    page = analyst.get("/ui/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # every script is a file of this site


XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


def hostile(site: Site, tmp_path: Path) -> str:
    """A partner-style object whose every text field is an attack; stored as the node's."""
    data = {
        "type": "malware",
        "spec_version": "2.1",
        "id": "malware--0000beef-0000-4000-8000-000000000001",
        "created": STAMP,
        "modified": STAMP,
        "name": f'"><svg onload=alert(2)>{XSS}',
        "description": XSS,
        "is_family": True,
        "malware_types": [f"<b>{XSS}</b>"],
        "object_marking_refs": [TLP_GREEN],
    }
    import_file(site.node, write_bundle(tmp_path / "hostile.json", [data]))
    return data["id"]


def test_stored_script_in_an_object_renders_as_text(
    site: Site, analyst: httpx.Client, tmp_path: Path
) -> None:
    object_id = hostile(site, tmp_path)
    for path in (f"/ui/objects/{object_id}", "/ui/search?q=onerror", "/ui/"):
        page = analyst.get(path)
        assert page.status_code == 200, path
        assert "onerror" in page.text, path  # shown…
        assert not re.search(r"<(script|img|svg|b)[\s>]", page.text.split("</head>", 1)[1]), path
        assert "&lt;script&gt;" in page.text, path  # …as text
    graph = analyst.get(f"/ui/objects/{object_id}/graph.json")
    assert graph.headers["content-type"] == "application/json"
    assert any(XSS in node["label"] for node in graph.json()["nodes"])  # data, for textContent


def test_the_access_log_names_the_account_never_its_secrets(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="allied.access")
    with site.client() as client:
        response = log_in(client, "ann")
        cookie = response.cookies[SESSION_COOKIE]
        page = client.get("/ui/")
        post_form(client, "/ui/new/indicator", INDICATOR)
    lines = [r.getMessage() for r in caplog.records if r.name == "allied.access"]
    assert any('"account":"ann"' in line and '"path":"/ui/"' in line for line in lines)
    text = "\n".join(lines)
    for secret in (PASSWORDS["ann"], cookie, hidden(page, "csrf"), INDICATOR["pattern"]):
        assert secret not in text
