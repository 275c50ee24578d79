"""Pages of what one partner may see, for the TAXII API: the store's second egress path.

Like :meth:`allied.store.store.Store.release_stream`, every query here is filtered by the
database on what a release decision allowed (:class:`allied.policy.egress.Visibility`): a
row leaves the store only if its closure is allowed, so a withheld object is never read
into memory, let alone counted, sorted or paged. The rules that make a withheld object
indistinguishable from one the node does not hold live here:

- every version of an object is withheld when its latest version is (a label tightened by
  a new version withdraws the old ones too);
- ``first`` and ``last`` are the first and last of the versions the partner may see;
- a marking definition is seen only when the partner may receive a label set it is part of.

Rows come in the order they were added (to the node, or to a community collection), and a
page ends where the next begins: the caller turns the date added and position of its last
row into an opaque ``next`` token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    String,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import postgresql

from allied.stix.checks import IDENTIFIER as _IDENTIFIER
from allied.store import schema
from allied.store.store import Store

_O = schema.objects
_M = schema.collection_objects
_MARKING = "marking-definition"
LAST, FIRST, ALL = "last", "first", "all"


@dataclass(frozen=True)
class Selection:
    """A TAXII request's filters, in the store's terms."""

    #: a community collection's id, or None for every object the node holds
    collection: str | None = None
    ids: Sequence[str] | None = None
    types: Sequence[str] | None = None
    #: ``last``, ``first``, ``all`` and version keys (:func:`allied.stix.checks.timestamp_key`)
    versions: Sequence[str] = (LAST,)
    #: rows added strictly after this time (the store's ``date_added`` form)
    added_after: str | None = None
    #: rows after this (date added, position): the previous page's last row
    after: tuple[str, int] | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Entry:
    position: int
    pk: int
    id: str
    type: str
    created: str | None
    modified: str | None
    date_added: str
    posted_by: str | None
    json: str | None


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    more: bool


def page(
    store: Store,
    closures: frozenset[int],
    markings: frozenset[str],
    selection: Selection,
    *,
    with_json: bool = True,
    own_sets: frozenset[int] = frozenset(),
) -> Page:
    """One page of the rows ``selection`` picks among those visible with ``closures``,
    ``markings`` and ``own_sets`` (see :class:`allied.policy.egress.Visibility`)."""
    versions = tuple(sorted(set(selection.versions)))
    named = {LAST, FIRST, ALL}
    keys = [v for v in versions if v not in named]
    shape = (
        store.engine.dialect.name,
        closures,
        markings,
        own_sets,
        selection.collection is not None,
        selection.ids is not None,
        selection.types is not None,
        tuple(v for v in versions if v in named),
        bool(keys),
        selection.added_after is not None,
        selection.after is not None,
        with_json,
    )
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _compile(store, closures, markings, own_sets, selection, versions, with_json)
        with _STATEMENTS_LOCK:  # requests run in several threads
            while len(_STATEMENTS) >= _MAX_STATEMENTS:
                _STATEMENTS.pop(next(iter(_STATEMENTS)), None)
            _STATEMENTS[shape] = statement
    sql, order, constants = statement
    sqlite = store.engine.dialect.name == "sqlite"

    def listed(values: Sequence[str] | None) -> Any:
        if values is None:
            return None
        return orjson.dumps(list(values)).decode() if sqlite else list(values)

    values = {
        **constants,
        "collection": selection.collection,
        "ids": listed(selection.ids),
        "types": listed(selection.types),
        "keys": listed(keys),
        "added_after": selection.added_after,
        "after_added": selection.after[0] if selection.after else None,
        "after": selection.after[1] if selection.after else None,
        "limit": selection.limit + 1,
    }
    params: Any = tuple(values[name] for name in order) if order is not None else values
    rows = [Entry(*row) for row in store.raw_sql_rows(sql, params)]
    more = len(rows) > selection.limit
    return Page(rows[: selection.limit], more)


#: Compiled statements by shape: building and compiling one costs more than running it, and
#: a node answers the same few shapes (per partner's visibility) over and over.
_STATEMENTS: dict[tuple[Any, ...], tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
_VARIABLES = frozenset(
    {"collection", "ids", "types", "keys", "added_after", "after_added", "after", "limit"}
)
_MAX_STATEMENTS = 512
_STATEMENTS_LOCK = threading.Lock()


def _compile(
    store: Store,
    closures: frozenset[int],
    markings: frozenset[str],
    own_sets: frozenset[int],
    selection: Selection,
    versions: Sequence[str],
    with_json: bool,
) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """The SQL of a page of this shape: closures and markings written in (they are the
    shape), everything else bound."""
    dialect = store.engine.dialect

    def values(name: str) -> Any:
        if dialect.name == "sqlite":
            return select(func.json_each(bindparam(name)).table_valued("value").c.value)
        array = bindparam(name, type_=postgresql.ARRAY(String))
        return select(func.unnest(array).table_valued("value").render_derived().c.value)

    posted: Any
    if selection.collection is None:
        position, added, posted = _O.c.pk, _O.c.date_added, literal_column("NULL")
        base: Any = select()
    else:
        position, added, posted = _M.c.seq, _M.c.date_added, _M.c.posted_by
        base = select().select_from(_M.join(_O, _M.c.pk == _O.c.pk))
    columns = [
        position,
        _O.c.pk,
        _O.c.id,
        _O.c.type,
        _O.c.created,
        _O.c.modified,
        added,
        posted,
        _O.c.json if with_json else literal_column("NULL"),
    ]
    keys = values("keys") if any(v not in (LAST, FIRST, ALL) for v in versions) else None
    visible = _visible(
        closures,
        markings,
        own_sets,
        versions,
        keys,
        in_collection=selection.collection is not None,
    )
    query = base.add_columns(*columns).where(visible)
    if selection.collection is not None and selection.ids is not None:
        # a few ids: start from them (the objects' id index) and look up their membership
        # by pk; compared as an expression, the collection column cannot lure the planner
        # into walking the whole collection instead
        query = query.where(_M.c.collection.concat("") == bindparam("collection"))
    elif selection.collection is not None:
        query = query.where(_M.c.collection == bindparam("collection"))
    if selection.ids is not None:
        # rows by primary key, found through the id index: the planner then starts from the
        # few ids asked for, whatever else the query says
        named = _O.alias("named")
        query = query.where(_O.c.pk.in_(select(named.c.pk).where(named.c.id.in_(values("ids")))))
    if selection.types is not None:
        query = query.where(_O.c.type.in_(values("types")))
    if selection.added_after is not None:
        query = query.where(added > bindparam("added_after"))
    if selection.after is not None:
        query = query.where(
            tuple_(added, position) > tuple_(bindparam("after_added"), bindparam("after"))
        )
    # rows are added in time order, so (date added, position) is the order of the index on
    # date_added (position being the row id it ends with): pages and added_after need no sort
    query = query.order_by(added, position).limit(bindparam("limit"))
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    constants = {k: v for k, v in compiled.params.items() if k not in _VARIABLES}
    order = tuple(compiled.positiontup) if compiled.positiontup else None
    return str(compiled), order, constants


def _numbers(values: frozenset[int]) -> list[Any]:
    """Numbers written into the SQL: no limit on bound parameters applies."""
    return [literal_column(str(int(n))) for n in sorted(values)]


def _texts(values: frozenset[str]) -> list[Any]:
    """Marking ids written into the SQL, quoted; they are STIX identifiers (letters,
    digits and dashes), checked again here since they become SQL text."""
    for value in values:
        if _IDENTIFIER.match(value) is None:
            raise ValueError(f"not a STIX identifier: {value!r}")
    return [literal_column(f"'{value}'") for value in sorted(values)]


def _visible(
    closures: frozenset[int],
    markings: frozenset[str],
    own_sets: frozenset[int],
    versions: Sequence[str],
    keys: Any,
    *,
    in_collection: bool,
) -> Any:
    """The rows the partner may see, among the versions asked for: those whose closure is
    allowed, and those the partner itself sent (``own_sets``), whatever they refer to. In a
    community collection, ``first`` and ``last`` are the first and last visible versions in
    it; every version stays withheld when the object's latest version (anywhere) is."""
    wanted = set(versions)
    marking_rows: Any = false()
    if markings and wanted & {LAST, FIRST, ALL}:  # a marking definition has one version
        marking_rows = and_(_O.c.type == _MARKING, _O.c.id.in_(_texts(markings)))
    elif markings and keys is not None:
        marking_rows = and_(
            _O.c.type == _MARKING, _O.c.id.in_(_texts(markings)), _O.c.version.in_(keys)
        )
    if not closures and not own_sets:
        return marking_rows

    def seen(row: Any) -> Any:
        terms = []  # (an empty IN list would not compile to plain SQL)
        if closures:
            terms.append(row.c.closure.in_(_numbers(closures)))
        if own_sets:
            terms.append(row.c.label_set.in_(_numbers(own_sets)))
        return or_(*terms)

    newer = _O.alias("newer")
    is_latest = ~exists().where(newer.c.id == _O.c.id, newer.c.version > _O.c.version)
    own = and_(_O.c.type != _MARKING, seen(_O))
    if wanted == {LAST} and not in_collection:
        return or_(and_(own, is_latest), marking_rows)
    latest, above = _O.alias("latest"), _O.alias("above")
    latest_visible = exists().where(
        latest.c.id == _O.c.id,
        seen(latest),
        ~exists().where(above.c.id == latest.c.id, above.c.version > latest.c.version),
    )

    def no_visible(other: Any, direction: Any) -> Any:
        """No other visible version of the object in ``direction`` (in the collection)."""
        terms = [other.c.id == _O.c.id, direction, seen(other)]
        if in_collection:
            member = _M.alias(f"member_{other.name}")
            terms += [member.c.pk == other.c.pk, member.c.collection == bindparam("collection")]
        return ~exists().where(*terms)

    choices: list[Any] = []
    if ALL in wanted:
        choices.append(true())
    if LAST in wanted:
        later = _O.alias("later")
        choices.append(no_visible(later, later.c.version > _O.c.version))
    if FIRST in wanted:
        older = _O.alias("older")
        choices.append(no_visible(older, older.c.version < _O.c.version))
    if keys is not None:
        choices.append(_O.c.version.in_(keys))
    return or_(and_(own, latest_visible, or_(*choices)), marking_rows)
