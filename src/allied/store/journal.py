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

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from allied.store import schema

_J = schema.release_journal
SUFFIX = ".releases.db"


def _pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _create(engine: Engine, store_engine: Engine) -> None:
    """The table, and the entries of the store's own table if this journal has none yet;
    under the journal file's write lock, so processes opening the node at once neither
    fail nor copy twice."""
    statements: list[ExecutableDDLElement] = [CreateTable(_J, if_not_exists=True)]
    statements += [CreateIndex(index, if_not_exists=True) for index in _J.indexes]
    raw = engine.raw_connection()
    try:
        raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
        cursor = raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                cursor.execute(str(statement.compile(dialect=engine.dialect)))
            cursor.execute("SELECT count(*) FROM release_journal")
            (count,) = cursor.fetchone() or (0,)
            if count == 0:
                with store_engine.connect() as source:
                    rows = source.execute(select(_J).order_by(_J.c.seq)).all()
                cursor.executemany(
                    "INSERT INTO release_journal (seq, partner, object_id, version, released, "
                    "via) VALUES (?, ?, ?, ?, ?, ?)",
                    [tuple(row) for row in rows],
                )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    finally:
        raw.close()


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
