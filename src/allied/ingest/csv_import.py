"""Indicator lists as spreadsheets and feeds export them: one indicator per CSV row.

Real lists are messy: a byte-order mark from Excel, semicolons instead of commas, quoted
cells with commas inside, comment lines, extra columns nobody asked for, defanged values,
and often no type column at all. The reader takes all of that; what it cannot understand
(a value that is no indicator, a date that is no date) is a problem located by line and
column, refusing the file like any invalid object does (``--skip-invalid`` keeps the rest).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from allied.errors import InputFormatError, Problem
from allied.ingest.observables import kind_of, observe
from allied.ingest.stable import settle, stable_id
from allied.ingest.stix_import import ImportReport, apply_label, label_markings
from allied.node import Node
from allied.stix.reader import Item
from allied.store.store import stix_now

FIELDS = ("type", "value", "first_seen", "last_seen", "confidence", "description")

#: Header names in use for each field, compared without case, spaces, dashes or underscores.
_HEADER_NAMES = {
    "type": ("type", "kind", "ioctype", "indicatortype", "attributetype", "observabletype"),
    "value": ("value", "indicator", "ioc", "observable", "attribute", "iocvalue", "data"),
    "first_seen": ("firstseen", "first", "validfrom", "from", "start", "datefirstseen"),
    "last_seen": ("lastseen", "last", "validuntil", "until", "end", "expires", "datelastseen"),
    "confidence": ("confidence", "score", "certainty"),
    "description": ("description", "comment", "comments", "notes", "note", "context"),
}
_BY_HEADER = {name: field for field, names in _HEADER_NAMES.items() for name in names}
#: STIX 2.1's High/Medium/Low confidence scale (Appendix A), for lists that use words
_CONFIDENCE_WORDS = {"none": 0, "low": 15, "medium": 50, "med": 50, "high": 85}
_CHUNK = 500
_SNIFF_BYTES = 65536
_SNIFF_LINES = 20
_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class _Row:
    line: int
    cells: list[str]


def read_csv(
    node: Node,
    path: Path,
    report: ImportReport,
    columns: Sequence[str] | None = None,
    label: str | None = None,
) -> Iterator[Item]:
    """The indicators of the CSV file ``path`` as STIX items under ``label``; rows that are
    not indicators are refused into ``report``. ``columns`` names the columns in order (an
    empty name skips one) when the file has no header row, or overrides the one it has."""
    markings = label_markings(node, label)
    text = _decode(path, report)
    rows = _rows(text, str(path))
    layout, header = _layout(rows, columns, str(path))
    if header is not None:
        ignored = [name for name, field in zip(header.cells, layout, strict=False) if not field]
        if ignored:
            report.notes.append(f"columns ignored: {', '.join(c for c in ignored if c)}")
    if "value" not in layout:
        raise InputFormatError(
            "no value column: name the columns with --columns (e.g. --columns type,value)",
            source=str(path),
        )
    identity = node.config.identity_id
    pending: list[tuple[_Row, dict[str, Any]]] = []
    index = 0
    for row in rows:
        if header is not None and row is header:
            continue
        cells = {field: cell.strip() for field, cell in zip(layout, row.cells, strict=False)}
        cells.pop("", None)
        built = _indicator(cells, identity, markings, row.line, layout)
        index += 1
        if isinstance(built, list):
            report.read += 1
            report.refuse(built)
            continue
        pending.append((row, apply_label(built, markings)))
        if len(pending) >= _CHUNK:
            yield from _settled(node, pending, index - len(pending))
            pending = []
    yield from _settled(node, pending, index - len(pending))


def _settled(node: Node, pending: list[tuple[_Row, dict[str, Any]]], first: int) -> Iterator[Item]:
    held = settle(node.store, [data for _row, data in pending], defaulted=("valid_from",))
    for offset, (row, data) in enumerate(pending):
        yield Item(first + offset, row.line, data, held=offset in held)


def _decode(path: Path, report: ImportReport) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror}", source=str(path)) from None
    try:
        return raw.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        report.notes.append(
            f"not UTF-8 (first at line {line}): read as Windows-1252, as spreadsheets write it"
        )
        return raw.decode("cp1252", errors="replace")


def _delimiter(text: str) -> str:
    """The delimiter that splits most first lines into the same number (above one) of cells;
    the standard library's sniffer takes seconds on a long first sample and guesses wrong
    on one-column files."""
    lines = [
        line
        for line in text[:_SNIFF_BYTES].splitlines()[:_SNIFF_LINES]
        if line.strip() and not line.lstrip().startswith("#")
    ]
    best, widest = ",", 1
    for delimiter in _DELIMITERS:
        try:
            widths = Counter(len(cells) for cells in csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        if not widths:
            continue
        width, lines_of_width = widths.most_common(1)[0]
        # most lines agree (a few rows with an extra or a missing cell are common)
        if width > widest and lines_of_width >= 0.8 * len(lines):
            best, widest = delimiter, width
    return best


def _rows(text: str, source: str) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
                continue
            rows.append(_Row(line, cells))
    except csv.Error as error:
        raise InputFormatError(f"not CSV: {error}", source=source, line=start) from None
    if rows and reader.line_num > rows[-1].line and not text.rstrip().endswith('"'):
        # the reader ends a quoted cell left open at the end of the file: every line after
        # the quote would be read as part of one cell, never as rows
        raise InputFormatError(
            "a quoted cell opened here is never closed", source=source, line=rows[-1].line
        )
    return rows


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name.lower())


def _layout(
    rows: list[_Row], columns: Sequence[str] | None, source: str
) -> tuple[list[str], _Row | None]:
    """The field of each column, and the header row if the file has one."""
    first = rows[0] if rows else None
    found = [_BY_HEADER.get(_key(cell), "") for cell in first.cells] if first else []
    header = first if any(found) else None
    if columns is not None:
        layout = []
        for name in columns:
            field = _BY_HEADER.get(_key(name), "") if name.strip() not in ("", "-") else ""
            if name.strip() not in ("", "-") and not field:
                raise InputFormatError(
                    f"--columns: unknown column {name!r} (known: {', '.join(FIELDS)}; "
                    "leave a name empty to skip a column)",
                    source=source,
                )
            layout.append(field)
        doubled = sorted({f for f in layout if f and layout.count(f) > 1})
        if doubled:
            raise InputFormatError(f"--columns names {doubled[0]!r} twice", source=source)
        return layout, header
    if header is not None:
        fields = [f for f in found if f]
        doubled = sorted({f for f in fields if fields.count(f) > 1})
        if doubled:
            raise InputFormatError(
                f"header line {header.line}: more than one column means {doubled[0]!r}; "
                "name the columns with --columns",
                source=source,
            )
        return found, header
    if first is not None and len(first.cells) > 1:
        raise InputFormatError(
            f"line {first.line}: no header row naming the columns; name them with --columns "
            "(e.g. --columns type,value,description)",
            source=source,
        )
    return ["value"], None


def _indicator(
    cells: dict[str, str],
    identity: str,
    markings: tuple[str, ...],
    line: int,
    layout: list[str],
) -> dict[str, Any] | list[Problem]:
    problems: list[Problem] = []

    def problem(field: str, reason: str) -> None:
        column = layout.index(field) + 1
        problems.append(Problem(None, None, f"column {column} ({field})", reason, line))

    kind = None
    if cells.get("type"):
        kind = kind_of(cells["type"])
        if kind is None:
            problem("type", f"unknown indicator type {cells['type']!r}")
    found = observe(cells.get("value", ""), kind)
    observable = None if isinstance(found, str) else found
    if isinstance(found, str) and not (cells.get("type") and kind is None):
        problem("value", found)
    stamp = stix_now()
    valid_from = _time(cells.get("first_seen", ""), "first_seen", problem)
    valid_until = _time(cells.get("last_seen", ""), "last_seen", problem)
    if valid_from and valid_until and valid_until <= valid_from:
        problem("last_seen", f"{cells['last_seen']!r} is not after first_seen")
    confidence = _confidence(cells.get("confidence", ""), problem)
    if problems or observable is None:
        return problems
    pattern = observable.pattern
    data: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        # keyed by the label too: lists under different labels never overwrite each other
        "id": stable_id("indicator", identity, pattern, *markings),
        "created": stamp,
        "modified": stamp,
        "created_by_ref": identity,
        "name": observable.name,
        "pattern": pattern,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        # a list without dates: valid from its first import (settle keeps that time)
        "valid_from": valid_from or stamp,
    }
    if valid_until:
        data["valid_until"] = valid_until
    if confidence is not None:
        data["confidence"] = confidence
    if cells.get("description"):
        data["description"] = cells["description"]
    return data


def _time(text: str, field: str, problem: Any) -> str | None:
    if not text:
        return None
    moment: datetime | None = None
    if text.isascii() and text.isdigit() and len(text) in (10, 13):  # Unix s or ms
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        moment = datetime.fromtimestamp(seconds, UTC)
    else:
        candidate = text.replace(" ", "T", 1).replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            for shape in ("%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d"):
                try:
                    moment = datetime.strptime(text, shape)
                    break
                except ValueError:
                    continue
    if moment is not None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            moment = moment.astimezone(UTC)
        except (OverflowError, ValueError):
            moment = None
    if moment is None or not 1900 <= moment.year <= 9999:
        problem(field, f"{text!r} is not a date (ISO 8601, e.g. 2026-03-01 or 2026-03-01T12:00Z)")
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _confidence(text: str, problem: Any) -> int | None:
    if not text:
        return None
    word = _CONFIDENCE_WORDS.get(text.lower())
    if word is not None:
        return word
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1
    if not 0 <= value <= 100 or value != int(value):
        problem("confidence", f"{text!r} is not a confidence from 0 to 100 (or low/medium/high)")
        return None
    return int(value)
