"""The release journal: which object versions went to which partner, when and how.

Every TAXII response with content, every ``export --for`` and every push records what it
hands out before it leaves, so the journal is written on every read path. With SQLite it
therefore lives in a database file of its own beside the store (``<store>.releases.db``):
SQLite has one write lock per file, and a journal sharing the store's would make every read
wait for a long import and fail at the busy timeout. PostgreSQL locks rows, not the
database, so there the journal is a table of the store itself (``release_journal``).

The journal is append-only: nothing in Allied updates or deletes its rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.schema import CreateIndex, CreateTable

from allied.store import schema

_J = schema.release_journal
SUFFIX = ".releases.db"


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    # transactions are begun explicitly (below), as the store does: the driver's own would
    # begin deferred and could not be told to take the write lock first
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin(conn: Connection) -> None:
    """Every transaction on the journal file takes its write lock at once: they are short
    appends, and creating the table and carrying old entries over must not run twice."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _create(engine: Engine, store_engine: Engine) -> None:
    """The table, and the entries of the store's own table if this journal has none yet."""
    with engine.begin() as conn:
        conn.execute(CreateTable(_J, if_not_exists=True))
        for index in _J.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))
        if conn.execute(select(func.count()).select_from(_J)).scalar():
            return
        with store_engine.connect() as source:
            rows = source.execute(select(_J).order_by(_J.c.seq)).mappings().all()
        if rows:
            conn.execute(insert(_J), [dict(row) for row in rows])


class ReleaseJournal:
    """Records and answers "who received what, when" on an engine of its own or the
    store's (see the module's docstring)."""

    def __init__(self, engine: Engine, *, owned: bool) -> None:
        self._engine = engine
        self._owned = owned

    @classmethod
    def beside(cls, store_engine: Engine) -> ReleaseJournal:
        """The journal of the store on ``store_engine``. A SQLite store's journal file is
        created on first use; entries an older version of Allied wrote into the store's
        own table are carried over then, in order."""
        database = store_engine.url.database
        if store_engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return cls(store_engine, owned=False)
        path = Path(database)
        engine = create_engine(f"sqlite:///{path.with_name(path.name + SUFFIX)}")
        event.listen(engine, "connect", _pragmas)
        event.listen(engine, "begin", _begin)
        _create(engine, store_engine)
        return cls(engine, owned=True)

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()

    def record(self, partner: str, released: Sequence[tuple[str, str]], via: str, at: str) -> None:
        """Record that ``partner`` was given these (id, version) at ``at``, ``via`` what;
        committed before the caller hands them out, so nothing leaves unrecorded."""
        if not released:
            return
        with self._engine.begin() as conn:
            conn.execute(
                insert(_J),
                [
                    {
                        "partner": partner,
                        "object_id": object_id,
                        "version": version,
                        "released": at,
                        "via": via,
                    }
                    for object_id, version in released
                ],
            )

    def entries(
        self, *, partner: str | None = None, object_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, str]]:
        """The journal, newest first."""
        query = select(_J.c.partner, _J.c.object_id, _J.c.version, _J.c.released, _J.c.via)
        if partner is not None:
            query = query.where(_J.c.partner == partner)
        if object_id is not None:
            query = query.where(_J.c.object_id == object_id)
        query = query.order_by(_J.c.seq.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [
                {"partner": p, "id": i, "version": v, "released": r, "via": w}
                for p, i, v, r, w in conn.execute(query)
            ]

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_J)).scalar_one())

    def rows(self, batch: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Every entry with its number, oldest first, a batch at a time (to copy a store)."""
        with self._engine.connect() as conn:
            query = select(_J).order_by(_J.c.seq)
            result = conn.execute(query, execution_options={"yield_per": batch}).mappings()
            for part in result.partitions(batch):
                yield [dict(row) for row in part]
