"""The canonical form of a JSON value: RFC 8785, the JSON Canonicalization Scheme (JCS).

Signatures and ledger hashes are taken over these bytes, so two nodes that hold the same
object must produce them identically whatever key order, spacing or number spelling they
received. This module is the one home of that rule.

JCS in brief (RFC 8785 section 3.2): no whitespace; object members sorted by the UTF-16 code
units of their names; strings escaped as ECMAScript's JSON.stringify does (only ``"``,
``\\`` and control characters); numbers written as ECMAScript's Number.prototype.toString
writes the nearest IEEE-754 double (I-JSON: integers beyond 2**53 - 1 are refused, as are
NaN and the infinities).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from allied.errors import AlliedError

_SAFE_INTEGER = 2**53 - 1
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}  # fmt: skip
_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)} | _SHORT_ESCAPES


class CanonicalFormError(AlliedError):
    """A value that has no RFC 8785 form (NaN, a huge integer, a non-string key...)."""


def canonical(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value`` (dicts, lists, str, int, float, bool, None).

    Nearly every STIX object holds only strings, small integers, booleans and ASCII member
    names; for those, orjson with sorted keys writes exactly the RFC 8785 bytes (the same
    escapes, code point order equal to UTF-16 order on ASCII) ten times faster. Its output
    tells whether that is the case: no number token with a fraction or an exponent, none
    longer than 15 digits, no null (orjson's NaN), and all ASCII; otherwise a walk over the
    value decides, and anything not plain takes the full path.
    """
    if isinstance(value, Mapping) and type(value) is not dict:
        value = dict(value)  # a read-only view of a parsed object
    fast: bytes | None = None
    if type(value) is dict or type(value) is list:
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            fast = None
    if (
        fast is not None
        and _SPECIAL_NUMBER.search(fast) is None
        # orjson writes NaN and the infinities as null; non-ASCII names may sort otherwise
        and ((fast.isascii() and b"null" not in fast) or _plain(value))
    ):
        return fast
    parts: list[str] = []
    _write(value, parts, "$")
    return "".join(parts).encode("utf-8")


# A number token (after ':', ',' or '[', before ',', '}' or ']') that is a float or has 16
# or more digits. Inside a string such text only sends the value down the full path.
_SPECIAL_NUMBER = re.compile(
    rb"[:,\[]-?[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)[,}\]]"
    rb"|[:,\[]-?[0-9]{16,}[,}\]]"
)


def _plain(value: Any) -> bool:
    """Only dicts with ASCII string names, lists, strings, safe integers, booleans, null."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, member in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                if type(member) is not str:
                    stack.append(member)
        elif kind is list:
            stack.extend(member for member in item if type(member) is not str)
        elif kind is int:
            if not -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                return False
        elif not (kind is str or kind is bool or item is None):
            return False
    return True


def _write(value: Any, parts: list[str], path: str) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        if abs(value) > _SAFE_INTEGER:
            raise CanonicalFormError(f"{path}: integer {value} is beyond 2**53 - 1 (I-JSON)")
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(number_text(value, path))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalFormError(f"{path}: object member name {key!r} is not a string")
        parts.append("{")
        for n, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if n:
                parts.append(",")
            parts.append(_string(key))
            parts.append(":")
            _write(value[key], parts, f"{path}.{key}")
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for n, item in enumerate(value):
            if n:
                parts.append(",")
            _write(item, parts, f"{path}[{n}]")
        parts.append("]")
    else:
        raise CanonicalFormError(f"{path}: {type(value).__name__} is not a JSON value")


def _string(text: str) -> str:
    if not any(c in _ESCAPES for c in text):
        return f'"{text}"'
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def number_text(value: float, path: str = "$") -> str:
    """ECMAScript Number::toString of a finite double (ECMA-262, NumberToString)."""
    if not math.isfinite(value):
        raise CanonicalFormError(f"{path}: {value} has no JSON form")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, the same digits ECMAScript uses
    digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = k + int(exponent)  # value = 0.digits * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + body
