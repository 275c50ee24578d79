"""Scenario files: a drill's partners, peerings, agreed labels and timed injects.

A scenario is YAML (or JSON, which is YAML) checked against ``scenario.schema.json``, the
documented shape, then against itself (every name it uses is one it defines). Every problem
is reported with the line it is on, all of them at once, so an exercise planner fixes the
file in one pass; nothing is started for a file with a problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from allied import config as config_
from allied.errors import AlliedError, ConfigError
from allied.node import check_audience

SCHEMA_FILE = "scenario.schema.json"

#: inject kinds, in the order the documentation lists them
KINDS = ("share", "traffic", "blind", "outage", "tamper", "request")


@dataclass(frozen=True, order=True)
class ScenarioProblem:
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        path = f" at {self.path}" if self.path else ""
        return f"{where}{path}: {self.message}"


class ScenarioError(AlliedError):
    """A scenario file that cannot be run; ``problems`` lists every reason, by line."""

    lists_problems = True

    def __init__(self, source: str, problems: list[ScenarioProblem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        first = self.problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{source}: {first}{more}")

    def details(self) -> list[str]:
        return [f"{self.source}: {p}" for p in self.problems]


@dataclass(frozen=True)
class Partner:
    name: str
    organisation: str
    nation: str
    clearances: Mapping[str, str]
    communities: tuple[str, ...]
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSpec:
    """A label's fields as the scenario gives them (recipients are partner names)."""

    name: str
    tlp: str
    policy: str | None = None
    classification: str | None = None
    releasable_to: tuple[str, ...] = ()
    handling: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    blind_match: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inject:
    """One timed event; ``fields`` holds the kind's own settings, checked by the schema."""

    index: int
    at: float
    kind: str
    id: str
    title: str
    fields: Mapping[str, Any]
    line: int | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    sync_interval: float
    settle: float
    partners: Mapping[str, Partner]
    #: unordered pairs; both nodes of a pair pull from each other
    peers: tuple[tuple[str, str], ...]
    #: the agreed labels, by name
    labels: Mapping[str, LabelSpec]
    #: per label name, per partner: the label as that node has it, where it deviates
    configured: Mapping[str, Mapping[str, LabelSpec]]
    injects: tuple[Inject, ...]
    #: node settings written into every node's configuration
    settings: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    text: str = field(default="", repr=False)

    def sources_of(self, puller: str) -> list[str]:
        """The partners ``puller`` pulls from."""
        found = []
        for a, b in self.peers:
            if a == puller:
                found.append(b)
            elif b == puller:
                found.append(a)
        return sorted(found)

    def label_at(self, label: str, partner: str) -> LabelSpec:
        """The label as ``partner``'s node is configured with it."""
        return self.configured.get(label, {}).get(partner, self.labels[label])

    def inject(self, inject_id: str) -> Inject:
        for inject in self.injects:
            if inject.id == inject_id:
                return inject
        raise KeyError(inject_id)

    @property
    def last_moment(self) -> float:
        """When the last inject is over (outages and tampering last a while)."""
        return max(i.at + float(i.get("for", 0)) for i in self.injects)


@cache
def schema() -> dict[str, Any]:
    text = resources.files("allied.exercise").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(
            str(path), [ScenarioProblem(None, "", f"cannot read: {error}")]
        ) from None
    return parse_scenario(text, source=str(path))


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        raise ScenarioError(source, [ScenarioProblem(line, "", f"not YAML: {reason}")]) from None
    lines = _lines(root) if root is not None else {}
    if not isinstance(data, dict):
        raise ScenarioError(
            source, [ScenarioProblem(1, "", "a scenario is a mapping (name:, ...)")]
        )
    keys = list(_odd_keys(root)) if root is not None else []
    if keys:  # NO (Norway) read as false, say: quoted, it is a name
        raise ScenarioError(source, keys)
    problems = [
        ScenarioProblem(_line_of(lines, tuple(e.absolute_path)), _path(e.absolute_path), _say(e))
        for e in Draft202012Validator(schema()).iter_errors(data)
    ]
    if problems:  # the shape is wrong: the names inside cannot be trusted yet
        raise ScenarioError(source, _dedupe(problems))
    problems = list(_cross_check(data, lines))
    if problems:
        raise ScenarioError(source, _dedupe(problems))
    return _build(data, lines, source, text)


# -- checks beyond the schema ------------------------------------------------------------


def _cross_check(
    data: dict[str, Any], lines: dict[tuple[Any, ...], int]
) -> Iterator[ScenarioProblem]:
    partners = data["partners"]
    labels = data.get("labels", {})
    names = ", ".join(partners)

    def problem(path: tuple[Any, ...], message: str) -> ScenarioProblem:
        return ScenarioProblem(_line_of(lines, path), _path(path), message)

    def partner(path: tuple[Any, ...], value: str) -> Iterator[ScenarioProblem]:
        if value not in partners:
            yield problem(path, f"{value!r} is not a partner of the scenario ({names})")

    def label(path: tuple[Any, ...], value: str) -> Iterator[ScenarioProblem]:
        if value not in labels:
            known = ", ".join(labels) or "none"
            yield problem(path, f"{value!r} is not a label of the scenario ({known})")

    yield from _configuration(data, problem)
    pairs: set[frozenset[str]] = set()
    for i, (a, b) in enumerate(data["peers"]):
        yield from partner(("peers", i, 0), a)
        yield from partner(("peers", i, 1), b)
        if a == b:
            yield problem(("peers", i), f"a partner does not peer with itself ({a})")
        elif frozenset((a, b)) in pairs:
            yield problem(("peers", i), f"{a} and {b} are peered twice")
        pairs.add(frozenset((a, b)))
    for name, body in labels.items():
        for n, recipient in enumerate(body.get("recipients", [])):
            yield from partner(("labels", name, "recipients", n), recipient)
        for who, override in body.get("configured", {}).items():
            yield from partner(("labels", name, "configured", who), who)
            for n, recipient in enumerate(override.get("recipients", [])):
                yield from partner(("labels", name, "configured", who, "recipients", n), recipient)
    shares = {
        inject["id"]: i for i, inject in enumerate(data["injects"]) if inject["kind"] == "share"
    }
    ids: set[str] = set()
    for i, inject in enumerate(data["injects"]):
        at = ("injects", i)
        given = _inject_id(inject, i)
        if given in ids:
            where = (*at, "id") if "id" in inject else at
            yield problem(where, f"inject id {given!r} is used twice")
        ids.add(given)
        kind = inject["kind"]
        for key in ("by", "from", "node", "with"):
            if key in inject:
                yield from partner((*at, key), inject[key])
        for key in ("label", "share_label"):
            if key in inject:
                yield from label((*at, key), inject[key])
        expect = inject.get("expect") if kind == "share" else None
        for key in ("reach", "withheld_from"):
            for n, who in enumerate((expect or {}).get(key, [])):
                yield from partner((*at, "expect", key, n), who)
        if "of" in inject:
            earlier = shares.get(inject["of"])
            if earlier is None or data["injects"][earlier]["at"] > inject["at"]:
                yield problem(
                    (*at, "of"), f"{inject['of']!r} is not the id of an earlier share inject"
                )
            elif kind in ("traffic", "blind"):
                total = sum(data["injects"][earlier]["indicators"].values())
                if inject["hits"] > total:
                    yield problem(
                        (*at, "hits"), f"{inject['hits']} hits, but {inject['of']} shares {total}"
                    )
        if kind == "share" and not any(inject["indicators"].values()):
            yield problem((*at, "indicators"), "shares no indicators")
        elif kind == "tamper":
            puller, source = inject["link"]
            yield from partner((*at, "link", 0), puller)
            yield from partner((*at, "link", 1), source)
            if frozenset((puller, source)) not in pairs:
                yield problem(
                    (*at, "link"), f"{puller} does not pull from {source}: no such peering"
                )
        elif kind == "blind" and frozenset((inject["by"], inject["with"])) not in pairs:
            yield problem(at, f"{inject['by']} holds no token at {inject['with']}: not peers")
        elif kind == "request" and frozenset((inject["by"], inject["from"])) not in pairs:
            yield problem(
                at,
                f"{inject['by']} holds no token at {inject['from']}: they are not peers",
            )
    tampers = [(i, inj) for i, inj in enumerate(data["injects"]) if inj["kind"] == "tamper"]
    for n, (_, first) in enumerate(tampers):
        for j, second in tampers[n + 1 :]:
            if first["link"] == second["link"] and _overlap(first, second):
                yield problem(("injects", j), "that link is being tampered with already then")
    windows = [(i, inj) for i, inj in enumerate(data["injects"]) if inj["kind"] == "outage"]
    for n, (_, first) in enumerate(windows):
        for j, second in windows[n + 1 :]:
            if first["node"] == second["node"] and _overlap(first, second):
                yield problem(("injects", j), f"{second['node']} is offline already then")
        for j, inject in enumerate(data["injects"]):
            if inject["kind"] == "outage" or not _overlap(first, inject):
                continue
            involved = {
                inject.get("by"),
                inject.get("from"),
                inject.get("with"),
                *inject.get("link", ()),
            }
            if first["node"] in involved and inject["kind"] != "tamper":
                yield problem(("injects", j), f"{first['node']} is offline at {inject['at']} s")


def _odd_keys(node: yaml.Node) -> Iterator[ScenarioProblem]:
    """Mapping keys YAML reads as something other than text (numbers, yes/no, null)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:str":
                kind = key.tag.rsplit(":", 1)[-1]
                yield ScenarioProblem(
                    key.start_mark.line + 1,
                    "",
                    f'the name {key.value!r} is read as a {kind}: quote it ("{key.value}")',
                )
            yield from _odd_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _odd_keys(item)


def _configuration(data: dict[str, Any], problem: Any) -> Iterator[ScenarioProblem]:
    """What a node would refuse at setup, found before any node is made: unknown policies
    and levels, bad audiences, settings that are not settings, names alike but for case."""
    policies = config_.DEFAULT_POLICIES
    seen: dict[str, str] = {}
    for name, body in data["partners"].items():
        if name.lower() in seen:
            yield problem(
                ("partners", name), f"{name} and {seen[name.lower()]} differ only in case"
            )
        seen[name.lower()] = name
        for policy, level in body.get("clearances", {}).items():
            yield from _level(
                policies, policy, level, ("partners", name, "clearances", policy), problem
            )
    for name, body in data.get("labels", {}).items():
        if not name.strip():
            yield problem(("labels", name), "a label needs a name")
        variants: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(("labels", name), body)]
        variants += [
            (("labels", name, "configured", who), {**body, **override})
            for who, override in body.get("configured", {}).items()
        ]
        for where, fields in variants:
            if ("policy" in fields) != ("classification" in fields):
                yield problem(where, "policy and classification go together")
            elif "policy" in fields:
                yield from _level(
                    policies,
                    fields["policy"],
                    fields["classification"],
                    (*where, "policy"),
                    problem,
                )
            elif fields.get("releasable_to") or fields.get("handling"):
                yield problem(where, "releasable_to and handling belong to a classification")
            for key in ("releasable_to", "blind_match"):
                for n, value in enumerate(fields.get(key, [])):
                    try:
                        check_audience(value, option=key)
                    except ConfigError as error:
                        yield problem((*where, key, n), error.message)
    settings = data.get("settings", {})
    for name in settings:
        if name in _NOT_FOR_DRILLS:
            yield problem(("settings", name), f"{name} is not set by a scenario")
    try:
        config_.resolve_settings({k: _setting(v) for k, v in settings.items()}, environ={})
    except ConfigError as error:
        yield problem(("settings", error.key) if error.key else ("settings",), error.message)


def _level(
    policies: Mapping[str, tuple[str, ...]],
    policy: str,
    level: str,
    where: tuple[Any, ...],
    problem: Any,
) -> Iterator[ScenarioProblem]:
    if policy not in policies:
        yield problem(where, f"unknown policy {policy!r} (known: {', '.join(policies)})")
    elif level not in policies[policy]:
        levels = ", ".join(policies[policy])
        yield problem(where, f"{level!r} is not a level of {policy} ({levels})")


#: settings that would point every node of a drill somewhere else than its folder
_NOT_FOR_DRILLS = frozenset({"database", "store_url"})


def _overlap(window: dict[str, Any], inject: dict[str, Any]) -> bool:
    start, end = window["at"], window["at"] + window["for"]
    other_end = inject["at"] + inject.get("for", 0)
    return bool(start <= inject["at"] < end or inject["at"] <= start < other_end)


# -- building ---------------------------------------------------------------------------


def _build(
    data: dict[str, Any], lines: dict[tuple[Any, ...], int], source: str, text: str
) -> Scenario:
    partners = {
        name: Partner(
            name=name,
            organisation=body.get("name", name),
            nation=body["nation"],
            clearances=dict(body.get("clearances", {})),
            communities=tuple(body.get("communities", ())),
            categories=tuple(body.get("categories", ())),
        )
        for name, body in data["partners"].items()
    }
    labels: dict[str, LabelSpec] = {}
    configured: dict[str, dict[str, LabelSpec]] = {}
    for name, body in data.get("labels", {}).items():
        labels[name] = _label(name, body)
        for who, override in body.get("configured", {}).items():
            merged = {k: v for k, v in body.items() if k != "configured"} | override
            configured.setdefault(name, {})[who] = _label(name, merged)
    injects = []
    for i, body in enumerate(data["injects"]):
        fields = {k: v for k, v in body.items() if k not in ("at", "kind", "id", "title")}
        injects.append(
            Inject(
                index=i,
                at=float(body["at"]),
                kind=body["kind"],
                id=_inject_id(body, i),
                title=body.get("title", _default_title(body)),
                fields=fields,
                line=_line_of(lines, ("injects", i)),
            )
        )
    injects.sort(key=lambda inject: (inject.at, inject.index))
    return Scenario(
        name=data["name"],
        description=data.get("description", ""),
        sync_interval=float(data.get("sync_interval", 1)),
        settle=float(data.get("settle", 10)),
        partners=partners,
        peers=tuple((a, b) for a, b in data["peers"]),
        labels=labels,
        configured=configured,
        injects=tuple(injects),
        settings={k: _setting(v) for k, v in data.get("settings", {}).items()},
        source=source,
        text=text,
    )


def _inject_id(body: Mapping[str, Any], index: int) -> str:
    return str(body.get("id", f"{body['kind']}-{index + 1}"))


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _label(name: str, body: Mapping[str, Any]) -> LabelSpec:
    return LabelSpec(
        name=name,
        tlp=body["tlp"],
        policy=body.get("policy"),
        classification=body.get("classification"),
        releasable_to=tuple(body.get("releasable_to", ())),
        handling=tuple(body.get("handling", ())),
        recipients=tuple(body.get("recipients", ())),
        blind_match=tuple(body.get("blind_match", ())),
    )


def _default_title(body: Mapping[str, Any]) -> str:
    kind = body["kind"]
    if kind == "share":
        return f"{body['by']} shares indicators under {body['label']}"
    if kind == "traffic":
        return f"{body['by']}'s sensors see traffic ({body['hits']} hits of {body['of']})"
    if kind == "blind":
        return f"{body['by']} blind-matches its logs against {body['with']}'s {body['of']}"
    if kind == "outage":
        return f"{body['node']} goes offline for {body['for']} s"
    if kind == "tamper":
        puller, source = body["link"]
        return f"a relay tampers with what {puller} pulls from {source} for {body['for']} s"
    return f"{body['by']} asks {body['from']} for {body['of']}"


# -- line numbers -------------------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """The 1-based line of every mapping key and sequence item, by JSON path."""
    found = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            found[(*path, name)] = key.start_mark.line + 1
            found.update(
                {k: v for k, v in _lines(value, (*path, name)).items() if k != (*path, name)}
            )
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.update(_lines(item, (*path, i)))
    return found


def _line_of(lines: Mapping[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    """The line of ``path``, or of its nearest ancestor the file has."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _say(error: Any) -> str:
    """A schema error in the planner's words (jsonschema's own are for developers)."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = ", ".join(repr(k) for k in sorted(error.instance) if k not in known)
        return f"unknown field {extra}"
    if error.validator == "required":
        return str(error.message).replace("is a required property", "is missing")
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of: {allowed}"
    if error.validator == "propertyNames":
        return f"{error.instance!r} is not a valid name"
    return str(error.message)


def _dedupe(problems: list[ScenarioProblem]) -> list[ScenarioProblem]:
    return sorted(set(problems), key=lambda p: (p.line or 0, p.path, p.message))
