"""`allied demo`: the shipped three-nation drill on real nodes scores as the scenario expects."""

from __future__ import annotations

import re

import psutil
import pytest

from tests.exercise.conftest import Drill

pytestmark = pytest.mark.slow


def test_the_drill_passes_and_says_so(demo: Drill) -> None:
    assert demo.exit_code == 0, demo.output + demo.errors
    assert "drill PASSED" in demo.output
    assert f"report: {demo.root / 'report.html'}" in demo.output
    # the live view, as lines when the output is not a terminal
    assert re.search(r"\] done: NATO goes offline for 30 s", demo.errors), demo.errors


def test_detections_match_the_scenario(demo: Drill) -> None:
    detections = demo.score["detections"]
    assert detections["ok"]
    assert detections["by_partner"] == {
        "USA": {"expected": 3, "found": 3},
        "NATO": {"expected": 4, "found": 4},
    }
    # two of them blind: against KOR's phishing indicators, which NATO may not receive
    [blind] = [inject for inject in detections["injects"] if inject["blind"]]
    assert (blind["by"], blind["of"], blind["found"]) == ("NATO", "kor-phishing", 2)
    for inject in detections["injects"]:
        assert inject["rows"] > 20000  # background plus the planted rows


def test_nothing_leaked_and_everything_was_checked(demo: Drill) -> None:
    score = demo.score
    assert score["leaks"]["count"] == 0, score["leaks"]["items"]
    assert score["leaks"]["checked"] >= 80  # indicators, sightings, observed data, labels
    delivery = {d["inject"]: d for d in score["delivery"]["injects"]}
    assert delivery["kor-phishing"]["held_by"] == {"KOR": 12, "USA": 12, "NATO": 0}
    assert all(d["ok"] for d in delivery.values())
    [request] = score["requests"]
    assert (request["by"], request["from"], request["granted"]) == ("NATO", "KOR", 0)
    assert request["answers"] == {"404": 12} and request["ok"]


def test_tampering_was_detected_and_routed_around(demo: Drill) -> None:
    score = demo.score
    tampering = score["tampering"]
    assert tampering["tampered"] >= 6  # the wiper's indicators at least
    assert tampering["accepted"] == 0 and tampering["detected"] >= 6
    # a page fetched ahead by a pull that then failed is never applied: nothing to refuse
    assert tampering["detected"] + tampering["not_applied"] == tampering["tampered"]
    wiper = next(d for d in score["delivery"]["injects"] if d["inject"] == "kor-wiper")
    assert wiper["held_by"]["NATO"] == 6  # through USA, the honest path


def test_the_outage_is_measured_and_recovered_from(demo: Drill) -> None:
    [outage] = demo.score["outages"]
    assert outage["node"] == "NATO"
    # scripted from 18 s to 48 s; a busy machine starts it late (the inject before it, a blind
    # match, runs long) and so shortens it, but never ends it early
    assert 18 <= outage["down_s"] < 30 and 48 <= outage["up_s"] <= 60
    assert abs(outage["offline_s"] - (outage["up_s"] - outage["down_s"])) <= 0.02
    assert outage["offline_s"] >= 18
    assert outage["recovery_s"] is not None and outage["recovery_s"] < 20
    assert outage["caught_up_objects"] >= 10  # what USA shared meanwhile


def test_time_to_share_is_given_per_hop(demo: Drill) -> None:
    latency = demo.score["share_latency"]
    assert {"KOR->USA", "USA->KOR"} <= set(latency["hops"]) and len(latency["hops"]) >= 4
    for stats in latency["hops"].values():
        assert 0 <= stats["median_s"] <= stats["p95_s"] < 30


def test_the_nodes_are_stopped_and_kept_and_verify(demo: Drill) -> None:
    assert all(audit["ok"] for audit in demo.score["integrity"].values())
    for name in ("kor", "usa", "nato"):
        assert (demo.root / "nodes" / name / "store.db").is_file()
    serving = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(demo.root) in " ".join(p.info["cmdline"])
    ]
    assert serving == []


def test_the_report_is_written_in_three_forms(demo: Drill) -> None:
    markdown = (demo.root / "report.md").read_text()
    assert "![timeline](timeline.png)" in markdown and "## Time to share per hop" in markdown
    for image in ("timeline.png", "latency.png"):
        assert (demo.root / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (demo.root / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
