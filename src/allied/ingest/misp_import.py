"""MISP events and feeds as STIX 2.1, by the MISP project's own converter (``misp-stix``),
with MISP's sharing rules carried over into Allied labels.

The converter turns attributes, objects, galaxies, sightings, event reports and analyst
data into STIX; what it does not do is decide who may receive the result, and MISP's answer
is spread over tags and distribution levels on every element (event, object, attribute,
event report, analyst data). Each STIX object gets the strictest of what applies to the MISP
element it came from and everything that element sits in or folds in (docs/importing.md
has the whole table):

- TLP tags, however spelt, become TLP 2.0 markings; one this node cannot read refuses the
  event. An object's TLP is never below its labels' own.
- ``nato:classification`` tags become this node's one NATO label of that level (without
  named recipients or blind matching; ``--tag-label`` chooses otherwise); any other
  classification tag, or one that maps to no label, refuses the event: it must not land
  less protected than it was.
- ``PAP:*`` tags stay STIX labels, in one spelling; every other tag stays a label.
- Distribution "your organisation only", and a sharing group ``--sharing-group`` does not
  map, keep an element in house: TLP:RED and no sharing-group label.
"""

from __future__ import annotations

import re
import unicodedata
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
_NATO_TAG = re.compile(r'nato:classification(?:="?([^"]*)"?)?', re.IGNORECASE)
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# a TLP level however it is written: tlp:red, TLP-RED, [tlp red], tlp_amber+strict, ...
_TLP_ANY = re.compile(r"\W*tlp(?:[\W_]+|$)(.*?)\W*", re.IGNORECASE)
_TLP_WORDS = {
    "clear": "clear", "white": "clear", "green": "green", "amber": "amber",
    "amber+strict": "amber+strict", "amber-strict": "amber+strict",
    "amber strict": "amber+strict", "amber_strict": "amber+strict", "red": "red",
    "ex:chr": "red", "ex-chr": "red",
}  # fmt: skip
#: namespaces that state who may see something in words Allied cannot map by itself
_UNMAPPED_MARKINGS = ("iep",)
_PAP_TAG = re.compile(r"pap:(clear|white|green|amber|red)", re.IGNORECASE)


@dataclass
class _Scope:
    """What MISP says of one element and everything it sits in: its TLP, its classification
    labels, its sharing groups' labels, and whether it is kept in house."""

    tlp: str | None = None
    labels: set[str] = field(default_factory=set)
    #: labels that sharing groups map to (--sharing-group)
    group: set[str] = field(default_factory=set)
    #: distribution "your organisation only", or a sharing group no label maps, here or above
    in_house: bool = False

    def with_(self, other: _Scope) -> _Scope:
        """The strictest of both: what holds for content subject to both."""
        return _Scope(
            _stricter(self.tlp, other.tlp),
            self.labels | other.labels,
            self.group | other.group,
            self.in_house or other.in_house,
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
        if not _UUID.fullmatch(event["uuid"]):
            raise InputFormatError(f"{where}.uuid {event['uuid']!r} is not a uuid", source=source)
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
    """The node's labels under the NATO policy, by (classification, handling). Labels that
    name recipients or let partners blind-match are left out: a tag never sends anything to
    named partners, or tells them what is held, by itself."""
    found: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    markings = node.store.label_markings()
    for name, marking_id, _tlp in node.store.labels():
        label = markings.get(marking_id)
        if label is None or label.policy is None or label.classification is None:
            continue
        if label.policy.upper() != "NATO" or label.recipients or label.blind_match:
            continue
        key = (label.classification.upper(), tuple(sorted(h.upper() for h in label.handling)))
        found.setdefault(key, []).append(name)
    return found


class _Refused(Exception):
    """An element whose markings cannot be mapped safely: the whole event is refused."""


@dataclass
class _Context:
    """What mapping one event needs, and what it counts for the summary."""

    event_uuid: str
    tag_labels: Mapping[str, str]
    sharing_groups: Mapping[str, str]
    nato: Mapping[tuple[str, tuple[str, ...]], list[str]]
    kept_in_house: int = 0


def _convert(
    node: Node,
    event: dict[str, Any],
    report: ImportReport,
    options: Options,
    nato: Mapping[tuple[str, tuple[str, ...]], list[str]],
    source: str,
) -> list[dict[str, Any]]:
    uuid = event["uuid"]
    context = _Context(uuid, options.tag_labels, options.sharing_groups, nato)
    try:
        scopes, everything = _scopes(event, context)
    except _Refused as refusal:
        raise InputFormatError(
            f"event {uuid}: {refusal}; nothing of this event is imported", source=source
        ) from None
    _report_distribution(event, scopes[uuid.lower()], context, report)
    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_misp_event({"Event": event})
        bundle = orjson.loads(parser.bundle.serialize())
    except Exception as error:  # the converter's own errors: bad values deep in an event
        raise InputFormatError(f"event {uuid}: misp-stix: {error}", source=source) from None
    if not isinstance(bundle.get("objects"), list):  # pymisp could not load the event
        why = "; ".join(_messages(parser.errors)) or "it is not a MISP event it can read"
        raise InputFormatError(f"event {uuid}: misp-stix: {why}", source=source)
    for problem in _messages(parser.errors):
        report.skipped.append(f"event {uuid}: {problem}")
    for warning in _messages(parser.warnings):
        report.notes.append(f"event {uuid}: {warning}")
    converted = _without_custom_objects(bundle["objects"], report)
    labels = node.store.label_markings()
    markings = {
        name: node.store.label(name) for sc in scopes.values() for name in sc.labels | sc.group
    }
    out = []
    try:
        for obj in converted:
            if obj["type"] == "marking-definition" and obj["id"] in TLP_BY_ID:
                continue  # replaced by the TLP 2.0 markings below
            scope = _object_scope(obj, scopes, everything)
            out.append(_marked(obj, scope, markings, labels))
    except _Refused as refusal:
        raise InputFormatError(
            f"event {uuid}: {refusal}; nothing of this event is imported", source=source
        ) from None
    return out


def _scopes(event: dict[str, Any], context: _Context) -> tuple[dict[str, _Scope], _Scope]:
    """The scope of every MISP element of ``event`` by its uuid (lower case), and the
    strictest of them all (for what the converter made that names no element).

    misp-stix names what it makes from an attribute, an object, an event report, a galaxy
    cluster, a sighting or analyst data after that element's uuid; what it makes from a
    MISP object (an indicator, observed data, a file) holds every attribute's value, so an
    object's scope is the strictest of it and all its attributes."""
    scopes: dict[str, _Scope] = {}
    clusters: dict[str, _Scope] = {}
    # the event's organisations: creators of everything in it, at the event's scope
    own_orgs = {
        org["uuid"].strip().lower()
        for org in (event.get("Orgc"), event.get("Org"))
        if isinstance(org, dict) and isinstance(org.get("uuid"), str)
    }

    def put(uuid: Any, scope: _Scope, where: str) -> None:
        if not isinstance(uuid, str) or not uuid.strip():
            raise _Refused(f"{where} has no uuid, so what is made of it cannot be marked")
        key = uuid.strip().lower()
        scopes[key] = scopes[key].with_(scope) if key in scopes else scope

    def annotations(element: dict[str, Any], scope: _Scope, where: str) -> None:
        """Sightings, analyst data and galaxies attached to ``element``."""
        for n, sighting in enumerate(_dicts(element, "Sighting", where)):
            put(sighting.get("uuid"), scope, f"{where}.Sighting[{n}]")
            org = sighting.get("Organisation")
            org_uuid = org.get("uuid") if isinstance(org, dict) else None
            if isinstance(org_uuid, str) and org_uuid.strip().lower() not in own_orgs:
                put(org_uuid, scope, f"{where}.Sighting[{n}].Organisation")  # who else saw it
        for kind in ("Note", "Opinion", "Relationship"):
            for n, data in enumerate(_dicts(element, kind, where)):
                inner = _element(data, context, f"{where}.{kind}[{n}]").with_(scope)
                put(data.get("uuid"), inner, f"{where}.{kind}[{n}]")
        for n, galaxy in enumerate(_dicts(element, "Galaxy", where)):
            for m, cluster in enumerate(_dicts(galaxy, "GalaxyCluster", f"{where}.Galaxy[{n}]")):
                uuid = cluster.get("uuid")
                if isinstance(uuid, str):
                    key = uuid.strip().lower()
                    clusters[key] = clusters[key].with_(scope) if key in clusters else scope
                else:
                    raise _Refused(f"{where}.Galaxy[{n}].GalaxyCluster[{m}] has no uuid")

    outer = _element(event, context, "Event")
    put(event["uuid"], outer, "Event")
    for org_uuid in own_orgs:
        scopes[org_uuid] = outer
    for n, attribute in enumerate(_dicts(event, "Attribute", "Event")):
        where = f"Event.Attribute[{n}]"
        scope = _element(attribute, context, where).with_(outer)
        put(attribute.get("uuid"), scope, where)
        annotations(attribute, scope, where)
    for n, element in enumerate(_dicts(event, "EventReport", "Event")):
        where = f"Event.EventReport[{n}]"
        scope = _element(element, context, where).with_(outer)
        put(element.get("uuid"), scope, where)
        annotations(element, scope, where)
    for n, obj in enumerate(_dicts(event, "Object", "Event")):
        where = f"Event.Object[{n}]"
        own = _element(obj, context, where).with_(outer)
        whole = own
        for m, attribute in enumerate(_dicts(obj, "Attribute", where)):
            inner = f"{where}.Attribute[{m}]"
            scope = _element(attribute, context, inner).with_(own)
            put(attribute.get("uuid"), scope, inner)
            annotations(attribute, scope, inner)
            whole = whole.with_(scope)
        put(obj.get("uuid"), whole, where)
        annotations(obj, whole, where)
    _fold_references(event, scopes)
    # a cluster attached to the event itself is said at the event's scope, whatever else
    # it is attached to; one attached only to attributes or objects takes their scope
    on_elements = dict(clusters)
    clusters.clear()
    annotations(event, outer, "Event")
    for key, scope in on_elements.items():  # attached to elements only: their scopes
        if key not in clusters:
            scopes[key] = scopes[key].with_(scope) if key in scopes else scope
    for key, scope in clusters.items():
        scopes[key] = scopes[key].with_(scope) if key in scopes else scope
    everything = outer
    for scope in scopes.values():
        everything = everything.with_(scope)
    return scopes, everything


def _fold_references(event: dict[str, Any], scopes: dict[str, _Scope]) -> None:
    """What an object refers to joins its scope, transitively: misp-stix folds some
    referenced objects into the referring one (a ``pe`` and its sections into the ``file``
    that includes it, a ``registry-key-value`` into its ``registry-key``), so the referring
    object's indicator can hold the referenced one's values. Every reference is folded in,
    which is never less strict than what misp-stix does."""
    references: dict[str, list[str]] = {}
    for n, obj in enumerate(_dicts(event, "Object", "Event")):
        where = f"Event.Object[{n}]"
        for m, reference in enumerate(_dicts(obj, "ObjectReference", where)):
            target = reference.get("referenced_uuid")
            if not isinstance(target, str):
                raise _Refused(f"{where}.ObjectReference[{m}] names no referenced_uuid")
            source = str(obj.get("uuid", "")).strip().lower()
            references.setdefault(source, []).append(target.strip().lower())
    changed = True
    while changed:  # a fixed point: at most one pass per object in a chain
        changed = False
        for source, targets in references.items():
            scope = scopes[source]
            for target in targets:
                if target in scopes:
                    scope = scope.with_(scopes[target])
            if scope != scopes[source]:
                scopes[source], changed = scope, True


def _dicts(element: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """``element[key]`` as a list of objects; anything else there is refused, not guessed."""
    value = element.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _Refused(f"{where}.{key} is not a list of objects")
    return value


def _element(element: dict[str, Any], context: _Context, where: str) -> _Scope:
    """The scope ``element``'s own tags and distribution give it."""
    scope = _Scope()
    raw = element.get("distribution")
    try:
        distribution = None if raw is None or raw == "" else int(str(raw))
    except ValueError:
        distribution = 0  # unreadable: the most restrictive reading
    if distribution == 0:
        scope.in_house = True
    elif distribution == 4:
        group = element.get("SharingGroup")
        name = str(group.get("name", "")) if isinstance(group, dict) else ""
        mapped = context.sharing_groups.get(name) if name else None
        if mapped is None:
            scope.in_house = True
        else:
            scope.group.add(mapped)
    elif distribution not in (None, 1, 2, 3, 5):
        scope.in_house = True  # a level MISP does not define
    if scope.in_house and where != "Event":
        context.kept_in_house += 1
    for name in _tag_names(element, where):
        _apply_tag(name, scope, context, where)
    return scope


def _tag_names(element: dict[str, Any], where: str) -> list[str]:
    """The names of ``element``'s tags, written as objects or as plain strings."""
    value = element.get("Tag")
    items = [] if value is None else value if isinstance(value, list) else [value]
    for key in ("EventTag", "AttributeTag"):  # MISP's internal form: {"Tag": {...}} each
        wrapped = element.get(key)
        if wrapped is not None and not isinstance(wrapped, list):
            raise _Refused(f"{where}.{key} is not a list")
        items += [w.get("Tag") if isinstance(w, dict) else w for w in wrapped or []]
    names = []
    for n, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise _Refused(f"{where}.Tag[{n}] has no name")
        names.append(name)
    return names


def normal_tag(name: str) -> str:
    """A tag as compared: Unicode compatibility forms folded (a full-width colon is a colon),
    invisible characters dropped, no spaces around ``:`` and ``=``."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return re.sub(r"\s*([:=])\s*", r"\1", " ".join(text.split()))


def _namespace(tag: str) -> str:
    return re.split(r"[:=]", tag, maxsplit=1)[0].strip().lower()


def _apply_tag(name: str, scope: _Scope, context: _Context, where: str) -> None:
    tag = normal_tag(name)
    mapped = context.tag_labels.get(name) or context.tag_labels.get(tag)
    if mapped is None:
        mapped = {normal_tag(k).lower(): v for k, v in context.tag_labels.items()}.get(tag.lower())
    if mapped is not None:
        scope.labels.add(mapped)
        return
    namespace = _namespace(tag)
    tlp = _TLP_ANY.fullmatch(tag)
    if tlp is not None:
        level = _TLP_WORDS.get(tlp.group(1).strip().strip('"').lower())
        if level is None:
            raise _Refused(
                f"{where}: tag {name!r} is no TLP level this node knows; "
                f"map it with --tag-label '{name}=LABEL'"
            )
        scope.tlp = _stricter(scope.tlp, level)
        return
    if namespace.startswith("nato"):
        scope.labels.add(_nato_label(name, tag, context, where))
        return
    if _is_classification(tag) or namespace in _UNMAPPED_MARKINGS:
        raise _Refused(
            f"{where}: tag {name!r} is a classification this node cannot map; "
            f"map it with --tag-label '{name}=LABEL'"
        )


def _is_classification(tag: str) -> bool:
    """A tag stating a classification in a scheme this importer has no mapping for: its
    namespace says so (``classification:``, ``fr-classif:``) or its predicate does
    (``xx:classification=``, German ``de-vs:einstufung=``); ``circl:incident-classification``
    and the like classify incidents, not information."""
    namespace = _namespace(tag)
    predicate = re.split(r"[:=]", tag, maxsplit=2)[1].lower() if ":" in tag else ""
    return "classif" in namespace or predicate in ("classification", "einstufung")


def _nato_label(name: str, tag: str, context: _Context, where: str) -> str:
    match = _NATO_TAG.fullmatch(tag)
    value = " ".join((match.group(1) or "").replace("_", " ").upper().split()) if match else ""
    level = NATO_LEVELS.get(_NATO_NAMES.get(value, value.replace(" ", "-")))
    if level is None:
        raise _Refused(f"{where}: tag {name!r} is not a value of the nato taxonomy")
    choices = context.nato.get((level[0], tuple(sorted(level[1]))))
    if not choices or len(choices) > 1:
        which = "no label" if not choices else f"labels {', '.join(choices)}"
        handling = " " + "/".join(level[1]) if level[1] else ""
        raise _Refused(
            f"{where}: tag {name!r}: this node has {which} for NATO {level[0]}{handling} "
            f"(without named recipients); choose one with --tag-label '{name}=LABEL'"
        )
    return choices[0]


def _object_scope(obj: dict[str, Any], scopes: Mapping[str, _Scope], everything: _Scope) -> _Scope:
    """The scope of the MISP element ``obj`` was made from; a relationship, sighting, note
    or opinion also takes the strictest of what it refers to; anything named after no
    element takes the strictest scope in the event."""
    uuid = obj["id"].split("--", 1)[1].lower()
    own = scopes.get(uuid)
    ends = [obj.get(k) for k in ("source_ref", "target_ref", "sighting_of_ref")]
    ends.extend(obj.get("observed_data_refs") or [])
    if obj["type"] in ("note", "opinion"):  # what MISP analysts wrote about an element
        ends.extend(obj.get("object_refs") or [])
    refs = [end for end in ends if isinstance(end, str)]
    if own is None and not refs:
        return everything
    scope = own or _Scope()
    for ref in refs:
        scope = scope.with_(scopes.get(ref.split("--", 1)[-1].lower(), everything))
    return scope


def _marked(
    obj: dict[str, Any],
    scope: _Scope,
    markings: Mapping[str, tuple[str, str]],
    labels: Mapping[str, Any],
) -> dict[str, Any]:
    """``obj`` with the markings of ``scope`` instead of the converter's, and its tags as
    labels (TLP and classification tags removed: they are markings now)."""
    if obj["type"] == "marking-definition":
        return obj
    names = sorted(scope.labels) if scope.in_house else sorted(scope.labels | scope.group)
    tlp = "red" if scope.in_house else scope.tlp
    refs: list[str] = []
    for name in names:
        marking_id, label_tlp = markings[name]
        label = labels.get(marking_id)
        if scope.in_house and label is not None and label.recipients:
            raise _Refused(
                f"{obj['id']} is kept in house (distribution or sharing group) but label "
                f"{name} names recipients, who would receive it"
            )
        if label is not None and scope.in_house and label.blind_match:
            raise _Refused(
                f"{obj['id']} is kept in house (distribution or sharing group) but label "
                f"{name} lets partners blind-match it, which would tell them it is held"
            )
        tlp = _stricter(tlp, label_tlp)  # never less strict than the label's own TLP
        refs.append(marking_id)
    own = [r for r in obj.get("object_marking_refs", []) if r not in TLP_BY_ID]
    out = {k: v for k, v in obj.items() if k != "object_marking_refs"}
    marking_refs = ([TLP2_IDS[tlp]] if tlp else []) + refs + own
    if marking_refs:
        out["object_marking_refs"] = marking_refs
    if "labels" in out:
        kept = []
        for tag in out["labels"]:
            normal = normal_tag(tag)
            namespace = _namespace(normal)
            if (
                _TLP_ANY.fullmatch(normal)
                or namespace.startswith("nato")
                or (_is_classification(normal))
            ):
                continue
            pap = _PAP_TAG.fullmatch(normal)
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
    event: dict[str, Any], scope: _Scope, context: _Context, report: ImportReport
) -> None:
    raw = event.get("distribution")
    try:
        level: int | None = None if raw is None else int(str(raw))
    except ValueError:
        level = -1
    text = DISTRIBUTIONS.get(level, f"unknown ({raw})") if level is not None else "not given"
    note = f"event {event['uuid']}: distribution {text}"
    if level == 4:
        found = event.get("SharingGroup")
        group: dict[str, Any] = found if isinstance(found, dict) else {}
        orgs = []
        members = group.get("SharingGroupOrg")
        for entry in members if isinstance(members, list) else []:
            org = entry.get("Organisation") if isinstance(entry, dict) else None
            if isinstance(org, dict):
                orgs.append(str(org.get("name", "?")))
        note += f" {str(group.get('name', 'unnamed'))!r}" + (
            f" ({', '.join(orgs)})" if orgs else ""
        )
        mapped = sorted(scope.group)
        note += (f" -> label {', '.join(mapped)}" if mapped and not scope.in_house
                 else " -> TLP:RED (map it with --sharing-group)")  # fmt: skip
    elif scope.in_house:
        note += " -> TLP:RED: it stays on this node"
    report.notes.append(note)
    if context.kept_in_house:
        report.notes.append(
            f"event {event['uuid']}: {context.kept_in_house} attributes, objects or notes kept "
            "in house (distribution 0 or an unmapped sharing group) -> TLP:RED"
        )


def _without_custom_objects(
    objects: list[dict[str, Any]], report: ImportReport
) -> list[dict[str, Any]]:
    """The converter's ``x-misp-*`` objects (attributes and objects STIX has no type for:
    comments, free text, custom templates) as STIX notes on the event, references renamed.

    Custom object types without an extension-definition are deprecated in STIX 2.1 and
    refused by the pipeline; a note keeps what the analyst wrote, readable by any tool,
    under the same uuid (so it keeps the scope of its MISP element)."""
    # the event itself: a report once published, a grouping before
    event = next((o["id"] for o in objects if o["type"] in ("report", "grouping")), None)
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


def _messages(found: Any) -> list[str]:
    """The converter's errors or warnings (by event uuid, or a plain list), one each."""
    values = found.values() if isinstance(found, dict) else [found or []]
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, (list, set, tuple)) else [value]
        out.extend(str(item).strip() for item in items if str(item).strip())
    return out
