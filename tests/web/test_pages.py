"""What the console's pages show, over real HTTP against the KOR node of the TAXII tests:
the dashboard's figures, search filters, an object's banner, checks, graph, sightings and
receivers, the journal, and the forms that create indicators and reports."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from allied.ingest.stix_import import import_file
from allied.taxii.protocol import MEDIA_TYPE
from tests.conftest import IDENTITY, STAMP, TLP_GREEN, indicator, write_bundle
from tests.web.conftest import Site, post_form


def _cells(page: httpx.Response, table: str) -> list[list[str]]:
    """The text of each row of the table with id ``table`` (tags stripped)."""
    body = re.search(rf'<table[^>]*id="{table}".*?</table>', page.text, re.S)
    assert body is not None, f"no table {table}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(0), re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
        if "<td" in row
    ]


def _ids(page: httpx.Response) -> list[str]:
    return [row[-1] for row in _cells(page, "hits") if len(row) > 1]


def test_the_dashboard_counts_what_the_node_holds(site: Site, analyst: httpx.Client) -> None:
    page = analyst.get("/ui/")
    assert page.status_code == 200
    by_type = {row[0]: int(row[1]) for row in _cells(page, "by-type")}
    assert by_type == site.node.store.counts_by_type()
    labels = {row[0]: int(row[1]) for row in _cells(page, "by-label")}
    assert labels["NATO SECRET REL USA"] == 1
    assert labels["TLP:RED"] == 1  # the tightened indicator, by its latest version
    assert labels["TLP:GREEN"] == 2  # the first indicator and the relationship, not it
    head = site.node.store.tree_heads()[-1]
    assert str(head.size) in re.sub(r"\s+", " ", page.text.split('id="ledger-head"')[1][:400])
    assert "revoked partners: gone" in page.text  # an alert


def test_the_dashboard_alerts_on_a_flagged_peer(site: Site, analyst: httpx.Client) -> None:
    from sqlalchemy import insert

    from allied.store import schema

    with site.node.store.write() as writer:
        writer.conn.execute(
            insert(schema.peers).values(
                name="usa-node", url="http://127.0.0.1:9/", partner="usa", created=STAMP,
                failures=0, received=0, rejected=0, pushed=0,
                flagged="its ledger at size 10 is not consistent with the one seen at 12",
            )
        )  # fmt: skip
    page = analyst.get("/ui/")
    assert "peer usa-node is flagged: its ledger at size 10 is not consistent" in page.text
    assert _cells(page, "peers")[0][:3] == ["usa-node", "usa", "flagged"]


def test_search_filters_by_type_label_originator_time_and_text(
    site: Site, analyst: httpx.Client
) -> None:
    ids = site.world.ids
    everything = _ids(analyst.get("/ui/search"))
    assert {ids["green"], ids["secret"], ids["clear"], ids["rel"], ids["tightened"]} <= set(
        everything
    )
    assert set(_ids(analyst.get("/ui/search", params={"type": "malware"}))) == {ids["clear"]}
    assert _ids(analyst.get("/ui/search", params={"label": site.world.secret_label})) == [
        ids["secret"]
    ]
    assert _ids(analyst.get("/ui/search", params={"label": "tlp:red"})) == [ids["tightened"]]
    assert _ids(analyst.get("/ui/search", params={"q": "198.51.100.2'"})) == [ids["secret"]]
    assert _ids(analyst.get("/ui/search", params={"q": "FAMILY 3"})) == [ids["clear"]]  # any case
    mine = _ids(analyst.get("/ui/search", params={"originator": IDENTITY, "type": "indicator"}))
    assert set(mine) == {ids["green"], ids["secret"], ids["tightened"]}
    assert _ids(analyst.get("/ui/search", params={"since": "2026-03-02", "type": "indicator"})) == [
        ids["tightened"]  # its second version is of March 2
    ]
    assert ids["tightened"] not in _ids(
        analyst.get("/ui/search", params={"until": "2026-03-01", "type": "indicator"})
    )
    assert _ids(analyst.get("/ui/search", params={"q": "100%_"})) == []  # wildcards are text


def test_search_answers_htmx_with_the_results_only(analyst: httpx.Client) -> None:
    page = analyst.get("/ui/search", params={"type": "malware"}, headers={"HX-Request": "true"})
    assert page.status_code == 200
    assert "<html" not in page.text and 'id="hits"' in page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "expected a date"),
        ({"type": "Not A Type"}, "not a STIX type"),
        ({"page": "0"}, "expected a page number"),
        ({"label": "NATO SECRET REL USA"}, "no such classification label"),
        ({"label": "tlp:purple"}, "no such TLP level"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(
    analyst: httpx.Client, params: dict[str, str], message: str
) -> None:
    page = analyst.get("/ui/search", params=params)
    assert page.status_code in (400, 404)
    assert message in page.text


def test_search_pages_through_many_objects(
    site: Site, analyst: httpx.Client, tmp_path: Path
) -> None:
    many = [indicator(100 + n, name=f"paged {n}") for n in range(60)]
    import_file(site.node, write_bundle(tmp_path / "many.json", many))
    first = analyst.get("/ui/search", params={"q": "paged"})
    assert len(_ids(first)) == 50 and 'rel="next"' in first.text
    second = analyst.get("/ui/search", params={"q": "paged", "page": "2"})
    assert len(_ids(second)) == 10 and 'rel="next"' not in second.text
    assert not set(_ids(first)) & set(_ids(second))


def test_an_object_shows_its_banner_checks_and_receivers(site: Site, analyst: httpx.Client) -> None:
    page = analyst.get(f"/ui/objects/{site.world.ids['secret']}")
    assert page.status_code == 200
    banner = re.search(r'<div class="banner ([^"]+)" id="banner"[^>]*>([^<]*)<', page.text)
    assert banner is not None
    assert banner.group(2) == "NATO SECRET // REL TO USA | TLP:AMBER"
    assert banner.group(1) == "tlp-amber"
    assert "verified: signed by KOR NCSC (this node)" in page.text
    assert "inclusion proof verifies" in page.text
    receivers = {row[0]: row for row in _cells(page, "receivers")}
    assert receivers["usa"][2] == "allowed"
    assert receivers["est"][2] == "denied" and "EST not in releasable_to" in receivers["est"][3]
    assert receivers["gone"][2] == "denied" and "revoked" in receivers["gone"][3]


def test_a_tampered_object_shows_a_failed_signature(site: Site, analyst: httpx.Client) -> None:
    from sqlalchemy import update

    from allied.store import schema

    object_id = site.world.ids["green"]
    stored = site.node.store.latest(object_id)
    assert stored is not None
    forged = stored.json.replace("bad address 1", "harmless address")
    with site.node.store.write() as writer:
        writer.conn.execute(
            update(schema.objects).where(schema.objects.c.id == object_id).values(json=forged)
        )
    page = analyst.get(f"/ui/objects/{object_id}")
    assert re.search(r'id="signature" class="denied">does not verify', page.text)


def test_an_unknown_object_is_a_404(analyst: httpx.Client) -> None:
    page = analyst.get("/ui/objects/indicator--00000000-0000-4000-8000-0000000000ff")
    assert page.status_code == 404
    assert "no object indicator--00000000-0000-4000-8000-0000000000ff" in page.text


def test_the_graph_joins_relationship_ends(site: Site, analyst: httpx.Client) -> None:
    ids = site.world.ids
    graph = analyst.get(f"/ui/objects/{ids['secret']}/graph.json").json()
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert set(nodes) == {ids["secret"], ids["clear"]}
    assert nodes[ids["secret"]]["focus"] and not nodes[ids["clear"]]["focus"]
    assert nodes[ids["clear"]]["href"] == f"/ui/objects/{ids['clear']}"
    assert graph["edges"] == [
        {"source": ids["secret"], "target": ids["clear"], "label": "indicates"}
    ]


def _sighting(n: int, of: str, first_seen: str, count: int) -> dict[str, Any]:
    return {
        "type": "sighting", "spec_version": "2.1",
        "id": f"sighting--{n:08x}-0000-4000-8000-000000000009",
        "created": STAMP, "modified": STAMP, "sighting_of_ref": of,
        "first_seen": first_seen, "last_seen": first_seen, "count": count,
        "object_marking_refs": [TLP_GREEN],
    }  # fmt: skip


def test_sightings_are_charted_per_day(site: Site, analyst: httpx.Client, tmp_path: Path) -> None:
    target = site.world.ids["green"]
    sightings = [
        _sighting(1, target, "2026-03-03T08:00:00Z", 4),
        _sighting(2, target, "2026-03-03T18:00:00Z", 2),
        _sighting(3, target, "2026-03-05T09:00:00Z", 3),
    ]
    import_file(site.node, write_bundle(tmp_path / "sightings.json", sightings))
    page = analyst.get(f"/ui/objects/{target}")
    bars = re.findall(r'<rect class="bar"[^>]*height="([0-9.]+)"><title>([^<]+)</title>', page.text)
    assert [title for _h, title in bars] == ["2026-03-03: 6", "2026-03-05: 3"]
    assert float(bars[0][0]) == pytest.approx(2 * float(bars[1][0]))
    assert "9 sightings on 2 days" in page.text
    graph = analyst.get(f"/ui/objects/{target}/graph.json").json()
    assert {e["label"] for e in graph["edges"]} == {"sighting of"}
    assert len(graph["nodes"]) == 4


def test_the_journal_lists_releases_by_partner(site: Site, analyst: httpx.Client) -> None:
    api = httpx.get(
        f"{site.url}/api/collections/{site.world.collections['KOR NCSC']}/objects/",
        headers={"Authorization": f"Bearer {site.world.tokens['usa']}", "Accept": MEDIA_TYPE},
    )
    assert api.status_code == 200
    released = {o["id"] for o in api.json()["objects"]}
    rows = _cells(analyst.get("/ui/journal", params={"partner": "usa"}), "journal")
    assert {row[2] for row in rows} == released
    assert {row[1] for row in rows} == {"usa"}
    assert all(row[4].startswith("taxii") for row in rows)
    assert "Nothing released to est" in analyst.get("/ui/journal", params={"partner": "est"}).text
    assert analyst.get("/ui/journal", params={"partner": "nobody"}).status_code == 404


def test_an_indicator_made_in_the_form_is_signed_labelled_and_released_by_its_label(
    site: Site, analyst: httpx.Client
) -> None:
    form = {
        "name": "C2 server of the exercise",
        "pattern": "[ipv4-addr:value = '203.0.113.77']",
        "indicator_type": "malicious-activity",
        "label": "NATO SECRET REL USA",
        "description": "Seen beaconing during the drill.",
    }
    response = post_form(analyst, "/ui/new/indicator", form)
    assert response.status_code == 303
    object_id = response.headers["location"].removeprefix("/ui/objects/")
    stored = site.node.store.latest(object_id)
    assert stored is not None
    data = stored.data
    assert data["created_by_ref"] == site.node.config.identity_id
    assert data["pattern"] == form["pattern"] and data["indicator_types"] == ["malicious-activity"]
    assert site.world.secret_label in data["object_marking_refs"]
    assert site.node.verify().ok
    receivers = {
        row[0]: row[2] for row in _cells(analyst.get(response.headers["location"]), "receivers")
    }
    assert receivers == {"usa": "allowed", "est": "denied", "gone": "denied"}


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"pattern": "[ipv4-addr:value = '203.0.113.77'"}, "pattern", ""),
        ({"pattern": ""}, "pattern", "a STIX pattern is required"),
        ({"name": "  "}, "name", "a name is required"),
        ({"label": "no such label"}, "label", "choose one of the node's labels"),
        ({"indicator_type": "evil"}, "indicator_type", "not an indicator type"),
    ],
)
def test_a_bad_indicator_form_names_the_field_and_stores_nothing(
    site: Site, analyst: httpx.Client, form: dict[str, str], field: str, message: str
) -> None:
    before = site.node.store.version_count()
    good = {"name": "x", "pattern": "[ipv4-addr:value = '203.0.113.77']", "label": "tlp:green"}
    response = post_form(analyst, "/ui/new/indicator", {**good, **form})
    assert response.status_code == 422
    error = re.search(rf'id="error-{field}">([^<]*)<', response.text)
    assert error is not None and message in html.unescape(error.group(1))
    assert site.node.store.version_count() == before
    kept = form.get("name", good["name"]).strip() or 'value=""'
    assert kept in response.text  # the form comes back filled in


def test_a_report_covers_objects_the_node_holds(site: Site, analyst: httpx.Client) -> None:
    ids = site.world.ids
    form = {"name": "Weekly summary", "object_refs": f"{ids['green']}\n{ids['clear']}\n",
            "label": "tlp:green", "description": "Two items of note."}  # fmt: skip
    response = post_form(analyst, "/ui/new/report", form)
    assert response.status_code == 303
    stored = site.node.store.latest(response.headers["location"].removeprefix("/ui/objects/"))
    assert stored is not None and stored.data["object_refs"] == [ids["green"], ids["clear"]]
    unknown = "malware--00000000-0000-4000-8000-0000000000ff"
    refused = post_form(analyst, "/ui/new/report", {**form, "object_refs": unknown})
    assert refused.status_code == 422 and f"this node holds no {unknown}" in refused.text
