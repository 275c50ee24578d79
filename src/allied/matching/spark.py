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

from allied.matching.compile import log_ip, log_ipv6_network, normalised_sql
from allied.matching.duck import (
    DEFAULT_MAPPINGS,
    FORMATS,
    ZEEK_MAPPINGS,
    MatchInputError,
    ReadReport,
    bad_json_lines,
    mapping_refs,
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
        if fmt not in DEFAULT_MAPPINGS:
            raise MatchInputError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
        unknown = sorted(set(mapping or {}) - {"ts", *COLUMNS})
        if unknown:
            raise MatchInputError(
                f"cannot map {', '.join(unknown)}: the fields are ts, {', '.join(COLUMNS)}"
            )
        explicit = set(mapping or {})
        chosen = {**DEFAULT_MAPPINGS[fmt], **(mapping or {})}
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
                values = [row[name] for name in COLUMNS]
                if row["n"] is None:
                    report.rows += int(row["total"])
                    continue
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
        """The file as raw canonical columns (strings), and its malformed row count."""
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
        # CSV: the header's columns; a row with more or fewer fields is "corrupt"
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
            .cache()
        )
        bad = F.col("_allied_corrupt").isNotNull()
        malformed = frame.where(bad).count()
        good = frame.where(~bad)
        self._check(path, mapping, explicit, set(columns))
        return self._select(good, mapping, lambda ref: _column(good, ref)), malformed

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

    def _select(self, frame: Any, mapping: Mapping[str, str], ref: Any) -> Any:
        """The canonical columns, raw, by the mapping (alternatives, templates); ``ref``
        gives a column's value, NULL for one the file lacks."""
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
        normal = [f"{normalised_sql(name, 'spark')} AS {name}" for name in COLUMNS]
        ts = (
            "coalesce(try_to_timestamp(r.ts), "
            "try_to_timestamp(r.ts, \"yyyy-MM-dd'T'HH:mm:ss.SSSSSSZ\"), "
            "timestamp_seconds(try_cast(r.ts AS DOUBLE))) AS ts"
        )
        tests = [
            f"{name} IN (SELECT /*+ BROADCAST */ v FROM k_{name})"
            for name in COLUMNS
            if lookups.values.get(name)
        ]
        for name, version, length in lookups.networks:
            table = f"n_{name}_{version}_{length}"
            if version == 4:
                octets = [f"try_cast(split_part({name}, '.', {k}) AS BIGINT)" for k in (1, 2, 3, 4)]
                valid = " AND ".join(f"{o} BETWEEN 0 AND 255" for o in octets)
                number = (
                    f"({octets[0]} * 16777216 + {octets[1]} * 65536 + {octets[2]} * 256 "
                    f"+ {octets[3]})"
                )
                key = (
                    f"CASE WHEN size(split({name}, '[.]')) = 4 AND {valid} THEN "
                    f"CAST(shiftright(CAST({number} AS BIGINT), {32 - length}) AS STRING) END"
                )
            else:
                key = f"allied_v6_key({name}, {length})"
            tests.append(f"{key} IN (SELECT v FROM {table})")
        where = " OR ".join(tests) or "false"
        columns = ", ".join(COLUMNS)
        nulls = ", ".join(f"CAST(NULL AS STRING) AS {name}" for name in COLUMNS)
        return (
            "WITH rows AS (SELECT " + ", ".join(normal) + f", {ts} FROM allied_raw r), "
            f"hits AS (SELECT {columns}, count(*) AS n, unix_micros(min(ts)) AS first, "
            "unix_micros(max(ts)) AS last "
            f"FROM rows WHERE {where} GROUP BY {columns}) "
            f"SELECT {columns}, n, first, last, CAST(NULL AS BIGINT) AS total FROM hits "
            f"UNION ALL SELECT {nulls}, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), "
            "CAST(NULL AS BIGINT), count(*) FROM rows"
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
