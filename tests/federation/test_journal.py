"""The release journal answers "who received what, when" for the originator's audit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from allied.cli import main
from allied.ingest.stix_import import import_file
from allied.stix.labels import TLP2_IDS
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
