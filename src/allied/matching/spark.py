"""The Spark engine (``--engine spark``): the same scan as DuckDB's, for a cluster.

It reads the same formats with the same mappings (:data:`allied.matching.duck.DEFAULT_MAPPINGS`,
Zeek's by their ``#path``), normalises in Spark SQL as :func:`allied.matching.compile.normalise`
does (IPv6 through that function, as a Python UDF, for the rows that hold one), keeps the rows
a lookup key names (broadcast joins with the keys) and hands the same candidate groups to
:meth:`allied.matching.matchset.MatchSet.hits`. So both engines give the same hits.

Malformed input is counted as DuckDB counts it (CSV rows with more or fewer fields than the
header, Zeek rows likewise, JSON lines that do not parse); Spark does not give the line
numbers of CSV and Zeek rows, so only those of JSON lines are listed. Local mode
(``local[*]``) by default; ``--spark-master URL`` for a cluster, whose workers need Allied
installed for the IPv6 UDF.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from allied.matching.compile import FIELDS, log_ip, log_ipv6_network, normalised_sql
from allied.matching.duck import (
    ZEEK_MAPPINGS,
    MatchInputError,
    ReadReport,
    bad_json_lines,
    first_byte_test,
    mapping_refs,
    resolve_mapping,
    zeek_header,
)
from allied.matching.matchset import COLUMNS, Group, Lookups

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SparkEngine:
    name = "spark"

    def __init__(self, master: str = "local[*]", *, partitions: int = 8) -> None:
        if master.startswith("local"):  # nothing listens beyond this machine
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession
        from pyspark.sql.types import StringType

        self._spark = (
            SparkSession.builder.master(master)
            .appName("allied-match")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", str(partitions))
            .config("spark.sql.session.timeZone", "UTC")
            # every field of a CSV row parsed, read or not: a row with more or fewer fields
            # than the header is only found malformed so (and its fields are shifted)
            .config("spark.sql.csv.parser.columnPruning.enabled", "false")
            .getOrCreate()
        )
        self._spark.sparkContext.setLogLevel("ERROR")
        self._spark.udf.register("allied_v6", log_ip, StringType())
        self._spark.udf.register("allied_v6_key", log_ipv6_network, StringType())

    def close(self) -> None:
        self._spark.stop()

    def groups(
        self,
        paths: Sequence[Path],
        fmt: str,
        lookups: Lookups,
        mapping: Mapping[str, str] | None = None,
    ) -> tuple[list[Group], ReadReport]:
        chosen = resolve_mapping(fmt, mapping)
        explicit = set(mapping or {})
        report = ReadReport()
        found: list[Group] = []
        self._load(lookups)
        for path in paths:
            if not path.is_file():
                raise MatchInputError(f"{path}: no such file")
            raw, malformed = self._raw(path, fmt, chosen, explicit)
            if malformed and fmt in ("jsonl", "eve"):  # where, read again as DuckDB does
                report.problems += bad_json_lines(path)
            raw.createOrReplaceTempView("allied_raw")
            rows = self._spark.sql(self._query(lookups)).collect()
            for row in rows:
                if row["bad"]:  # a CSV row with more or fewer fields than the header
                    malformed += int(row["n"])
                    continue
                report.rows += int(row["n"])
                if not row["hit"]:
                    continue
                values = [row[name] for name in COLUMNS]
                # times as microseconds since 1970: collect() would give them in the
                # local zone of this process, without one
                found.append(
                    Group(
                        dict(zip(COLUMNS, values, strict=True)),
                        int(row["n"]),
                        _moment(row["first"]),
                        _moment(row["last"]),
                    )
                )
            report.malformed += malformed
        return found, report

    # -- reading ---------------------------------------------------------------------------

    def _raw(
        self, path: Path, fmt: str, mapping: Mapping[str, str], explicit: set[str]
    ) -> tuple[Any, int]:
        """The file as raw canonical columns (strings) and ``bad`` (a malformed row, counted
        by the scan itself), and the malformed rows counted apart from it."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType, StructField, StructType

        spark = self._spark
        if fmt in ("jsonl", "eve"):
            lines = spark.read.text(str(path)).where(F.trim("value") != "")
            valid = F.get_json_object("value", "$").isNotNull()
            malformed = lines.where(~valid).count()
            frame = lines.where(valid)
            json_ref = lambda ref: F.get_json_object("value", ref)  # noqa: E731
            return self._select(frame, mapping, json_ref), malformed
        if fmt == "zeek":
            header = zeek_header(path)
            mapping = {**ZEEK_MAPPINGS.get(header.path, ZEEK_MAPPINGS["conn"]),
                       **{name: mapping[name] for name in explicit}}  # fmt: skip
            lines = spark.read.text(str(path)).where(~F.col("value").startswith("#"))
            parts = F.split("value", _java_regex(header.separator), -1)
            width = len(header.fields)
            malformed = lines.where(F.size(parts) != width).count()
            split = lines.where(F.size(parts) == width).select(parts.alias("p"))
            index = {name: k for k, name in enumerate(header.fields)}
            self._check(path, mapping, explicit, set(index))

            def zeek_ref(ref: str) -> Any:
                if ref not in index:
                    return F.lit(None).cast("string")
                value = F.col("p").getItem(index[ref])
                return F.when(value.isin("-", "(empty)"), None).otherwise(value)

            return self._select(split, mapping, zeek_ref), malformed
        if fmt == "parquet":
            frame = spark.read.parquet(str(path))
            self._check(path, mapping, explicit, set(frame.columns))
            return self._select(frame, mapping, lambda ref: _column(frame, ref)), 0
        # CSV: the header's columns; a row with more or fewer fields is "corrupt", and
        # counted in the scan's own aggregate (a count of its own would need the whole file
        # cached: Spark reads the corrupt-record column alone from a cache only)
        columns = _csv_header(path)
        schema = StructType(
            [StructField(name, StringType()) for name in columns]
            + [StructField("_allied_corrupt", StringType())]
        )
        frame = (
            spark.read.option("header", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_allied_corrupt")
            .schema(schema)
            .csv(str(path))
        )
        self._check(path, mapping, explicit, set(columns))
        read = {ref for spec in mapping.values() for ref in mapping_refs(spec)} & set(columns)
        if not read:  # Spark reads the corrupt-record column alone only from a cache
            frame = frame.cache()
        bad = F.col("_allied_corrupt").isNotNull()
        return self._select(frame, mapping, lambda ref: _column(frame, ref), bad), 0

    def _check(
        self, path: Path, mapping: Mapping[str, str], explicit: set[str], available: set[str]
    ) -> None:
        for name in explicit:
            missing = [ref for ref in mapping_refs(mapping.get(name)) if ref not in available]
            if missing:
                raise MatchInputError(
                    f"{path}: no column {missing[0]!r} (mapped to {name}); it has "
                    + ", ".join(sorted(available))
                )

    def _select(self, frame: Any, mapping: Mapping[str, str], ref: Any, bad: Any = None) -> Any:
        """The canonical columns, raw, by the mapping (alternatives, templates); ``ref``
        gives a column's value, NULL for one the file lacks; ``bad`` says a row is
        malformed (none is, by default)."""
        import re

        from pyspark.sql import functions as F

        selected = []
        for name in ("ts", *COLUMNS):
            spec = mapping.get(name)
            if not spec:
                selected.append(F.lit(None).cast("string").alias(name))
            elif "{" in spec:
                parts = re.split(r"\{([^{}]+)\}", spec)
                pieces = [
                    F.lit(part) if k % 2 == 0 else ref(part).cast("string")
                    for k, part in enumerate(parts)
                    if part
                ]
                selected.append(F.concat(*pieces).alias(name))
            else:
                alternatives = [ref(r).cast("string") for r in mapping_refs(spec)]
                selected.append(F.coalesce(*alternatives).alias(name))
        selected.append((F.lit(False) if bad is None else bad).alias("bad"))
        return frame.select(*selected)

    # -- matching --------------------------------------------------------------------------

    def _load(self, lookups: Lookups) -> None:
        from pyspark.sql.types import StringType, StructField, StructType

        schema = StructType([StructField("v", StringType())])
        for name in COLUMNS:
            keys = sorted(lookups.values.get(name, ()))
            self._spark.createDataFrame([(k,) for k in keys], schema).createOrReplaceTempView(
                f"k_{name}"
            )
        for (name, version, length), networks in lookups.networks.items():
            self._spark.createDataFrame(
                [(k,) for k in sorted(networks)], schema
            ).createOrReplaceTempView(f"n_{name}_{version}_{length}")

    def _query(self, lookups: Lookups) -> str:
        """One aggregate over every row: the candidate rows grouped by their values, and
        every other row in one group (``hit`` false) that gives the total read.

        IPv6 goes through a Python UDF, and Spark sends a UDF every row of its input
        whatever the expression around it; so the rows with a colon in an address are
        normalised apart from the others (two filtered reads of the file, both in the JVM,
        instead of ten million trips to Python)."""
        needed = lookups.fields
        # only fields with an IPv6 key: the others' IPv6 values cannot match anyway, and
        # then the file is read once, with no UDF at all
        ips = [
            name
            for name in COLUMNS
            if FIELDS[name] == "ip" and name in needed and lookups.needs_ipv6(name)
        ]
        colon = " OR ".join(f"coalesce(contains(r.{name}, ':'), false)" for name in ips)
        v6 = [(name, length) for name, version, length in lookups.networks if version == 6]

        def columns(with_v6: bool) -> str:
            out = []
            for name in COLUMNS:
                if name not in needed:
                    expr = "CAST(NULL AS STRING)"
                elif FIELDS[name] == "ip" and (not with_v6 or name not in ips):
                    expr = f"r.{name}"  # no colon, or no IPv6 key: as it is
                else:
                    expr = normalised_sql(name, "spark")
                out.append(f"{expr} AS {name}")
            for name, length in v6:
                key = f"allied_v6_key(r.{name}, {length})" if with_v6 else "CAST(NULL AS STRING)"
                out.append(f"{key} AS k6_{name}_{length}")
            return ", ".join([*out, "r.ts AS ts_raw", "r.bad AS bad"])

        if colon:
            rows = (
                f"SELECT {columns(False)} FROM allied_raw r WHERE NOT ({colon}) "
                f"UNION ALL SELECT {columns(True)} FROM allied_raw r WHERE {colon}"
            )
        else:
            rows = f"SELECT {columns(False)} FROM allied_raw r"
        joins, found = [], []
        for name in COLUMNS:
            if lookups.values.get(name):
                joins.append(f"LEFT JOIN k_{name} ON r.{name} = k_{name}.v")
                found.append(f"k_{name}.v IS NOT NULL")
        for network in lookups.networks:
            name, version, length = network
            table = f"n_{name}_{version}_{length}"
            if version == 4:  # parsed only if its first byte is one a network has
                key = _v4_network_key(f"r.{name}", length)
                firsts = lookups.first_bytes(network)
                if firsts:
                    key = f"CASE WHEN {first_byte_test(f'r.{name}', firsts)} THEN {key} END"
            else:
                key = f"r.k6_{name}_{length}"
            joins.append(f"LEFT JOIN {table} ON {key} = {table}.v")
            found.append(f"{table}.v IS NOT NULL")
        tables = [join.split()[2] for join in joins]
        hint = f"/*+ BROADCAST({', '.join(tables)}) */ " if tables else ""
        hit = f"NOT r.bad AND ({' OR '.join(found) or 'false'})"
        ts = (
            "coalesce(try_to_timestamp(ts_raw), "
            "try_to_timestamp(ts_raw, \"yyyy-MM-dd'T'HH:mm:ss.SSSSSSZ\"), "
            "timestamp_seconds(try_cast(ts_raw AS DOUBLE)))"
        )
        kept = ", ".join(f"IF(hit, {name}, NULL) AS {name}" for name in COLUMNS)
        return (
            f"WITH rows AS ({rows}), "
            f"flagged AS (SELECT {hint}r.*, ({hit}) AS hit FROM rows r {' '.join(joins)}) "
            f"SELECT bad, hit, {kept}, count(*) AS n, "
            f"unix_micros(min(IF(hit, {ts}, NULL))) AS first, "
            f"unix_micros(max(IF(hit, {ts}, NULL))) AS last "
            f"FROM flagged GROUP BY bad, hit, "
            f"{', '.join(f'IF(hit, {n}, NULL)' for n in COLUMNS)}"
        )


def _v4_network_key(column: str, length: int) -> str:
    """The number the first ``length`` bits of a dotted-quad address make, as text (NULL for
    anything else): :func:`allied.matching.compile.network_key` in Spark SQL."""
    octets = [f"try_cast(split_part({column}, '.', {k}) AS BIGINT)" for k in (1, 2, 3, 4)]
    valid = " AND ".join(f"{o} BETWEEN 0 AND 255" for o in octets)
    number = f"({octets[0]} * 16777216 + {octets[1]} * 65536 + {octets[2]} * 256 + {octets[3]})"
    # three dots counted without a regular expression (split() takes one, for every row)
    dots = f"length({column}) - length(replace({column}, '.', '')) = 3"
    return (
        f"CASE WHEN {dots} AND {valid} THEN "
        f"CAST(shiftright(CAST({number} AS BIGINT), {32 - length}) AS STRING) END"
    )


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else EPOCH + timedelta(microseconds=micros)


def _csv_header(path: Path) -> list[str]:
    import csv

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            return row
    return []


def _column(frame: Any, ref: str) -> Any:
    from pyspark.sql import functions as F

    return F.col(_quoted(ref)) if ref in frame.columns else F.lit(None).cast("string")


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _java_regex(separator: str) -> str:
    return "".join(f"\\Q{c}\\E" if not c.isalnum() else c for c in separator)
