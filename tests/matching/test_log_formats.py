"""Zeek TSV logs (conn, dns, http, files) and Suricata EVE JSON, written by hand after their
documented formats, read with their default mappings; gzip read as it is."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from allied.matching.compile import Compiled, try_compile
from allied.matching.duck import MatchInputError
from allied.matching.matchset import MatchSet
from allied.matching.run import Engine

PATTERNS = {
    "c2": "[ipv4-addr:value = '203.0.113.66']",
    "domain": "[domain-name:value = 'c2.evil.example']",
    "url": "[url:value = 'http://c2.evil.example/gate.php']",
    "hash": "[file:hashes.'SHA-256' = '" + "ab" * 32 + "']",
    "port": "[network-traffic:dst_ref.value = '203.0.113.66' AND network-traffic:dst_port = 8443]",
}


def zeek(path: str, fields: list[str], rows: list[list[str]]) -> str:
    """A Zeek TSV log as Zeek writes it: header lines, tab-separated rows, '-' unset."""
    head = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        f"#path\t{path}",
        "#open\t2026-03-01-10-00-00",
        "#fields\t" + "\t".join(fields),
        "#types\t" + "\t".join("string" for _ in fields),
    ]
    body = ["\t".join(row) for row in rows]
    return "\n".join([*head, *body, "#close\t2026-03-01-11-00-00"]) + "\n"


CONN = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"]


@pytest.fixture(scope="module")
def matchset() -> MatchSet:
    compiled = {name: try_compile(text) for name, text in PATTERNS.items()}
    assert all(isinstance(c, Compiled) for c in compiled.values())
    return MatchSet({k: v for k, v in compiled.items() if isinstance(v, Compiled)})


def counts(engine: Engine, matchset: MatchSet, path: Path, fmt: str) -> dict[str, int]:
    groups, _ = engine.groups([path], fmt, matchset.lookups)
    return {name: hit.count for name, hit in matchset.hits(groups).items()}


@pytest.fixture(params=["duckdb", "spark"])
def either(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn: the formats read the same on both."""
    chosen: Engine = request.getfixturevalue("engine" if request.param == "duckdb" else "spark")
    return chosen


def test_zeek_conn_dns_http_files(either: Engine, matchset: MatchSet, tmp_path: Path) -> None:
    conn = tmp_path / "conn.log"
    conn.write_text(zeek("conn", CONN, [
        ["1772359200.123456", "C1", "10.0.0.5", "50000", "203.0.113.66", "8443", "tcp"],
        ["1772359260.000000", "C2", "10.0.0.5", "50001", "203.0.113.66", "443", "tcp"],
        ["1772359320.000000", "C3", "10.0.0.6", "50002", "198.51.100.1", "8443", "tcp"],
        ["1772359380.000000", "C4", "10.0.0.7", "-", "-", "-", "udp"],
    ]))  # fmt: skip
    assert counts(either, matchset, conn, "zeek") == {"c2": 2, "port": 1}
    groups, report = either.groups([conn], "zeek", matchset.lookups)
    hit = matchset.hits(groups)["c2"]
    assert hit.first_seen is not None and hit.first_seen.year == 2026
    assert report.rows == 4 and report.malformed == 0
    dns = tmp_path / "dns.log"
    dns.write_text(zeek("dns", [*CONN, "query", "qtype_name"], [
        ["1772359200.0", "D1", "10.0.0.5", "5353", "10.0.0.1", "53", "udp", "C2.Evil.Example.",
         "A"],
        ["1772359201.0", "D2", "10.0.0.5", "5353", "10.0.0.1", "53", "udp", "good.example", "A"],
    ]))  # fmt: skip
    assert counts(either, matchset, dns, "zeek") == {"domain": 1}
    http = tmp_path / "http.log"
    http.write_text(zeek("http", [*CONN, "host", "uri", "user_agent"], [
        ["1772359200.0", "H1", "10.0.0.5", "50010", "198.51.100.9", "80", "tcp",
         "c2.evil.example", "/gate.php", "curl"],
        ["1772359201.0", "H2", "10.0.0.5", "50011", "198.51.100.9", "80", "tcp",
         "c2.evil.example", "/other", "curl"],
    ]))  # fmt: skip
    assert counts(either, matchset, http, "zeek") == {"domain": 2, "url": 1}
    files = tmp_path / "files.log"
    files.write_text(zeek("files", ["ts", "fuid", "tx_hosts", "md5", "sha1", "sha256"], [
        ["1772359200.0", "F1", "198.51.100.9", "-", "-", "AB" * 32],
        ["1772359201.0", "F2", "198.51.100.9", "-", "-", "cd" * 32],
    ]))  # fmt: skip
    assert counts(either, matchset, files, "zeek") == {"hash": 1}


def test_zeek_malformed_rows_and_gzip(either: Engine, matchset: MatchSet, tmp_path: Path) -> None:
    text = zeek("conn", CONN, [
        ["1772359200.0", "C1", "10.0.0.5", "50000", "203.0.113.66", "8443", "tcp"],
        ["1772359201.0", "C2", "only", "three"],
    ])  # fmt: skip
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress(text.encode()))
    groups, report = either.groups([path], "zeek", matchset.lookups)
    assert {n: h.count for n, h in matchset.hits(groups).items()} == {"c2": 1, "port": 1}
    assert report.malformed == 1
    not_zeek = tmp_path / "plain.log"
    not_zeek.write_text("a\tb\n")
    with pytest.raises(MatchInputError, match="no #fields line"):
        either.groups([not_zeek], "zeek", matchset.lookups)


def test_suricata_eve(either: Engine, matchset: MatchSet, tmp_path: Path) -> None:
    events = [
        {"timestamp": "2026-03-01T10:00:00.000000+0000", "event_type": "flow",
         "src_ip": "10.0.0.5", "src_port": 50000, "dest_ip": "203.0.113.66", "dest_port": 8443},
        {"timestamp": "2026-03-01T10:00:01.000000+0000", "event_type": "dns",
         "src_ip": "10.0.0.5", "dest_ip": "10.0.0.1", "dns": {"type": "query",
         "rrname": "c2.evil.example", "rrtype": "A"}},
        {"timestamp": "2026-03-01T10:00:02.000000+0000", "event_type": "http",
         "src_ip": "10.0.0.5", "dest_ip": "198.51.100.9", "dest_port": 80,
         "http": {"hostname": "c2.evil.example", "url": "/gate.php", "http_method": "GET"}},
        {"timestamp": "2026-03-01T10:00:03.000000+0000", "event_type": "tls",
         "src_ip": "10.0.0.5", "dest_ip": "198.51.100.10", "tls": {"sni": "C2.evil.example"}},
        {"timestamp": "2026-03-01T10:00:04.000000+0000", "event_type": "fileinfo",
         "src_ip": "198.51.100.9", "dest_ip": "10.0.0.5", "fileinfo": {"sha256": "ab" * 32}},
    ]  # fmt: skip
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "{truncated\n")
    groups, report = either.groups([path], "eve", matchset.lookups)
    found = {n: h.count for n, h in matchset.hits(groups).items()}
    assert found == {"c2": 1, "port": 1, "domain": 3, "url": 1, "hash": 1}
    assert report.rows == 5 and report.malformed == 1 and report.problems[0][1] == 6
    assert matchset.hits(groups)["c2"].first_seen is not None
