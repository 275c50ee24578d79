"""The store: migrations from the first version, versions, listings, partners and labels."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from allied.errors import ConfigError, Conflict, NotFound
from allied.stix.model import parse_object
from allied.store import database, migrations
from allied.store.store import AddResult, Partner, Store
from tests.conftest import indicator, malware


@pytest.fixture
def store(store_url: str) -> Store:
    opened = Store.open(store_url)
    yield opened  # type: ignore[misc]
    opened.close()


def test_new_store_is_at_the_latest_migration_in_wal_mode(store: Store) -> None:
    with store.engine.connect() as conn:
        assert migrations.current_version(conn) == migrations.LATEST
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert {"objects", "partners", "labels", "schema_migrations"} <= set(
            inspect(conn).get_table_names()
        )


def test_reopening_applies_nothing_twice(store_url: str) -> None:
    url = store_url
    Store.open(url).close()
    reopened = Store.open(url)
    with reopened.engine.begin() as conn:
        assert migrations.upgrade(conn) == []
        rows = conn.execute(text("SELECT version FROM schema_migrations")).all()
    assert [r[0] for r in rows] == [m[0] for m in migrations.MIGRATIONS]
    reopened.close()


def test_add_counts_duplicates_within_and_across_batches(store: Store) -> None:
    first, second = parse_object(indicator(1)), parse_object(indicator(2))
    with store.write() as writer:
        added = writer.add([first, second, first, parse_object(malware(1))])
        assert added == AddResult(stored=3, duplicates=1, types=Counter(indicator=2, malware=1))
        assert writer.add([second]) == AddResult(stored=0, duplicates=1)
    assert store.version_count() == 3


def test_write_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as writer:
        writer.add([parse_object(indicator(1))])
        raise RuntimeError("crash in the middle")
    assert store.version_count() == 0


def test_summaries_and_counts(store: Store) -> None:
    newer = indicator(1, modified="2026-06-01T00:00:00.000Z", name="v2")
    with store.write() as writer:
        writer.add([parse_object(indicator(1)), parse_object(newer), parse_object(malware(1))])
    rows = {r.id: r for r in store.summaries()}
    assert rows[newer["id"]].versions == 2 and rows[newer["id"]].name == "v2"
    assert [r.type for r in store.summaries("malware")] == ["malware"]
    assert len(store.summaries(limit=1)) == 1
    assert store.counts_by_type() == {"indicator": 1, "malware": 1}
    assert [json.loads(text) for text in store.latest_json()] == [newer, malware(1)]
    assert [json.loads(text) for text in store.latest_json("malware")] == [malware(1)]


def test_partners_and_labels(store: Store) -> None:
    partner = Partner(
        name="kr",
        identity_id="identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
        nation="KOR",
        clearances={"NATO": "SECRET"},
        communities=("c1",),
        categories=("CYBER",),
        public_key=None,
        token_hash="sha256:00",
        created="2026",
        revoked=False,
    )
    with store.write() as writer:
        writer.add_partner(partner)
        writer.add_label("L", "marking-definition--1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a01", "green")
    assert store.partner("kr") == partner
    assert store.label("L") == ("marking-definition--1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a01", "green")
    with pytest.raises(Conflict), store.write() as writer:
        writer.add_partner(partner)
    with store.write() as writer:
        writer.revoke_partner("kr")
    assert store.partner("kr").revoked is True
    with pytest.raises(NotFound):
        store.partner("us")
    with pytest.raises(NotFound):
        store.label("M")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "the 'mysql' database is not supported"),
        ("not a url", "database: not a database URL"),
        ("postgresql://u:hunter2@127.0.0.1:1/", "name the database"),
        # nothing listens on port 1: the server's reason, and never the password
        (
            "postgresql://u:hunter2@127.0.0.1:1/db",
            r"postgresql\+psycopg://u:\*\*\*@.*cannot connect",
        ),
    ],
)
def test_unsupported_or_unreachable_database_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as excinfo:
        Store.open(url)
    assert excinfo.value.key == "database"
    assert "hunter2" not in str(excinfo.value)


def test_a_write_transaction_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    """What an import reads to compute closures cannot be changed by another process before
    it writes: its transaction takes SQLite's write lock when it begins."""
    path = tmp_path / "store.db"
    store = Store.open(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        with store.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once the transaction ends
        other.execute("ROLLBACK")
        with store.engine.connect() as reader, reader.begin():  # readers do not lock
            reader.execute(text("SELECT count(*) FROM objects")).scalar_one()
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        store.close()


def test_opening_a_store_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Export, explain and the server open the node while an import may be running."""
    path = tmp_path / "store.db"
    Store.open(f"sqlite:///{path}").close()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        opened = Store.open(f"sqlite:///{path}")
        assert opened.version_count() == 0
        opened.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_postgresql_connections_do_not_compile_queries(store: Store) -> None:
    """A page's estimated cost set off PostgreSQL's JIT, which cost more than the query."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        else:
            assert "connect_args" not in database.engine_options(store.engine.url)


def test_a_failed_statements_error_leaves_its_parameters_out(store: Store) -> None:
    """Errors reach logs; a parameter may be a session's token hash or an object's text."""
    with pytest.raises(SQLAlchemyError) as failed, store.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table WHERE x = :v"), {"v": "secret-value-17"})
    assert "secret-value-17" not in str(failed.value)


def test_timestamps_with_many_fractional_digits_are_stored_on_every_backend(store: Store) -> None:
    """STIX allows any number of them; PostgreSQL enforced column lengths SQLite ignores."""
    stamp = "2026-03-01T10:00:00." + "1" * 40 + "Z"
    with store.write() as writer:
        result = writer.add([parse_object(indicator(1, created=stamp, modified=stamp))])
    assert result.stored == 1
    stored = store.latest(indicator(1)["id"])
    assert stored is not None and stored.data["modified"] == stamp


def test_a_marking_definition_that_refers_to_an_object_is_refused(store: Store) -> None:
    """A marking definition travels with every object using it: a reference inside it would
    leave with them, whatever the reference rule says of its target."""
    marking = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": "marking-definition--33333333-3333-4333-8333-333333333333",
        "created": "2026-03-01T10:00:00.000Z",
        "extensions": {
            "extension-definition--44444444-4444-4444-8444-444444444444": {
                "extension_type": "property-extension",
                "about_ref": malware(7)["id"],
            }
        },
    }
    with pytest.raises(Conflict, match=f"refers to {malware(7)['id']}"), store.write() as writer:
        writer.add([parse_object(marking)])
    assert store.version_count() == 0
