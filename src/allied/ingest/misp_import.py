"""MISP events and feeds as STIX 2.1, by the MISP project's own converter (``misp-stix``),
with MISP's sharing rules carried over into Allied labels.

The converter turns attributes, objects, galaxies and sightings into STIX; what it does not
do is decide who may receive the result, and MISP's own answer is spread over tags and
distribution levels at three levels (event, object, attribute). Here each STIX object gets
the strictest of what applies to the MISP element it came from:

- ``tlp:*`` tags become TLP 2.0 markings (``tlp:white`` is CLEAR); the strictest wins, and an
  attribute never ends up less restricted than its event.
- ``nato:classification`` tags become this node's label with that NATO classification (when
  exactly one label has it; ``--tag-label`` chooses otherwise). A classification that maps to
  no label refuses the event: it must not land less protected than it was.
- ``PAP:*`` tags stay as STIX labels, in one spelling (``PAP:CLEAR`` for ``PAP:WHITE``);
  every other tag stays a label as the converter writes it.
- Distribution "your organisation only" becomes TLP:RED (no recipient: it stays on this node);
  a sharing group becomes the label ``--sharing-group`` maps it to, else TLP:RED; "this
  community", "connected communities" and "all communities" leave the tags to decide. Each
  event's distribution and sharing group are reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from misp_stix_converter import MISPtoSTIX21Parser

from allied.errors import InputFormatError
from allied.ingest.importers import Options
from allied.ingest.stix_import import ImportReport
from allied.node import Node
from allied.stix.labels import TLP2_IDS, TLP_BY_ID, TLP_LEVELS
from allied.stix.reader import Item

#: MISP's distribution levels, as its documentation names them
DISTRIBUTIONS = {
    0: "your organisation only",
    1: "this community only",
    2: "connected communities",
    3: "all communities",
    4: "sharing group",
    5: "inherit event",
}
_TLP_TAGS = {
    "tlp:clear": "clear",
    "tlp:white": "clear",
    "tlp:green": "green",
    "tlp:amber": "amber",
    "tlp:amber+strict": "amber+strict",
    "tlp:red": "red",
}
#: the nato taxonomy's values (MISP/misp-taxonomies nato/machinetag.json): level, handling
NATO_LEVELS = {
    "NU": ("UNCLASSIFIED", ()),
    "NR": ("RESTRICTED", ()),
    "NC": ("CONFIDENTIAL", ()),
    "NS": ("SECRET", ()),
    "CTS": ("TOP SECRET", ()),
    "CTS-B": ("TOP SECRET", ("BOHEMIA",)),
    "CTS-A": ("TOP SECRET", ("ATOMAL",)),
    "NS-A": ("SECRET", ("ATOMAL",)),
    "NC-A": ("CONFIDENTIAL", ("ATOMAL",)),
}
#: the same levels as their expanded names (what some instances tag with)
_NATO_NAMES = {
    "NATO UNCLASSIFIED": "NU",
    "NATO RESTRICTED": "NR",
    "NATO CONFIDENTIAL": "NC",
    "NATO SECRET": "NS",
    "COSMIC TOP SECRET": "CTS",
    "COSMIC TOP SECRET BOHEMIA": "CTS-B",
    "COSMIC TOP SECRET ATOMAL": "CTS-A",
    "SECRET ATOMAL": "NS-A",
    "CONFIDENTIAL ATOMAL": "NC-A",
}
# any tag of the predicate, whatever its value: one not understood refuses its event
_NATO_TAG = re.compile(r'\s*nato\s*:\s*classification\b\s*(?:=\s*"?([^"]*)"?)?\s*', re.IGNORECASE)
_PAP_TAG = re.compile(r"pap:(clear|white|green|amber|red)", re.IGNORECASE)


@dataclass
class _Scope:
    """What MISP says of one element: its TLP, its classification labels, its distribution."""

    tlp: str | None = None
    labels: set[str] = field(default_factory=set)
    #: the label a sharing group maps to (--sharing-group): not for what is kept in house
    group: set[str] = field(default_factory=set)
    distribution: int | None = None
    #: tags that refuse the event (a classification this node has no label for)
    refused: list[str] = field(default_factory=list)

    def under(self, outer: _Scope) -> _Scope:
        """This scope inside ``outer``: never less restricted than it."""
        distribution = self.distribution
        if distribution in (None, 5):
            distribution = outer.distribution
        elif outer.distribution is not None and outer.distribution != 4:
            distribution = min(distribution, outer.distribution)
        return _Scope(
            _stricter(self.tlp, outer.tlp),
            self.labels | outer.labels,
            set() if self.distribution == 0 else self.group | outer.group,
            distribution,
            self.refused + outer.refused,
        )


def _stricter(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=TLP_LEVELS.index)


def feed_events(directory: Path) -> list[Path]:
    """The event files a MISP feed directory lists in its ``manifest.json``."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise InputFormatError("not a MISP feed: no manifest.json", source=str(directory))
    manifest = _load(manifest_path)
    if not isinstance(manifest, dict):
        raise InputFormatError("manifest.json: not an object of events by uuid",
                               source=str(manifest_path))  # fmt: skip
    return [directory / f"{uuid}.json" for uuid in sorted(manifest)]


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror}", source=str(path)) from None
    except orjson.JSONDecodeError as error:
        raise InputFormatError(f"not JSON: {error}", source=str(path)) from None


def _events(document: Any, source: str) -> list[dict[str, Any]]:
    """The events of a MISP export: one ``{"Event": ...}``, or a ``response`` list of them."""
    if isinstance(document, dict) and isinstance(document.get("response"), list):
        items = document["response"]
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    events = []
    for n, item in enumerate(items):
        event = item.get("Event", item) if isinstance(item, dict) else None
        where = f"events[{n}]" if len(items) > 1 else "Event"
        if not isinstance(event, dict) or not isinstance(event.get("uuid"), str):
            raise InputFormatError(f"not a MISP event: {where} has no uuid", source=source)
        if not isinstance(event.get("info"), str):
            raise InputFormatError(f"not a MISP event: {where}.info is missing", source=source)
        events.append(event)
    return events


def read_event(node: Node, path: Path, report: ImportReport, options: Options) -> Iterator[Item]:
    """The STIX objects of the MISP event file ``path``, marked as its tags and distribution
    say (see the module's docstring); what cannot be mapped safely is refused."""
    events = _events(_load(path), str(path))
    labels = _nato_labels(node)
    objects: list[dict[str, Any]] = []
    for event in events:
        objects.extend(_convert(node, event, report, options, labels, str(path)))
    _note_remarked(node, objects, report)
    for index, data in enumerate(objects):
        yield Item(index, None, data)


def _note_remarked(node: Node, objects: list[dict[str, Any]], report: ImportReport) -> None:
    """A version already stored keeps its markings (a version never changes): say so when
    the same version now maps to other markings (another --sharing-group, a new label)."""
    stored = node.store.latest_json_of({obj["id"] for obj in objects})
    differ = 0
    for obj in objects:
        text = stored.get(obj["id"])
        if text is None:
            continue
        held = orjson.loads(text)
        same_version = held.get("modified") == obj.get("modified")
        if same_version and held.get("object_marking_refs") != obj.get("object_marking_refs"):
            differ += 1
    if differ:
        report.notes.append(
            f"{differ} objects are already stored in this version with other markings, which "
            "they keep: change them in MISP (a new timestamp) for new markings to apply"
        )


def _nato_labels(node: Node) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    """The node's labels under the NATO policy, by (classification, handling)."""
    found: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    markings = node.store.label_markings()
    for name, marking_id, _tlp in node.store.labels():
        label = markings.get(marking_id)
        if label is None or label.policy is None or label.classification is None:
            continue
        if label.policy.upper() != "NATO":
            continue
        key = (label.classification.upper(), tuple(sorted(h.upper() for h in label.handling)))
        found.setdefault(key, []).append(name)
    return found


def _convert(
    node: Node,
    event: dict[str, Any],
    report: ImportReport,
    options: Options,
    nato: Mapping[tuple[str, tuple[str, ...]], list[str]],
    source: str,
) -> list[dict[str, Any]]:
    tag_labels: Mapping[str, str] = options.tag_labels
    event_scope = _scope(event, tag_labels, nato)
    group = event.get("SharingGroup") if isinstance(event.get("SharingGroup"), dict) else None
    mapped = options.sharing_groups.get(str((group or {}).get("name", "")))
    _report_distribution(event, event_scope, group, mapped, report)
    if event_scope.distribution == 4:
        if mapped is not None:
            event_scope.group.add(mapped)
        else:
            event_scope.tlp = "red"
    elif event_scope.distribution == 0:
        event_scope.tlp = "red"
    scopes: dict[str, _Scope] = {}
    for attribute in event.get("Attribute") or []:
        scopes[str(attribute.get("uuid"))] = _inner(
            _scope(attribute, tag_labels, nato), event_scope
        )
    for element in event.get("EventReport") or []:
        scopes[str(element.get("uuid"))] = _inner(_scope(element, tag_labels, nato), event_scope)
    for obj in event.get("Object") or []:
        outer = _inner(_scope(obj, tag_labels, nato), event_scope)
        scopes[str(obj.get("uuid"))] = outer
        for attribute in obj.get("Attribute") or []:
            scopes[str(attribute.get("uuid"))] = _inner(_scope(attribute, tag_labels, nato), outer)
    refused = event_scope.refused + [r for s in scopes.values() for r in s.refused]
    if refused:
        raise InputFormatError(
            f"event {event['uuid']}: {refused[0]}; nothing of this event is imported",
            source=source,
        )
    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_misp_event({"Event": event})
    except Exception as error:  # the converter's own errors: bad values deep in an event
        raise InputFormatError(
            f"event {event['uuid']}: misp-stix: {error}", source=source
        ) from None
    for problem in _messages(parser.errors):
        report.skipped.append(f"event {event['uuid']}: {problem}")
    for warning in _messages(parser.warnings):
        report.notes.append(f"event {event['uuid']}: {warning}")
    converted = _without_custom_objects(orjson.loads(parser.bundle.serialize())["objects"], report)
    by_id = {obj["id"]: obj for obj in converted}
    markings = {
        name: node.store.label(name)
        for scope in (event_scope, *scopes.values())
        for name in scope.labels | scope.group
    }
    out = []
    for obj in converted:
        if obj["type"] == "marking-definition" and obj["id"] in TLP_BY_ID:
            continue  # replaced by the TLP 2.0 markings below
        scope = _object_scope(obj, by_id, scopes, event_scope)
        out.append(_marked(obj, scope, markings))
    return out


def _without_custom_objects(
    objects: list[dict[str, Any]], report: ImportReport
) -> list[dict[str, Any]]:
    """The converter's ``x-misp-*`` objects (attributes and objects STIX has no type for:
    comments, free text, custom templates) as STIX notes on the event, references renamed.

    Custom object types without an extension-definition are deprecated in STIX 2.1 and
    refused by the pipeline; a note keeps what the analyst wrote, readable by any tool,
    under the same uuid (so it keeps the scope of its MISP element)."""
    event = next((o["id"] for o in objects if o["type"] == "report"), None)
    renamed: dict[str, str] = {}
    kinds: dict[str, int] = {}
    out = []
    for obj in objects:
        if not obj["type"].startswith("x-misp-") or event is None:
            out.append(obj)
            continue
        note_id = "note--" + obj["id"].split("--", 1)[1]
        renamed[obj["id"]] = note_id
        what = str(obj.get("x_misp_type") or obj.get("x_misp_name") or obj["type"][7:])
        kinds[what] = kinds.get(what, 0) + 1
        note: dict[str, Any] = {"type": "note", "spec_version": "2.1", "id": note_id}
        note |= {k: v for k, v in obj.items() if k in _NOTE_KEPT}
        note |= {
            "abstract": f"MISP {obj['type'][7:]} {what}"[:250],
            "content": _custom_content(obj),
            "object_refs": [event],
        }
        out.append(note)
    for obj in out:
        for key, value in list(obj.items()):
            if key.endswith("_ref") and value in renamed:
                obj[key] = renamed[value]
            elif key.endswith("_refs") and isinstance(value, list):
                obj[key] = [renamed.get(ref, ref) for ref in value]
    if kinds:
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        report.notes.append(f"kept as notes (no STIX type for them): {listed}")
    return out


_NOTE_KEPT = frozenset(
    {"created_by_ref", "created", "modified", "labels", "object_marking_refs",
     "external_references", "lang", "confidence"}
)  # fmt: skip


def _custom_content(obj: dict[str, Any]) -> str:
    """What a custom MISP object says, as text: its value, or one line per attribute."""
    lines = []
    if "x_misp_value" in obj:
        lines.append(str(obj["x_misp_value"]))
    for attribute in obj.get("x_misp_attributes") or []:
        if isinstance(attribute, dict):
            relation = attribute.get("object_relation") or attribute.get("type") or "value"
            lines.append(f"{relation}: {attribute.get('value', '')}")
    if obj.get("x_misp_comment"):
        lines.append(f"comment: {obj['x_misp_comment']}")
    return "\n".join(lines) or "(empty)"


def _inner(scope: _Scope, outer: _Scope) -> _Scope:
    inner = scope.under(outer)
    if scope.distribution == 0:
        inner.tlp = "red"
    return inner


def _messages(found: Any) -> list[str]:
    """The converter's errors or warnings (by event uuid, or a plain list), one each."""
    values = found.values() if isinstance(found, dict) else [found or []]
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, (list, set, tuple)) else [value]
        out.extend(str(item).strip() for item in items if str(item).strip())
    return out


def _scope(
    element: dict[str, Any],
    tag_labels: Mapping[str, str],
    nato: Mapping[tuple[str, tuple[str, ...]], list[str]],
) -> _Scope:
    scope = _Scope()
    distribution = element.get("distribution")
    try:
        scope.distribution = int(distribution) if distribution is not None else None
    except (TypeError, ValueError):
        scope.distribution = 0  # unreadable: the most restrictive reading
    for name in _tag_names(element):
        lowered = name.strip().lower()
        mapped = tag_labels.get(name) or tag_labels.get(lowered)
        if mapped is not None:
            scope.labels.add(mapped)
            continue
        if lowered in _TLP_TAGS:
            scope.tlp = _stricter(scope.tlp, _TLP_TAGS[lowered])
            continue
        match = _NATO_TAG.fullmatch(name)
        if match:
            value = " ".join((match.group(1) or "").replace("_", " ").upper().split())
            level = NATO_LEVELS.get(_NATO_NAMES.get(value, value.replace(" ", "-")))
            choices = nato.get((level[0], tuple(sorted(level[1])))) if level else None
            if level is None:
                scope.refused.append(f"tag {name!r}: not a value of the nato taxonomy")
            elif not choices or len(choices) > 1:
                which = "no label" if not choices else f"labels {', '.join(choices)}"
                scope.refused.append(
                    f"tag {name!r}: this node has {which} for NATO {level[0]}"
                    f"{' ' + '/'.join(level[1]) if level[1] else ''}; "
                    f"choose one with --tag-label '{name}=LABEL'"
                )
            else:
                scope.labels.add(choices[0])
    return scope


def _tag_names(element: dict[str, Any]) -> list[str]:
    tags = element.get("Tag") or []
    return [str(t.get("name")) for t in tags if isinstance(t, dict) and t.get("name")]


def _object_scope(
    obj: dict[str, Any],
    by_id: Mapping[str, dict[str, Any]],
    scopes: Mapping[str, _Scope],
    event: _Scope,
) -> _Scope:
    """The scope of the MISP element ``obj`` came from: the converter names objects after
    their attribute or object; relationships and sightings take their ends' strictest."""
    uuid = obj["id"].split("--", 1)[1]
    if uuid in scopes:
        return scopes[uuid]
    ends = [obj.get(k) for k in ("source_ref", "target_ref", "sighting_of_ref")]
    ends.extend(obj.get("observed_data_refs") or [])
    if obj["type"] in ("note", "opinion"):  # what MISP analysts wrote about an attribute
        ends.extend(obj.get("object_refs") or [])
    scope = event
    for end in ends:
        if isinstance(end, str) and end.split("--", 1)[-1] in scopes:
            scope = scopes[end.split("--", 1)[1]].under(scope)
    return scope


def _marked(
    obj: dict[str, Any], scope: _Scope, markings: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """``obj`` with the markings of ``scope`` instead of the converter's, and its tags as
    labels (TLP and classification tags removed: they are markings now)."""
    if obj["type"] == "marking-definition":
        return obj
    tlp = scope.tlp
    refs: list[str] = []
    for name in sorted(scope.labels | scope.group):
        marking_id, label_tlp = markings[name]
        if scope.tlp is None:  # no TLP tag: the label's own TLP
            tlp = _stricter(tlp, label_tlp)
        refs.append(marking_id)
    own = [r for r in obj.get("object_marking_refs", []) if r not in TLP_BY_ID]
    out = {k: v for k, v in obj.items() if k != "object_marking_refs"}
    marking_refs = ([TLP2_IDS[tlp]] if tlp else []) + refs + own
    if marking_refs:
        out["object_marking_refs"] = marking_refs
    if "labels" in out:
        kept = []
        for tag in out["labels"]:
            lowered = tag.strip().lower()
            if lowered in _TLP_TAGS or _NATO_TAG.fullmatch(tag):
                continue
            pap = _PAP_TAG.fullmatch(tag.strip())
            if pap:
                tag = f"PAP:{'CLEAR' if pap.group(1).lower() == 'white' else pap.group(1).upper()}"
            if tag not in kept:
                kept.append(tag)
        if kept:
            out["labels"] = kept
        else:
            del out["labels"]
    return out


def _report_distribution(
    event: dict[str, Any],
    scope: _Scope,
    group: dict[str, Any] | None,
    mapped: str | None,
    report: ImportReport,
) -> None:
    level = scope.distribution
    text = DISTRIBUTIONS.get(level, f"unknown ({level})") if level is not None else "not given"
    note = f"event {event['uuid']}: distribution {text}"
    if level == 4:
        orgs = [
            str((entry.get("Organisation") or {}).get("name", "?"))
            for entry in (group or {}).get("SharingGroupOrg") or []
            if isinstance(entry, dict)
        ]
        name = (group or {}).get("name", "unnamed")
        note += f" {name!r}" + (f" ({', '.join(orgs)})" if orgs else "")
    if level == 4:
        note += f" -> label {mapped}" if mapped else " -> TLP:RED (map it with --sharing-group)"
    elif level == 0:
        note += " -> TLP:RED: it stays on this node"
    report.notes.append(note)
