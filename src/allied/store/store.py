"""The store: object versions, partners and labels behind SQLAlchemy Core.

SQLite (WAL, synchronous FULL) is the embedded default; any SQLAlchemy URL with an ON
CONFLICT dialect (PostgreSQL) runs the same code. Writes happen only inside
:meth:`Store.write`, one transaction, so an import either lands whole or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, IntegrityError

from allied.errors import ConfigError, Conflict, NotFound
from allied.stix.labels import LABEL_EXTENSION_ID, Label, read_label, resolve_labels
from allied.stix.model import StixObject
from allied.store import migrations, schema

_O = schema.objects
_ROW_KEYS = (
    "id", "type", "version", "created", "modified", "date_added", "name", "originator", "tlp",
    "markings", "label_set", "refs", "received_from", "json",
)  # fmt: skip


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class StoredObject:
    """One object version as stored, with the facts the node recorded about it."""

    id: str
    type: str
    version: str
    date_added: str
    tlp: str | None
    received_from: str | None
    json: str

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.json)
        return parsed


@dataclass(frozen=True, slots=True)
class IndexRow:
    id: str
    type: str
    markings: str
    received_from: str | None
    refs: str | None


@dataclass(frozen=True)
class Summary:
    id: str
    type: str
    name: str | None
    modified: str | None
    tlp: str | None
    versions: int


@dataclass(frozen=True)
class Partner:
    name: str
    identity_id: str
    nation: str
    clearances: dict[str, str]
    communities: tuple[str, ...]
    categories: tuple[str, ...]
    public_key: str | None
    token_hash: str | None
    created: str
    revoked: bool


@dataclass(frozen=True)
class AddResult:
    stored: int
    duplicates: int


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        if dialect == "sqlite":
            statement: Any = sqlite.insert(_O)
        elif dialect == "postgresql":
            statement = postgresql.insert(_O)
        else:
            raise ConfigError(
                f"store_url: the {dialect!r} database is not supported (use sqlite:///FILE)",
                key="store_url",
            )
        # Compiled once to the driver's own SQL: an import inserts millions of rows and the
        # per-row parameter processing of a Core execute would cost more than SQLite itself.
        compiled = statement.on_conflict_do_nothing(index_elements=["id", "version"]).compile(
            dialect=engine.dialect, column_keys=list(_ROW_KEYS)
        )
        self._insert_sql = str(compiled)
        self._insert_positional = bool(compiled.positional)
        order = compiled.positiontup or list(_ROW_KEYS)
        self._insert_order = tuple(_ROW_KEYS.index(key) for key in order)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema up to date."""
        try:
            engine = create_engine(url)
        except (ArgumentError, ModuleNotFoundError) as error:
            raise ConfigError(f"store_url {url!r}: {error}", key="store_url") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        with engine.begin() as conn:
            migrations.upgrade(conn)
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Writer]:
        """One transaction: everything written through the writer commits together or not."""
        with self.engine.begin() as conn:
            yield Writer(self, conn)

    # -- reading objects ---------------------------------------------------------------------

    @staticmethod
    def _is_latest() -> Any:
        """No newer version of the same id exists: answered from the (id, version) index,
        which is much cheaper than joining a GROUP BY of the whole table."""
        newer = _O.alias("newer")
        return ~exists().where(newer.c.id == _O.c.id, newer.c.version > _O.c.version)

    def latest(self, object_id: str) -> StoredObject | None:
        found = self.versions(object_id)
        return found[-1] if found else None

    def versions(self, object_id: str) -> list[StoredObject]:
        query = select(*_stored_columns()).where(_O.c.id == object_id).order_by(_O.c.version)
        with self.engine.connect() as conn:
            return [StoredObject(*row) for row in conn.execute(query)]

    def summaries(self, type_: str | None = None, limit: int | None = None) -> list[Summary]:
        """The latest version of each object, newest first, for listings."""
        counts = (
            select(
                _O.c.id,
                func.max(_O.c.version).label("version"),
                func.count().label("versions"),
            )
            .group_by(_O.c.id)
            .subquery()
        )
        query = (
            select(_O.c.id, _O.c.type, _O.c.name, _O.c.modified, _O.c.tlp, counts.c.versions)
            .join(counts, and_(_O.c.id == counts.c.id, _O.c.version == counts.c.version))
            .order_by(_O.c.date_added.desc(), _O.c.id)
        )
        if type_ is not None:
            query = query.where(_O.c.type == type_)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Summary(*row) for row in conn.execute(query)]

    def index_row(self, object_id: str) -> IndexRow | None:
        """The release index entry of the latest version of ``object_id``."""
        query = (
            select(_O.c.id, _O.c.type, _O.c.markings, _O.c.received_from, _O.c.refs)
            .where(_O.c.id == object_id)
            .order_by(_O.c.version.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return IndexRow(*row) if row is not None else None

    def release_index(self) -> Iterator[IndexRow]:
        """What the release decision needs of every object's latest version, without its JSON:
        id, type, markings, where it came from, and what it refers to."""
        with self.engine.connect() as conn:
            query = select(_O.c.id, _O.c.type, _O.c.markings, _O.c.received_from, _O.c.refs).where(
                self._is_latest()
            )
            result = conn.execution_options(yield_per=5000).execute(query)
            for row in result:
                yield IndexRow(*row)

    def label_sets(self) -> dict[int, tuple[str, str | None]]:
        """Every distinct (markings JSON, received_from) of stored objects, by number."""
        table = schema.label_sets
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.id, table.c.markings, table.c.received_from))
            return {row[0]: (row[1], row[2]) for row in rows}

    def release_stream(self) -> Iterator[tuple[str, str, int, str | None, str]]:
        """(id, type, label set, refs, json) of every latest version, in import order.

        Only :class:`allied.policy.egress.Egress` may call this: what it yields has not been
        through the release decision. It reads through the driver's own cursor because the
        egress path must cost little more than the unfiltered export.
        """
        query = (
            select(_O.c.id, _O.c.type, _O.c.label_set, _O.c.refs, _O.c.json)
            .where(self._is_latest())
            .order_by(_O.c.pk)
        )
        sql = str(query.compile(dialect=self.engine.dialect))
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(2000):
                    yield from rows
            finally:
                cursor.close()

    def latest_json(self, type_: str | None = None) -> Iterator[str]:
        """The JSON of every latest version, in import order: the operator's full export."""
        with self.engine.connect() as conn:
            query = select(_O.c.json).where(self._is_latest()).order_by(_O.c.pk)
            if type_ is not None:
                query = query.where(_O.c.type == type_)
            for row in conn.execution_options(yield_per=2000).execute(query):
                yield row[0]

    def counts_by_type(self) -> dict[str, int]:
        query = select(_O.c.type, func.count(func.distinct(_O.c.id))).group_by(_O.c.type)
        with self.engine.connect() as conn:
            return {kind: count for kind, count in conn.execute(query)}

    def version_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_O)).scalar_one())

    def label_markings(self) -> dict[str, Label]:
        """Every Allied classification label the store holds, by marking id."""
        query = (
            select(_O.c.json)
            .where(_O.c.type == "marking-definition", _O.c.json.contains(LABEL_EXTENSION_ID))
            .order_by(_O.c.pk.desc())  # the first stored definition of an id wins
        )
        found: dict[str, Label] = {}
        with self.engine.connect() as conn:
            for (text,) in conn.execute(query):
                label = read_label(orjson.loads(text))
                if label is not None:
                    found[label.marking_id] = label
        return found

    # -- partners and labels ---------------------------------------------------------------

    def partner(self, name: str) -> Partner:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.partners).where(schema.partners.c.name == name)
            ).first()
        if row is None:
            raise NotFound(f"no partner named {name!r} (see 'allied partner list')")
        return _partner(row)

    def partners(self) -> list[Partner]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.partners).order_by(schema.partners.c.name))
            return [_partner(row) for row in rows]

    def label(self, name: str) -> tuple[str, str]:
        """(marking id, tlp) of the label called ``name``."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.labels.c.marking_id, schema.labels.c.tlp).where(
                    schema.labels.c.name == name
                )
            ).first()
        if row is None:
            raise NotFound(f"no label named {name!r} (see 'allied label list')")
        return row[0], row[1]

    def labels(self) -> list[tuple[str, str, str]]:
        """(name, marking id, tlp) of every label, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    schema.labels.c.name, schema.labels.c.marking_id, schema.labels.c.tlp
                ).order_by(schema.labels.c.name)
            )
            return [(r[0], r[1], r[2]) for r in rows]


def _stored_columns() -> tuple[Any, ...]:
    return (
        _O.c.id,
        _O.c.type,
        _O.c.version,
        _O.c.date_added,
        _O.c.tlp,
        _O.c.received_from,
        _O.c.json,
    )


def _partner(row: Any) -> Partner:
    return Partner(
        name=row.name,
        identity_id=row.identity_id,
        nation=row.nation,
        clearances=orjson.loads(row.clearances),
        communities=tuple(orjson.loads(row.communities)),
        categories=tuple(orjson.loads(row.categories)),
        public_key=row.public_key,
        token_hash=row.token_hash,
        created=row.created,
        revoked=bool(row.revoked),
    )


class Writer:
    """Writes within one open transaction of a :class:`Store`."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self._store = store
        self.conn = conn
        self._labels: dict[str, Label] | None = None
        self._sets: dict[tuple[str, str | None], int] | None = None
        self._markings: dict[str, dict[str, Any]] = {}

    def add(self, batch: Iterable[StixObject], *, received_from: str | None = None) -> AddResult:
        """Store object versions; one already stored (same id and version) is a duplicate."""
        if self._labels is None:
            self._labels = self._store.label_markings()
        labels = self._labels
        added = now()
        rows = []
        seen: dict[tuple[str, ...], tuple[str | None, str, int]] = {}  # markings repeat a lot
        for obj in batch:
            if obj.type == "marking-definition":
                self._check_marking_unchanged(obj)
                label = read_label(obj.data)
                if label is not None:
                    labels[obj.id] = label
                    seen.clear()
            data = obj.data
            markings = obj.marking_refs
            summary = seen.get(markings)
            if summary is None:
                tlp = resolve_labels(markings, labels).tlp if markings else None
                text = orjson.dumps(markings).decode()
                summary = seen[markings] = (tlp, text, self._label_set(text, received_from))
            rows.append(
                (
                    obj.id,
                    obj.type,
                    obj.version,
                    data.get("created"),
                    data.get("modified"),
                    added,
                    data.get("name") or data.get("value"),
                    obj.created_by_ref,
                    summary[0],
                    summary[1],
                    summary[2],
                    orjson.dumps(obj.refs).decode() if obj.refs else None,
                    received_from,
                    obj.json,
                )
            )
        if not rows:
            return AddResult(0, 0)
        store = self._store
        order = store._insert_order
        if store._insert_positional and order == tuple(range(len(_ROW_KEYS))):
            params: list[Any] = rows
        elif store._insert_positional:
            params = [tuple(row[i] for i in order) for row in rows]
        else:
            params = [dict(zip(_ROW_KEYS, row, strict=True)) for row in rows]
        result = self.conn.exec_driver_sql(store._insert_sql, params)
        stored = max(result.rowcount, 0)
        return AddResult(stored, len(rows) - stored)

    def _check_marking_unchanged(self, obj: StixObject) -> None:
        """A marking definition never changes (STIX 2.1 7.2.1): one that redefines a stored
        id would silently relabel every object that uses it, so it is refused."""
        known = self._markings.get(obj.id)
        if known is None:
            row = self.conn.execute(
                select(_O.c.json).where(_O.c.id == obj.id).order_by(_O.c.pk).limit(1)
            ).first()
            if row is None:
                self._markings[obj.id] = dict(obj.data)
                return
            known = self._markings[obj.id] = orjson.loads(row[0])
        if known != obj.data:
            raise Conflict(
                f"{obj.id} is already defined with other content; a marking definition "
                "cannot change (create a new label instead)"
            )

    def _label_set(self, markings: str, received_from: str | None) -> int:
        if self._sets is None:
            self._sets = {key: number for number, key in self._store.label_sets().items()}
        number = self._sets.get((markings, received_from))
        if number is None:
            table = schema.label_sets
            inserted = self.conn.execute(
                insert(table).values(markings=markings, received_from=received_from)
            )
            key = inserted.inserted_primary_key
            assert key is not None
            number = int(key[0])
            self._sets[(markings, received_from)] = number
        return number

    def add_partner(self, partner: Partner) -> None:
        try:
            self.conn.execute(
                insert(schema.partners).values(
                    name=partner.name,
                    identity_id=partner.identity_id,
                    nation=partner.nation,
                    clearances=orjson.dumps(partner.clearances).decode(),
                    communities=orjson.dumps(list(partner.communities)).decode(),
                    categories=orjson.dumps(list(partner.categories)).decode(),
                    public_key=partner.public_key,
                    token_hash=partner.token_hash,
                    created=partner.created,
                    revoked=partner.revoked,
                )
            )
        except IntegrityError:
            raise Conflict(
                f"a partner named {partner.name!r} or with identity {partner.identity_id} "
                "already exists"
            ) from None

    def add_label(self, name: str, marking_id: str, tlp: str) -> None:
        try:
            self.conn.execute(
                insert(schema.labels).values(
                    name=name, marking_id=marking_id, tlp=tlp, created=now()
                )
            )
        except IntegrityError:
            raise Conflict(f"a label named {name!r} already exists") from None

    def revoke_partner(self, name: str) -> None:
        done = self.conn.execute(
            update(schema.partners).where(schema.partners.c.name == name).values(revoked=True)
        )
        if done.rowcount == 0:
            raise NotFound(f"no partner named {name!r}")
