"""Pages of what one partner may see, for the TAXII API: the store's second egress path.

Like :meth:`allied.store.store.Store.release_stream`, every query here is filtered by the
database on what a release decision allowed (:class:`allied.policy.egress.Visibility`): a
row leaves the store only if its closure is allowed, so a withheld object is never read
into memory, let alone counted, sorted or paged. The rules that make a withheld object
indistinguishable from one the node does not hold live here:

- every version of an object is withheld when its latest version is (a label tightened by
  a new version withdraws the old ones too);
- ``first`` and ``last`` are the first and last of the versions the partner may see;
- a marking definition is seen only when the partner may receive a label set it is part of;
- an object a peer withdrew is seen by nobody;
- what the partner posted of an object it may not see is its own copy
  (``schema.posted_copies``), and it sees that copy for as long as it may see no version
  of the node's.

Rows come in the order they were added (to the node, or to a community collection), and a
page ends where the next begins: the caller turns the date added and position of its last
row into an opaque ``next`` token.
"""

from __future__ import annotations

import heapq
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
_C = schema.posted_copies
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

    @property
    def version(self) -> str:
        """How TAXII names this version: by ``modified``; an object without one by
        ``created``, and a cyber observable (which has neither) by the time it was added."""
        return self.modified or self.created or self.date_added


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
    copies_of: str | None = None,
) -> Page:
    """One page of the rows ``selection`` picks among those visible with ``closures``,
    ``markings`` and ``own_sets`` (see :class:`allied.policy.egress.Visibility`), and among
    the copies partner ``copies_of`` posted: rows of both kinds, in one order."""
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
    statement = _statement(shape, _compile, store, closures, markings, own_sets, selection,
                           versions, with_json)  # fmt: skip
    rows = _run(store, statement, selection, keys, {})
    if copies_of is not None:
        statement = _statement(("copies", *shape), _compile_copies, store, closures, markings,
                               own_sets, selection, versions, with_json)  # fmt: skip
        copies = _run(store, statement, selection, keys, {"partner": copies_of})
        if copies:
            rows = list(heapq.merge(rows, copies, key=lambda e: (e.date_added, e.position)))
    more = len(rows) > selection.limit
    return Page(rows[: selection.limit], more)


def _statement(shape: tuple[Any, ...], compile: Any, *args: Any) -> _Compiled:
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = compile(*args)
        with _STATEMENTS_LOCK:  # requests run in several threads
            while len(_STATEMENTS) >= _MAX_STATEMENTS:
                _STATEMENTS.pop(next(iter(_STATEMENTS)), None)
            _STATEMENTS[shape] = statement
    return statement


def _run(
    store: Store,
    statement: _Compiled,
    selection: Selection,
    keys: Sequence[str],
    more_values: dict[str, Any],
) -> list[Entry]:
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
        **more_values,
    }
    params: Any = tuple(values[name] for name in order) if order is not None else values
    return [Entry(*row) for row in store.raw_sql_rows(sql, params)]


_Compiled = tuple[str, tuple[str, ...] | None, dict[str, Any]]
#: Compiled statements by shape: building and compiling one costs more than running it, and
#: a node answers the same few shapes (per partner's visibility) over and over.
_STATEMENTS: dict[tuple[Any, ...], _Compiled] = {}
_VARIABLES = frozenset(
    {"collection", "ids", "types", "keys", "added_after", "after_added", "after", "limit",
     "partner"}
)  # fmt: skip
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
) -> _Compiled:
    """The SQL of a page of this shape: closures and markings written in (they are the
    shape), everything else bound."""
    dialect = store.engine.dialect
    values = _values(dialect.name)
    posted: Any
    if selection.collection is None:
        # ledger entries number objects and posted copies together, in the order added
        position, added, posted = _O.c.ledger_index, _O.c.date_added, literal_column("NULL")
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
    # rows are added in time order, so (date added, position) is the order of an index
    # (ledger index, or a membership's seq, after the date): pages and added_after need no sort
    return _finish(query, selection, added, position, dialect)


def _compile_copies(
    store: Store,
    closures: frozenset[int],
    markings: frozenset[str],
    own_sets: frozenset[int],
    selection: Selection,
    versions: Sequence[str],
    with_json: bool,
) -> _Compiled:
    """The SQL of a page of a partner's posted copies, in the shape of :func:`_compile`:
    the copies of objects it may see no version of, their versions chosen among its copies
    (in the collection)."""
    dialect = store.engine.dialect
    values = _values(dialect.name)
    in_collection = selection.collection is not None
    position: Any
    pk: Any
    posted: Any
    if in_collection:
        position, pk, added, posted = _M.c.seq, _M.c.pk, _M.c.date_added, _M.c.posted_by
        base: Any = select().select_from(_M.join(_C, _M.c.pk == -_C.c.seq))
    else:
        position, pk = _C.c.ledger_index, -_C.c.seq
        added, posted = _C.c.date_added, literal_column("NULL")
        base = select().select_from(_C)
    columns = [
        position,
        pk,
        _C.c.id,
        _C.c.type,
        _C.c.created,
        _C.c.modified,
        added,
        posted,
        _C.c.json if with_json else literal_column("NULL"),
    ]

    def no_other(direction: Any) -> Any:
        other = _C.alias("other")
        terms = [other.c.partner == _C.c.partner, other.c.id == _C.c.id, direction(other)]
        if in_collection:
            member = _M.alias("member_other")
            terms += [member.c.pk == -other.c.seq, member.c.collection == bindparam("collection")]
        return ~exists().where(*terms)

    wanted = set(versions)
    choices: list[Any] = []
    if ALL in wanted:
        choices.append(true())
    if LAST in wanted:
        choices.append(no_other(lambda other: other.c.version > _C.c.version))
    if FIRST in wanted:
        choices.append(no_other(lambda other: other.c.version < _C.c.version))
    if any(v not in (LAST, FIRST, ALL) for v in versions):
        choices.append(_C.c.version.in_(values("keys")))
    query = base.add_columns(*columns).where(
        _C.c.partner == bindparam("partner"),
        ~_sees_object(_C.c.id, _C.c.type, closures, markings, own_sets),
        or_(*choices),
    )
    if in_collection:
        query = query.where(_M.c.collection == bindparam("collection"))
    if selection.ids is not None:
        query = query.where(_C.c.id.in_(values("ids")))
    if selection.types is not None:
        query = query.where(_C.c.type.in_(values("types")))
    return _finish(query, selection, added, position, dialect)


def _values(dialect: str) -> Any:
    """A bound list of strings, as rows to select from."""

    def values(name: str) -> Any:
        if dialect == "sqlite":
            return select(func.json_each(bindparam(name)).table_valued("value").c.value)
        array = bindparam(name, type_=postgresql.ARRAY(String))
        return select(func.unnest(array).table_valued("value").render_derived().c.value)

    return values


def _finish(query: Any, selection: Selection, added: Any, position: Any, dialect: Any) -> _Compiled:
    """The time filters, the order and the limit; compiled, with constants apart."""
    if selection.added_after is not None:
        query = query.where(added > bindparam("added_after"))
    if selection.after is not None:
        query = query.where(
            tuple_(added, position) > tuple_(bindparam("after_added"), bindparam("after"))
        )
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
    # marking definitions travel with what the partner may receive, and those it sent
    # itself come back to it (a marking definition has one version)
    shown = []
    if markings:
        shown.append(_O.c.id.in_(_texts(markings)))
    if own_sets:
        shown.append(_O.c.label_set.in_(_numbers(own_sets)))
    if shown and wanted & {LAST, FIRST, ALL}:
        marking_rows = and_(_O.c.type == _MARKING, or_(*shown))
    elif shown and keys is not None:
        marking_rows = and_(_O.c.type == _MARKING, or_(*shown), _O.c.version.in_(keys))
    if not closures and not own_sets:
        return marking_rows

    def seen(row: Any) -> Any:
        return _seen(row, closures, own_sets)

    newer = _O.alias("newer")
    is_latest = ~exists().where(newer.c.id == _O.c.id, newer.c.version > _O.c.version)
    own = and_(_O.c.type != _MARKING, seen(_O), not_withdrawn(_O.c.id))
    if wanted == {LAST} and not in_collection:
        return or_(and_(own, is_latest), marking_rows)
    latest_visible = _latest_seen(_O.c.id, closures, own_sets)

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


def _seen(row: Any, closures: frozenset[int], own_sets: frozenset[int]) -> Any:
    """The row's labels let the partner see it (marking definitions aside)."""
    terms = []  # (an empty IN list would not compile to plain SQL)
    if closures:
        terms.append(row.c.closure.in_(_numbers(closures)))
    if own_sets:
        terms.append(row.c.label_set.in_(_numbers(own_sets)))
    return or_(*terms) if terms else false()


def _latest_seen(object_id: Any, closures: frozenset[int], own_sets: frozenset[int]) -> Any:
    """The latest stored version of ``object_id`` is one the partner may see."""
    latest, above = _O.alias("latest"), _O.alias("above")
    return exists().where(
        latest.c.id == object_id,
        _seen(latest, closures, own_sets),
        ~exists().where(above.c.id == latest.c.id, above.c.version > latest.c.version),
    )


def _sees_object(
    object_id: Any,
    object_type: Any,
    closures: frozenset[int],
    markings: frozenset[str],
    own_sets: frozenset[int],
) -> Any:
    """The partner may see some stored version of the object ``object_id`` (of type
    ``object_type``): the SQL twin of :meth:`allied.policy.egress.Visibility.sees` applied
    to its latest version."""
    terms = []
    if closures or own_sets:
        terms.append(and_(object_type != _MARKING, _latest_seen(object_id, closures, own_sets)))
    if markings:
        terms.append(and_(object_type == _MARKING, object_id.in_(_texts(markings))))
    if own_sets:
        sent = _O.alias("sent")
        terms.append(
            and_(
                object_type == _MARKING,
                exists().where(sent.c.id == object_id, sent.c.label_set.in_(_numbers(own_sets))),
            )
        )
    return and_(or_(*terms), not_withdrawn(object_id)) if terms else false()


def not_withdrawn(object_id: Any) -> Any:
    """The object is not one a peer withdrew (``schema.withdrawals``): such an object is
    released to nobody, whatever its labels."""
    withdrawn = schema.withdrawals
    return ~exists().where(withdrawn.c.object_id == object_id)


def withdrawn(
    store: Store,
    closures: frozenset[int],
    own_sets: frozenset[int],
    after: str | None,
) -> list[tuple[str, str]]:
    """(id, when) of the objects the partner may no longer receive, since ``after``: those
    whose latest version, added since, it may not see though it may see an older one (their
    originator revoked or tightened them), and those a peer withdrew from this node since
    that it could see. Oldest first. Ids only of objects the partner was given the right to
    receive: the notice says no more than that they changed out of its sight."""
    if not closures and not own_sets:
        return []
    latest, newer, older = _O.alias("latest"), _O.alias("newer"), _O.alias("older")
    tightened = select(latest.c.id, latest.c.date_added).where(
        latest.c.type != _MARKING,
        ~exists().where(newer.c.id == latest.c.id, newer.c.version > latest.c.version),
        ~_seen(latest, closures, own_sets),
        exists().where(
            older.c.id == latest.c.id,
            older.c.version < latest.c.version,
            _seen(older, closures, own_sets),
        ),
    )
    gone = schema.withdrawals
    held = _O.alias("held")
    relayed = select(gone.c.object_id, gone.c.withdrawn).where(
        _latest_seen(gone.c.object_id, closures, own_sets),
        exists().where(held.c.id == gone.c.object_id, held.c.type != _MARKING),
    )
    if after is not None:
        tightened = tightened.where(latest.c.date_added > after)
        relayed = relayed.where(gone.c.withdrawn > after)
    with store.engine.connect() as conn:
        found = [(i, t) for i, t in conn.execute(tightened)]
        found += [(i, t) for i, t in conn.execute(relayed)]
    return sorted(found, key=lambda entry: (entry[1], entry[0]))
