"""STIX 2.1 validation: walks the type tables and returns every problem of an object.

Validation is one pass over the object's own properties, so its cost grows with what the
object holds, not with how many types exist. Indicator patterns of type ``stix`` are parsed
with Allied's own pattern grammar, the same one the matching engines compile.
"""

from __future__ import annotations

from typing import Any

from allied.errors import PatternError
from allied.stix.checks import IDENTIFIER, PROPERTY_NAME, TYPE_NAME, Issues, type_of_name
from allied.stix.labels import KNOWN_EXTENSIONS, check_reserved_marking
from allied.stix.pattern import check_pattern
from allied.stix.types import (
    EXTENSION_INSTANCE,
    SCO_COMMON,
    SCO_REQUIRED,
    SDO_COMMON,
    SDO_REQUIRED,
    TYPES,
    TypeSpec,
)

_TYPE_NAME_MAX = 250
_CUSTOM_KINDS = {"new-sdo": "sdo", "new-sro": "sro", "new-sco": "sco"}


def validate(obj: Any) -> Issues:
    """Every problem with ``obj`` as ``(json_path, reason)``; an empty list means valid."""
    if type(obj) is not dict:
        return [("", f"a STIX object must be a JSON object, not {type_of_name(obj)}")]
    issues: Issues = []
    kind = obj.get("type")
    if type(kind) is not str:
        return [("type", "is required" if kind is None else "must be a string")]
    spec = TYPES.get(kind) or _custom_spec(obj, kind, issues)
    if spec is None:
        return issues
    _check_id(obj, kind, issues)
    for name in spec.required:
        if name not in obj:
            issues.append((name, "is required"))
    props = spec.props
    allow_toplevel = None
    for name, value in obj.items():
        check = props.get(name)
        if check is not None:
            check(value, name, issues)
            continue
        if allow_toplevel is None:
            allow_toplevel = _declares_toplevel_extension(obj)
        if PROPERTY_NAME.match(name) is None:
            issues.append((name, "is not a valid property name (a-z, 0-9, _; 3 to 250 chars)"))
        elif not (name.startswith("x_") or allow_toplevel or spec.name not in TYPES):
            issues.append((name, f"is not a property of {kind} (custom properties start with x_)"))
        elif value == []:
            issues.append((name, "must not be an empty list"))
    for rule in spec.rules:
        rule(obj, "", issues)
    extensions = obj.get("extensions")
    if type(extensions) is dict:
        _check_extensions(spec, extensions, issues)
    if kind == "marking-definition":
        check_reserved_marking(obj, issues)
    granular = obj.get("granular_markings")
    if type(granular) is list:
        _check_selectors(obj, granular, issues)
    if kind == "indicator" and obj.get("pattern_type") == "stix":
        pattern = obj.get("pattern")
        if type(pattern) is str and pattern:
            try:
                check_pattern(pattern)
            except PatternError as error:
                issues.append(("pattern", f"invalid STIX pattern: {error.message}"))
    return issues


def _check_id(obj: dict[str, Any], kind: str, issues: Issues) -> None:
    ident = obj.get("id")
    if type(ident) is str and IDENTIFIER.match(ident) and not ident.startswith(kind + "--"):
        issues.append(("id", f"must start with {kind}-- for an object of type {kind}"))


def _custom_spec(obj: dict[str, Any], kind: str, issues: Issues) -> TypeSpec | None:
    """A type outside the spec is accepted only as the spec allows one to be defined.

    STIX 2.1 defines new object types through an extension-definition of type ``new-sdo``,
    ``new-sco`` or ``new-sro`` named in the object's ``extensions``.
    """
    if len(kind) > _TYPE_NAME_MAX or TYPE_NAME.match(kind) is None:
        issues.append(("type", f"{kind!r} is not a valid STIX type name"))
        return None
    extensions = obj.get("extensions")
    if type(extensions) is dict:
        for key, value in extensions.items():
            if key.startswith("extension-definition--") and type(value) is dict:
                extension_type = value.get("extension_type")
                if type(extension_type) is not str:
                    continue
                custom_kind = _CUSTOM_KINDS.get(extension_type)
                if custom_kind == "sco":
                    return TypeSpec(kind, "sco", SCO_COMMON, SCO_REQUIRED)
                if custom_kind is not None:
                    return TypeSpec(
                        kind, "sdo" if custom_kind == "sdo" else "sro", SDO_COMMON, SDO_REQUIRED
                    )
    issues.append(
        (
            "type",
            f"unknown object type {kind!r} (a new type needs a new-sdo, new-sco or "
            "new-sro extension-definition in extensions)",
        )
    )
    return None


def _declares_toplevel_extension(obj: dict[str, Any]) -> bool:
    extensions = obj.get("extensions")
    if type(extensions) is not dict:
        return False
    return any(
        type(v) is dict and v.get("extension_type") == "toplevel-property-extension"
        for v in extensions.values()
    )


def _check_extensions(spec: TypeSpec, extensions: dict[str, Any], issues: Issues) -> None:
    for key, value in extensions.items():
        path = f"extensions.{key}"
        predefined = spec.extensions.get(key)
        if predefined is not None:
            predefined(value, path, issues)
        elif key in KNOWN_EXTENSIONS:
            KNOWN_EXTENSIONS[key](value, path, issues)
        elif key.startswith("extension-definition--"):
            if IDENTIFIER.match(key) is None:
                issues.append((path, f"{key!r} is not an extension-definition identifier"))
            EXTENSION_INSTANCE(value, path, issues)
        elif key.startswith("x-") and type(value) is dict:
            continue  # STIX 2.0-style custom extension, still allowed on input
        else:
            issues.append((path, f"unknown extension {key!r} for {spec.name}"))


def _check_selectors(obj: dict[str, Any], markings: list[Any], issues: Issues) -> None:
    """Granular marking selectors must point at something the object has (STIX 2.1 7.2.3.1)."""
    for m_index, marking in enumerate(markings):
        selectors = marking.get("selectors") if type(marking) is dict else None
        if type(selectors) is not list:
            continue
        for s_index, selector in enumerate(selectors):
            if type(selector) is str and not _resolves(obj, selector):
                issues.append(
                    (
                        f"granular_markings[{m_index}].selectors[{s_index}]",
                        f"{selector!r} does not select a property of this object",
                    )
                )


def _resolves(obj: Any, selector: str) -> bool:
    node = obj
    for step in selector.split("."):
        if step.startswith("[") and step.endswith("]"):
            digits = step[1:-1]
            if type(node) is not list or not (digits.isascii() and digits.isdigit()):
                return False
            index = int(digits)
            if index >= len(node):
                return False
            node = node[index]
        elif type(node) is dict and step in node:
            node = node[step]
        else:
            return False
    return True
