"""The leak check can fail: a label configured one nation too wide at its originator lets
objects reach a partner the agreed label excludes, and the score says so (and fails)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.exercise.conftest import run_allied

pytestmark = pytest.mark.slow

SCENARIO = """\
name: "a label one nation too wide <img src=x onerror=alert(1)> [/]"
sync_interval: 0.5
settle: 4
settings: {sync_backoff: 1, sync_backoff_max: 2}
partners:
  KOR: {nation: KOR, clearances: {NATO: SECRET}, communities: [kor-usa, ccdcoe]}
  USA: {nation: USA, clearances: {NATO: SECRET}, communities: [kor-usa, ccdcoe]}
  NATO: {nation: NATO, clearances: {NATO: SECRET}, communities: [ccdcoe]}
peers: [[KOR, USA], [KOR, NATO]]
labels:
  kor-usa-restricted:
    tlp: green
    policy: NATO
    classification: RESTRICTED
    releasable_to: [KOR, USA]
    configured:
      KOR: {releasable_to: [KOR, USA, NATO]}  # what KOR's operator typed
  community: {tlp: green}
  for-usa: {tlp: red, recipients: [USA]}
injects:
  - {at: 0.5, id: restricted, kind: share, by: KOR, label: kor-usa-restricted,
     indicators: {domain: 3}, expect: {reach: [USA], withheld_from: [NATO]}}
  - {at: 0.5, id: red, kind: share, by: KOR, label: for-usa, indicators: {url: 1},
     expect: {reach: [USA], withheld_from: [NATO]}}
  - {at: 4, kind: tamper, link: [USA, KOR], mode: strip-label, for: 3}
  - {at: 4.5, id: open, kind: share, by: KOR, label: community, indicators: {ipv4: 2}}
  - {at: 8, kind: request, by: NATO, from: KOR, of: restricted, expect: denied}
"""


@dataclass(frozen=True)
class Leaky:
    root: Path
    exit_code: int
    score: dict[str, Any]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Leaky:
    folder = tmp_path_factory.mktemp("leaky")
    scenario = folder / "leaky.yaml"
    scenario.write_text(SCENARIO)
    root = folder / "drill"
    done = run_allied("exercise", "run", str(scenario), "-o", str(root), "--json")
    assert done.stdout, done.stderr
    return Leaky(root, done.returncode, json.loads(done.stdout))


def test_a_misconfigured_label_is_caught_as_a_leak(leaky: Leaky) -> None:
    assert leaky.exit_code == 1  # the drill failed
    score, root = leaky.score, leaky.root
    assert score == json.loads((root / "score.json").read_text())
    assert not score["passed"]
    leaks = score["leaks"]["items"]
    at_nato = [leak for leak in leaks if leak["node"] == "NATO" and leak["type"] == "indicator"]
    assert len({leak["object"] for leak in at_nato}) == 3
    for leak in at_nato:
        assert leak["from"] == "KOR"
        assert leak["reasons"] == [
            "denied: NATO not in releasable_to (KOR, USA) of kor-usa-restricted"
        ]
    assert not [leak for leak in leaks if leak["node"] in ("KOR", "USA")]
    # NATO's own request was answered, wrongly: the request failed, and KOR's journal
    # holds those releases too (judged with the rest)
    [request] = score["requests"]
    assert request["granted"] == 3 and not request["ok"]
    delivery = {d["inject"]: d for d in score["delivery"]["injects"]}
    assert delivery["restricted"]["withheld_from"] == {"NATO": 3}
    assert not delivery["restricted"]["ok"]
    assert "## Leaks" in (root / "report.md").read_text()


def test_a_red_label_names_its_recipients_at_every_node(leaky: Leaky) -> None:
    delivery = {d["inject"]: d for d in leaky.score["delivery"]["injects"]}
    assert delivery["red"]["held_by"] == {"KOR": 1, "USA": 1, "NATO": 0}
    assert delivery["red"]["ok"]


def test_scenario_text_is_shown_not_run(leaky: Leaky) -> None:
    page = (leaky.root / "report.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt; [/]" in page and "<img src=x" not in page
    markdown = (leaky.root / "report.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt; \\[/\\]" in markdown


def test_stripped_labels_are_refused(leaky: Leaky) -> None:
    """The same drill's relay strips labels on USA's pulls from KOR: USA refuses each."""
    score = leaky.score
    tampering = score["tampering"]
    assert tampering["tampered"] >= 2  # the community indicators, at least
    assert tampering["detected"] == tampering["tampered"] and tampering["accepted"] == 0
    opened = next(d for d in score["delivery"]["injects"] if d["inject"] == "open")
    assert opened["held_by"]["USA"] == 0  # USA has no other path to KOR
    assert opened["held_by"]["NATO"] == 2
