"""The compiled-pattern cache: the same index with and without it, only new versions
compiled, liveness decided at each run, owner-only files, a broken file ignored."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert

from allied.ingest.stix_import import import_file
from allied.matching.compile import Compiled, try_compile
from allied.matching.index import PatternIndex, cache_path
from allied.matching.matchset import Group, MatchSet
from allied.node import Node
from allied.store import schema
from tests.conftest import STAMP, indicator, write_bundle

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _indicators() -> list[dict[str, Any]]:
    return [
        indicator(1, pattern="[ipv4-addr:value = '198.51.100.7']"),
        indicator(
            2, pattern="[ipv4-addr:value = '10.0.0.0/8' OR domain-name:value = 'A.example.']"
        ),
        indicator(3, pattern="[network-traffic:dst_port = 443 AND "
                             "network-traffic:dst_ref.value = '192.0.2.1']"),
        indicator(4, pattern="[domain-name:value LIKE '%.bad']"),
        indicator(5, pattern="[domain-name:value = 'revoked.example']", revoked=True),
        indicator(6, pattern="[domain-name:value = 'late.example']",
                  valid_from="2026-09-01T00:00:00Z"),
        indicator(7, pattern="[domain-name:value = 'over.example']",
                  valid_from="2026-01-01T00:00:00Z", valid_until="2026-03-01T00:00:00Z"),
        indicator(8, pattern="rule x { condition: true }", pattern_type="yara"),
    ]  # fmt: skip


def _load(node: Node, tmp_path: Path, objects: list[dict[str, Any]]) -> None:
    import_file(node, write_bundle(tmp_path / f"b{len(objects)}.json", objects))


def test_cached_index_equals_a_fresh_compilation(node: Node, tmp_path: Path) -> None:
    objects = _indicators()
    _load(node, tmp_path, objects)
    live = {o["id"]: try_compile(o["pattern"]) for o in objects[:3]}  # what is live at NOW
    direct = MatchSet({i: c for i, c in live.items() if isinstance(c, Compiled)})

    fresh = PatternIndex.load(node.store, None, NOW)
    first = PatternIndex.load(node.store, node.config.directory, NOW)  # writes the cache
    cached = PatternIndex.load(node.store, node.config.directory, NOW)  # reads it
    try:
        for index in (fresh, first, cached):
            assert index.lookups == direct.lookups
            assert index.count == 3
            assert [(i, r.split(":")[0]) for i, _, r in index.unsupported] == [
                (objects[3]["id"], "unsupported"),  # LIKE
                (objects[7]["id"], "unsupported"),  # a yara rule
            ]
        # the verdict for a candidate row is the direct one
        row = {"dst_ip": "10.1.2.3", "domain": "a.example", "dst_port": "443"}
        group = Group(row, 5, None, None)
        assert cached.matchset([group]).hits([group]).keys() == direct.hits([group]).keys()
        assert set(direct.hits([group])) == {objects[1]["id"]}
    finally:
        for index in (fresh, first, cached):
            index.close()


def test_a_cached_run_parses_no_stored_json(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = _indicators()
    _load(node, tmp_path, objects)
    PatternIndex.load(node.store, node.config.directory, NOW).close()
    path = cache_path(node.config.directory)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    read: list[int] = []
    original = node.store.json_by_pk

    def spy(pks: Any) -> Any:
        read.extend(pks)
        return original(pks)

    monkeypatch.setattr(node.store, "json_by_pk", spy)
    PatternIndex.load(node.store, node.config.directory, NOW).close()
    assert read == []

    # a new version of indicator 1 and a new indicator: only those two are compiled
    newer = {**objects[0], "modified": "2026-05-01T00:00:00.000Z",
             "pattern": "[ipv4-addr:value = '203.0.113.9']"}  # fmt: skip
    _load(node, tmp_path, [newer, indicator(9, pattern="[url:value = 'http://x.example/a']")])
    index = PatternIndex.load(node.store, node.config.directory, NOW)
    try:
        assert len(read) == 2
        assert index.lookups.values["dst_ip"] == {"203.0.113.9", "192.0.2.1"}
        assert index.lookups.values["url"] == {"http://x.example/a"}
        assert index.count == 4
    finally:
        index.close()


def test_liveness_is_decided_at_each_run(node: Node, tmp_path: Path) -> None:
    _load(node, tmp_path, _indicators())
    directory = node.config.directory
    early = PatternIndex.load(node.store, directory, datetime(2026, 2, 1, tzinfo=UTC))
    late = PatternIndex.load(node.store, directory, datetime(2026, 10, 1, tzinfo=UTC))
    try:
        assert "over.example" in early.lookups.values["domain"]
        assert "late.example" not in early.lookups.values["domain"]
        assert "late.example" in late.lookups.values["domain"]
        assert "over.example" not in late.lookups.values["domain"]
        assert (
            "revoked.example" not in early.lookups.values["domain"] | late.lookups.values["domain"]
        )
    finally:
        early.close()
        late.close()


def test_a_broken_cache_file_is_ignored_and_written_anew(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _load(node, tmp_path, _indicators())
    path = cache_path(node.config.directory)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"PAR1 not really parquet")
    with caplog.at_level(logging.WARNING, logger="allied.matching.index"):
        index = PatternIndex.load(node.store, node.config.directory, NOW)
    try:
        assert index.count == 3
        assert "ignoring the pattern cache" in caplog.text
    finally:
        index.close()
    again = PatternIndex.load(node.store, node.config.directory, NOW)
    try:
        assert again.lookups == index.lookups
    finally:
        again.close()
    assert path.read_bytes()[:4] == b"PAR1" and len(path.read_bytes()) > 100


def test_withdrawals_are_asked_at_each_run(node: Node, tmp_path: Path) -> None:
    """A peer's withdrawal comes and goes without a new version: the cached set stays the
    same, and the index still follows it."""
    objects = _indicators()
    _load(node, tmp_path, objects)
    directory = node.config.directory
    PatternIndex.load(node.store, directory, NOW).close()  # the cache, for this set
    gone = schema.withdrawals
    with node.store.write() as writer:
        writer.conn.execute(
            insert(gone).values(object_id=objects[0]["id"], peer="KOR", withdrawn=STAMP)
        )
    index = PatternIndex.load(node.store, directory, NOW)
    try:
        assert "198.51.100.7" not in index.lookups.values["dst_ip"]
        assert index.count == 2
    finally:
        index.close()
    with node.store.write() as writer:
        writer.conn.execute(delete(gone).where(gone.c.object_id == objects[0]["id"]))
    index = PatternIndex.load(node.store, directory, NOW)
    try:
        assert "198.51.100.7" in index.lookups.values["dst_ip"]
    finally:
        index.close()
