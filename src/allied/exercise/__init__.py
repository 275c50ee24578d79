"""Joint exercises: scripted multinational drills on real nodes, scored (DESIGN.md, "Exercises").

:func:`run_exercise` is the whole of ``allied exercise run``: the scenario checked, the
nodes started, the injects run, the nodes stopped, the drill scored and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allied.exercise.runner import Display, Drill, Record
from allied.exercise.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Outcome", "ScenarioError", "load_scenario", "run_exercise", "shipped_scenario"]


@dataclass(frozen=True)
class Outcome:
    record: Record
    score: dict[str, Any]
    files: dict[str, Path]


def run_exercise(scenario: Scenario, root: Path, display: Display) -> Outcome:
    from allied.exercise.report import write_report  # matplotlib loads slowly
    from allied.exercise.score import score as score_drill

    record = Drill(scenario, root, display).run()
    score = score_drill(record)
    return Outcome(record, score, write_report(record, score))


def shipped_scenario(name: str = "three-nations") -> Path:
    """A scenario shipped in examples/scenarios of the source tree Allied runs from."""
    path = Path(__file__).resolve().parents[3] / "examples" / "scenarios" / f"{name}.yaml"
    if not path.is_file():
        from allied.errors import ConfigError

        raise ConfigError(
            f"the shipped scenario {path} is not there: run 'allied demo' from a source "
            "checkout (pip install -e .), or give a scenario to 'allied exercise run'"
        )
    return path
