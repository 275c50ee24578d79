"""allied migrate-store: an SQLite node moved into another database, verified, nothing lost."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select, text

from allied import config
from allied.cli import main
from allied.errors import ConfigError
from allied.ingest.stix_import import import_file
from allied.node import Node, init_node, migrate_store
from allied.store import schema
from allied.store.database import parse
from allied.store.store import Store
from allied.store.transfer import CopyMismatch
from tests.conftest import (
    TLP_AMBER,
    TLP_RED,
    NewDatabase,
    indicator,
    malware,
    peer_key,
    raw_store,
    write_bundle,
)

Cli = Callable[..., Result]


@pytest.fixture
def sqlite_node(tmp_path: Path) -> Path:
    """An SQLite node with objects under several labels, a partner who received some, a
    classification label and a peer: every kind of row a store holds."""
    directory = tmp_path / "kor"
    init_node(directory, name="KOR", nation="KOR", communities=["kor-usa"], database="")
    with Node.open(directory) as node:
        pem, _key = peer_key(tmp_path, "usa")
        node.add_partner("usa", nation="USA", communities=["kor-usa"], key_file=pem,
                         token_file=tmp_path / "usa.token")  # fmt: skip
        secret = node.add_label("R", tlp="amber", policy="NATO", classification="RESTRICTED",
                                releasable_to=["USA"])  # fmt: skip
    objects = [indicator(n) for n in range(1, 30)]
    objects += [malware(1, object_marking_refs=[TLP_AMBER, secret])]
    run(directory, "import", str(write_bundle(tmp_path / "a.json", objects)))
    run(directory, "export", "--for", "usa", "-o", str(tmp_path / "out.json"))
    run(directory, "peer", "add", "usa", "https://127.0.0.1:9/taxii2/", "--partner", "usa",
        "--token-file", str(tmp_path / "usa.token"))  # fmt: skip
    return directory


def run(directory: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--node", str(directory), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _target(new_database: NewDatabase, tmp_path: Path) -> str:
    return new_database() or f"sqlite:///{tmp_path / 'moved.db'}"


def _contents(directory: Path) -> dict[str, object]:
    with Node.open(directory) as node:
        with node.store.engine.connect() as conn:
            objects = conn.execute(
                select(schema.objects.c.id, schema.objects.c.version, schema.objects.c.json)
                .order_by(schema.objects.c.pk)
            ).all()  # fmt: skip
        return {
            "objects": [tuple(row) for row in objects],
            "journal": node.store.releases(limit=10_000),
            "partners": [p.record() for p in node.partners()],
            "labels": node.store.labels(),
        }


def test_a_node_moves_with_everything_and_goes_on_working(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    before = _contents(sqlite_node)
    verified = json.loads(run(sqlite_node, "verify", "--json").output)
    url = _target(new_database, tmp_path)
    moved = json.loads(run(sqlite_node, "migrate-store", "--to", url, "--json").output)
    assert moved["object_versions"] == len(before["objects"])  # type: ignore[arg-type]
    assert moved["rows"]["release_journal"] == len(before["journal"])  # type: ignore[arg-type]
    assert moved["rows"]["peers"] == 1 and moved["rows"]["partners"] == 1
    assert (moved["ledger_size"], moved["ledger_root"]) == (
        verified["ledger_size"],
        verified["root_hash"],
    )
    assert config.read_file(sqlite_node)["settings"]["database"] == url
    assert _contents(sqlite_node) == before
    after = json.loads(run(sqlite_node, "verify", "--json").output)
    assert after["ok"] and after["root_hash"] == verified["root_hash"]
    # the next rows are numbered after the copied ones (objects, label sets and closures,
    # the journal), and the ledger grows from the same tree
    newer = [indicator(40), malware(41, object_marking_refs=[TLP_AMBER, TLP_RED])]
    run(sqlite_node, "import", str(write_bundle(tmp_path / "b.json", newer)))
    run(sqlite_node, "export", "--for", "usa", "-o", str(tmp_path / "again.json"))
    grown = json.loads(run(sqlite_node, "verify", "--json").output)
    assert grown["ok"] and grown["ledger_size"] == verified["ledger_size"] + 2
    with Node.open(sqlite_node) as node:
        assert len(node.store.releases(limit=10_000)) > len(before["journal"])  # type: ignore[arg-type]
        assert len(node.store.label_sets()) > moved["rows"]["label_sets"]
    with Node.open(sqlite_node) as node:
        assert node.partner("usa").nation == "USA"
    # the old store is kept as it was
    old = create_engine(f"sqlite:///{sqlite_node / 'store.db'}")
    with old.connect() as conn:
        held = conn.execute(select(func.count()).select_from(schema.objects)).scalar()
    old.dispose()
    assert held == len(before["objects"])  # type: ignore[arg-type]


def test_a_database_that_is_not_empty_is_refused_and_nothing_changes(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    url = _target(new_database, tmp_path)
    init_node(tmp_path / "other", name="Other", nation="EST", database=url)
    before = (sqlite_node / config.CONFIG_FILE).read_text()
    with pytest.raises(ConfigError, match=r"is not empty \(\w+ holds \d+ rows\)"):
        migrate_store(sqlite_node, url)
    assert (sqlite_node / config.CONFIG_FILE).read_text() == before
    with Node.open(tmp_path / "other") as other:
        assert other.verify().ok


def test_a_copy_that_differs_is_never_committed(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    """Something between the stores alters a row on its way in (a trigger, here): the
    comparison catches it, and the target is left empty."""
    url = _target(new_database, tmp_path)
    engine = create_engine(parse(url))
    from allied.store.store import Store

    Store.open(url).close()  # the tables, to put the trigger on
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(
                "CREATE TRIGGER alter_row AFTER INSERT ON objects BEGIN "
                "UPDATE objects SET name = 'altered' WHERE pk = NEW.pk; END"
            ))  # fmt: skip
        else:
            conn.execute(text(
                "CREATE FUNCTION alter_row() RETURNS trigger AS $$ BEGIN "
                "NEW.name := 'altered'; RETURN NEW; END $$ LANGUAGE plpgsql"
            ))  # fmt: skip
            conn.execute(text(
                "CREATE TRIGGER alter_row BEFORE INSERT ON objects "
                "FOR EACH ROW EXECUTE FUNCTION alter_row()"
            ))  # fmt: skip
    before = (sqlite_node / config.CONFIG_FILE).read_text()
    with pytest.raises(
        CopyMismatch,
        match=r"objects: the target holds \d+ rows that differ .*nothing was committed",
    ):
        migrate_store(sqlite_node, url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.objects)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(schema.ledger)).scalar() == 0
    engine.dispose()
    assert (sqlite_node / config.CONFIG_FILE).read_text() == before


def test_a_copy_of_a_store_with_problems_does_not_become_the_nodes(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    """A store tampered with before the move copies faithfully, and fails verification on
    the new database as on the old: the node stays where it was."""
    with raw_store(sqlite_node) as conn:
        conn.execute("UPDATE objects SET json = replace(json, 'bad address 3', 'good') "
                     "WHERE id = ?", (indicator(3)["id"],))  # fmt: skip
    before = (sqlite_node / config.CONFIG_FILE).read_text()
    with pytest.raises(ConfigError, match="does not verify, so the node stays on its old store"):
        migrate_store(sqlite_node, _target(new_database, tmp_path))
    assert (sqlite_node / config.CONFIG_FILE).read_text() == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:s3cret@127.0.0.1:1/db", "a password would be written to node.toml"),
        ("mysql://127.0.0.1/db", "the 'mysql' database is not supported"),
        ("postgresql://u@127.0.0.1:1/db", "cannot connect"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(sqlite_node: Path, url: str, message: str) -> None:
    result = CliRunner().invoke(main, ["--node", str(sqlite_node), "migrate-store", "--to", url])
    assert result.exit_code == 1
    assert message in result.output and "s3cret" not in result.output
    assert config.read_file(sqlite_node)["settings"]["database"] == ""


def test_the_nodes_own_store_and_the_environment_are_refused(
    sqlite_node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="that is the node's store already"):
        migrate_store(sqlite_node, f"sqlite:///{sqlite_node / 'store.db'}")
    monkeypatch.setenv(config.DATABASE_ENV, "postgresql://u@127.0.0.1:1/db")
    with pytest.raises(ConfigError, match="ALLIED_DATABASE_URL is set"):
        migrate_store(sqlite_node, "postgresql://u@127.0.0.1:1/other")


def test_a_store_written_to_while_it_was_copied_keeps_the_node(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serve left running writes after the copy: what it wrote is in the old store only,
    so the node must not move."""
    from allied import node as node_module

    copy = node_module.copy_store

    def copy_then_write(source: Store, target: Store, url: str) -> object:
        copied = copy(source, target, url)
        with Node.open(sqlite_node) as running:  # still on the old store
            import_file(running, write_bundle(tmp_path / "late.json", [indicator(77)]))
        return copied

    monkeypatch.setattr(node_module, "copy_store", copy_then_write)
    before = (sqlite_node / config.CONFIG_FILE).read_text()
    with pytest.raises(ConfigError, match="was written to while it was being copied"):
        migrate_store(sqlite_node, _target(new_database, tmp_path))
    assert (sqlite_node / config.CONFIG_FILE).read_text() == before
    with Node.open(sqlite_node) as node:
        assert node.store.latest(indicator(77)["id"]) is not None


def test_a_target_another_process_is_writing_is_refused_at_once(
    sqlite_node: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    """Another writer on the target (or the target being the source under another name) is
    refused without waiting for it, and nothing is copied; once it is done, the move works."""
    url = _target(new_database, tmp_path)
    before = (sqlite_node / config.CONFIG_FILE).read_text()
    with Store.open(url) as target:
        with target._transaction():  # another process writing there, as far as SQL knows
            started = time.monotonic()
            with pytest.raises(ConfigError, match="is being written by another process"):
                migrate_store(sqlite_node, url)
            assert time.monotonic() - started < 10, "it waited for the other writer"
        assert target.version_count() == 0
    assert (sqlite_node / config.CONFIG_FILE).read_text() == before
    copied = migrate_store(sqlite_node, url)
    assert copied.object_versions > 0
    with Node.open(sqlite_node) as node:
        assert node.verify().ok
