"""The release journal answers "who received what, when" for the originator's audit."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from click.testing import CliRunner

from allied.cli import main
from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.stix.labels import TLP2_IDS
from allied.store.journal import SUFFIX
from allied.store.store import Store
from allied.taxii.service import own_collection_id
from tests.conftest import indicator, write_bundle
from tests.federation.conftest import Federation
from tests.taxii.conftest import Api


def test_what_a_peer_pulled_is_in_the_journal_and_nothing_else(federation: Federation) -> None:
    with federation.node("KOR") as kor:
        creator = kor.config.identity_id
        for_usa = kor.add_label("RED for USA", tlp="red", recipients=["USA"])
    shared, kept = (
        indicator(1, created_by_ref=creator),
        indicator(2, created_by_ref=creator, object_marking_refs=[TLP2_IDS["red"], for_usa]),
    )
    with federation.node("KOR") as kor:
        import_file(kor, write_bundle(federation.root / "kor.json", [shared, kept]))
    federation.sync("NATO")  # NATO pulls from USA only: nothing of KOR's yet
    federation.sync("USA")
    runner = CliRunner()
    kor_dir = str(federation.directories["KOR"])
    result = runner.invoke(main, ["--node", kor_dir, "releases", "--to", "USA", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {(r["id"], r["version"]) for r in rows} >= {
        (shared["id"], shared["modified"]),
        (kept["id"], kept["modified"]),
    }
    assert all(r["partner"] == "USA" and r["via"] == "taxii KOR" for r in rows)
    result = runner.invoke(main, ["--node", kor_dir, "releases", "--to", "NATO", "--json"])
    assert json.loads(result.output) == []  # NATO never asked KOR for anything
    result = runner.invoke(main, ["--node", kor_dir, "releases", "--object", kept["id"]])
    assert result.exit_code == 0 and "USA" in result.output and "NATO" not in result.output


def test_each_taxii_answer_with_content_is_journaled_and_only_those(
    federation: Federation,
) -> None:
    with federation.node("USA") as usa:
        import_file(usa, write_bundle(federation.root / "usa.json", [indicator(5)]))
        token = (federation.root / "NATO-at-USA.token").read_text().strip()
        api = Api(usa, token)
        own = own_collection_id(usa.config.identity_id)
        base = f"/api/collections/{own}/objects/{indicator(5)['id']}/"
        assert api.get(f"{base}versions/").status_code == 200
        assert usa.store.releases(partner="NATO") == []  # a list of versions is no content
        assert api.get(base).status_code == 200
        [row] = usa.store.releases(partner="NATO")
        assert (row["id"], row["via"]) == (indicator(5)["id"], "taxii USA")


def test_an_export_for_a_partner_is_journaled(federation: Federation) -> None:
    with federation.node("KOR") as kor:
        import_file(kor, write_bundle(federation.root / "kor.json", [indicator(6)]))
    out = federation.root / "for-usa.json"
    result = CliRunner().invoke(
        main,
        ["--node", str(federation.directories["KOR"]), "export", "--for", "USA", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    with federation.node("KOR") as kor:
        ids = {row["id"] for row in kor.store.releases(partner="USA") if row["via"] == "export"}
    assert indicator(6)["id"] in ids
    assert ids == {o["id"] for o in json.loads(out.read_text())["objects"]}


def test_reads_are_journaled_while_a_long_write_holds_the_store(
    federation: Federation,
) -> None:
    """The journal is written on every read with content; it must not wait for the store's
    write lock, which a large import holds for minutes."""
    with federation.node("USA") as usa:
        import_file(usa, write_bundle(federation.root / "usa.json", [indicator(6)]))
        api = Api(usa, (federation.root / "NATO-at-USA.token").read_text().strip())
        path = f"/api/collections/{own_collection_id(usa.config.identity_id)}/objects/"
        other = Store.open(usa.config.database_url)  # another process's import, mid-way
        try:
            with other.write():
                started = time.monotonic()
                response = api.get(f"{path}{indicator(6)['id']}/")
                waited = time.monotonic() - started
        finally:
            other.close()
        assert response.status_code == 200, response.text
        assert waited < 10, f"the read waited {waited:.1f} s for the store's write lock"
        assert [r["id"] for r in usa.store.releases(partner="NATO")] == [indicator(6)["id"]]


def test_entries_kept_in_the_store_by_an_older_version_are_carried_over(tmp_path: Path) -> None:
    """Older versions kept the journal in the SQLite store's own table."""
    directory = tmp_path / "usa"
    init_node(directory, name="USA", nation="USA", database="")
    with sqlite3.connect(directory / "store.db") as conn:
        conn.executemany(
            "INSERT INTO release_journal (partner, object_id, version, released, via) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                ("NATO", indicator(7)["id"], "v1", "2026-01-01T00:00:00.000000Z", "taxii USA"),
                ("KOR", indicator(8)["id"], "v2", "2026-01-02T00:00:00.000000Z", "export"),
            ],
        )
    journal = directory / ("store.db" + SUFFIX)
    journal.unlink(missing_ok=True)
    with Node.open(directory) as usa:
        assert [(r["partner"], r["via"]) for r in usa.store.releases()] == [
            ("KOR", "export"),
            ("NATO", "taxii USA"),
        ]
        usa.store.journal("KOR", [(indicator(9)["id"], "v3")], "export")
    with Node.open(directory) as usa:  # carried over once, not again
        assert len(usa.store.releases()) == 3
    assert journal.exists()
