"""The live view: a table redrawn on a terminal, one line per inject elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from allied.exercise.live import Lines, LiveTable
from allied.exercise.runner import _events
from allied.exercise.scenario import parse_scenario
from tests.exercise.test_scenario import GOOD


def test_the_terminal_table_shows_each_inject_waiting_running_and_done() -> None:
    scenario = parse_scenario(GOOD.replace("name: small drill", "name: small drill [/] [bold]"))
    events = _events(scenario)
    screen = io.StringIO()
    table = LiveTable(Console(file=screen, force_terminal=True, width=160, color_system=None))
    table.begin(events, scenario)
    first, second = events
    first.started = 1.0
    table.update(first, 1.0)
    first.finished, first.outcome = 1.5, {"by": "KOR", "stored": 2}
    table.update(first, 1.5)
    second.started, second.finished, second.error = 2.0, 2.2, "allied match failed"
    table.update(second, 2.2)
    table.end()
    shown = screen.getvalue()
    assert "small drill [/] [bold]" in shown  # shown as written, not read as markup
    assert "waiting" in shown and "running" in shown
    assert "by KOR, stored 2" in shown
    assert "error: allied match failed" in shown


def test_lines_are_printed_as_injects_finish() -> None:
    scenario = parse_scenario(GOOD)
    events = _events(scenario)
    lines: list[str] = []
    display = Lines(lines.append)
    display.begin(events, scenario)
    events[0].started = 1.0
    display.update(events[0], 1.0)  # started: nothing yet
    events[0].finished, events[0].outcome = 1.4, {"stored": 2}
    display.update(events[0], 1.4)
    display.end()
    assert lines == [
        "drill 'small drill': 2 events",
        "[   1.4 s] done: KOR shares indicators under kor-usa (stored 2)",
    ]
