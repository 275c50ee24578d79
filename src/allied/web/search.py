"""Searching and browsing what the node holds: the latest version of each object, filtered by
type, label, originator, time and free text, newest first, a page at a time.

Free text is a substring of the object's JSON as stored (names, descriptions, patterns,
values, and property names too), read without an index: every object is scanned, which
benchmarks/console.py measures. Case is ignored (for ASCII letters only on SQLite); a quote,
backslash or line break in the text is escaped in the JSON, so text holding one is not
found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

import orjson
from sqlalchemy import select

from allied.errors import ConfigError, NotFound
from allied.stix.banner import Banner, banner
from allied.stix.labels import TLP_LEVELS, resolve_labels
from allied.store import schema
from allied.store.store import Store, is_latest

PAGE_SIZE = 50
_O = schema.objects
_TYPE = re.compile(r"[a-z0-9-]{1,250}")
_TLP_PREFIX = "tlp:"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Filters:
    text: str = ""
    type: str = ""
    #: a classification label's marking-definition id, or ``tlp:LEVEL``
    label: str = ""
    #: an identity id
    originator: str = ""
    #: dates (YYYY-MM-DD) the latest version was modified on or after / on or before
    since: str = ""
    until: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        """From a query string; a value that cannot be a filter is a ConfigError naming it."""
        for key, value in params.items():
            if _CONTROL.search(value):
                raise ConfigError(f"{key}: a control character is no part of a filter")
        text = params.get("q", "").strip()[:200]
        type_ = params.get("type", "").strip()
        if type_ and _TYPE.fullmatch(type_) is None:
            raise ConfigError(f"type {type_[:40]!r}: not a STIX type name")
        dates = {}
        for key in ("since", "until"):
            value = params.get(key, "").strip()
            if value:
                try:  # written out as compared: 20260301 is 2026-03-01
                    value = date.fromisoformat(value).isoformat()
                except ValueError:
                    raise ConfigError(
                        f"{key} {value[:40]!r}: expected a date, YYYY-MM-DD"
                    ) from None
            dates[key] = value
        page = params.get("page", "1")
        if not page.isascii() or not page.isdigit() or not 1 <= int(page) <= 100_000:
            raise ConfigError(f"page {page[:20]!r}: expected a page number")
        return cls(
            text=text,
            type=type_,
            label=params.get("label", "").strip()[:200],
            originator=params.get("originator", "").strip()[:300],
            since=dates["since"],
            until=dates["until"],
            page=int(page),
        )

    def query_string(self, page: int) -> str:
        """These filters on another page (for the pager's links)."""
        values = {
            "q": self.text,
            "type": self.type,
            "label": self.label,
            "originator": self.originator,
            "since": self.since,
            "until": self.until,
        }
        return urlencode({k: v for k, v in values.items() if v} | {"page": page})


@dataclass(frozen=True)
class Hit:
    id: str
    type: str
    name: str | None
    modified: str | None
    date_added: str
    originator: str | None
    banner: Banner


@dataclass(frozen=True)
class Results:
    hits: list[Hit]
    filters: Filters
    more: bool


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(store: Store, filters: Filters) -> Results:
    latest = is_latest()
    query = select(
        _O.c.id, _O.c.type, _O.c.name, _O.c.modified, _O.c.date_added, _O.c.originator,
        _O.c.markings,
    ).where(latest)  # fmt: skip
    if filters.type:
        query = query.where(_O.c.type == filters.type)
    if filters.label:
        if filters.label.lower().startswith(_TLP_PREFIX):
            level = filters.label[len(_TLP_PREFIX) :].lower()
            if level not in TLP_LEVELS:
                raise ConfigError(f"label {filters.label!r}: no such TLP level")
            query = query.where(_O.c.tlp == level)
        else:
            if filters.label not in store.label_markings():
                raise NotFound(f"label {filters.label!r}: no such classification label here")
            query = query.where(_O.c.markings.like(_like(f'"{filters.label}"'), escape="\\"))
    if filters.originator:
        query = query.where(_O.c.originator == filters.originator)
    if filters.since:
        query = query.where(_O.c.version >= filters.since)
    if filters.until:
        query = query.where(_O.c.version < f"{filters.until}T99")
    if filters.text:
        pattern = _like(filters.text)
        # SQLite's LIKE ignores ASCII case already (lower() would cost a copy of each row)
        column = _O.c.json
        if store.engine.dialect.name == "postgresql":
            query = query.where(column.ilike(pattern, escape="\\"))
        else:
            query = query.where(column.like(pattern, escape="\\"))
    # newest first; the primary key breaks ties, so SQLite walks the date_added index
    # backwards (which holds it) and stops after a page instead of sorting every match
    query = query.order_by(_O.c.date_added.desc(), _O.c.pk.desc())
    query = query.offset((filters.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    known = store.label_markings()
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    hits = [
        Hit(
            row.id,
            row.type,
            row.name,
            row.modified,
            row.date_added,
            row.originator,
            banner(resolve_labels(_markings(row.markings), known)),
        )
        for row in rows[:PAGE_SIZE]
    ]
    return Results(hits, filters, more=len(rows) > PAGE_SIZE)


def _markings(text: str) -> list[str]:
    value = orjson.loads(text)
    return [str(item) for item in value] if isinstance(value, list) else []


def tlp_choices() -> list[tuple[str, str]]:
    return [(f"{_TLP_PREFIX}{level}", f"TLP:{level.upper()}") for level in TLP_LEVELS]


def label_choices(store: Store) -> list[tuple[str, str]]:
    """(value, text) for the label filter: TLP levels, then every classification label the
    node holds (its own and its partners'), by name."""
    labels = sorted(
        store.label_markings().values(), key=lambda label: (label.name, label.marking_id)
    )
    return tlp_choices() + [(label.marking_id, label.name) for label in labels]


def own_label_choices(store: Store) -> list[tuple[str, str]]:
    """(value, text) of what the node's analysts may mark objects with: TLP levels and the
    node's own labels (``allied label add``), by name."""
    return tlp_choices() + [(name, name) for name, _marking, _tlp in store.labels()]


def object_types(store: Store) -> list[str]:
    """Every type the node holds (read from the type index, not the objects)."""
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(_O.c.type).distinct()).scalars())
