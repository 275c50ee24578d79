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
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from allied.errors import Conflict, NotFound
from allied.stix.labels import LABEL_EXTENSION_ID, Label, read_label, tlp_of
from allied.stix.model import StixObject
from allied.store import migrations, schema

_O = schema.objects
_ROW_KEYS = (
    "id", "type", "version", "created", "modified", "date_added", "name", "originator", "tlp",
    "markings", "received_from", "json",
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
            raise NotImplementedError(f"store dialect {dialect!r} is not supported")
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
        engine = create_engine(url)
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

    def _latest_clause(self, conn: Connection) -> Any:
        latest = (
            select(_O.c.id, func.max(_O.c.version).label("version")).group_by(_O.c.id).subquery()
        )
        return latest

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

    def iter_latest(self, type_: str | None = None) -> Iterator[StoredObject]:
        """Stream the latest version of every object, oldest first; flat memory."""
        with self.engine.connect() as conn:
            latest = self._latest_clause(conn)
            query = (
                select(*_stored_columns())
                .join(latest, and_(_O.c.id == latest.c.id, _O.c.version == latest.c.version))
                .order_by(_O.c.pk)
            )
            if type_ is not None:
                query = query.where(_O.c.type == type_)
            result = conn.execution_options(yield_per=2000).execute(query)
            for row in result:
                yield StoredObject(*row)

    def counts_by_type(self) -> dict[str, int]:
        query = select(_O.c.type, func.count(func.distinct(_O.c.id))).group_by(_O.c.type)
        with self.engine.connect() as conn:
            return {kind: count for kind, count in conn.execute(query)}

    def version_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_O)).scalar_one())

    def label_markings(self) -> dict[str, Label]:
        """Every Allied classification label the store holds, by marking id."""
        query = select(_O.c.json).where(
            _O.c.type == "marking-definition", _O.c.json.contains(LABEL_EXTENSION_ID)
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

    def add(self, batch: Iterable[StixObject], *, received_from: str | None = None) -> AddResult:
        """Store object versions; one already stored (same id and version) is a duplicate."""
        if self._labels is None:
            self._labels = self._store.label_markings()
        labels = self._labels
        added = now()
        rows = []
        for obj in batch:
            if obj.type == "marking-definition":
                label = read_label(obj.data)
                if label is not None:
                    labels[obj.id] = label
            data = obj.data
            refs = obj.marking_refs
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
                    tlp_of(refs, labels) if refs else None,
                    orjson.dumps(refs).decode(),
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

    def add_partner(self, partner: Partner) -> None:
        try:
            self.conn.execute(
                insert(schema.partners).values(
                    name=partner.name,
                    identity_id=partner.identity_id,
                    nation=partner.nation,
                    clearances=orjson.dumps(partner.clearances).decode(),
                    communities=orjson.dumps(list(partner.communities)).decode(),
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
