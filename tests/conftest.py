"""Shared fixtures: real nodes in temporary folders, the real command line, valid objects."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from allied.cli import main
from allied.integrity.keys import public_pem
from allied.integrity.signing import SIGNATURE_EXTENSION_ID, Signer, sign
from allied.node import Node, init_node
from allied.store.store import Store

IDENTITY = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"
TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
STAMP = "2026-03-01T10:00:00.000Z"


def indicator(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid indicator; ``n`` makes distinct ids and patterns."""
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{n:08x}-0000-4000-8000-000000000000",
        "created": STAMP,
        "modified": STAMP,
        "created_by_ref": IDENTITY,
        "name": f"bad address {n}",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z",
        "object_marking_refs": [TLP_GREEN],
    }
    obj.update(overrides)
    return obj


def malware(n: int = 1, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{n:08x}-0000-4000-8000-000000000001",
        "created": STAMP,
        "modified": STAMP,
        "name": f"Family {n}",
        "is_family": True,
        "object_marking_refs": [TLP_GREEN],
    }
    obj.update(overrides)
    return obj


def bundle(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": list(objects),
    }


def write_bundle(path: Path, objects: Iterable[dict[str, Any]], *, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(bundle(objects), indent=indent))
    return path


def write_lines(path: Path, objects: Iterable[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


# -- the store's backends ------------------------------------------------------------------

#: a PostgreSQL server's URL (any database on it): the suites below then run on it as well
TEST_DATABASE_ENV = "ALLIED_TEST_DATABASE_URL"
BACKEND_SUITES = frozenset({"store", "integrity", "taxii", "federation", "web", "ingest"})
TESTS = Path(__file__).parent
#: a new database is a copy of this one, already migrated: much quicker than migrating each
_TEMPLATE = f"allied_test_template_{os.getpid()}"

NewDatabase = Callable[..., str]


def pytest_configure(config: pytest.Config) -> None:
    # a developer's own store setting must not decide where the tests' nodes keep theirs
    os.environ.pop("ALLIED_DATABASE_URL", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of the backend suites that make nodes run once per backend when a PostgreSQL
    server is given; everything else, and every run without one, uses SQLite only."""
    if "backend" not in metafunc.fixturenames or not os.environ.get(TEST_DATABASE_ENV):
        return
    suite = metafunc.definition.path.relative_to(TESTS).parts[0]
    if suite in BACKEND_SUITES:
        metafunc.parametrize("backend", ["sqlite", "postgresql"])


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get(TEST_DATABASE_ENV)
    if not url:
        raise RuntimeError(f"a PostgreSQL test needs {TEST_DATABASE_ENV}")
    server = PostgresServer(url)
    try:
        yield server
    finally:
        server.close()


class PostgresServer:
    """Databases made and dropped on the test server, each a fresh copy of a migrated
    template."""

    def __init__(self, url: str) -> None:
        import psycopg
        from sqlalchemy import make_url

        self._base = make_url(url).set(drivername="postgresql")
        self._admin = psycopg.connect(self.url(self._base.database or "postgres"), autocommit=True)
        self._made: list[str] = []
        self._admin.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")
        self._admin.execute(f"CREATE DATABASE {_TEMPLATE}")
        Store.open(self.url(_TEMPLATE)).close()

    def url(self, name: str) -> str:
        return self._base.set(database=name).render_as_string(hide_password=False)

    def create(self, *, empty: bool = False) -> str:
        """A new database: with the store's tables, or ``empty`` (for migration tests)."""
        name = f"allied_test_{uuid.uuid4().hex[:16]}"
        template = "template0" if empty else _TEMPLATE
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        self._made.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.remove(name)

    def close(self) -> None:
        for name in [*self._made, _TEMPLATE]:
            self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._admin.close()


@pytest.fixture
def new_database(backend: str, request: pytest.FixtureRequest) -> Iterator[NewDatabase]:
    """Makes the URL of an empty store for one more node of the test ("" for SQLite: the
    file in the node's folder). PostgreSQL databases are dropped after the test."""
    if backend == "sqlite":
        yield lambda empty=False: ""
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    made: list[str] = []

    def create(empty: bool = False) -> str:
        made.append(server.create(empty=empty))
        return made[-1]

    try:
        yield create
    finally:
        for url in made:
            server.drop(url)


@pytest.fixture
def store_url(tmp_path: Path, new_database: NewDatabase) -> str:
    """The URL of a store of no node, not yet created (SQLite) or empty (PostgreSQL)."""
    return new_database(empty=True) or f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def node_dir(tmp_path: Path, new_database: NewDatabase) -> Path:
    directory = tmp_path / "node"
    init_node(
        directory,
        name="Test CERT",
        nation="EST",
        org="Test organisation",
        communities=["council"],
        database=new_database(),
    )
    return directory


@pytest.fixture
def node(node_dir: Path) -> Iterable[Node]:
    with Node.open(node_dir) as opened:
        yield opened


@pytest.fixture
def cli(node_dir: Path) -> Callable[..., Result]:
    """Run the real command line in-process against the test node."""
    runner = CliRunner()

    def invoke(*args: str, node: bool = True) -> Result:
        full = ["--node", str(node_dir), *args] if node else list(args)
        return runner.invoke(main, full, catch_exceptions=False)

    return invoke


# -- signatures -------------------------------------------------------------------------------


def unsigned(data: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its origin signature: what was imported, before the node signed."""
    plain = dict(data)
    extensions = {
        k: v for k, v in (plain.get("extensions") or {}).items() if k != SIGNATURE_EXTENSION_ID
    }
    if extensions:
        plain["extensions"] = extensions
    else:
        plain.pop("extensions", None)
    return plain


def peer_key(directory: Path, name: str) -> tuple[Path, Ed25519PrivateKey]:
    """A partner's key pair: the public key as a PEM file (to pin with --key), and the key."""
    key = Ed25519PrivateKey.generate()
    path = directory / f"{name}.pub"
    path.write_text(public_pem(key.public_key()))
    return path, key


def signed_as(
    objects: Iterable[dict[str, Any]], key: Ed25519PrivateKey, identity: str
) -> list[dict[str, Any]]:
    """Objects as the partner owning ``identity`` publishes them: signed with its key."""
    signer = Signer.of(key, identity)
    return [sign(obj, signer) for obj in objects]


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``process`` (an ``allied serve``) accepts connections on ``port`` of 127.0.0.1;
    its log in the error if it ends or takes over 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"allied serve did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


# -- reaching behind a node's back ---------------------------------------------------------


class RawStore:
    """A node's database through its driver alone, as an intruder with file or database
    access would change it: SQL with ``?`` placeholders on either backend."""

    def __init__(self, connection: Any, postgres: bool) -> None:
        self.connection = connection
        self._postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.connection.cursor()
        if not self._postgres:
            return cursor.execute(sql, tuple(params))
        if not params:
            return cursor.execute(sql)
        return cursor.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._postgres:
            sql = sql.replace("%", "%%").replace("?", "%s")
        self.connection.cursor().executemany(sql, [tuple(row) for row in rows])


def _driver_url(directory: Path) -> tuple[str, bool]:
    """(libpq URL or SQLite path, whether PostgreSQL) of the node in ``directory``."""
    from sqlalchemy import make_url

    from allied import config

    url = make_url(config.load(directory).database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database), False
    return url.set(drivername="postgresql").render_as_string(hide_password=False), True


@contextmanager
def raw_store(directory: Path) -> Iterator[RawStore]:
    """The store of the node in ``directory``, committed when the block ends without error."""
    target, postgres = _driver_url(directory)
    if postgres:
        import psycopg

        connection: Any = psycopg.connect(target)
    else:
        connection = sqlite3.connect(target)
    try:
        yield RawStore(connection, postgres)
        connection.commit()
    finally:
        connection.close()


def _admin(target: str) -> Any:
    import psycopg

    base, _, _name = target.rpartition("/")
    return psycopg.connect(f"{base}/postgres", autocommit=True)


def snapshot_store(directory: Path, into: Path) -> str:
    """A copy of the node's store as it is now (its SQLite file, or a PostgreSQL database
    made from it), for :func:`restore_store`."""
    target, postgres = _driver_url(directory)
    if not postgres:
        shutil.copy(target, into)
        return str(into)
    name = target.rpartition("/")[2]
    copy = f"{name}_snapshot"
    with _admin(target) as admin:
        admin.execute(f"CREATE DATABASE {copy} TEMPLATE {name}")
    return copy


def restore_store(directory: Path, snapshot: str) -> None:
    """Put the snapshot back in place of the node's store, as a restore from backup would."""
    target, postgres = _driver_url(directory)
    if not postgres:
        shutil.copy(snapshot, target)
        return
    name = target.rpartition("/")[2]
    with _admin(target) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {snapshot}")
        admin.execute(f"DROP DATABASE {snapshot}")
