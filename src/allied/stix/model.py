"""The validated STIX object the rest of Allied works with.

Input is parsed once, at the boundary, into :class:`StixObject`; the core never handles a
half-validated dict. The object keeps its JSON text so that storage and export write exactly
what was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from allied.errors import Problem, ValidationError
from allied.stix.checks import timestamp_key
from allied.stix.validate import validate


@dataclass(frozen=True, slots=True)
class StixObject:
    id: str
    type: str
    #: Sortable version key: ``modified`` (or ``created`` for markings), at full precision;
    #: empty for cyber observables, which have a single version per id.
    version: str
    created_by_ref: str | None
    #: Every marking that applies to any part of the object: object-level and granular. The
    #: release decision treats the strictest of them as the object's label (fail closed).
    marking_refs: tuple[str, ...]
    #: Ids the object refers to, at any depth, except identities and marking definitions:
    #: what the release decision must also be able to release before releasing this object.
    refs: tuple[str, ...]
    data: Mapping[str, Any]
    json: str

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


_EXEMPT_PREFIXES = ("identity--", "marking-definition--")


def references(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Every ``*_ref``/``*_refs`` value of an object, nested ones included, in order, once."""
    found: dict[str, None] = {}
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key, value in node.items():
                if type(value) is str:
                    if key.endswith("_ref") and "--" in value:
                        found[value] = None
                elif type(value) is list:
                    if key.endswith("_refs"):
                        for ref in value:
                            if type(ref) is str and "--" in ref:
                                found[ref] = None
                    stack.append(value)
                elif type(value) is dict:
                    stack.append(value)
        elif type(node) is list:
            stack.extend(item for item in node if type(item) in (dict, list))
    return tuple(ref for ref in found if not ref.startswith(_EXEMPT_PREFIXES))


def _marking_refs(data: Mapping[str, Any]) -> tuple[str, ...]:
    refs = list(data.get("object_marking_refs") or ())
    for granular in data.get("granular_markings") or ():
        ref = granular.get("marking_ref")
        if ref is not None:
            refs.append(ref)
    return tuple(dict.fromkeys(refs))


def version_key(data: Mapping[str, Any]) -> str:
    stamp = data.get("modified") or data.get("created")
    return timestamp_key(stamp) if isinstance(stamp, str) else ""


def _may_refer(text: str) -> bool:
    """Whether the JSON text has any ``*_ref(s)`` key besides the creator and markings.

    Every such key appears in the text as ``_ref"`` or ``_refs"``, so counting those is a
    safe test (a string value ending in ``_ref`` only makes it say yes needlessly); most
    objects (indicators, malware...) then skip the walk over their properties.
    """
    found = text.count('_ref"') + text.count('_refs"')
    return found > ('"created_by_ref"' in text) + ('"object_marking_refs"' in text)


def from_valid(data: dict[str, Any]) -> StixObject:
    """Wrap a dict that :func:`validate` passed; callers on the fast path validate first."""
    text = orjson.dumps(data).decode()
    return StixObject(
        id=data["id"],
        type=data["type"],
        version=version_key(data),
        created_by_ref=data.get("created_by_ref"),
        marking_refs=_marking_refs(data),
        refs=references(data) if _may_refer(text) else (),
        data=MappingProxyType(data),
        json=text,
    )


def check(
    data: Any, *, index: int | None = None, line: int | None = None
) -> StixObject | list[Problem]:
    """The object if ``data`` is valid STIX 2.1, otherwise every reason it is not, located."""
    issues = validate(data)
    if not issues:
        try:
            return from_valid(data)
        except orjson.JSONEncodeError as error:
            issues = [("", f"cannot be stored as JSON: {error}")]
    object_id = data.get("id") if isinstance(data, dict) else None
    ident = object_id if isinstance(object_id, str) else None
    return [Problem(index, ident, path, reason, line) for path, reason in issues]


def parse_object(data: Any, *, index: int | None = None, line: int | None = None) -> StixObject:
    """Validate ``data`` and return it as a :class:`StixObject`, or raise ValidationError."""
    result = check(data, index=index, line=line)
    if isinstance(result, list):
        raise ValidationError(result)
    return result
