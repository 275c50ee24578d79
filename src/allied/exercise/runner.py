"""Running a drill: the nodes up, the injects in time order, the federation watched, then
scored and reported. The nodes are stopped at the end, whatever happens; their folders stay.

Operators' actions at a node (importing a partner's report, matching a sensor log) run the
real ``allied`` command against that node's folder while its server keeps serving and
syncing, as they would in a national centre.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import func, select

from allied.errors import AlliedError, ConfigError
from allied.exercise import material
from allied.exercise.cluster import Cluster, DrillError, _allied
from allied.exercise.scenario import Inject, Scenario
from allied.federation.status import status as peer_status
from allied.node import Node
from allied.store import schema
from allied.taxii.service import own_collection_id


@dataclass
class Event:
    """One thing that happens at a planned moment: an inject, or the end of a window."""

    at: float
    inject: Inject
    phase: str  # "run", or "start"/"end" of an outage or tampering window
    title: str
    started: float | None = None
    finished: float | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Sample:
    """The federation as the monitor saw it at one moment."""

    at: float
    objects: dict[str, int]
    #: node -> peer -> "ok", "new", "failing", "flagged", or "down" (the node is)
    links: dict[str, dict[str, str]]
    #: node -> peer -> when the node last pulled from it successfully
    success: dict[str, dict[str, str | None]] = field(default_factory=dict)


@dataclass
class Record:
    """Everything the drill measured, for the score and the report."""

    scenario: Scenario
    root: Path
    started_at: str  # UTC, the store's timestamp form
    events: list[Event]
    samples: list[Sample]
    identities: dict[str, str]
    directories: dict[str, Path]
    #: share inject id -> its indicators
    shared: dict[str, list[material.Indicator]]
    tampered: list[Any]
    #: node -> [(down, up)] seconds of the drill
    outages: dict[str, list[tuple[float, float]]]
    duration: float = 0.0


class Display(Protocol):
    def begin(self, events: list[Event], scenario: Scenario) -> None: ...
    def update(self, event: Event, now: float) -> None: ...
    def end(self) -> None: ...


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Drill:
    def __init__(self, scenario: Scenario, root: Path, display: Display) -> None:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError(f"{root} already exists and is not empty: give a new folder with -o")
        root.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.root = root
        self.display = display
        self._t0 = time.monotonic()
        self.cluster = Cluster(scenario, root, self.clock)
        self.samples: list[Sample] = []
        self.shared: dict[str, list[material.Indicator]] = {}
        self.outages: dict[str, list[tuple[float, float]]] = {}
        self._down: dict[str, float] = {}
        self._stop = threading.Event()

    def clock(self) -> float:
        return time.monotonic() - self._t0

    def run(self) -> Record:
        events = _events(self.scenario)
        monitor = threading.Thread(target=self._monitor, name="drill-monitor", daemon=True)
        with _stopped_by_signals():
            try:
                self.cluster.build()
                self.cluster.start_all()
                self._t0 = time.monotonic()
                started_at = stamp(datetime.now(UTC))
                monitor.start()
                self.display.begin(events, self.scenario)
                for event in events:
                    self._wait_until(event.at)
                    event.started = self.clock()
                    self.display.update(event, self.clock())
                    try:
                        event.outcome = self._perform(event)
                    except (
                        AlliedError,
                        OSError,
                        subprocess.SubprocessError,
                        httpx.HTTPError,
                    ) as error:
                        event.error = getattr(error, "message", None) or str(error)
                    event.finished = self.clock()
                    self.display.update(event, self.clock())
                self._wait_until(self.clock() + self.scenario.settle)
                duration = self.clock()
            finally:  # the nodes are stopped whatever happened, the display last
                self._stop.set()
                try:
                    if monitor.is_alive():
                        monitor.join(timeout=10)
                    self.cluster.close()
                finally:
                    self.display.end()
        for name, down in self._down.items():  # a node still down at the end
            self.outages.setdefault(name, []).append((down, duration))
        return Record(
            scenario=self.scenario,
            root=self.root,
            started_at=started_at,
            events=events,
            samples=self.samples,
            identities={n: m.identity_id for n, m in self.cluster.members.items()},
            directories={n: m.directory for n, m in self.cluster.members.items()},
            shared=self.shared,
            tampered=[t for relay in self.cluster.relays.values() for t in relay.tampered],
            outages=self.outages,
            duration=duration,
        )

    def _wait_until(self, moment: float) -> None:
        while (left := moment - self.clock()) > 0:
            time.sleep(min(left, 0.1))

    # -- injects ----------------------------------------------------------------------------

    def _perform(self, event: Event) -> dict[str, Any]:
        inject = event.inject
        kind = inject.kind
        if kind == "share":
            return self._share(inject)
        if kind == "traffic":
            return self._traffic(inject)
        if kind == "blind":
            return self._traffic(inject, blind_with=inject.get("with"))
        if kind == "request":
            return self._request(inject)
        if kind == "outage":
            name = inject.get("node")
            if event.phase == "start":
                self.cluster.stop(name)
                self._down[name] = self.clock()
                return {"node": name, "down_at": round(self.clock(), 3)}
            self.cluster.start(name)
            down = self._down.pop(name)
            self.outages.setdefault(name, []).append((down, self.clock()))
            return {"node": name, "up_at": round(self.clock(), 3)}
        puller, source = inject.get("link")
        relay = self.cluster.relays[(puller, source)]
        relay.set_mode(inject.get("mode", "alter") if event.phase == "start" else "pass")
        return {"link": f"{puller}<-{source}", "mode": relay.mode}

    def _share(self, inject: Inject) -> dict[str, Any]:
        by = inject.get("by")
        member = self.cluster.members[by]
        made = material.indicators(inject.id, dict(inject.get("indicators")))
        folder = self.root / "injects" / inject.id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bundle.json"
        bundle = material.bundle(
            made, creator=member.identity_id, title=inject.title, created=datetime.now(UTC)
        )
        path.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
        report = _run_allied(member.directory, "import", str(path), "--label", inject.get("label"))
        self.shared[inject.id] = made
        return {"by": by, "indicators": len(made), "stored": _field(report, 0, "stored")}

    def _traffic(self, inject: Inject, blind_with: str | None = None) -> dict[str, Any]:
        """A sensor log with some of a share's values, matched at the partner: against
        what it holds (waiting a while for the share to arrive), or blind, against what
        ``blind_with`` holds and will not give it."""
        by = inject.get("by")
        member = self.cluster.members[by]
        source = self.shared.get(inject.get("of"), [])
        wanted = {item.id for item in source}
        waited = (
            self._wait_for(member.directory, wanted, float(inject.get("wait", 15)))
            if blind_with is None
            else 0
        )
        hits = source[: int(inject.get("hits"))]
        fmt = inject.get("format", "csv")
        files, rows_per_hit = material.traffic(
            self.root / "injects" / inject.id, fmt, seed=inject.id,
            rows=int(inject.get("rows", 10000)), hits=hits,
        )  # fmt: skip
        args = ["match", *map(str, files), "--format", fmt]
        if blind_with is not None:
            args += ["--blind-with", blind_with]
        if inject.get("share_label") is not None:
            args += ["--share", "--label", inject.get("share_label")]
        report = _run_allied(member.directory, *args)
        found = {hit.get("indicator") for hit in _field(report, "hits") if isinstance(hit, dict)}
        return {
            "by": by,
            "rows": _field(report, "rows"),
            "planted": len(hits),
            "detections": len(found & {item.id for item in hits}),
            "held": waited,
            "sightings_stored": _field(report, "stored"),
            "rows_per_hit": rows_per_hit,
        }

    def _wait_for(self, directory: Path, ids: set[str], patience: float) -> int:
        """Until the node holds ``ids`` or ``patience`` runs out; how many it holds then."""
        deadline = self.clock() + patience
        with Node.open(directory) as node:
            while True:
                query = select(func.count(func.distinct(schema.objects.c.id))).where(
                    schema.objects.c.id.in_(sorted(ids))
                )
                held = int(next(iter(node.store.raw_rows(query)))[0]) if ids else 0
                if held >= len(ids) or self.clock() >= deadline:
                    return held
                time.sleep(0.2)

    def _request(self, inject: Inject) -> dict[str, Any]:
        by, source = inject.get("by"), inject.get("from")
        member = self.cluster.members[source]
        token = self.cluster.tokens[(by, source)].read_text().strip()
        collection = own_collection_id(member.identity_id)
        answers: dict[str, int] = {}
        granted: list[dict[str, Any]] = []
        with httpx.Client(timeout=30) as client:  # straight to the node, not through a relay
            for item in self.shared.get(inject.get("of"), []):
                response = client.get(
                    f"{member.url}api/collections/{collection}/objects/{item.id}/",
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": "application/taxii+json;version=2.1",
                    },
                )
                answers[str(response.status_code)] = answers.get(str(response.status_code), 0) + 1
                if response.status_code == 200:
                    granted += response.json().get("objects", [])
        return {
            "by": by,
            "from": source,
            "answers": answers,
            "granted": [obj.get("id") for obj in granted],
            "denied": sum(n for code, n in answers.items() if code != "200"),
        }

    # -- watching ---------------------------------------------------------------------------

    def _monitor(self) -> None:
        nodes = {n: Node.open(m.directory) for n, m in self.cluster.members.items()}
        try:
            while not self._stop.is_set():
                objects: dict[str, int] = {}
                links: dict[str, dict[str, str]] = {}
                success: dict[str, dict[str, str | None]] = {}
                for name, node in nodes.items():
                    try:
                        objects[name] = node.store.version_count()
                        rows = peer_status(node)
                    except Exception:  # a store busy being written: next time
                        continue
                    up = self.cluster.running(name)
                    links[name] = {row["name"]: row["state"] if up else "down" for row in rows}
                    success[name] = {row["name"]: row["last_success"] for row in rows}
                self.samples.append(Sample(round(self.clock(), 3), objects, links, success))
                self._stop.wait(0.5)
        finally:
            for node in nodes.values():
                node.close()


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the drill as Ctrl-C does (its nodes stopped, not orphaned)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _events(scenario: Scenario) -> list[Event]:
    events = []
    for inject in scenario.injects:
        if inject.kind in ("outage", "tamper"):
            end = inject.at + float(inject.get("for"))
            events.append(Event(inject.at, inject, "start", inject.title))
            events.append(Event(end, inject, "end", f"end of: {inject.title}"))
        else:
            events.append(Event(inject.at, inject, "run", inject.title))
    # at one moment, windows close first: a node back at 42 s serves an inject at 42 s
    events.sort(key=lambda e: (e.at, e.phase != "end", e.inject.index))
    return events


def _run_allied(directory: Path, *args: str) -> Any:
    """Run an ``allied`` command at a node, as its operators would; its JSON report."""
    command = [_allied(), "--node", str(directory), *args, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise DrillError(f"allied {args[0]} at {directory.name} failed: {done.stderr.strip()}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise DrillError(f"allied {args[0]} at {directory.name}: no JSON report") from None


#: what may go wrong in an inject without ending the drill: it is scored as failed
_INJECT_FAILURES = (AlliedError, OSError, subprocess.SubprocessError, httpx.HTTPError)


def _field(report: Any, *path: Any) -> Any:
    """A value of a command's JSON report; DrillError if the report lacks it."""
    value = report
    try:
        for step in path:
            value = value[step]
    except (KeyError, IndexError, TypeError):
        raise DrillError(f"a command's report lacks {path}") from None
    return value


Clock = Callable[[], float]
