"""Both engines (DuckDB, Spark) against a pure-Python oracle, on generated logs and
indicators covering every supported pattern form: CIDR edges, IPv6 spellings, case,
trailing dots, AND within an observation, OR between observations, and malformed input."""

from __future__ import annotations

import csv
import ipaddress
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from allied.matching import matchset as matchset_module
from allied.matching.compile import Compiled, try_compile
from allied.matching.duck import DuckDBEngine, MatchInputError
from allied.matching.matchset import COLUMNS, MatchSet
from allied.matching.spark import SparkEngine

Row = dict[str, str]


@dataclass(frozen=True)
class Case:
    """An indicator's pattern and what it means, written independently of the compiler."""

    pattern: str
    matches: Callable[[Row], bool]


def ip_in(row: Row, sides: tuple[str, ...], network: str) -> bool:
    net = ipaddress.ip_network(network, strict=False)
    for side in sides:
        try:
            if ipaddress.ip_address(row.get(side, "")) in net:  # as written: no trimming
                return True
        except ValueError:
            continue
    return False


def field_is(row: Row, name: str, value: str, fold: bool = False) -> bool:
    got = row.get(name, "")
    if fold:
        return got.rstrip(".").lower() == value.lower() if got else False
    return got == value


BOTH = ("src_ip", "dst_ip")
CASES = [
    Case("[ipv4-addr:value = '198.51.100.7']", lambda r: ip_in(r, BOTH, "198.51.100.7/32")),
    Case("[ipv4-addr:value = '10.20.0.0/16']", lambda r: ip_in(r, BOTH, "10.20.0.0/16")),
    Case("[ipv4-addr:value ISSUBSET '192.0.2.128/25']", lambda r: ip_in(r, BOTH, "192.0.2.128/25")),
    Case("[ipv6-addr:value = '2001:DB8:0:0::1']", lambda r: ip_in(r, BOTH, "2001:db8::1/128")),
    Case("[ipv6-addr:value = '2001:db8:aa::/48']", lambda r: ip_in(r, BOTH, "2001:db8:aa::/48")),
    Case(
        "[domain-name:value = 'Evil.Example.']",
        lambda r: field_is(r, "domain", "evil.example", True),
    ),
    Case(
        "[url:value = 'http://bad.example/x?y=1']",
        lambda r: field_is(r, "url", "http://bad.example/x?y=1"),
    ),
    Case(
        "[email-addr:value = 'Boss@Corp.Example']",
        lambda r: field_is(r, "email", "boss@corp.example", True),
    ),
    Case(
        "[file:hashes.'SHA-256' = 'AA" + "0" * 62 + "']",
        lambda r: field_is(r, "sha256", "aa" + "0" * 62, True),
    ),
    Case(
        "[file:hashes.MD5 IN ('" + "b" * 32 + "', '" + "c" * 32 + "')]",
        lambda r: r.get("md5", "").lower() in ("b" * 32, "c" * 32),
    ),
    Case(
        "[network-traffic:dst_ref.value = '203.0.113.9' AND network-traffic:dst_port = 443]",
        lambda r: (
            ip_in(r, ("dst_ip",), "203.0.113.9/32") and r.get("dst_port", "").strip() == "443"
        ),
    ),
    Case(
        "[domain-name:value = 'one.example'] OR [ipv4-addr:value = '198.51.100.99']",
        lambda r: field_is(r, "domain", "one.example", True) or ip_in(r, BOTH, "198.51.100.99/32"),
    ),
]
UNSUPPORTED = [
    "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.5']",
    "[domain-name:value LIKE '%.example']",
    "[ipv4-addr:value != '1.2.3.4']",
    "[x-custom:value = 'a']",
    "[ipv4-addr:value = '1.2.3.4'] WITHIN 10 SECONDS",
]

IPS = [
    *("198.51.100.7", "198.51.100.8", "198.51.100.99", "203.0.113.9"),
    *("10.20.0.0", "10.20.255.255", "10.21.0.0", "10.19.255.255"),  # the /16's edges
    *("192.0.2.127", "192.0.2.128", "192.0.2.255"),  # the /25's
    *("2001:db8::1", "2001:DB8:0000::1", "2001:db8::2", "2001:db8:aa:ffff::5", "2001:db8:ab::1"),
    *("not-an-ip", "", " 198.51.100.7", "10.20.1.1 "),  # values are not trimmed
]
DOMAINS = [
    "evil.example",
    "EVIL.EXAMPLE.",
    "evil.example.org",
    "one.example",
    "good.example",
    "",
    " evil.example",
]
URLS = ["http://bad.example/x?y=1", "http://bad.example/x?y=2", "HTTP://bad.example/x?y=1", ""]
EMAILS = ["boss@corp.example", "BOSS@corp.example", "other@corp.example", ""]
SHA = ["aa" + "0" * 62, "AA" + "0" * 62, "ab" + "0" * 62, ""]
MD5 = ["b" * 32, "C" * 32, "d" * 32, "", "bB" * 16, "G" * 32]
PORTS = ["443", "80", " 443", "x", ""]


def generate_rows(count: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        rows.append({
            "ts": f"2026-03-01T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "src_ip": rng.choice(IPS), "dst_ip": rng.choice(IPS),
            "src_port": rng.choice(PORTS), "dst_port": rng.choice(PORTS),
            "domain": rng.choice(DOMAINS), "url": rng.choice(URLS), "email": rng.choice(EMAILS),
            "md5": rng.choice(MD5), "sha1": "", "sha256": rng.choice(SHA), "sha512": "",
        })  # fmt: skip
    return rows


def oracle(rows: list[Row], cases: list[Case] = CASES) -> dict[str, int]:
    """Rows matching each indicator (by pattern), counted in plain Python."""
    counts: dict[str, int] = {}
    for case in cases:
        hits = sum(1 for row in rows if case.matches(row))
        if hits:
            counts[case.pattern] = hits
    return counts


def compiled(cases: list[Case] = CASES) -> dict[str, Compiled]:
    found = {}
    for case in cases:
        result = try_compile(case.pattern)
        assert isinstance(result, Compiled), (case.pattern, result)
        found[case.pattern] = result
    return found


def write(rows: list[Row], path: Path, fmt: str) -> Path:
    if fmt == "csv":
        with open(path, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=["ts", *COLUMNS])
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if v}) + "\n" for r in rows))
    else:
        staging = path.with_suffix(".csv")
        write(rows, staging, "csv")
        duckdb.execute(
            f"COPY (SELECT * FROM read_csv('{staging}', all_varchar=true)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    return path


def seen(moment: datetime | None) -> datetime | None:
    """A time in UTC without its zone: DuckDB gives it with one, Spark without."""
    if moment is not None and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_both_engines_agree_with_the_oracle(
    engine: DuckDBEngine, spark: SparkEngine, tmp_path: Path, fmt: str
) -> None:
    rows = generate_rows(3000, seed=7)
    path = write(rows, tmp_path / f"log.{fmt}", fmt)
    matchset = MatchSet(compiled())
    results = []
    for chosen in (engine, spark):
        groups, report = chosen.groups([path], fmt, matchset.lookups)
        hits = matchset.hits(groups)
        assert {pattern: hit.count for pattern, hit in hits.items()} == oracle(rows), chosen.name
        assert report.rows == len(rows) and report.malformed == 0, chosen.name
        first = hits[CASES[0].pattern]
        assert first.first_seen is not None and first.last_seen is not None
        assert first.first_seen <= first.last_seen
        results.append(
            {p: (h.count, seen(h.first_seen), seen(h.last_seen), h.values) for p, h in hits.items()}
        )
    assert results[0] == results[1]


def test_the_engines_agree_with_the_oracle_parsing_every_address(
    engine: DuckDBEngine, spark: SparkEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With networks of many first bytes, no address is tested as text first: each one is
    parsed (the other path of the network lookups)."""
    monkeypatch.setattr(matchset_module, "FIRST_BYTES", 0)
    rows = generate_rows(3000, seed=11)
    path = write(rows, tmp_path / "log.csv", "csv")
    matchset = MatchSet(compiled())
    assert all(not matchset.lookups.first_bytes(n) for n in matchset.lookups.networks)
    for chosen in (engine, spark):
        groups, report = chosen.groups([path], "csv", matchset.lookups)
        hits = matchset.hits(groups)
        assert {pattern: hit.count for pattern, hit in hits.items()} == oracle(rows), chosen.name
        assert report.rows == len(rows)


def test_the_engines_agree_with_the_oracle_when_no_indicator_is_an_ipv6_address(
    engine: DuckDBEngine, spark: SparkEngine, tmp_path: Path
) -> None:
    """No IPv6 key: the logs' IPv6 values are left as written (they cannot match), and the
    rows that hit on other fields beside them are counted all the same."""
    cases = [case for case in CASES if "ipv6" not in case.pattern]
    rows = generate_rows(3000, seed=13)
    path = write(rows, tmp_path / "log.csv", "csv")
    matchset = MatchSet(compiled(cases))
    assert not any(matchset.lookups.needs_ipv6(name) for name in ("src_ip", "dst_ip"))
    expected = oracle(rows, cases)
    assert len(expected) >= 10
    for chosen in (engine, spark):
        groups, report = chosen.groups([path], "csv", matchset.lookups)
        hits = matchset.hits(groups)
        assert {pattern: hit.count for pattern, hit in hits.items()} == expected, chosen.name
        assert report.rows == len(rows)


def test_unsupported_patterns_are_reported_with_a_reason() -> None:
    for pattern in UNSUPPORTED:
        result = try_compile(pattern)
        assert isinstance(result, str) and result.startswith("unsupported: "), pattern


def test_malformed_lines_are_counted_with_their_numbers(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    rows = generate_rows(50, seed=3)
    path = write(rows, tmp_path / "log.csv", "csv")
    lines = path.read_text().splitlines()
    lines.insert(5, "too,many,columns,here,a,b,c,d,e,f,g,h,i,j")
    path.write_text("\n".join(lines) + "\n")
    matchset = MatchSet(compiled())
    groups, report = engine.groups([path], "csv", matchset.lookups)
    assert report.malformed == 1 and report.problems[0][1] == 6
    assert {p: h.count for p, h in matchset.hits(groups).items()} == oracle(rows)
    jsonl = write(rows, tmp_path / "log.jsonl", "jsonl")
    text = jsonl.read_text().splitlines()
    text.insert(2, "{not json")
    jsonl.write_text("\n".join(text) + "\n")
    groups, report = engine.groups([jsonl], "jsonl", matchset.lookups)
    assert report.malformed == 1 and report.problems[0][1] == 3
    assert {p: h.count for p, h in matchset.hits(groups).items()} == oracle(rows)


@pytest.mark.parametrize(
    "header",
    ["ts,src_ip,dst_ip,domain", "ts,src_ip,dst_ip,domain,extra", "a,b,c"],
    ids=["all-read", "a-column-not-read", "no-column-read"],
)
def test_a_malformed_csv_row_is_found_whatever_columns_the_scan_reads(
    engine: DuckDBEngine, spark: SparkEngine, tmp_path: Path, header: str
) -> None:
    """A row with more fields than the header is malformed on both engines, also when the
    scan reads only some of the file's columns (its fields would be shifted, not missing),
    and it never counts as a row or a hit."""
    width = len(header.split(","))
    good = [
        ["2026-03-01T10:00:00Z", "10.0.0.1", "192.0.2.1", "a.example", "x"],
        ["2026-03-01T10:00:01Z", "192.0.2.2", "10.0.0.2", "b.example", "y"],
        ["2026-03-01T10:00:02Z", "192.0.2.3", "192.0.2.4", "c.example", "z"],
    ]
    lines = [header, *(",".join(row[:width]) for row in good)]
    lines.insert(2, "bad,10.0.0.5,with,too,many,fields,here")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    matchset = MatchSet(compiled([Case("[ipv4-addr:value = '10.0.0.0/8']", lambda r: False)]))
    hits = 0 if header == "a,b,c" else 2
    for chosen in (engine, spark):
        groups, report = chosen.groups([path], "csv", matchset.lookups)
        assert (report.rows, report.malformed) == (3, 1), chosen.name
        assert sum(h.count for h in matchset.hits(groups).values()) == hits, chosen.name


def test_empty_logs_and_bad_mappings(engine: DuckDBEngine, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("ts,src_ip,dst_ip\n")
    matchset = MatchSet(compiled())
    groups, report = engine.groups([empty], "csv", matchset.lookups)
    assert groups == [] and report.rows == 0
    with pytest.raises(MatchInputError, match="no column 'source'"):
        engine.groups([empty], "csv", matchset.lookups, {"src_ip": "source"})
    with pytest.raises(MatchInputError, match="cannot map colour"):
        engine.groups([empty], "csv", matchset.lookups, {"colour": "x"})
    with pytest.raises(MatchInputError, match="no such file"):
        engine.groups([tmp_path / "missing.csv"], "csv", matchset.lookups)
