"""The score's measurements on made-up drills: recovery, time to share, percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from allied.exercise.runner import Record, Sample
from allied.exercise.scenario import parse_scenario
from allied.exercise.score import Row, _latency, _outages, _stats

SCENARIO = """\
name: made up
partners:
  KOR: {nation: KOR}
  USA: {nation: USA}
peers: [[KOR, USA]]
injects:
  - {at: 10, kind: outage, node: USA, for: 20}
"""
ORIGIN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def stamp(seconds: float) -> str:
    return (ORIGIN + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(samples: list[Sample]) -> Record:
    return Record(
        scenario=parse_scenario(SCENARIO),
        root=Path("/nonexistent"),
        started_at=stamp(0),
        events=[],
        samples=samples,
        identities={},
        directories={},
        shared={},
        tampered=[],
        outages={"USA": [(10.0, 30.0)]},
        duration=40.0,
    )


def row(object_id: str, added: float, received_from: str | None) -> Row:
    return Row(object_id, "indicator", "v1", added, None, [], received_from, None, "{}")


def sample(at: float, kor: float | None, usa: float | None) -> Sample:
    success = {
        "KOR": {"USA": stamp(kor) if kor is not None else None},
        "USA": {"KOR": stamp(usa) if usa is not None else None},
    }
    return Sample(at, {}, {}, success)


def test_recovery_waits_for_both_directions_and_what_was_shared_meanwhile() -> None:
    held = {
        "KOR": {("a", "v1"): row("a", 15, None), ("b", "v1"): row("b", 5, None)},
        "USA": {("a", "v1"): row("a", 34.5, "KOR"), ("b", "v1"): row("b", 6, "KOR")},
    }
    samples = [
        sample(30.5, kor=9, usa=30.2),  # USA pulls again; KOR has not reached USA yet
        sample(31.0, kor=30.8, usa=30.7),  # both ways again
        sample(35.0, kor=34.9, usa=34.8),
    ]
    [outage] = _outages(record(samples), held, ORIGIN)
    # linked again at 31.0, but "a" (made at 15, while USA was down) arrived at 34.5
    assert outage == {
        "node": "USA", "down_s": 10.0, "up_s": 30.0, "offline_s": 20.0,
        "caught_up_objects": 1, "recovery_s": 4.5,
    }  # fmt: skip


def test_a_node_never_linked_again_has_not_recovered() -> None:
    held: dict[str, dict[tuple[str, str], Row]] = {"KOR": {}, "USA": {}}
    [outage] = _outages(record([sample(31, kor=9, usa=30.5)]), held, ORIGIN)
    assert outage["recovery_s"] is None


def test_time_to_share_counts_hops_an_outage_held_up_apart() -> None:
    held = {
        "KOR": {("a", "v1"): row("a", 2, None), ("b", "v1"): row("b", 12, None)},
        "USA": {("a", "v1"): row("a", 2.75, "KOR"), ("b", "v1"): row("b", 31, "KOR")},
    }
    latency = _latency(record([]), held)
    assert latency["hops"] == {
        "KOR->USA": {"count": 1, "median_s": 0.75, "p95_s": 0.75, "outage_delayed": 1}
    }


def test_the_95th_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 21)]  # 20 values: rank ceil(19) = 19
    assert _stats(values) == {"count": 20, "median_s": 10.5, "p95_s": 19.0}
    assert _stats([3.0]) == {"count": 1, "median_s": 3.0, "p95_s": 3.0}
    assert _stats([])["median_s"] is None
