"""The console in a real browser (Debian's Chromium, headless, driven by Playwright) against a
real server on 127.0.0.1: log in, search, open an object and see its banner and graph,
create an indicator and see it released to the right partner and not to the wrong one.
A screenshot of each page is kept as a test artefact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from allied.taxii.protocol import MEDIA_TYPE
from tests.exercise.conftest import ARTIFACTS
from tests.web.conftest import PASSWORDS, ROLES, Site
from tests.web.test_security import hostile

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
SHOTS = ARTIFACTS / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page whose script errors, dialogs (an injected ``alert`` would open one) and
    requests to anywhere but the node are recorded."""

    def __init__(self, browser: Browser, site: Site) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.elsewhere: list[str] = []
        page = self.page
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on(
            "request",
            lambda r: None if r.url.startswith(site.url) else self.elsewhere.append(r.url),
        )

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert self.elsewhere == []


def _log_in(watched: Watched, site: Site, name: str) -> None:
    page = watched.page
    page.goto(f"{site.url}/ui/")
    expect(page).to_have_url(f"{site.url}/ui/login?next=%2Fui%2F")
    watched.shot("login")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{site.url}/ui/")
    expect(page.locator("#who")).to_have_text(f"{name} ({ROLES[name]})")


def test_an_analyst_searches_opens_and_creates(browser: Browser, site: Site) -> None:
    watched = Watched(browser, site)
    page = watched.page
    ids = site.world.ids
    _log_in(watched, site, "ann")
    expect(page.locator("#ledger-head .figure")).to_have_text(
        str(site.node.store.tree_heads()[-1].size)
    )
    watched.shot("dashboard")

    # search: typing filters the results in place (htmx), and the address follows
    page.click("text=Search")
    page.fill("#q", "Family 3")
    expect(page.locator("#hits tbody tr")).to_have_count(1)
    expect(page.locator("#hits tbody tr td").nth(0)).to_have_text("malware")
    expect(page).to_have_url(re.compile(r"/ui/search\?q=Family(\+|%20)3&"))
    page.fill("#q", "")
    page.select_option("#label", label="NATO SECRET REL USA")
    expect(page.locator("#hits tbody a")).to_have_text(["bad address 2"])
    watched.shot("search")

    # the object: its banner, checks, receivers, and its graph drawn by graph.js
    page.click("#hits tbody a")
    expect(page).to_have_url(f"{site.url}/ui/objects/{ids['secret']}")
    expect(page.locator("#banner")).to_have_text("NATO SECRET // REL TO USA | TLP:AMBER")
    expect(page.locator("#banner")).to_have_class("banner tlp-amber")
    expect(page.locator("#signature")).to_contain_text("verified")
    expect(page.locator("#graph")).to_have_attribute("data-rendered", "2")
    expect(page.locator("#graph svg g.node")).to_have_count(2)
    expect(page.locator("#graph svg g.edge text")).to_have_text("indicates")
    watched.shot("object")
    page.locator(f'#graph g.node[data-id="{ids["clear"]}"]').click()
    expect(page).to_have_url(f"{site.url}/ui/objects/{ids['clear']}")
    expect(page.locator("#banner")).to_have_text("TLP:CLEAR")

    # a new indicator under the USA-only label
    page.click("text=New indicator")
    page.fill("#name", "Exercise C2 server")
    page.fill("#pattern", "[domain-name:value = 'c2.exercise.example']")
    page.select_option("#indicator_type", "malicious-activity")
    page.select_option("#label", "NATO SECRET REL USA")
    page.fill("#description", "Beaconing seen during the drill.")
    watched.shot("new-indicator")
    page.click("#indicator-form button[type=submit]")
    expect(page.locator("#object-name")).to_have_text("Exercise C2 server")
    created = page.locator("#object-id").inner_text()
    expect(page.locator('#receivers tr[data-partner="usa"] td').nth(2)).to_have_text("allowed")
    expect(page.locator('#receivers tr[data-partner="est"] td').nth(2)).to_have_text("denied")
    expect(page.locator("#ledger")).to_contain_text("inclusion proof verifies")
    watched.shot("created")

    # and over TAXII: usa receives it, est does not
    collection = site.world.collections["KOR NCSC"]
    seen = {}
    for partner in ("usa", "est"):
        answer = httpx.get(
            f"{site.url}/api/collections/{collection}/objects/",
            params={"match[id]": created},
            headers={"Authorization": f"Bearer {site.world.tokens[partner]}", "Accept": MEDIA_TYPE},
        )
        assert answer.status_code == 200
        seen[partner] = [o["id"] for o in answer.json().get("objects", [])]
    assert seen == {"usa": [created], "est": []}

    page.click("text=Release journal")
    page.select_option("select[name=partner]", "usa")
    page.click("text=Filter")
    expect(page.locator("#journal")).to_contain_text(created)
    watched.shot("journal")
    page.click("text=Partners & peers")
    expect(page.locator("#partners")).to_contain_text("revoked")
    watched.shot("partners")
    page.click("form.logout button")
    expect(page).to_have_url(f"{site.url}/ui/login")
    watched.clean()
    watched.context.close()


def test_hostile_text_stays_text_in_the_browser(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    object_id = hostile(site, tmp_path)
    watched = Watched(browser, site)
    page = watched.page
    _log_in(watched, site, "vic")
    page.goto(f"{site.url}/ui/objects/{object_id}")
    expect(page.locator("#description")).to_have_text(
        '<script>alert("xss")</script><img src=x onerror=alert(1)>'
    )
    expect(page.locator("#graph")).to_have_attribute("data-rendered", "1")
    assert page.locator("main img, main script, #graph foreignObject").count() == 0
    page.goto(f"{site.url}/ui/search?q=onerror")
    expect(page.locator("#hits tbody tr")).to_have_count(1)
    watched.shot("hostile")
    assert page.locator("text=New indicator").count() == 0  # a viewer has no such link
    watched.clean()
    watched.context.close()


def test_an_admin_writes_a_report_and_sees_the_accounts(browser: Browser, site: Site) -> None:
    ids = site.world.ids
    watched = Watched(browser, site)
    page = watched.page
    _log_in(watched, site, "ada")
    page.click("text=Accounts")
    expect(page.locator("#accounts tbody tr")).to_have_count(len(PASSWORDS))
    watched.shot("accounts")
    page.click("text=New report")
    page.fill("#name", "Weekly summary")
    page.fill("#object_refs", f"{ids['secret']}\n{ids['clear']}")
    page.select_option("#label", "tlp:green")
    page.fill("#description", "Two items of note this week.")
    watched.shot("new-report")
    page.click("#report-form button[type=submit]")
    expect(page.locator("#object-name")).to_have_text("Weekly summary")
    # it covers the USA-only indicator: est, which may not receive that, gets no report
    expect(page.locator('#receivers tr[data-partner="usa"] td').nth(2)).to_have_text("allowed")
    expect(page.locator('#receivers tr[data-partner="est"] td').nth(2)).to_have_text("denied")
    expect(page.locator("#graph")).to_have_attribute("data-rendered", "3")
    watched.shot("report")
    watched.clean()
    watched.context.close()
