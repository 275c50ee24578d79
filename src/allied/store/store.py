"""The store: object versions, partners and labels behind SQLAlchemy Core.

SQLite (WAL, synchronous FULL) is the embedded default; any SQLAlchemy URL with an ON
CONFLICT dialect (PostgreSQL) runs the same code. Writes happen only inside
:meth:`Store.write`, one transaction, so an import either lands whole or not at all.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from allied.errors import ConfigError, Conflict, LimitExceeded, NotFound
from allied.integrity.ledger import (
    Appender,
    TreeHead,
    object_leaf,
    sign_head,
    store_head,
    stored_heads,
)
from allied.integrity.signing import Signer, sign_record, signer_of
from allied.stix.labels import LABEL_EXTENSION_ID, Label, read_label, resolve_labels
from allied.stix.model import StixObject
from allied.store import database, migrations, schema
from allied.store.closure import Closure, closures
from allied.store.journal import ReleaseJournal

_log = logging.getLogger(__name__)
_O = schema.objects
_ROW_KEYS = (
    "id", "type", "version", "created", "modified", "date_added", "name", "originator", "tlp",
    "markings", "label_set", "refs", "received_from", "ledger_index", "json", "closure",
)  # fmt: skip
_LEDGER_INDEX = _ROW_KEYS.index("ledger_index")
_R = schema.object_refs
_S = schema.label_sets
_MARKING = "marking-definition"
_RECENT_LIMIT = 200_000
_WRITE_OPTION = "allied_write"
_NO_WAIT_OPTION = "allied_no_wait"  # a write transaction refused at once if another writes
_BUSY_TIMEOUT_MS = 30000  # how long an SQLite writer waits for another one to commit
_WRITER_LOCK = 0x616C6C696564  # "allied": the advisory lock all writers of a store take
_IDS_PER_QUERY = 5000  # well below SQLite's limit of bound parameters per statement
_ANALYSE_AFTER = 500
#: the tables that grow with what a node holds and are filtered by releases and imports
_ANALYSED = ("objects", "collection_objects", "object_refs", "posted_copies", "ledger",
             "ledger_nodes", "label_sets", "label_closures", "release_journal")  # fmt: skip


def _check_encoding(conn: Connection, url: Any) -> None:
    """STIX is UTF-8, and psycopg hands out a SQL_ASCII database's text as bytes."""
    encoding = conn.exec_driver_sql("SHOW server_encoding").scalar()
    if encoding != "UTF8":
        raise ConfigError(
            f"database {database.shown(url)} is encoded {encoding}: Allied needs UTF8 "
            "(createdb -E UTF8, or initdb -E UTF8)",
            key="database",
        )


def check_unused(url: str) -> None:
    """Refuse a database that holds anything but an empty Allied store, before anything is
    created or migrated in it: a node's store goes into a database of its own, and opening
    would otherwise upgrade another node's older store, or add tables beside (or adopt
    same-named ones of) some other application's."""
    parsed = database.parse(url)
    engine = create_engine(parsed)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            if not names:
                return
            ours = {table.name for table in schema.metadata.sorted_tables}
            if "schema_migrations" not in names or names - ours:
                others = ", ".join(sorted(names - ours or names)[:5])
                raise ConfigError(
                    f"database {database.shown(parsed)} holds tables that are not an Allied "
                    f"store ({others}): give the node a database of its own",
                    key="database",
                )
            for table in schema.metadata.sorted_tables:
                if table.name in names and table.name != "schema_migrations":
                    held = conn.execute(select(func.count()).select_from(table)).scalar()
                    if held:
                        raise ConfigError(
                            f"database {database.shown(parsed)} is not empty ({table.name} "
                            f"holds {held} rows): a node's store goes into a database of its own",
                            key="database",
                        )
    except OperationalError as error:
        raise database.unreachable(parsed, error) from None
    finally:
        engine.dispose()


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(moment: datetime) -> str:
    """A UTC moment as the store writes times (they sort as text in time order)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stix_stamp(moment: datetime) -> str:
    """A UTC moment as this node writes STIX timestamps: to the millisecond."""
    return stamp(moment)[:23] + "Z"


def stix_now() -> str:
    return stix_stamp(datetime.now(UTC))


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


#: A label set: (markings JSON, the partner it came from, the identity that signed it).
#: The signer is kept for objects received from a partner only (None for the node's own):
#: TLP:GREEN is decided on the originator's communities, which a relay does not change.
SetKey = tuple[str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class IndexRow:
    id: str
    type: str
    markings: str
    received_from: str | None
    refs: str | None
    signer: str | None = None


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
    #: the node's signature over :meth:`record`: the directory decides who receives what and
    #: whose signatures count, so a row changed behind the node's back must not count
    signature: str | None = None

    def record(self) -> dict[str, Any]:
        """What the node signs of a partner: everything but the signature."""
        return {
            "name": self.name,
            "identity_id": self.identity_id,
            "nation": self.nation,
            "clearances": dict(self.clearances),
            "communities": list(self.communities),
            "categories": list(self.categories),
            "public_key": self.public_key,
            "token_hash": self.token_hash,
            "created": self.created,
            "revoked": self.revoked,
        }


@dataclass(frozen=True)
class AddResult:
    stored: int
    duplicates: int
    #: of the stored versions, how many of each object type (an import's summary)
    types: Counter[str] = field(default_factory=Counter)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver would open transactions itself, only before the first write, so the reads
    # of an import (versions, referrers, closures) would see another process's commits from
    # before the write lock was taken. Transactions are begun explicitly instead (below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    # 32 MiB of page cache (the default is 2 MiB): imports look up every new id and its
    # referrers in the indexes, which then stay in memory for stores of a few million objects
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """A write transaction takes SQLite's write lock at once (BEGIN IMMEDIATE): what it reads
    to compute closures cannot change under it. Readers begin deferred and never block."""
    options = conn.get_execution_options()
    immediate = options.get(_WRITE_OPTION, False)
    if not options.get(_NO_WAIT_OPTION, False):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        return
    conn.exec_driver_sql("PRAGMA busy_timeout=0")  # "database is locked" at once
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def is_latest() -> Any:
    """A condition on ``objects`` rows: no newer version of the same id exists. Answered from
    the (id, version) index, which is much cheaper than joining a GROUP BY of the table."""
    newer = _O.alias("newer")
    return ~exists().where(newer.c.id == _O.c.id, newer.c.version > _O.c.version)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._grown_rows = _Grown()
        self._grown_lock = threading.Lock()
        self._journal: ReleaseJournal | None = None
        self._unanalysed = 0  # ledger entries this process wrote since it last analysed
        dialect = engine.dialect.name
        if dialect == "sqlite":
            insert_into: Any = sqlite.insert
        elif dialect == "postgresql":
            insert_into = postgresql.insert
        else:
            raise ConfigError(
                f"database: the {dialect!r} database is not supported (use PostgreSQL or SQLite)",
                key="database",
            )
        # Compiled once to the driver's own SQL: an import inserts millions of rows and the
        # per-row parameter processing of a Core execute would cost more than SQLite itself.
        compiled = (
            insert_into(_O)
            .on_conflict_do_nothing(index_elements=["id", "version"])
            .compile(dialect=engine.dialect, column_keys=list(_ROW_KEYS))
        )
        self._insert_sql = str(compiled)
        self._insert_positional = bool(compiled.positional)
        order = compiled.positiontup or list(_ROW_KEYS)
        self._insert_order = tuple(_ROW_KEYS.index(key) for key in order)
        refs = insert_into(_R).on_conflict_do_nothing().compile(dialect=engine.dialect)
        refs_order = refs.positiontup or ["target", "source"]
        self._refs_target_first = refs_order[0] == "target"
        self._insert_refs_sql = str(refs)

    def id_values(self, ids: Collection[str]) -> Any:
        """``ids`` as a one-column table (``value``) bound as a single parameter: an import
        looks up thousands of ids per batch, and binding each costs more than its lookup."""
        if self.engine.dialect.name == "sqlite":
            return func.json_each(orjson.dumps(list(ids)).decode()).table_valued("value")
        array = bindparam("ids", list(ids), type_=postgresql.ARRAY(String))
        return func.unnest(array).table_valued("value").render_derived()

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema up to date. ``url`` as operators write it (see
        :mod:`allied.store.database`)."""
        parsed = database.parse(url)
        try:
            engine = create_engine(parsed, **database.engine_options(parsed))
        except (ArgumentError, ModuleNotFoundError) as error:
            raise ConfigError(
                f"database {database.shown(parsed)}: {error}", key="database"
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine)
        try:
            with engine.connect() as conn:  # a deferred read: opening never waits for a writer
                if engine.dialect.name == "postgresql":
                    _check_encoding(conn, parsed)
                current = migrations.current_version(conn)
        except OperationalError as error:
            engine.dispose()
            raise database.unreachable(parsed, error) from None
        except BaseException:
            engine.dispose()
            raise
        if current < migrations.LATEST:
            with store._transaction() as conn:
                migrations.upgrade(conn)  # checks the version again, under the write lock
        return store

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def write(self, signer: Signer | None = None) -> Iterator[Writer]:
        """One transaction: everything written through the writer commits together or not,
        with a tree head over the ledger signed by ``signer`` (the node's key)."""
        with self._transaction() as conn:
            writer = Writer(self, conn, signer)
            yield writer
            writer.finish()
        self._keep_statistics(writer.appended, writer.ledger_size)

    def _keep_statistics(self, appended: int, size: int) -> None:
        """PostgreSQL plans the release filters of a TAXII page from its table statistics.
        Its own analyser runs a minute or more after tables grow, and until then a page of a
        freshly filled collection can take seconds instead of milliseconds: so each process
        analyses the store itself once its writes have grown the ledger by a fifth."""
        if not appended or self.engine.dialect.name != "postgresql":
            return
        with self._grown_lock:
            self._unanalysed += appended
            if self._unanalysed < max(_ANALYSE_AFTER, (size - self._unanalysed) // 5):
                return
            self._unanalysed = 0
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"ANALYZE {', '.join(_ANALYSED)}")
                conn.commit()
        except SQLAlchemyError as error:  # the write is committed: this is only advice
            _log.warning("analysing the store failed: %s", str(error).splitlines()[0])

    @contextmanager
    def _transaction(self, *, wait: bool = True) -> Iterator[Connection]:
        """A write transaction, serialised with every other writer of the store: SQLite
        takes its write lock at BEGIN (see _sqlite_begin), PostgreSQL one advisory lock
        first. What a writer reads (versions, referrers, closures) then includes every
        earlier commit and cannot change before it commits. Without ``wait``, a store
        another writer holds is refused at once (a copy whose target turns out to be its
        source would otherwise wait for itself)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True, _NO_WAIT_OPTION: not wait})
            try:
                transaction = conn.begin()
            except OperationalError as error:  # SQLite's lock, taken at BEGIN, is held
                if wait or "locked" not in str(error.orig):
                    raise
                raise self._busy() from None
            with transaction:
                if conn.dialect.name == "postgresql":
                    if wait:
                        conn.execute(select(func.pg_advisory_xact_lock(_WRITER_LOCK)))
                    elif not conn.execute(
                        select(func.pg_try_advisory_xact_lock(_WRITER_LOCK))
                    ).scalar():
                        raise self._busy()
                yield conn

    def _busy(self) -> ConfigError:
        """What a write without waiting says when another writer holds the store."""
        return ConfigError(
            f"database {database.shown(self.engine.url)} is being written by another process "
            "(or is the store being copied itself)",
            key="database",
        )

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see one moment, for checks that read the store in
        many statements (``verify``). SQLite's deferred transactions already do; at
        PostgreSQL's default (READ COMMITTED) each statement sees its own, and a write
        committing between two of them would look like an inconsistency."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            with conn.begin():
                yield conn

    # -- reading objects ---------------------------------------------------------------------

    @staticmethod
    def _is_latest() -> Any:
        return is_latest()

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
            select(*_index_columns())
            .join(_S, _S.c.id == _O.c.label_set)
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
            query = (
                select(*_index_columns())
                .join(_S, _S.c.id == _O.c.label_set)
                .where(self._is_latest())
            )
            result = conn.execution_options(yield_per=5000).execute(query)
            for row in result:
                yield IndexRow(*row)

    def label_sets(self) -> Mapping[int, SetKey]:
        """Every distinct (markings JSON, received_from, signer) of stored objects, by
        number."""
        return self._grown().sets

    def label_closures(self) -> Mapping[int, Closure]:
        """Every closure stored objects have (see :mod:`allied.store.closure`), by number."""
        return self._grown().closures

    def _grown(self) -> _Grown:
        """The append-only tables every write and release decision consults, as committed
        now: read whole once, then only the rows added since (ids and pks only grow, and
        writers take turns, so a row committed later has a higher one). Read on a
        connection of its own, so a writer's uncommitted rows never get in."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        with self._grown_lock, self.engine.connect() as conn:
            grown = self._grown_rows
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(GROWN_SQL)
                found: Any = cursor.fetchone()
                last_set, last_closure, last_marking = (value or 0 for value in found)
                if (last_set, last_closure, last_marking) == (
                    grown.set,
                    grown.closure,
                    grown.marking,
                ):
                    return grown
                # new mappings, never changed once handed out: readers iterate them freely
                sets, closures = dict(grown.sets), dict(grown.closures)
                labels = dict(grown.labels)
                if last_set > grown.set:
                    cursor.execute(
                        "SELECT id, markings, received_from, signer FROM label_sets "
                        f"WHERE id > {mark}",
                        (grown.set,),
                    )
                    sets.update(
                        (int(n), (marks, source, signer))
                        for n, marks, source, signer in cursor.fetchall()
                    )
                if last_closure > grown.closure:
                    cursor.execute(
                        f"SELECT id, label_sets FROM label_closures WHERE id > {mark}",
                        (grown.closure,),
                    )
                    closures.update(
                        (int(n), frozenset(orjson.loads(text))) for n, text in cursor.fetchall()
                    )
                if last_marking > grown.marking:
                    cursor.execute(
                        "SELECT pk, json FROM objects WHERE type = 'marking-definition' "
                        f"AND pk > {mark} ORDER BY pk",
                        (grown.marking,),
                    )
                    for _pk, text in cursor.fetchall():
                        if LABEL_EXTENSION_ID in text:
                            label = read_label(orjson.loads(text))
                            if label is not None:  # the first stored definition of an id wins
                                labels.setdefault(label.marking_id, label)
            finally:
                cursor.close()
            grown = _Grown(
                sets,
                {key: n for n, key in sets.items()},
                closures,
                {members: n for n, members in closures.items()},
                labels,
                max(sets, default=0),
                max(closures, default=0),
                last_marking,
            )
            self._grown_rows = grown
        return grown

    def release_stream(
        self,
        closures: Collection[int],
        type_: str | None = None,
        *,
        own_sets: Collection[int] = (),
    ) -> Iterator[tuple[int, str]]:
        """(label set, json) of every latest version whose closure is one of ``closures``
        or whose own label set is one of ``own_sets``, marking definitions aside, in import
        order.

        Only :class:`allied.policy.egress.Egress` calls this, with what its release decision
        allows (``own_sets``: what the partner itself sent): rows are filtered by the
        database, so what the store hands out for egress is only ever what a decision
        allowed. A closure created after the caller decided is not in ``closures``, so a
        concurrent import can only withhold more.
        """
        if not closures and not own_sets:
            return

        def numbers(values: Collection[int]) -> list[Any]:
            # written into the SQL: no limit on bound parameters applies
            return [literal_column(str(int(n))) for n in sorted(values)]

        released = []  # (an empty IN list would not compile to plain SQL)
        if closures:
            released.append(_O.c.closure.in_(numbers(closures)))
        if own_sets:
            released.append(_O.c.label_set.in_(numbers(own_sets)))
        query = (
            select(_O.c.label_set, _O.c.json)
            .where(
                or_(*released),
                _O.c.type != _MARKING,
                self._is_latest(),
                ~exists().where(schema.withdrawals.c.object_id == _O.c.id),
            )
            .order_by(_O.c.pk)
        )
        if type_ is not None:
            query = query.where(_O.c.type == type_)
        yield from self.raw_rows(query)

    def latest_json(self, type_: str | None = None) -> Iterator[str]:
        """The JSON of every latest version, in import order: the operator's full export."""
        query = select(_O.c.json).where(self._is_latest()).order_by(_O.c.pk)
        if type_ is not None:
            query = query.where(_O.c.type == type_)
        for (text,) in self.raw_rows(query):
            yield text

    def latest_versions(self, type_: str) -> list[tuple[int, str, str]]:
        """(pk, id, version) of the latest version of every object of one type: what a cache
        of derived data (compiled patterns) is keyed by, since a stored row never changes.
        Withdrawn ones too: :meth:`withdrawn_ids` says which, and changes on its own."""
        query = (
            select(_O.c.pk, _O.c.id, _O.c.version)
            .where(_O.c.type == type_, self._is_latest())
            .order_by(_O.c.pk)
        )
        return [(int(pk), str(id_), str(version)) for pk, id_, version in self.raw_rows(query)]

    def versions_mark(self, type_: str) -> str:
        """A mark that changes whenever :meth:`latest_versions` of ``type_`` may have: object
        rows are only ever added, and a new version has a higher pk. Cheap (an index seek and
        a count), so a cache can tell it is current without reading the versions."""
        query = select(func.max(_O.c.pk), func.count()).where(_O.c.type == type_)
        with self.engine.connect() as conn:
            row = conn.execute(query).one()
        return f"{row[0]}:{row[1]}"

    def withdrawn_ids(self) -> list[str]:
        """The ids of the objects a peer withdrew (and has not served again)."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(schema.withdrawals.c.object_id)).scalars())

    def json_by_pk(self, pks: Sequence[int]) -> Iterator[tuple[int, str]]:
        """(pk, JSON) of these stored rows."""
        for start in range(0, len(pks), 5000):  # bound the number of parameters
            chunk = list(pks[start : start + 5000])
            query = select(_O.c.pk, _O.c.json).where(_O.c.pk.in_(chunk))
            yield from self.raw_rows(query)

    def raw_rows(self, query: Any) -> Iterator[Any]:
        """The rows of ``query`` straight from the driver's cursor: exports read every
        object, and SQLAlchemy's per-row processing would cost a third of the time."""
        compiled = query.compile(
            dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        params: Any = compiled.params
        if compiled.positiontup is not None:
            params = tuple(params[key] for key in compiled.positiontup)
        yield from self.raw_sql_rows(str(compiled), params)

    def raw_sql_rows(self, sql: str, params: Any) -> Iterator[Any]:
        """The rows of ``sql``, already compiled for this store's driver (see raw_rows)."""
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(2000):
                    yield from rows
            finally:
                cursor.close()

    def withdrawn_by(self, object_id: str) -> str | None:
        """The peer that withdrew ``object_id``, if one did."""
        table = schema.withdrawals
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.peer).where(table.c.object_id == object_id)).scalar()

    def journal(self, partner: str, released: Sequence[tuple[str, str]], via: str) -> None:
        """Record that ``partner`` was given these (id, version) now, ``via`` what; committed
        before the caller hands them out, so nothing leaves unrecorded. Outside the writers'
        turn (:mod:`allied.store.journal`): a read never waits for an import."""
        self._release_journal().record(partner, released, via, now())

    def releases(
        self, *, partner: str | None = None, object_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, str]]:
        """The journal, newest first: who received which version of what, when, how."""
        return self._release_journal().entries(partner=partner, object_id=object_id, limit=limit)

    def journal_size(self) -> int:
        return self._release_journal().size()

    def journal_rows(self) -> Iterator[list[dict[str, Any]]]:
        """The whole release journal, oldest first, in batches (see ReleaseJournal.rows)."""
        return self._release_journal().rows()

    def _release_journal(self) -> ReleaseJournal:
        with self._grown_lock:
            if self._journal is None:
                self._journal = ReleaseJournal.beside(self.engine)
            return self._journal

    def latest_received_from(self, ids: Sequence[str], source: str) -> set[str]:
        """Those of ``ids`` whose latest stored version came from partner ``source``."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                query = select(_O.c.id, _O.c.received_from).where(
                    _O.c.id.in_(ids[start : start + _IDS_PER_QUERY]), self._is_latest()
                )
                found.update(i for i, r in conn.execute(query) if r == source)
        return found

    def received_versions(self, ids: Sequence[str], source: str) -> set[tuple[str, str]]:
        """(id, version key) of the versions of ``ids`` received from partner ``source``."""
        values = self.id_values(ids)
        query = select(_O.c.id, _O.c.version).where(
            _O.c.received_from == source, _O.c.id.in_(select(values.c.value))
        )
        with self.engine.connect() as conn:
            return {(object_id, version) for object_id, version in conn.execute(query)}

    def latest_json_of(self, ids: Collection[str]) -> dict[str, str]:
        """id -> JSON of the latest stored version, for those of ``ids`` held here."""
        if not ids:
            return {}
        values = self.id_values(ids)
        query = select(_O.c.id, _O.c.json).where(
            _O.c.id.in_(select(values.c.value)), self._is_latest()
        )
        with self.engine.connect() as conn:
            return {str(object_id): str(text) for object_id, text in conn.execute(query)}

    def open_blind_session(
        self, session: str, partner: str, cap: int, *, most: int, since: str
    ) -> None:
        """Record a new session, or refuse (:class:`LimitExceeded`) a partner that opened
        ``most`` sessions since ``since``: each one costs the owner an evaluation per
        indicator value, so they are counted like evaluations."""
        table = schema.blind_sessions
        with self._transaction() as conn:
            opened = conn.execute(
                select(func.count()).where(table.c.partner == partner, table.c.created >= since)
            ).scalar_one()
            if int(opened) >= most:
                raise LimitExceeded(
                    f"{partner}: {opened} blind-matching sessions opened lately, the most "
                    f"allowed per day"
                )
            conn.execute(
                insert(schema.blind_sessions).values(
                    id=session, partner=partner, created=now(), cap=cap, evaluated=0
                )
            )

    def count_blind_evaluations(
        self,
        session: str,
        partner: str,
        count: int,
        *,
        partner_cap: int,
        since: str,
        opened_after: str,
    ) -> int:
        """Add ``count`` evaluations to a partner's session and log them, or refuse the
        whole batch (:class:`LimitExceeded`) if it would pass the session's cap or the
        partner's ``partner_cap`` over every evaluation logged since ``since``, whatever
        session it was in. A session opened before ``opened_after`` has expired. Under the
        write lock, so serving processes count one tally. The session's new total."""
        table, logged = schema.blind_sessions, schema.blind_log
        with self._transaction() as conn:
            row = conn.execute(
                select(table.c.cap, table.c.evaluated, table.c.created).where(
                    table.c.id == session, table.c.partner == partner
                )
            ).first()
            if row is None:
                raise NotFound(f"no blind-matching session {session} for {partner}")
            if str(row[2]) < opened_after:
                raise NotFound(f"blind-matching session {session} has expired: open a new one")
            cap, evaluated = int(row[0]), int(row[1])
            if evaluated + count > cap:
                raise LimitExceeded(
                    f"session {session}: {evaluated} values evaluated, {count} more would pass "
                    f"the cap of {cap}"
                )
            asked = conn.execute(
                select(func.coalesce(func.sum(logged.c.count), 0)).where(
                    logged.c.partner == partner, logged.c.at >= since
                )
            ).scalar_one()
            if int(asked) + count > partner_cap:
                raise LimitExceeded(
                    f"{partner}: {asked} values evaluated lately, {count} more would pass the "
                    f"cap of {partner_cap} per partner"
                )
            conn.execute(
                update(table).where(table.c.id == session).values(evaluated=evaluated + count)
            )
            conn.execute(
                insert(schema.blind_log).values(
                    session=session, partner=partner, count=count, at=now()
                )
            )
        return evaluated + count

    def counts_by_type(self) -> dict[str, int]:
        query = select(_O.c.type, func.count(func.distinct(_O.c.id))).group_by(_O.c.type)
        with self.engine.connect() as conn:
            return {kind: count for kind, count in conn.execute(query)}

    def version_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_O)).scalar_one())

    def label_markings(self) -> dict[str, Label]:
        """Every Allied classification label the store holds, by marking id."""
        return dict(self._grown().labels)

    def label_set_numbers(self) -> Mapping[SetKey, int]:
        """The numbers of :meth:`label_sets`, by key."""
        return self._grown().set_numbers

    def closure_numbers(self) -> Mapping[Closure, int]:
        """The numbers of :meth:`label_closures`, by closure."""
        return self._grown().closure_numbers

    # -- ledger and keys ---------------------------------------------------------------------

    def tree_heads(self) -> list[TreeHead]:
        """Every signed tree head, oldest first."""
        with self.engine.connect() as conn:
            return stored_heads(conn)

    def node_keys(self) -> list[tuple[str, str, str, str | None]]:
        """(key id, public key PEM, created, retired) of the node's own keys, oldest first."""
        table = schema.node_keys
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    table.c.key_id, table.c.public_key, table.c.created, table.c.retired
                ).order_by(table.c.created)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows]

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


def _one_tick_after(stamp: str) -> str:
    """The time one microsecond after ``stamp`` (as written by :func:`now`)."""
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: How far the append-only tables have grown (see Store._grown).
GROWN_SQL = (
    "SELECT (SELECT max(id) FROM label_sets), (SELECT max(id) FROM label_closures), "
    "(SELECT max(pk) FROM objects WHERE type = 'marking-definition')"
)


@dataclass(frozen=True)
class _Grown:
    """Rows of the store's append-only tables read so far (see :meth:`Store._grown`),
    both ways round, and the last id or pk read of each. Replaced, never changed."""

    sets: dict[int, SetKey] = field(default_factory=dict)
    set_numbers: dict[SetKey, int] = field(default_factory=dict)
    closures: dict[int, Closure] = field(default_factory=dict)
    closure_numbers: dict[Closure, int] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    set: int = 0
    closure: int = 0
    marking: int = 0


def read_label_closures(conn: Connection) -> dict[int, Closure]:
    """Every closure in ``label_closures``, by number."""
    table = schema.label_closures
    rows = conn.execute(select(table.c.id, table.c.label_sets))
    return {int(number): frozenset(orjson.loads(text)) for number, text in rows}


def _index_columns() -> tuple[Any, ...]:
    """The columns of an :class:`IndexRow` (objects joined with their label set)."""
    return (_O.c.id, _O.c.type, _O.c.markings, _O.c.received_from, _O.c.refs, _S.c.signer)


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
        signature=row.signature,
    )


class Writer:
    """Writes within one open transaction of a :class:`Store`."""

    def __init__(self, store: Store, conn: Connection, signer: Signer | None = None) -> None:
        self._store = store
        self.conn = conn
        self._signer = signer
        self._appender: Appender | None = None
        self._labels: dict[str, Label] | None = None
        # label sets and closures as committed when first needed (the store's, shared),
        # and those this transaction adds
        self._set_numbers: Mapping[SetKey, int] | None = None
        self._new_sets: dict[SetKey, int] = {}
        self._markings: dict[str, dict[str, Any]] = {}
        self._closure_by_number: Mapping[int, Closure] | None = None
        self._new_closures: dict[int, Closure] = {}
        # closure numbers of the latest versions this writer wrote or updated: what the
        # next batches of an import mostly refer to, spared a query
        self._recent: dict[str, int] = {}
        self._closure_by_members: Mapping[Closure, int] = {}
        self._new_closure_numbers: dict[Closure, int] = {}
        self._stamp: str | None = None

    def add(
        self,
        batch: Iterable[StixObject],
        *,
        received_from: str | None = None,
        copies: Collection[str] = (),
    ) -> AddResult:
        """Store object versions; one already stored (same id and version) is a duplicate,
        and so is a repeat within the batch (the first counts).

        Objects whose id is in ``copies`` are kept as ``received_from``'s own copies
        (``schema.posted_copies``) instead, and never meet the stored versions of that id
        (see :func:`allied.ingest.envelope.post_objects`). They go through this same pass,
        in the batch's order, so nothing (ledger positions, times, checks, label sets) tells
        one kind from the other."""
        if self._labels is None:
            self._labels = self._store.label_markings()
        labels = self._labels
        added = self.date_added()
        rows: list[list[Any]] = []
        refs: list[tuple[str, ...]] = []
        objects: list[StixObject] = []
        signers: list[str | None] = []  # who signed each object (verified on admission)
        # markings (and signers) repeat a lot
        seen: dict[tuple[tuple[str, ...], str | None], tuple[str | None, str, int]] = {}
        refused: dict[str, str] = {}  # every marking refused, named at once after the pass
        for obj in batch:
            if obj.type == "marking-definition":
                if obj.refs:
                    refused.setdefault(
                        obj.id,
                        f"{obj.id} refers to {obj.refs[0]}: a marking definition travels with "
                        "every object that uses it, so it may refer to nothing but identities "
                        "and marking definitions",
                    )
                    continue
                if obj.id not in copies:
                    try:
                        self._check_marking_unchanged(obj)
                    except Conflict as error:
                        refused.setdefault(obj.id, error.message)
                        continue
                    label = read_label(obj.data)
                    if label is not None:
                        labels[obj.id] = label
                        seen.clear()
            data = obj.data
            markings = obj.marking_refs
            signer = signer_of(data)
            labelled = (markings, signer if received_from is not None else None)
            summary = seen.get(labelled)
            if summary is None:
                tlp = resolve_labels(markings, labels).tlp if markings else None
                text = orjson.dumps(markings).decode()
                number = self._label_set((text, received_from, labelled[1]))
                summary = seen[labelled] = (tlp, text, number)
            refs.append(obj.refs)
            objects.append(obj)
            signers.append(signer)
            rows.append(
                [
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
                    None,  # ledger index, known once duplicates are set aside
                    obj.json,
                ]
            )
        if refused:  # the caller sets them aside and stores the rest in a new transaction
            culprit = next(iter(refused))
            raise Conflict(refused[culprit], object_id=culprit, objects=refused)
        if not rows:
            return AddResult(0, 0)
        stored_versions, referred = self._lookup({row[0] for row in rows if row[0] not in copies})
        held_copies = self._copies_held({row[0] for row in rows if row[0] in copies}, received_from)
        fresh: list[int] = []  # what this batch adds: neither stored nor repeated
        keys: set[tuple[str, str]] = set()
        for n, row in enumerate(rows):
            key = (row[0], row[2])
            if key in keys:
                continue
            keys.add(key)
            if key not in held_copies if row[0] in copies else (
                row[2] not in stored_versions.get(row[0], ())
            ):  # fmt: skip
                fresh.append(n)
        duplicates = len(rows) - len(fresh)
        if not fresh:
            return AddResult(0, duplicates)
        ledger = self._ledger()
        first = ledger.size
        for place, n in enumerate(fresh):  # ledger entries in the batch's order, both kinds
            rows[n][_LEDGER_INDEX] = first + place
        leaves = [object_leaf(objects[n].data) for n in fresh]
        kept = [objects[n] for n in fresh if objects[n].id in copies]
        if kept:
            self._insert_copies(kept, [rows[n] for n in fresh if objects[n].id in copies], added,
                                received_from)  # fmt: skip
        fresh = [n for n in fresh if objects[n].id not in copies]
        if not fresh:
            ledger.append(leaves)
            return AddResult(len(kept), duplicates, Counter(obj.type for obj in kept))
        if len(fresh) < len(rows):
            rows = [rows[n] for n in fresh]
            refs = [refs[n] for n in fresh]
            objects = [objects[n] for n in fresh]
            signers = [signers[n] for n in fresh]
        self._check_one_signer(objects, signers, stored_versions, received_from)
        newest = {object_id: max(versions) for object_id, versions in stored_versions.items()}
        for row, number in zip(rows, self._closures(rows, refs, newest, referred), strict=True):
            row.append(number)
        store = self._store
        order = store._insert_order
        if store._insert_positional:
            params: list[Any] = rows
            if order != tuple(range(len(_ROW_KEYS))):
                params = [[row[i] for i in order] for row in rows]
            # the driver's own cursor takes the rows as they are, sparing a copy of each
            cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(store._insert_sql, params)
                stored = max(cursor.rowcount, 0)
            finally:
                cursor.close()
        else:
            named = [dict(zip(_ROW_KEYS, row, strict=True)) for row in rows]
            stored = max(self.conn.exec_driver_sql(store._insert_sql, named).rowcount, 0)
        if stored != len(rows):  # only another writer could have stored them meanwhile
            raise Conflict(
                f"{len(rows) - stored} object versions were stored by another writer during "
                "this import; run it again"
            )
        ledger.append(leaves)
        edges = [(target, row[0]) for row, out in zip(rows, refs, strict=True) for target in out]
        if edges:
            if not store._insert_positional:
                self.conn.exec_driver_sql(
                    store._insert_refs_sql, [{"target": t, "source": s} for t, s in edges]
                )
            elif store._refs_target_first:
                self.conn.exec_driver_sql(store._insert_refs_sql, edges)
            else:
                self.conn.exec_driver_sql(store._insert_refs_sql, [(s, t) for t, s in edges])
        types = Counter(obj.type for obj in objects) + Counter(obj.type for obj in kept)
        return AddResult(stored + len(kept), duplicates, types)

    def _copies_held(self, ids: Collection[str], partner: str | None) -> set[tuple[str, str]]:
        """(id, version) of the copies ``partner`` already has of ``ids``."""
        copies = schema.posted_copies
        wanted, held = sorted(ids), set[tuple[str, str]]()
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            query = select(copies.c.id, copies.c.version).where(
                copies.c.partner == partner, copies.c.id.in_(wanted[start : start + _IDS_PER_QUERY])
            )
            held.update((i, v) for i, v in self.conn.execute(query))
        return held

    def _insert_copies(
        self, objects: list[StixObject], rows: list[list[Any]], added: str, partner: str | None
    ) -> None:
        if partner is None:
            raise ValueError("copies belong to the partner that posted them")
        self.conn.execute(
            insert(schema.posted_copies),
            [
                {
                    "partner": partner,
                    "id": obj.id,
                    "type": obj.type,
                    "version": obj.version,
                    "created": obj.data.get("created"),
                    "modified": obj.data.get("modified"),
                    "date_added": added,
                    "ledger_index": row[_LEDGER_INDEX],
                    "json": obj.json,
                }
                for obj, row in zip(objects, rows, strict=True)
            ],
        )

    def collection_keys(
        self, objects: Sequence[StixObject], copies: Collection[str], partner: str | None
    ) -> list[int]:
        """The keys :meth:`join_collection` takes for ``objects`` (stored by :meth:`add`),
        in their order, each once: an object version's pk, or minus a copy's seq."""
        wanted = list(dict.fromkeys((obj.id, obj.version) for obj in objects))
        found: dict[tuple[str, str], int] = {}
        tables = ((False, [k for k in wanted if k[0] not in copies]),
                  (True, [k for k in wanted if k[0] in copies]))  # fmt: skip
        for is_copy, keys in tables:
            ids = sorted({object_id for object_id, _ in keys})
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                if is_copy:
                    table = schema.posted_copies
                    query = select(table.c.id, table.c.version, -table.c.seq).where(
                        table.c.partner == partner, table.c.id.in_(chunk)
                    )
                else:
                    query = select(_O.c.id, _O.c.version, _O.c.pk).where(_O.c.id.in_(chunk))
                found.update({(i, v): key for i, v, key in self.conn.execute(query)})
        return [found[key] for key in wanted if key in found]

    def _check_one_signer(
        self,
        objects: list[StixObject],
        signers: list[str | None],
        stored_versions: dict[str, set[str]],
        received_from: str | None,
    ) -> None:
        """Every version of an object carries its originator's signature: a new version
        signed by someone else (a partner relabelling or revoking another's object) is
        refused. Objects this node signed as publisher for a partner that posted them
        unsigned (a standard TAXII client) belong to that partner: only it publishes their
        new versions. Objects are mostly new, so this reads the store only for ids it holds."""
        node = self._signer.identity if self._signer is not None else None

        def owner(signer: str | None, source: str | None) -> str:
            if signer is not None and signer == node and source is not None:
                return f"{signer} (publisher for partner {source})"
            return signer or "nobody"

        owners: dict[str, str] = {}
        repeated = {obj.id for obj in objects if obj.id in stored_versions}
        if repeated:
            query = select(_O.c.id, _O.c.json, _O.c.received_from).where(
                _O.c.id.in_(sorted(repeated))
            )
            for object_id, text, source in self.conn.execute(query):
                owners.setdefault(object_id, owner(signer_of(orjson.loads(text)), source))
        contradicting: dict[str, str] = {}  # all of them at once: one retry, not one each
        for obj, signed_by in zip(objects, signers, strict=True):
            signer = owner(signed_by, received_from)
            known = owners.setdefault(obj.id, signer)
            if known != signer and obj.id not in contradicting:
                # the message names no signer: whoever sent this may not be allowed to know
                # who published the versions this node holds
                contradicting[obj.id] = (
                    f"{obj.id}: version {obj.version or 'only'} is not from the originator of "
                    "the versions this node holds; only the originator publishes new versions"
                )
        if contradicting:
            first = next(iter(contradicting))
            raise Conflict(contradicting[first], object_id=first, objects=contradicting)

    def date_added(self) -> str:
        """The time this transaction adds objects, strictly later than every time given out
        before: TAXII clients page and sync with ``added_after`` (strictly after), so two
        transactions must never share a time, even if the clock steps back. One time for
        the whole transaction: what it adds becomes visible at once, and nothing in it can
        be told apart by its time. Writers take turns, so the last time given out is read
        once per transaction."""
        if self._stamp is not None:
            return self._stamp
        last = max(
            self.conn.execute(select(func.max(table.c.date_added))).scalar() or ""
            for table in (_O, schema.collection_objects, schema.posted_copies)
        )
        stamp = now()
        if stamp <= last:
            stamp = _one_tick_after(last)
        self._stamp = stamp
        return stamp

    def withheld(
        self, ids: Iterable[str], sees: Callable[[str, str, int | None, int], bool]
    ) -> set[str]:
        """The ids among ``ids`` that the store holds and whose latest version ``sees``
        (a partner's :meth:`allied.policy.egress.Visibility.sees`) refuses, or that a peer
        withdrew: objects the partner may not know the node holds. Read in the writer's
        transaction, so a row another writer adds meanwhile is judged too."""
        wanted = sorted(set(ids))
        latest: dict[str, tuple[str, str, int | None, int]] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            query = select(_O.c.id, _O.c.version, _O.c.type, _O.c.closure, _O.c.label_set).where(
                _O.c.id.in_(wanted[start : start + _IDS_PER_QUERY])
            )
            for object_id, version, type_, closure, label_set in self.conn.execute(query):
                best = latest.get(object_id)
                if best is None or version > best[0]:
                    latest[object_id] = (version, type_, closure, label_set)
        gone = schema.withdrawals
        withdrawn = set(
            self.conn.execute(
                select(gone.c.object_id).where(gone.c.object_id.in_(sorted(latest)))
            ).scalars()
        ) if latest else set()  # fmt: skip
        return {
            object_id
            for object_id, (_, type_, closure, label_set) in latest.items()
            if object_id in withdrawn or not sees(type_, object_id, closure, label_set)
        }

    def add_to_collection(
        self, collection: str, keys: Iterable[tuple[str, str]], posted_by: str | None
    ) -> int:
        """Put stored object versions (id, version key) into a community collection; a
        version already in it keeps its place. Returns how many joined."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        pks: list[int] = []
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            by_id: dict[str, set[str]] = {}
            for object_id, version in chunk:
                by_id.setdefault(object_id, set()).add(version)
            rows = self.conn.execute(
                select(_O.c.pk, _O.c.id, _O.c.version).where(_O.c.id.in_(sorted(by_id)))
            )
            pks.extend(pk for pk, object_id, version in rows if version in by_id[object_id])
        return self.join_collection(collection, pks, posted_by)

    def join_collection(self, collection: str, pks: Iterable[int], posted_by: str | None) -> int:
        """Put rows (an object's pk, or a posted copy's key) into a community collection; one
        already in it keeps its place. Returns how many joined."""
        members = schema.collection_objects
        pks = list(pks)
        if not pks:
            return 0
        held = set(
            self.conn.execute(
                select(members.c.pk).where(
                    members.c.collection == collection, members.c.pk.in_(pks)
                )
            ).scalars()
        )
        fresh = [pk for pk in dict.fromkeys(pks) if pk not in held]  # in the order given
        if fresh:
            added = self.date_added()
            self.conn.execute(
                insert(members),
                [
                    {
                        "collection": collection,
                        "pk": pk,
                        "date_added": added,
                        "posted_by": posted_by,
                    }
                    for pk in fresh
                ],
            )
        return len(fresh)

    def remove_from_collection(self, collection: str, pks: Collection[int]) -> int:
        """Take object versions out of a community collection (they stay in the store and
        the ledger)."""
        members = schema.collection_objects
        if not pks:
            return 0
        result = self.conn.execute(
            members.delete().where(members.c.collection == collection, members.c.pk.in_(list(pks)))
        )
        return int(result.rowcount or 0)

    def save_status(self, status_id: str, partner: str, document: str) -> None:
        self.conn.execute(
            insert(schema.taxii_status).values(
                id=status_id, partner=partner, created=now(), json=document
            )
        )

    def _ledger(self) -> Appender:
        if self._appender is None:
            self._appender = Appender(self.conn)
        return self._appender

    @property
    def appended(self) -> int:
        """Ledger entries (object versions and partners' copies) this transaction added."""
        return 0 if self._appender is None else self._appender.appended

    @property
    def ledger_size(self) -> int:
        return 0 if self._appender is None else self._appender.size

    def finish(self) -> None:
        """Sign a tree head over what this transaction appended (with the node's key, when
        the store is written by a node)."""
        if self._appender is None or not self._appender.appended or self._signer is None:
            return
        head = sign_head(self._appender.size, self._appender.root(), now(), self._signer)
        store_head(self.conn, head)

    def _closures(
        self,
        rows: list[list[Any]],
        refs: list[tuple[str, ...]],
        stored_versions: dict[str, str],
        referred: set[str],
    ) -> list[int]:
        """The closure numbers of the batch's rows (see :mod:`allied.store.closure`); the
        closures of stored versions that reach an object this batch changes are updated.

        An id changes when the batch holds a version newer than any stored one (a new object
        is a change too: objects stored earlier may already refer to it). Everything that
        reaches a changed id, found through the reverse reference index, is recomputed with
        the batch; targets outside that set keep the closures stored for them.
        """
        conn = self.conn
        newest: dict[str, int] = {}
        for index, row in enumerate(rows):
            best = newest.get(row[0])
            if best is None or row[2] > rows[best][2]:
                newest[row[0]] = index
        changed = {
            object_id
            for object_id, index in newest.items()
            if object_id not in stored_versions or rows[index][2] > stored_versions[object_id]
        }
        affected: set[str] = set()
        frontier = changed & referred
        while frontier:
            values = self._store.id_values(frontier)
            query = select(_R.c.source).where(_R.c.target.in_(select(values.c.value)))
            sources = set(conn.execute(query).scalars())
            frontier = sources - affected - changed
            affected |= sources
        stored_rows: list[Any] = []
        if affected:
            values = self._store.id_values(affected)
            stored_rows = list(
                conn.execute(
                    select(
                        _O.c.pk, _O.c.id, _O.c.version, _O.c.label_set, _O.c.refs, _O.c.closure
                    ).where(_O.c.id.in_(select(values.c.value)))
                )
            )
        label_sets = [row[10] for row in rows] + [row[3] for row in stored_rows]
        targets = refs + [tuple(orjson.loads(row[4])) if row[4] else () for row in stored_rows]
        latest: dict[str, int] = {}
        for offset, row in enumerate(stored_rows, start=len(rows)):
            best = latest.get(row[1])
            if best is None or row[2] > stored_rows[best - len(rows)][2]:
                latest[row[1]] = offset
        for object_id in changed:
            latest[object_id] = newest[object_id]
        outside: dict[str, Closure] = {}
        wanted = set()
        members = self._closure_members
        for out in targets:
            for target in out:
                if target not in latest and target not in outside:
                    number = self._recent.get(target)
                    if number is None:
                        wanted.add(target)
                    else:
                        outside[target] = members(number)
        if wanted:
            outside.update(self._stored_closures(wanted))
        numbers = [
            self._closure_number(closure)
            for closure in closures(label_sets, targets, latest, outside)
        ]
        updates = [
            {"row": row[0], "number": number}
            for row, number in zip(stored_rows, numbers[len(rows) :], strict=True)
            if row[5] != number
        ]
        if updates:
            conn.execute(
                update(_O).where(_O.c.pk == bindparam("row")).values(closure=bindparam("number")),
                updates,
            )
        if len(self._recent) > _RECENT_LIMIT:
            self._recent.clear()
        for object_id, index in latest.items():
            self._recent[object_id] = numbers[index]
        return numbers[: len(rows)]

    def _lookup(self, ids: Collection[str]) -> tuple[dict[str, set[str]], set[str]]:
        """For the ids of a batch: the versions stored of those held, and which of them
        stored objects refer to. Written for the driver directly: an import asks this of
        every id, and building the statement through SQLAlchemy would cost more than the
        lookups themselves."""
        versions: dict[str, set[str]] = {}
        referenced: set[str] = set()
        listed = list(ids)
        mark = "?" if self.conn.dialect.paramstyle == "qmark" else "%s"
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(listed), _IDS_PER_QUERY):
                chunk = listed[start : start + _IDS_PER_QUERY]
                marks = ",".join([mark] * len(chunk))
                cursor.execute(f"SELECT id, version FROM objects WHERE id IN ({marks})", chunk)
                for object_id, version in cursor.fetchall():
                    versions.setdefault(object_id, set()).add(version)
                cursor.execute(
                    f"SELECT DISTINCT target FROM object_refs WHERE target IN ({marks})", chunk
                )
                referenced.update(target for (target,) in cursor.fetchall())
        finally:
            cursor.close()
        return versions, referenced

    def _stored_closures(self, ids: set[str]) -> dict[str, Closure]:
        """The closure of the latest stored version of each of ``ids`` that is held."""
        found: dict[str, Closure] = {}
        values = self._store.id_values(ids)
        query = select(_O.c.id, _O.c.closure).where(
            _O.c.id.in_(select(values.c.value)), Store._is_latest()
        )
        for object_id, number in self.conn.execute(query):
            found[object_id] = self._closure_members(number)
        return found

    def _closure_members(self, number: int) -> Closure:
        found = self._new_closures.get(number)
        if found is not None:
            return found
        if self._closure_by_number is None:
            self._load_closures()
        assert self._closure_by_number is not None
        return self._closure_by_number[number]

    def _closure_number(self, members: Closure) -> int:
        if self._closure_by_number is None:
            self._load_closures()
        number = self._closure_by_members.get(members) or self._new_closure_numbers.get(members)
        if number is None:
            text = orjson.dumps(sorted(members)).decode()
            inserted = self.conn.execute(insert(schema.label_closures).values(label_sets=text))
            key = inserted.inserted_primary_key
            assert key is not None
            number = int(key[0])
            self._new_closures[number] = members
            self._new_closure_numbers[members] = number
        return number

    def _load_closures(self) -> None:
        """Closures as committed (this writer holds the write lock, so none can be added
        but its own, which it keeps apart)."""
        self._closure_by_number = self._store.label_closures()
        self._closure_by_members = self._store.closure_numbers()

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
                "cannot change (create a new label instead)",
                object_id=obj.id,
            )

    def _label_set(self, key: SetKey) -> int:
        if self._set_numbers is None:
            self._set_numbers = self._store.label_set_numbers()
        number = self._set_numbers.get(key) or self._new_sets.get(key)
        if number is None:
            markings, received_from, signer = key
            inserted = self.conn.execute(
                insert(_S).values(markings=markings, received_from=received_from, signer=signer)
            )
            primary = inserted.inserted_primary_key
            assert primary is not None
            number = int(primary[0])
            self._new_sets[key] = number
        return number

    def add_node_key(self, key_id: str, public_key: str) -> None:
        self.conn.execute(
            insert(schema.node_keys).values(key_id=key_id, public_key=public_key, created=now())
        )

    def retire_node_keys(self, except_key_id: str) -> None:
        table = schema.node_keys
        self.conn.execute(
            update(table)
            .where(table.c.key_id != except_key_id, table.c.retired.is_(None))
            .values(retired=now())
        )

    def add_partner(self, partner: Partner) -> None:
        signature = sign_record(partner.record(), self._signer) if self._signer else None
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
                    signature=signature,
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
        table = schema.partners
        row = self.conn.execute(select(table).where(table.c.name == name)).first()
        if row is None:
            raise NotFound(f"no partner named {name!r}")
        revoked = replace(_partner(row), revoked=True)
        signature = sign_record(revoked.record(), self._signer) if self._signer else None
        self.conn.execute(
            update(table).where(table.c.name == name).values(revoked=True, signature=signature)
        )
