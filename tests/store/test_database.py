"""Where a node keeps its store: the database setting, init --database, ALLIED_DATABASE_URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from allied import config
from allied.cli import main
from allied.errors import ConfigError
from allied.node import Node, init_node
from allied.store import migrations
from allied.store.database import parse, shown
from tests.conftest import NewDatabase, indicator, write_bundle


def _url(new_database: NewDatabase, tmp_path: Path, name: str, *, empty: bool = False) -> str:
    """A store URL of the backend under test that is not the node folder's default (with
    ``empty``, a database without even the store's tables)."""
    return new_database(empty=empty) or f"sqlite:///{tmp_path / f'{name}.db'}"


def test_init_database_puts_the_store_there_and_in_the_configuration(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    url = _url(new_database, tmp_path, "elsewhere")
    result = CliRunner().invoke(
        main,
        ["init", str(tmp_path / "n"), "--name", "N", "--nation", "EST", "--database", url],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"store {shown(url)}" in result.output
    assert config.read_file(tmp_path / "n")["settings"]["database"] == url
    assert not (tmp_path / "n" / "store.db").exists()
    write_bundle(tmp_path / "b.json", [indicator(1)])
    runner = CliRunner()
    imported = runner.invoke(
        main, ["--node", str(tmp_path / "n"), "import", str(tmp_path / "b.json")]
    )
    assert imported.exit_code == 0, imported.output
    with Node.open(tmp_path / "n") as node:
        assert node.store.latest(indicator(1)["id"]) is not None
        assert str(node.store.engine.url.database) in url
    verify = runner.invoke(main, ["--node", str(tmp_path / "n"), "verify", "--json"])
    assert verify.exit_code == 0 and json.loads(verify.output)["ok"]


def test_a_database_holding_another_nodes_store_is_refused_and_nothing_is_left(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    url = _url(new_database, tmp_path, "shared")
    init_node(tmp_path / "first", name="First", nation="EST", database=url)
    with pytest.raises(ConfigError, match=r"is not empty \(\w+ holds \d+ rows\)"):
        init_node(tmp_path / "second", name="Second", nation="LVA", database=url)
    assert not (tmp_path / "second").exists()
    with Node.open(tmp_path / "first") as first:  # and the first node's store is untouched
        assert first.verify().ok
        assert first.identity()["name"] == "First"


def test_the_environment_chooses_the_store_and_stays_out_of_the_file(
    tmp_path: Path, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(new_database, tmp_path, "from-env")
    monkeypatch.setenv(config.DATABASE_ENV, url)
    init_node(tmp_path / "n", name="N", nation="EST")
    assert config.read_file(tmp_path / "n")["settings"]["database"] == ""
    with Node.open(tmp_path / "n") as node:
        assert node.config.database_url == url
        assert node.verify().ok
    monkeypatch.delenv(config.DATABASE_ENV)
    with Node.open(tmp_path / "n") as node:  # without it the node folder's file, never made
        assert node.config.database_url.endswith("/n/store.db")


def test_a_password_never_goes_into_the_configuration_file(tmp_path: Path) -> None:
    url = "postgresql://allied:s3cret@127.0.0.1:5432/allied"
    result = CliRunner().invoke(
        main, ["init", str(tmp_path / "n"), "--name", "N", "--nation", "EST", "--database", url]
    )
    assert result.exit_code == 1
    assert "a password would be written to node.toml" in result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "n").exists()


def test_a_database_of_something_else_is_refused_and_left_as_it_was(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    url = _url(new_database, tmp_path, "other-application", empty=True)
    engine = create_engine(parse(url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE peers (name TEXT PRIMARY KEY, address TEXT)"))
    with pytest.raises(ConfigError, match=r"holds tables that are not an Allied store \(peers\)"):
        init_node(tmp_path / "n", name="N", nation="EST", database=url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == ["peers"]  # nothing added, nothing adopted
    engine.dispose()
    assert not (tmp_path / "n").exists()


def test_an_older_store_of_another_node_is_refused_before_it_is_migrated(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    url = _url(new_database, tmp_path, "older")
    init_node(tmp_path / "first", name="First", nation="EST", database=url)
    engine = create_engine(parse(url))
    with engine.begin() as conn:  # as an older version of Allied left it
        conn.execute(text("DELETE FROM schema_migrations WHERE version > 10"))
    with pytest.raises(ConfigError, match="is not empty"):
        init_node(tmp_path / "second", name="Second", nation="LVA", database=url)
    with engine.connect() as conn:
        assert migrations.current_version(conn) == 10
    engine.dispose()


def test_settings_show_the_database_without_its_password(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.DATABASE_ENV, "postgresql://allied:s3cret@db.example:5432/allied")
    result = CliRunner().invoke(main, ["--node", str(node_dir), "settings"])
    assert result.exit_code == 0, result.output
    assert "database = 'postgresql://allied:***@db.example:5432/allied'" in result.output
    assert "s3cret" not in result.output
    as_json = CliRunner().invoke(main, ["--node", str(node_dir), "settings", "--json"])
    assert json.loads(as_json.output)["database"] == (
        "postgresql://allied:***@db.example:5432/allied"
    )
    assert "s3cret" not in as_json.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://allied@db.example/allied?password=s3cret",
        "postgresql://allied@db.example/allied?sslmode=require&sslpassword=s3cret",
        "postgresql://allied:s3cret@db.example/allied",
    ],
)
def test_a_password_anywhere_in_the_url_is_refused_and_masked(tmp_path: Path, url: str) -> None:
    result = CliRunner().invoke(
        main, ["init", str(tmp_path / "n"), "--name", "N", "--nation", "EST", "--database", url]
    )
    assert result.exit_code == 1
    assert "a password would be written to node.toml" in result.output
    assert "***" in result.output and "s3cret" not in result.output


def test_a_url_that_does_not_parse_is_not_repeated(tmp_path: Path) -> None:
    args = ["--name", "N", "--nation", "EST", "--database", "postgresql//u:s3cret@h/db"]
    result = CliRunner().invoke(main, ["init", str(tmp_path / "n"), *args])
    assert result.exit_code == 1
    assert "not a database URL" in result.output and "s3cret" not in result.output


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_urls_as_operators_write_them_get_the_shipped_driver(url: str, driver: str) -> None:
    assert parse(url).drivername == driver
