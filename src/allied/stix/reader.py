"""Streaming input: STIX bundles and JSON lines of any size, one object at a time.

A 1 GB bundle must import in flat memory, so the bundle is never loaded whole: the envelope
is walked by hand and each element of ``objects`` is decoded on its own with the C JSON
scanner, from a buffer that only ever holds the current object and a read-ahead chunk.
JSON lines are recognised by their first line being a complete non-bundle object.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from allied.errors import InputFormatError

CHUNK = 1 << 20
_PEEK = 1 << 16
#: How much of the first line is read to tell JSON lines from a bundle on one line.
_FIRST_LINE_MAX = 16 << 20
_BUNDLE_ID = re.compile(
    r"^bundle--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-"
    r"[0-9a-fA-F]{12}\Z"
)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True, slots=True)
class Item:
    """One decoded element of the input: its position (0-based) and the line it starts on."""

    index: int
    line: int | None
    data: Any
    #: the converter found the very version the store holds (:func:`allied.ingest.stable.
    #: settle`): a duplicate, not validated and signed again to be found one
    held: bool = False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is too large for a double")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite)


def read_items(path: Path) -> Iterator[Item]:
    """Yield every object of a bundle or JSON lines file; raise InputFormatError on bad syntax.

    Errors in the envelope that come after the objects (a bundle's trailing keys) are raised
    when the iteration reaches them, so a caller that stores as it goes must do so in a
    transaction it can roll back.
    """
    source = str(path)
    try:
        with open(path, "rb") as raw:
            head = raw.read(_PEEK)
            first = head.lstrip(b"\xef\xbb\xbf \t\r\n")
            if not first:
                raise InputFormatError("the file is empty", source=source)
            if first[:1] != b"{":
                raise InputFormatError(
                    "expected a STIX bundle or JSON lines (input must start with '{')",
                    source=source,
                    line=1,
                )
            raw.seek(0)
            json_lines = _is_json_lines(raw.readline(_FIRST_LINE_MAX))
            raw.seek(0)
            if json_lines:
                yield from _json_lines(raw, source)
            else:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                yield from _BundleReader(text, source).objects()
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror or error}", source=source) from None
    except UnicodeDecodeError as error:
        raise InputFormatError(f"not UTF-8 text ({error.reason})", source=source) from None


def _is_json_lines(first_line: bytes) -> bool:
    """JSON lines: the first line alone is a complete object that is not a bundle."""
    try:
        first = orjson.loads(first_line.lstrip(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        return False
    return isinstance(first, dict) and first.get("type") != "bundle"


def _json_lines(raw: IO[bytes], source: str) -> Iterator[Item]:
    index = 0
    for number, line in enumerate(raw, start=1):
        if number == 1:
            line = line.lstrip(b"\xef\xbb\xbf")
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise InputFormatError(
                f"invalid JSON: {error.msg}", source=source, line=number, column=error.colno
            ) from None
        yield Item(index, number, data)
        index += 1


class _BundleReader:
    """Walks ``{"type": "bundle", "id": ..., "objects": [...]}`` without holding it whole."""

    def __init__(self, text: IO[str], source: str) -> None:
        self._text = text
        self._source = source
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._lines_before = 0  # newlines in text already dropped from the buffer
        self._counted_to = 0  # buffer offset up to which newlines are in _counted
        self._counted = 0

    def objects(self) -> Iterator[Item]:
        envelope: dict[str, Any] = {}
        self._expect("{")
        saw_objects = False
        index = 0
        first = True
        while True:
            if self._peek() == "}":
                self._pos += 1
                break
            if not first:
                self._expect(",")
            first = False
            self._peek()
            key_line = self._line()
            key = self._decode()
            if not isinstance(key, str):
                self._fail("expected a property name", key_line)
            self._expect(":")
            if key == "objects":
                saw_objects = True
                if self._peek() != "[":
                    self._fail("'objects' must be a list")
                self._pos += 1
                if self._peek() == "]":
                    self._pos += 1
                else:
                    while True:
                        item = self._next_in_buffer(index)
                        if item is None:  # near the end of the buffer: the careful way
                            self._peek()
                            item = Item(index, self._line(), self._decode())
                            separator = self._peek()
                            self._pos += 1
                        else:
                            separator = self._buf[self._pos - 1]
                        yield item
                        index += 1
                        if separator == "]":
                            break
                        if separator != ",":
                            self._pos -= 1
                            self._fail("expected ',' or ']' in 'objects'")
            else:
                envelope[key] = self._decode()
        if self._peek() != "":
            self._fail("unexpected data after the bundle")
        self._check_envelope(envelope, saw_objects)

    def _next_in_buffer(self, index: int) -> Item | None:
        """The next element and its separator when both lie well inside the buffer.

        The common case of a large bundle, done with as few calls as possible; None sends the
        caller to the general path, which refills the buffer.
        """
        buf = self._buf
        size = len(buf) - 1
        start = _WHITESPACE.match(buf, self._pos).end()  # type: ignore[union-attr]
        if start >= size:
            return None
        try:
            value, end = _DECODER.raw_decode(buf, start)
        except (ValueError, RecursionError):
            return None  # let the general path refill or report it
        after = _WHITESPACE.match(buf, end).end()  # type: ignore[union-attr]
        if after >= size:
            return None
        self._pos = start
        line = self._line()
        self._pos = after + 1
        return Item(index, line, value)

    def _check_envelope(self, envelope: dict[str, Any], saw_objects: bool) -> None:
        kind = envelope.get("type")
        if kind != "bundle":
            self._fail(
                f"the top-level object has type {kind!r}, not 'bundle' "
                "(give a bundle, or one object per line)",
                1,
            )
        ident = envelope.get("id")
        if not isinstance(ident, str) or _BUNDLE_ID.match(ident) is None:
            self._fail(f"the bundle id {ident!r} is not bundle--UUID", 1)
        if "spec_version" in envelope:
            self._fail(
                f"bundle has spec_version {envelope['spec_version']!r}: that is a STIX 2.0 "
                "bundle; Allied reads STIX 2.1",
                1,
            )
        if not saw_objects:
            self._fail("the bundle has no 'objects' list", 1)

    # -- buffer handling -------------------------------------------------------------------

    def _fill(self, at_least: int = CHUNK) -> bool:
        """Drop what was consumed, read more; False at end of input."""
        if self._eof:
            return False
        if self._pos:
            self._lines_before += self._buf.count("\n", 0, self._pos)
            self._buf = self._buf[self._pos :]
            self._pos = 0
            self._counted_to = self._counted = 0
        more = self._text.read(max(at_least, len(self._buf)))
        if not more:
            self._eof = True
            return False
        self._buf += more
        return True

    def _peek(self) -> str:
        """Skip whitespace and return the next character ('' at end of input)."""
        while True:
            match = _WHITESPACE.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _expect(self, char: str) -> None:
        found = self._peek()
        if found != char:
            shown = repr(found) if found else "end of input"
            self._fail(f"expected {char!r}, found {shown}")
        self._pos += 1

    def _decode(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as error:
                near_end = error.pos >= len(self._buf) - 8
                if (near_end or error.msg.startswith("Unterminated")) and not self._eof:
                    self._fill()  # the value may go on in the next chunk: decode it again
                    continue
                self._fail(
                    f"invalid JSON: {error.msg}", self._line(error.pos), self._column(error.pos)
                )
            except (ValueError, RecursionError) as error:
                self._fail(f"invalid JSON: {error}")
            if end >= len(self._buf) - 1 and not self._eof:
                self._fill()  # a number or literal may go on in the next chunk
                continue
            self._pos = end
            return value

    def _line(self, pos: int | None = None) -> int:
        pos = self._pos if pos is None else pos
        if pos < self._counted_to:
            return self._lines_before + self._buf.count("\n", 0, pos) + 1
        self._counted += self._buf.count("\n", self._counted_to, pos)
        self._counted_to = pos
        return self._lines_before + self._counted + 1

    def _column(self, pos: int) -> int:
        return pos - self._buf.rfind("\n", 0, pos)

    def _fail(self, message: str, line: int | None = None, column: int | None = None) -> Any:
        line = self._line() if line is None else line
        raise InputFormatError(message, source=self._source, line=line, column=column)
