"""The live indicators' compiled patterns, compiled once per stored version and cached.

Compiling 100,000 patterns takes seconds of Python, longer than DuckDB takes to scan ten
million log rows; yet a stored indicator version never changes. So each one is compiled
once: its atoms are kept in a Parquet file in the node's directory
(``cache/patterns-<compiler version>.parquet``, owner-only: it holds indicator values, as
confidential as the store), keyed by the stored row (pk, id, version). A run reads only the
keys of the latest versions from the store, parses and compiles the rows the cache lacks,
and rewrites the cache when the set changed. What is live (not revoked, within its
validity) is decided on the cached rows at each run, in SQL, as of that moment.

Only two things come back into Python: the lookup keys the engines filter rows with, and
after the scan the patterns of the few indicators a candidate row can satisfy, for the
verdict (:class:`allied.matching.matchset.MatchSet`, the one home of that rule).

The cache is derived data: deleting it costs one slower run; a file that cannot be read is
ignored and written anew.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson

from allied.matching.compile import (
    COMPILER_VERSION,
    FIELDS,
    Atom,
    Compiled,
    network_key,
    try_compile,
)
from allied.matching.matchset import Group, Lookups, MatchSet
from allied.store.store import Store

log = logging.getLogger(__name__)

CACHE_DIR = "cache"

#: one row per atom of a compiled pattern, or one row (conj -1) saying why there are none
_SCHEMA = """
CREATE TEMP TABLE atoms (
    pk BIGINT, id VARCHAR, version VARCHAR, pattern VARCHAR,
    state VARCHAR,         -- 'ok', 'unsupported', 'foreign' (another pattern_type), 'skip'
    reason VARCHAR, valid_from VARCHAR, valid_until VARCHAR,
    conj INTEGER, pos INTEGER, field VARCHAR, value VARCHAR, network BOOLEAN,
    ipv INTEGER, length INTEGER, key VARCHAR
)
"""
_COLUMNS = ("pk", "id", "version", "pattern", "state", "reason", "valid_from", "valid_until",
            "conj", "pos", "field", "value", "network", "ipv", "length", "key")  # fmt: skip
_INTEGERS = {"pk", "conj", "pos", "ipv", "length"}
#: the columns with their types, as rows are inserted
_TYPED = [
    (name, "BIGINT" if name in _INTEGERS else "BOOLEAN" if name == "network" else "VARCHAR")
    for name in _COLUMNS
]


def cache_path(directory: Path) -> Path:
    return directory / CACHE_DIR / f"patterns-{COMPILER_VERSION}.parquet"


def _rows_of(key: tuple[int, str, str], text: str) -> list[tuple[Any, ...]]:
    """The cache rows of one stored indicator version, ``key`` its (pk, id, version)."""
    data = orjson.loads(text)
    pattern = str(data.get("pattern"))
    head = (*key, pattern)
    valid = (str(data.get("valid_from", "")), data.get("valid_until"))
    until = None if valid[1] is None else str(valid[1])
    none: tuple[Any, ...] = (-1, -1, None, None, False, -1, -1, None)
    kind = data.get("pattern_type")
    if data.get("revoked") or kind is None:
        return [(*head, "skip", None, valid[0], until, *none)]
    if kind != "stix":
        return [(*head, "foreign", f"unsupported: pattern_type {kind}", valid[0], until, *none)]
    result = try_compile(pattern)
    if isinstance(result, str):
        return [(*head, "unsupported", result, valid[0], until, *none)]
    if not result.conjunctions:
        return [(*head, "unsupported", "can never match one row", valid[0], until, *none)]
    rows = []
    for number, conjunction in enumerate(result.conjunctions):
        for position, atom in enumerate(conjunction):
            ipv = length = -1
            if atom.network:
                net = ipaddress.ip_network(atom.value)
                ipv, length = net.version, net.prefixlen
            rows.append((*head, "ok", None, valid[0], until, number, position, atom.field,
                         atom.value, atom.network, ipv, length, atom.key()))  # fmt: skip
    return rows


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Append ``rows`` to ``table``, ``columns`` their (name, SQL type): passed as one list
    per column, unnested side by side (no per-row round trips, and no numpy to import on a
    run that only reads the cache)."""
    if not rows:
        return
    values = [list(column) for column in zip(*rows, strict=True)]
    unnested = ", ".join(
        f"unnest(${k}::{kind}[]) AS {name}" for k, (name, kind) in enumerate(columns, start=1)
    )
    names = ", ".join(name for name, _ in columns)
    con.execute(f"INSERT INTO {table} ({names}) SELECT {unnested}", values)


@dataclass
class PatternIndex:
    """The live indicators of one run, in a DuckDB connection of their own."""

    con: duckdb.DuckDBPyConnection
    #: (indicator id, pattern, why it is not matched), in the store's order
    unsupported: list[tuple[str, str, str]]
    #: live indicators with a pattern that can match
    count: int
    lookups: Lookups

    @classmethod
    def load(
        cls, store: Store, directory: Path | None, now: datetime | None = None
    ) -> PatternIndex:
        """The index as of ``now``; ``directory`` holds the cache (None: no cache)."""
        con = duckdb.connect()
        con.execute(_SCHEMA)
        path = cache_path(directory) if directory is not None else None
        # read before the versions: an import in between leaves an older mark, never a newer
        mark = store.versions_mark("indicator")
        if path is None or not _read_current_cache(con, path, mark):
            current = store.latest_versions("indicator")
            _current_table(con, current)
            if path is not None:
                _read_cache(con, path)
            missing = {
                int(pk): (int(pk), str(id_), str(version))
                for pk, id_, version in con.execute(
                    "SELECT c.* FROM current c ANTI JOIN atoms a ON a.pk = c.pk"
                ).fetchall()
            }
            if missing:
                rows: list[tuple[Any, ...]] = []
                for pk, text in store.json_by_pk(sorted(missing)):
                    rows += _rows_of(missing[int(pk)], text)
                _insert(con, "atoms", _TYPED, rows)
            if path is not None:  # written for this mark: the next run reads it whole
                _write_cache(con, path, mark)
        moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        con.execute("CREATE TEMP TABLE withdrawn (id VARCHAR)")
        withdrawn = store.withdrawn_ids()  # asked at each run: they come and go
        _insert(con, "withdrawn", [("id", "VARCHAR")], [(i,) for i in withdrawn])
        con.execute(
            "CREATE TEMP TABLE live AS SELECT * FROM atoms WHERE state IN ('ok', 'unsupported') "
            "AND coalesce(valid_from, '') <= $now AND (valid_until IS NULL OR valid_until > $now) "
            "AND id NOT IN (SELECT id FROM withdrawn)",
            {"now": moment},
        )
        unsupported = [
            (str(i), str(p), str(r))
            for _, i, p, r in con.execute(
                "SELECT pk, id, pattern, reason FROM atoms WHERE state = 'foreign' "
                "AND id NOT IN (SELECT id FROM withdrawn) UNION ALL "
                "SELECT pk, id, pattern, reason FROM live WHERE state = 'unsupported' "
                "ORDER BY pk"
            ).fetchall()
        ]
        count_row = con.execute("SELECT count(DISTINCT pk) FROM live WHERE state = 'ok'").fetchone()
        return cls(con, unsupported, int(count_row[0]) if count_row else 0, _lookups(con))

    def close(self) -> None:
        self.con.close()

    def matchset(self, groups: Iterable[Group]) -> MatchSet:
        """The verdict over the indicators one of these groups may satisfy: every
        conjunction a row satisfies has an atom its values name, so these are all."""
        values: set[tuple[str, str]] = set()
        for group in groups:
            for name, value in group.values.items():
                if value:
                    values.add((name, value))
        keys: set[tuple[str, str]] = set()
        for name, version, length in self.lookups.networks:
            for field, value in values:
                if field != name:
                    continue
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    continue
                if address.version == version:
                    keys.add((name, network_key(address, length)))
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE wanted (field VARCHAR, value VARCHAR, network BOOLEAN)"
        )
        pairs = [(f, v, False) for f, v in values] + [(f, k, True) for f, k in keys]
        _insert(con, "wanted", [("field", "VARCHAR"), ("value", "VARCHAR"),
                                ("network", "BOOLEAN")], pairs)  # fmt: skip
        rows = con.execute(
            "SELECT id, conj, field, value, network FROM live WHERE state = 'ok' AND pk IN ("
            "SELECT l.pk FROM live l JOIN wanted w ON l.state = 'ok' AND l.field = w.field "
            "AND l.network = w.network AND (CASE WHEN l.network THEN l.key ELSE l.value END) "
            "= w.value) ORDER BY pk, conj, pos"
        ).fetchall()
        compiled: dict[str, list[list[Atom]]] = {}
        for indicator, number, field, value, network in rows:
            conjunctions = compiled.setdefault(str(indicator), [])
            if number >= len(conjunctions):
                conjunctions.append([])
            conjunctions[number].append(Atom(str(field), str(value), bool(network)))
        return MatchSet({i: Compiled(tuple(tuple(c) for c in cs)) for i, cs in compiled.items()})


def _lookups(con: duckdb.DuckDBPyConnection) -> Lookups:
    values = {
        str(field): frozenset(found)
        for field, found in con.execute(
            "SELECT field, list(DISTINCT value) FROM live WHERE state = 'ok' AND NOT network "
            "GROUP BY field"
        ).fetchall()
    }
    networks = {
        (str(field), int(ipv), int(length)): frozenset(found)
        for field, ipv, length, found in con.execute(
            "SELECT field, ipv, length, list(DISTINCT key) FROM live WHERE state = 'ok' "
            "AND network GROUP BY ALL"
        ).fetchall()
    }
    assert set(values) <= set(FIELDS)
    return Lookups(values, networks)


def _current_table(con: duckdb.DuckDBPyConnection, current: Sequence[tuple[int, str, str]]) -> None:
    con.execute("CREATE TEMP TABLE current (pk BIGINT, id VARCHAR, version VARCHAR)")
    _insert(con, "current", [("pk", "BIGINT"), ("id", "VARCHAR"), ("version", "VARCHAR")],
            current)  # fmt: skip


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _read_current_cache(con: duckdb.DuckDBPyConnection, path: Path, mark: str) -> bool:
    """Load the whole file if it was written for this very set of versions (its mark)."""
    if not path.is_file():
        return False
    try:
        found = con.execute(
            f"SELECT value FROM parquet_kv_metadata({_sql_path(path)}) WHERE key = 'mark'"
        ).fetchone()
        if found is None or bytes(found[0]).decode() != mark:
            return False
        con.execute(
            f"INSERT INTO atoms SELECT {', '.join(_COLUMNS)} FROM read_parquet({_sql_path(path)})"
        )
    except duckdb.Error:  # _read_cache says so, and starts again
        con.execute("DELETE FROM atoms")
        return False
    return True


def _read_cache(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Load the cached rows of the current versions (those in table ``current``)."""
    if not path.is_file():
        return
    try:
        con.execute(
            f"INSERT INTO atoms SELECT {', '.join(_COLUMNS)} "
            f"FROM read_parquet({_sql_path(path)}) a "
            "SEMI JOIN current c ON a.pk = c.pk AND a.id = c.id AND a.version = c.version"
        )
    except duckdb.Error as error:  # unreadable: compile everything again
        log.warning("ignoring the pattern cache %s: %s", path, str(error).splitlines()[0])
        con.execute("DELETE FROM atoms")


def _write_cache(con: duckdb.DuckDBPyConnection, path: Path, mark: str) -> None:
    """The current versions' rows, written whole to a new file that then replaces the old
    one (so a reader never sees half a file), readable by the owner only. A node whose
    directory cannot be written still matches, just without the cache."""
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".patterns-", suffix=".parquet")
        os.close(fd)  # created 0600; DuckDB writes into it
        try:
            con.execute(
                f"COPY (SELECT * FROM atoms ORDER BY pk, conj, pos) TO {_sql_path(Path(name))} "
                "(FORMAT parquet, KV_METADATA {mark: $mark})",
                {"mark": mark},
            )
            os.chmod(name, 0o600)
            os.replace(name, path)
        finally:
            if os.path.exists(name):
                os.unlink(name)
    except (OSError, duckdb.Error) as error:
        log.warning("could not write the pattern cache %s: %s", path, error)
