"""The report opens in a real browser (Debian's Chromium, headless) without errors, and its
images load; a screenshot is kept as a test artefact."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.exercise.conftest import ARTIFACTS, Drill

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


def test_the_report_opens_in_chromium_with_its_images(demo: Drill) -> None:
    errors: list[str] = []
    requests: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((demo.root / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert page.title() == "Exercise report: Three nations, one campaign"
            images = page.eval_on_selector_all(
                "img", "all => all.map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
            )
            assert [i[0] for i in images] == ["timeline", "latency"]
            for _name, complete, width, height in images:
                assert complete and width > 400 and height > 200
            assert page.locator(".verdict").inner_text() == "Drill passed"
            assert page.locator("h2", has_text="Time to share per hop").count() == 1
            page.screenshot(path=str(ARTIFACTS / "exercise-report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    assert (ARTIFACTS / "exercise-report.png").stat().st_size > 10_000
