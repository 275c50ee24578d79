"""What the exercise control team watches while a drill runs: inject by inject.

On a terminal a live table (rich) shows each inject waiting, running or done with its
outcome; elsewhere (CI, a log file) one line per inject as it finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from allied.exercise.runner import Event
from allied.exercise.scenario import Scenario


def _outcome(event: Event) -> str:
    if event.error:
        return f"error: {event.error}"
    shown = {k: v for k, v in event.outcome.items() if k not in ("rows_per_hit", "granted")}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


class LiveTable:
    """A rich table redrawn in place."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.events: list[Event] = []
        self.title = ""
        self._began = time.monotonic()
        self._live: Live | None = None

    def begin(self, events: list[Event], scenario: Scenario) -> None:
        self.events = events
        self.title = scenario.name
        self._began = time.monotonic()
        # redrawn four times a second, so the clock runs through a long outage too
        self._live = Live(console=self.console, refresh_per_second=4, get_renderable=self._table)
        self._live.start()

    def update(self, event: Event, now: float) -> None:
        del event, now
        if self._live is not None:
            self._live.refresh()

    def end(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def _table(self) -> Table:
        # scenario text and error messages are shown as they are, never read as markup
        now = time.monotonic() - self._began
        table = Table(title=Text(f"{self.title}  (t = {now:.0f} s)"), expand=True)
        table.add_column("at", justify="right", width=5)
        table.add_column("", width=7)
        table.add_column("inject", ratio=3)
        table.add_column("outcome", ratio=2)
        for event in self.events:
            if event.finished is not None:
                state = "[red]error[/]" if event.error else "[green]done[/]"
            elif event.started is not None:
                state = "[yellow]running[/]"
            else:
                state = "[dim]waiting[/]"
            table.add_row(
                f"{event.at:.0f}", Text.from_markup(state), Text(event.title), Text(_outcome(event))
            )
        return table


class Lines:
    """One line per inject as it finishes, for output that is not a terminal."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def begin(self, events: list[Event], scenario: Scenario) -> None:
        self.echo(f"drill {scenario.name!r}: {len(events)} events")

    def update(self, event: Event, now: float) -> None:
        if event.finished is None:
            return
        status = "error" if event.error else "done"
        self.echo(f"[{now:6.1f} s] {status}: {event.title} ({_outcome(event)})")

    def end(self) -> None:
        pass
