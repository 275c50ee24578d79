"""The DuckDB engine: one streaming scan of the logs per match, in this process.

Each log file is read by DuckDB's own readers (CSV, JSON lines, Parquet; gzip read as it
is), its columns mapped to the canonical fields (:data:`allied.matching.matchset.COLUMNS`)
and normalised in SQL exactly as :func:`allied.matching.compile.normalise` does (IPv6
through that very function, as a UDF, for the rows that hold one). Rows pass a filter of
hash lookups (``field IN keys``, and for networks the address's leading bits) and the
survivors are grouped by their values: only those groups reach Python
(:class:`allied.matching.matchset.Group`). DuckDB spills to disk beyond its memory limit, so
memory stays bounded whatever the number of rows.

Malformed input is counted, never fatal: CSV rows DuckDB rejects (with their line numbers,
from its reject tables), JSON lines that do not parse.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from duckdb.func import FunctionNullHandling

from allied.errors import AlliedError
from allied.matching.compile import FIELDS, log_ip, log_ipv6_network, normalised_sql
from allied.matching.matchset import COLUMNS, Group, Lookups

#: canonical field -> column of a CSV or Parquet file, or JSON path of a JSON line; ``a|b``
#: takes the first with a value, ``{a}`` in text builds a value (a URL from host and path)
DEFAULT_MAPPINGS: dict[str, dict[str, str]] = {
    "csv": {name: name for name in ("ts", *COLUMNS)},
    "parquet": {name: name for name in ("ts", *COLUMNS)},
    "jsonl": {name: f"$.{name}" for name in ("ts", *COLUMNS)},
    "zeek": {},  # by the log's #path (ZEEK_MAPPINGS)
    # Suricata EVE: one event per line, its fields by event type
    "eve": {
        "ts": "$.timestamp",
        "src_ip": "$.src_ip",
        "dst_ip": "$.dest_ip",
        "src_port": "$.src_port",
        "dst_port": "$.dest_port",
        "domain": "$.dns.rrname|$.dns.queries[0].rrname|$.http.hostname|$.tls.sni",
        "url": "http://{$.http.hostname}{$.http.url}",
        "md5": "$.fileinfo.md5",
        "sha1": "$.fileinfo.sha1",
        "sha256": "$.fileinfo.sha256",
    },
}
_CONN = {"ts": "ts", "src_ip": "id.orig_h", "dst_ip": "id.resp_h", "src_port": "id.orig_p",
         "dst_port": "id.resp_p"}  # fmt: skip
#: Zeek's logs by their #path: conn, dns, http, files, ssl
ZEEK_MAPPINGS: dict[str, dict[str, str]] = {
    "conn": _CONN,
    "dns": {**_CONN, "domain": "query"},
    "http": {**_CONN, "domain": "host", "url": "http://{host}{uri}"},
    "ssl": {**_CONN, "domain": "server_name"},
    "files": {"ts": "ts", "md5": "md5", "sha1": "sha1", "sha256": "sha256"},
}
FORMATS = tuple(DEFAULT_MAPPINGS)
_MALFORMED_SHOWN = 20  # line numbers kept per file for the report

#: an IPv4 address as a number (NULL if it is not dotted-quad)
_V4_MACRO = """
CREATE MACRO allied_v4(ip) AS CASE WHEN length(ip) - length(replace(ip, '.', '')) = 3 THEN
    (TRY_CAST(split_part(ip, '.', 1) AS UTINYINT)::UBIGINT << 24)
    + (TRY_CAST(split_part(ip, '.', 2) AS UTINYINT)::UBIGINT << 16)
    + (TRY_CAST(split_part(ip, '.', 3) AS UTINYINT)::UBIGINT << 8)
    + TRY_CAST(split_part(ip, '.', 4) AS UTINYINT)::UBIGINT END
"""


class MatchInputError(AlliedError):
    """A log file or mapping the engine cannot read."""


@dataclass
class ReadReport:
    """What reading the logs found, per file and in all."""

    rows: int = 0
    malformed: int = 0
    #: (file, line, reason) of the first malformed lines of each file
    problems: list[tuple[str, int, str]] = field(default_factory=list)


def resolve_mapping(fmt: str, mapping: Mapping[str, str] | None) -> dict[str, str]:
    """The mapping a run reads a format with: its defaults, overridden by the user's;
    refused if the format or a field is unknown (every engine reads through this)."""
    if fmt not in DEFAULT_MAPPINGS:
        raise MatchInputError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
    unknown = sorted(set(mapping or {}) - {"ts", *COLUMNS})
    if unknown:
        raise MatchInputError(
            f"cannot map {', '.join(unknown)}: the fields are ts, {', '.join(COLUMNS)}"
        )
    return {**DEFAULT_MAPPINGS[fmt], **(mapping or {})}


def mapping_refs(spec: str | None) -> list[str]:
    """The columns (or JSON paths) a mapping names: ``a|b`` (the first that has a value)
    or a template ``http://{host}{uri}``."""
    if not spec:
        return []
    if "{" in spec:
        return re.findall(r"\{([^{}]+)\}", spec)
    return [part for part in spec.split("|") if part]


def _expression(spec: str | None, ref: Callable[[str], str]) -> str:
    """The SQL of a mapping, given how one column is referred to."""
    if not spec:
        return "NULL::VARCHAR"
    if "{" in spec:  # a template: text and columns joined, NULL if a column is
        parts = re.split(r"\{([^{}]+)\}", spec)
        pieces = [
            _sql_text(part) if k % 2 == 0 else f"CAST({ref(part)} AS VARCHAR)"
            for k, part in enumerate(parts)
            if part
        ]
        return "(" + " || ".join(pieces) + ")"
    alternatives = [f"CAST({ref(part)} AS VARCHAR)" for part in mapping_refs(spec)]
    return alternatives[0] if len(alternatives) == 1 else f"coalesce({', '.join(alternatives)})"


def _ident_of(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ZeekHeader:
    path: str
    separator: str
    fields: list[str]


def zeek_header(path: Path) -> ZeekHeader:
    """The ``#separator``, ``#path`` and ``#fields`` lines at the top of a Zeek log."""
    separator, log_path, fields = "\t", "", []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.startswith("#"):
                break
            if line.startswith("#separator"):
                value = line.split(None, 1)[1].strip() if " " in line else "\\x09"
                separator = value.encode().decode("unicode_escape")
                continue
            key, _, rest = line.rstrip("\n").partition(separator)
            if key == "#path":
                log_path = rest
            elif key == "#fields":
                fields = rest.split(separator)
    if not fields:
        raise MatchInputError(f"{path}: no #fields line: not a Zeek TSV log")
    return ZeekHeader(log_path, separator, fields)


def _lines(path: Path) -> str:
    """A file as lines of text, one column ``line`` (JSON lines are parsed in SQL, so that a
    malformed one is a NULL to count, not an error that stops the scan)."""
    return (
        f"read_csv({_sql_text(str(path))}, columns={{'line': 'VARCHAR'}}, header=false, "
        "delim='\\x01', quote='', escape='', auto_detect=false, strict_mode=false)"
    )


def scanned_sql(name: str, lookups: Lookups) -> str:
    """Field ``name`` of row ``r`` as the scan compares it: normalised only as far as some
    key can match (a field no atom tests is not even read; a field no IPv6 key names keeps
    its IPv6 values as written, since they cannot match anyway)."""
    if name not in lookups.fields:
        return "NULL::VARCHAR"
    if FIELDS[name] == "ip" and not lookups.needs_ipv6(name):
        return f"r.{name}"
    return normalised_sql(name, "duckdb")


def first_byte_test(column: str, firsts: Sequence[int]) -> str:
    """SQL (DuckDB's and Spark's alike): the address in ``column`` is written with one of
    these first bytes, ``b.`` up to (not including) ``b/``, as '/' follows '.'."""
    return " OR ".join(f"({column} >= '{b}.' AND {column} < '{b}/')" for b in firsts)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine:
    name = "duckdb"

    def __init__(
        self, *, memory_limit: str = "1GB", threads: int | None = None, progress: bool = False
    ) -> None:
        self._con = duckdb.connect(config={"memory_limit": memory_limit})
        self._scans = 0
        # DuckDB's own progress bar, on the terminal, for scans that take a while
        self._con.execute(f"SET enable_progress_bar = {str(progress).lower()}")
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        self._con.execute(_V4_MACRO)
        # null_handling: the functions return NULL for what is not an IPv6 address
        special = FunctionNullHandling.SPECIAL
        self._con.create_function(
            "allied_v6", log_ip, ["VARCHAR"], "VARCHAR", side_effects=False, null_handling=special
        )
        self._con.create_function(
            "allied_v6_key", log_ipv6_network, ["VARCHAR", "INTEGER"], "VARCHAR",
            side_effects=False, null_handling=special,
        )  # fmt: skip

    def close(self) -> None:
        self._con.close()

    # -- reading ---------------------------------------------------------------------------

    def _source(
        self, path: Path, fmt: str, mapping: Mapping[str, str], explicit: set[str], n: int
    ) -> str:
        """A SELECT of the canonical fields (raw text, and ``ts``) of one file."""
        quoted = _sql_text(str(path))
        names = ("ts", *COLUMNS)
        if fmt in ("jsonl", "eve"):
            wanted = sorted({ref for name in names for ref in mapping_refs(mapping.get(name))})
            index = {ref: k for k, ref in enumerate(wanted, start=1)}
            listed = ", ".join(_sql_text(ref) for ref in wanted) or "'$.none'"
            columns = ", ".join(
                f"{_expression(mapping.get(name), lambda ref: f'v[{index[ref]}]')} AS {name}"
                for name in names
            )
            return (
                f"SELECT {columns} FROM (SELECT CASE WHEN json_valid(line) THEN "
                f"json_extract_string(line, [{listed}]) END AS v FROM {_lines(path)}) "
                "WHERE v IS NOT NULL"
            )
        rejects = f"store_rejects=true, rejects_table='rejects_{n}', rejects_scan='scans_{n}'"
        if fmt == "csv":
            reader = f"read_csv({quoted}, header=true, all_varchar=true, {rejects})"
        elif fmt == "parquet":
            reader = f"read_parquet({quoted})"
        elif fmt == "zeek":
            header = zeek_header(path)
            mapping = {**ZEEK_MAPPINGS.get(header.path, ZEEK_MAPPINGS["conn"]), **{
                name: mapping[name] for name in explicit}}  # fmt: skip
            columns = ", ".join(f"{_sql_text(f)}: 'VARCHAR'" for f in header.fields)
            reader = (
                f"read_csv({quoted}, header=false, delim={_sql_text(header.separator)}, "
                f"quote='', escape='', comment='#', nullstr=['-', '(empty)'], "
                f"auto_detect=false, columns={{{columns}}}, {rejects})"
            )
        else:
            raise MatchInputError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
        available = self._columns(reader)
        selected = []
        for name in names:
            spec = mapping.get(name)
            missing = [ref for ref in mapping_refs(spec) if ref not in available]
            if missing and name in explicit:
                raise MatchInputError(
                    f"{path}: no column {missing[0]!r} (mapped to {name}); it has "
                    + ", ".join(sorted(available))
                )
            if spec is None or missing:  # a default the file lacks: the field is absent
                selected.append(f"NULL::VARCHAR AS {name}")
            else:
                ref = _ident_of
                selected.append(f"{_expression(spec, ref)} AS {name}")
        return f"SELECT {', '.join(selected)} FROM {reader}"

    def _columns(self, reader: str) -> set[str]:
        try:
            described = self._con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        except duckdb.Error as error:
            raise MatchInputError(str(error).splitlines()[0]) from None
        return {row[0] for row in described}

    # -- matching --------------------------------------------------------------------------

    def groups(
        self,
        paths: Sequence[Path],
        fmt: str,
        lookups: Lookups,
        mapping: Mapping[str, str] | None = None,
    ) -> tuple[list[Group], ReadReport]:
        """The candidate groups of every file, and what reading found."""
        chosen = resolve_mapping(fmt, mapping)
        report = ReadReport()
        found: list[Group] = []
        self._load(lookups)
        for path in paths:
            self._scans += 1  # each scan its own reject tables, dropped once read
            n = self._scans
            if not path.is_file():
                raise MatchInputError(f"{path}: no such file")
            source = self._source(path, fmt, chosen, set(mapping or {}), n)
            query = self._query(source, lookups)
            try:
                result = self._con.execute(query).fetchall()
            except duckdb.Error as error:
                raise MatchInputError(f"{path}: {str(error).splitlines()[0]}") from None
            for key, count, first, last in result:
                report.rows += int(count)
                if key is not None:
                    found.append(Group(dict(key), int(count), first, last))
            self._malformed(path, fmt, n, report)
        return found, report

    def distinct_values(
        self,
        paths: Sequence[Path],
        fmt: str,
        fields: Sequence[str],
        mapping: Mapping[str, str] | None = None,
    ) -> tuple[set[tuple[str, str]], ReadReport]:
        """(field, normalised value) of every distinct non-empty value of ``fields`` in the
        logs: what blind matching asks about, each value once however often it occurs."""
        chosen = resolve_mapping(fmt, mapping)
        report = ReadReport()
        found: set[tuple[str, str]] = set()
        for path in paths:
            self._scans += 1
            n = self._scans
            if not path.is_file():
                raise MatchInputError(f"{path}: no such file")
            source = self._source(path, fmt, chosen, set(mapping or {}), n)
            normal = ", ".join(f"{normalised_sql(name, 'duckdb')} AS {name}" for name in fields)
            # one scan for the values (unpivoted, so each field's values are one column),
            # one for the count of rows
            query = (
                f"SELECT DISTINCT f, v FROM (UNPIVOT (SELECT {normal} FROM ({source}) r) "
                f"ON {', '.join(fields)} INTO NAME f VALUE v) WHERE v <> ''"
            )
            try:
                rows = self._con.execute(query).fetchall()
                counted = self._con.execute(f"SELECT count(*) FROM ({source})").fetchone()
            except duckdb.Error as error:
                raise MatchInputError(f"{path}: {str(error).splitlines()[0]}") from None
            found.update((str(name), str(value)) for name, value in rows)
            report.rows += int(counted[0]) if counted else 0
            self._malformed(path, fmt, n, report)
        return found, report

    def _load(self, lookups: Lookups) -> None:
        """The lookup keys as tables, one per field and per network length."""
        con = self._con
        for name in COLUMNS:
            keys = sorted(lookups.values.get(name, ()))
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE k_{name} AS SELECT unnest(?::VARCHAR[]) AS v", [keys]
            )
        for (name, version, length), networks in lookups.networks.items():
            table = f"n_{name}_{version}_{length}"
            kind = "UBIGINT" if version == 4 else "VARCHAR"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT unnest(?::{kind}[]) AS v",
                [sorted(int(key) for key in networks) if version == 4 else sorted(networks)],
            )

    def _query(self, source: str, lookups: Lookups) -> str:
        normal = [f"{scanned_sql(name, lookups)} AS {name}" for name in COLUMNS]
        tests = [
            f"{name} IN (SELECT v FROM k_{name})" for name in COLUMNS if lookups.values.get(name)
        ]
        for network in lookups.networks:
            name, version, length = network
            table = f"n_{name}_{version}_{length}"
            if version == 4:  # the keys as numbers: a cheaper join than on their text
                key = f"allied_v4({name}) >> {32 - length}"
                firsts = lookups.first_bytes(network)
                if firsts:
                    key = f"CASE WHEN {first_byte_test(name, firsts)} THEN {key} END"
            else:
                key = f"allied_v6_key({name}, {length})"
            tests.append(f"{key} IN (SELECT v FROM {table})")
        where = " OR ".join(tests) or "false"
        columns = ", ".join(COLUMNS)
        # times are parsed for the rows that hit only; every other row falls into one group
        # (key NULL), which gives the total rows read in the same single pass
        ts = (
            "coalesce(TRY_CAST(ts_raw AS TIMESTAMPTZ), "  # or seconds since 1970 (Zeek)
            "to_timestamp(TRY_CAST(ts_raw AS DOUBLE)))"
        )
        return (
            "WITH rows AS (SELECT " + ", ".join(normal) + ", r.ts AS ts_raw "
            f"FROM ({source}) r), "
            f"flagged AS (SELECT *, ({where}) AS hit FROM rows) "
            f"SELECT CASE WHEN hit THEN struct_pack({columns}) END AS k, count(*) AS n, "
            f"min(CASE WHEN hit THEN {ts} END) AS first, "
            f"max(CASE WHEN hit THEN {ts} END) AS last FROM flagged GROUP BY ALL"
        )

    def _malformed(self, path: Path, fmt: str, n: int, report: ReadReport) -> None:
        if fmt in ("csv", "zeek"):
            rows = self._con.execute(
                f"SELECT DISTINCT line, first(error_message) FROM rejects_{n} GROUP BY line "
                "ORDER BY line"
            ).fetchall()
            self._con.execute(f"DROP TABLE IF EXISTS rejects_{n}")
            self._con.execute(f"DROP TABLE IF EXISTS scans_{n}")
            report.malformed += len(rows)
            report.problems += [
                (str(path), int(line), reason) for line, reason in rows[:_MALFORMED_SHOWN]
            ]
        elif fmt in ("jsonl", "eve"):
            bad = self._con.execute(
                f"SELECT count(*) FROM {_lines(path)} WHERE line IS NOT NULL "
                "AND trim(line) <> '' AND NOT json_valid(line)"
            ).fetchone()
            count = int(bad[0]) if bad else 0
            report.malformed += count
            if count:
                report.problems += bad_json_lines(path)


def bad_json_lines(path: Path) -> list[tuple[str, int, str]]:
    """The first lines of a JSON-lines file that do not parse, with the parser's reason;
    read again only when the scan counted some."""
    import orjson

    found: list[tuple[str, int, str]] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as error:
                found.append((str(path), number, f"not JSON: {error}"))
                if len(found) >= _MALFORMED_SHOWN:
                    break
    return found
