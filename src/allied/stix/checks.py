"""Property checks: the small vocabulary the STIX 2.1 type tables are written in.

Each check is a closure ``check(value, path, issues)`` that appends ``(path, reason)`` pairs to
``issues`` and returns nothing. Closures, not classes with methods, because the import path
runs them millions of times and a plain call is the cheapest thing Python has. A check never
raises on bad input: every problem in an object is reported at once.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

Issues = list[tuple[str, str]]
Check = Callable[[Any, str, Issues], None]

_SECONDS = (
    r"^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)"
)
TIMESTAMP = re.compile(_SECONDS + r"(\.[0-9]+)?Z\Z")
_TIMESTAMP_MILLIS = re.compile(_SECONDS + r"\.[0-9]{3,}Z\Z")
IDENTIFIER = re.compile(
    r"^([a-z][a-z0-9-]+[a-z0-9])--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-"
    r"[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}\Z"
)
TYPE_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
PROPERTY_NAME = re.compile(r"^[a-z0-9_]{3,250}\Z")
_HEX = re.compile(r"^([a-fA-F0-9]{2})+\Z")
_HASH_FORMATS = {
    "MD5": re.compile(r"^[a-fA-F0-9]{32}\Z"),
    "SHA-1": re.compile(r"^[a-fA-F0-9]{40}\Z"),
    "SHA-256": re.compile(r"^[a-fA-F0-9]{64}\Z"),
    "SHA-512": re.compile(r"^[a-fA-F0-9]{128}\Z"),
    "SHA3-256": re.compile(r"^[a-fA-F0-9]{64}\Z"),
    "SHA3-512": re.compile(r"^[a-fA-F0-9]{128}\Z"),
    "SSDEEP": re.compile(r"^[a-zA-Z0-9/+:.]{1,128}\Z"),
    "TLSH": re.compile(r"^T?[a-fA-F0-9]{70,72}\Z"),
}
_HASH_KEY = re.compile(r"^[a-zA-Z0-9_-]{3,250}\Z")


def type_of_name(value: str) -> str:
    """A readable name for a JSON value's type in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {
        str: "string",
        int: "integer",
        float: "number",
        list: "list",
        dict: "object",
    }.get(type(value), type(value).__name__)


def timestamp_is_valid(value: Any) -> bool:
    """RFC 3339 in UTC with ``Z``, and a date that exists (no 30 February)."""
    if type(value) is not str or TIMESTAMP.match(value) is None:
        return False
    return value[8:10] < "29" or _date_exists(value)


def _date_exists(value: str) -> bool:
    try:
        datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def string(*, min_length: int = 0) -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str:
            issues.append((path, f"must be a string, not {type_of_name(value)}"))
        elif len(value) < min_length:
            issues.append((path, "must not be empty"))

    return check


def matching(pattern: str, what: str) -> Check:
    """A string of a given form (language tags, MIME types, charset names)."""
    form = re.compile(pattern)

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str:
            issues.append((path, f"must be a string, not {type_of_name(value)}"))
        elif form.match(value) is None:
            issues.append((path, f"{value!r} is not {what}"))

    return check


def boolean() -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not bool:
            issues.append((path, f"must be true or false, not {type_of_name(value)}"))

    return check


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not int:
            issues.append((path, f"must be an integer, not {type_of_name(value)}"))
        elif minimum is not None and value < minimum:
            issues.append((path, f"must be at least {minimum}, not {value}"))
        elif maximum is not None and value > maximum:
            issues.append((path, f"must be at most {maximum}, not {value}"))

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) not in (int, float):
            issues.append((path, f"must be a number, not {type_of_name(value)}"))
        elif minimum is not None and value < minimum:
            issues.append((path, f"must be at least {minimum}, not {value}"))
        elif maximum is not None and value > maximum:
            issues.append((path, f"must be at most {maximum}, not {value}"))

    return check


def timestamp(*, millis: bool = False) -> Check:
    """``millis``: created and modified must be precise to the millisecond (STIX 2.1 3.2)."""
    millis_form = _TIMESTAMP_MILLIS

    def check(value: Any, path: str, issues: Issues) -> None:
        form = millis_form if millis else TIMESTAMP
        if type(value) is str and form.match(value) and (value[8:10] < "29" or _date_exists(value)):
            return
        if not timestamp_is_valid(value):
            issues.append((path, f"must be an RFC 3339 UTC timestamp ending in Z, not {value!r}"))
        else:
            issues.append((path, f"must be precise to the millisecond, not {value!r}"))

    return check


def identifier(*types: str) -> Check:
    """A STIX id; ``types`` limits which object types it may name (none: any)."""
    allowed = frozenset(types)

    def check(value: Any, path: str, issues: Issues) -> None:
        known = _KNOWN_IDS.get(value) if type(value) is str else None
        if known is not None and (not allowed or known in allowed):
            return
        if type(value) is not str:
            issues.append((path, f"must be a STIX identifier, not {type_of_name(value)}"))
            return
        match = IDENTIFIER.match(value)
        if match is None:
            issues.append((path, f"{value!r} is not a STIX identifier (type--UUID)"))
            return
        if len(_KNOWN_IDS) >= _KNOWN_IDS_MAX:
            _KNOWN_IDS.clear()
        _KNOWN_IDS[value] = match.group(1)
        if allowed and match.group(1) not in allowed:
            names = ", ".join(sorted(allowed))
            issues.append((path, f"must refer to {names}, not {match.group(1)}"))

    return check


#: Identifiers seen valid, with their type: references repeat (creators, markings), regexes cost.
_KNOWN_IDS: dict[str, str] = {}
_KNOWN_IDS_MAX = 4096


def identifier_except(*types: str) -> Check:
    """A STIX id of any type but ``types`` (where the spec says "an SDO or SCO", custom types
    defined by extensions included)."""
    excluded = frozenset(types)
    any_id = identifier()

    def check(value: Any, path: str, issues: Issues) -> None:
        before = len(issues)
        any_id(value, path, issues)
        if len(issues) == before:
            kind = value.split("--", 1)[0]
            if kind in excluded:
                issues.append((path, f"must not refer to a {kind}"))

    return check


def ip_value(version: int) -> Check:
    """An IPv4 or IPv6 address or CIDR block (STIX 2.1 6.7, 6.8)."""

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str:
            issues.append((path, f"must be a string, not {type_of_name(value)}"))
            return
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            network = None
        if network is None or network.version != version:
            issues.append((path, f"{value!r} is not an IPv{version} address or CIDR block"))

    return check


def list_of(item: Check, *, min_items: int = 1) -> Check:
    """STIX lists must not be empty unless the spec says otherwise."""

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not list:
            issues.append((path, f"must be a list, not {type_of_name(value)}"))
            return
        if len(value) < min_items:
            issues.append((path, "must not be an empty list"))
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]", issues)

    return check


def enum(*values: str) -> Check:
    """A closed vocabulary (an ``-enum`` in the spec): anything else is an error."""
    allowed = frozenset(values)

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str or value not in allowed:
            names = ", ".join(sorted(allowed))
            issues.append((path, f"must be one of {names}, not {value!r}"))

    return check


def open_vocab() -> Check:
    """An open vocabulary (``-ov``): suggested values, any string is allowed."""
    return string(min_length=1)


def binary() -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str:
            issues.append((path, f"must be base64 text, not {type_of_name(value)}"))
            return
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            issues.append((path, "is not valid base64"))
            return
        if not value:
            issues.append((path, "must not be empty"))

    return check


def hex_string() -> Check:
    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not str or _HEX.match(value) is None:
            issues.append((path, f"must be an even number of hex digits, not {value!r}"))

    return check


def hashes() -> Check:
    """Hashes: known algorithms must have the right format; custom keys are allowed."""

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not dict:
            issues.append((path, f"must be an object of hashes, not {type_of_name(value)}"))
            return
        if not value:
            issues.append((path, "must hold at least one hash"))
        for key, digest in value.items():
            where = f"{path}.{key}"
            if _HASH_KEY.match(key) is None:
                issues.append((where, f"{key!r} is not a valid hash algorithm name"))
            elif type(digest) is not str:
                issues.append((where, f"must be a string, not {type_of_name(digest)}"))
            else:
                form = _HASH_FORMATS.get(key)
                if form is not None and form.match(digest) is None:
                    issues.append((where, f"is not a valid {key} digest"))

    return check


def dictionary(values: Check | None = None) -> Check:
    """A STIX dictionary: keys of letters, digits, ``_`` and ``-``; non-empty."""

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not dict:
            issues.append((path, f"must be an object, not {type_of_name(value)}"))
            return
        if not value:
            issues.append((path, "must not be empty"))
        for key, item in value.items():
            if len(key) > 250:
                issues.append((path, f"key {key[:20]!r}... is longer than 250 characters"))
            if values is not None:
                values(item, f"{path}.{key}", issues)

    return check


def nested(
    props: Mapping[str, Check],
    *,
    required: Iterable[str] = (),
    rules: Iterable[Callable[[dict[str, Any], str, Issues], None]] = (),
    open_: bool = False,
) -> Check:
    """An embedded object type (external-reference, kill-chain-phase, an extension...).

    ``open_`` lets unknown properties through, as for extensions defined elsewhere.
    """
    needed = tuple(required)
    extra_rules = tuple(rules)

    def check(value: Any, path: str, issues: Issues) -> None:
        if type(value) is not dict:
            issues.append((path, f"must be an object, not {type_of_name(value)}"))
            return
        for name in needed:
            if name not in value:
                issues.append((f"{path}.{name}", "is required"))
        for name, item in value.items():
            prop = props.get(name)
            if prop is not None:
                prop(item, f"{path}.{name}", issues)
            elif not open_ and not name.startswith("x_"):
                issues.append((f"{path}.{name}", "is not a property of this type"))
        for rule in extra_rules:
            rule(value, path, issues)

    return check


def at_least_one(*names: str) -> Callable[[dict[str, Any], str, Issues], None]:
    def rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
        if not any(name in obj for name in names):
            issues.append((path, f"needs at least one of {', '.join(names)}"))

    return rule


def not_both(first: str, second: str) -> Callable[[dict[str, Any], str, Issues], None]:
    def rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
        if first in obj and second in obj:
            issues.append((path or second, f"{first} and {second} must not both be present"))

    return rule


def requires(name: str, needed: str) -> Callable[[dict[str, Any], str, Issues], None]:
    def rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
        if name in obj and needed not in obj:
            issues.append((path or name, f"{name} requires {needed}"))

    return rule


def ordered(
    earlier: str, later: str, *, strict: bool = False
) -> Callable[[dict[str, Any], str, Issues], None]:
    """``later`` must not precede ``earlier`` (or must follow it, when ``strict``)."""

    def rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
        first, second = obj.get(earlier), obj.get(later)
        if first is None or second is None or (first == second and not strict):
            return  # equal text: the common created == modified needs no parsing
        if not (timestamp_is_valid(first) and timestamp_is_valid(second)):
            return
        a, b = timestamp_key(first), timestamp_key(second)
        if b < a or (strict and b == a):
            word = "after" if strict else "at or after"
            issues.append((path or later, f"{later} must be {word} {earlier}"))

    return rule


def timestamp_key(value: str) -> str:
    """A form of a valid timestamp that sorts as text in time order, at full precision.

    Seconds are fixed width; the fraction follows without its trailing zeros, and the ``Z``
    is dropped: then a shorter fraction is a prefix, ``.1`` equals ``.100``, and versions a
    nanosecond apart stay apart.
    """
    seconds, _, fraction = value[:-1].partition(".")
    fraction = fraction.rstrip("0")
    return f"{seconds}.{fraction}" if fraction else seconds
