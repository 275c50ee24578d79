"""`allied match --blind-with PEER` between two real nodes over HTTP on 127.0.0.1: KOR's logs
against NATO SECRET indicators KOR may blind-match but not receive; the same sightings a
clear match gives for the values that hit; the endpoints refuse what they must."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allied.ingest.stix_import import import_file
from allied.policy.egress import Egress
from allied.stix.labels import TLP2_IDS
from tests.conftest import indicator, write_bundle
from tests.federation.conftest import ALLIED, Federation, build

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Federation]:
    """KOR peers with NATO (tokens both ways); USA takes no part."""
    built = build(tmp_path, pulls={"KOR": ["NATO"], "USA": [], "NATO": []})
    try:
        yield built
    finally:
        built.close()


def test_blind_match_with_a_peer_gives_the_clear_sightings(
    pair: Federation, tmp_path: Path
) -> None:
    with pair.node("NATO") as nato:
        secret = nato.add_label(
            "NATO SECRET REL NATO", tlp="amber", policy="NATO", classification="SECRET",
            releasable_to=["NATO"], blind_match=["KOR"],
        )  # fmt: skip
        marks = [TLP2_IDS["amber"], secret]
        made = [
            indicator(1, pattern="[domain-name:value = 'c2.secret.example']",
                      object_marking_refs=marks),
            indicator(2, pattern="[ipv4-addr:value = '203.0.113.77']", object_marking_refs=marks),
            indicator(3, pattern="[domain-name:value = 'never.seen.example']",
                      object_marking_refs=marks),
        ]  # fmt: skip
        import_file(nato, write_bundle(tmp_path / "nato.json", made))
        assert not {json.loads(t)["id"] for t in Egress(nato).release("KOR")} & {
            m["id"] for m in made
        }  # KOR may not receive them
    log = tmp_path / "kor.csv"
    log.write_text(
        "ts,src_ip,dst_ip,domain\n"
        "2026-03-01T10:00:00Z,10.0.0.1,203.0.113.77,www.example.org\n"
        "2026-03-01T11:00:00Z,10.0.0.2,198.51.100.1,C2.SECRET.example.\n"
        "2026-03-01T12:00:00Z,203.0.113.77,198.51.100.2,c2.secret.example\n"
        "2026-03-01T13:00:00Z,10.0.0.3,198.51.100.3,harmless.example\n"
    )
    done = subprocess.run(
        [ALLIED, "--node", str(pair.directories["KOR"]), "match", str(log),
         "--blind-with", "NATO", "--json"],
        capture_output=True, text=True, env={**os.environ, "ALLIED_NODE": ""}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == 4
    assert {h["indicator"]: h["count"] for h in report["hits"]} == {
        made[0]["id"]: 2,
        made[1]["id"]: 2,
    }
    first = {h["indicator"]: (h["first_seen"], h["last_seen"]) for h in report["hits"]}
    assert first[made[1]["id"]] == ("2026-03-01T10:00:00+00:00", "2026-03-01T12:00:00+00:00")
    assert report["stored"] > 0
    with pair.node("KOR") as kor:
        sightings = [s for s in kor.store.summaries("sighting")]
        assert len(sightings) == 2
    # NATO logged how many values KOR asked about (the distinct ones), and never which
    nato_log = (pair.root / "NATO-serve.log").read_text()
    assert "www.example.org" not in nato_log and "harmless.example" not in nato_log


def test_the_endpoints_need_a_partner_and_well_formed_elements(
    pair: Federation, tmp_path: Path
) -> None:
    url = pair.urls["NATO"]
    token = (pair.root / "KOR-at-NATO.token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Accept": TAXII, "Content-Type": TAXII}) as client:
        assert client.post("blind/sessions", content=b"{}").status_code == 401
        client.headers["Authorization"] = f"Bearer {token}"
        refused = client.post("blind/sessions", content=b"{}")  # nothing KOR may match yet
        assert refused.status_code == 403
        assert "no indicator here may be blind-matched by KOR" in refused.json()["description"]
        with pair.node("NATO") as nato:
            mine = indicator(9, pattern="[domain-name:value = 'x.example']",
                             object_marking_refs=[TLP2_IDS["clear"]])  # fmt: skip
            import_file(nato, write_bundle(tmp_path / "clear.json", [mine]))
        opened = client.post("blind/sessions", content=b"{}")
        assert opened.status_code == 200, opened.text
        session = opened.json()["session"]
        bad = client.post(
            f"blind/sessions/{session}/evaluate",
            content=json.dumps({"elements": ["not base64!"]}).encode(),
        )
        assert bad.status_code == 400 and "$.elements[0]" in bad.json()["description"]
        short = base64.b64encode(b"\x01" * 31).decode()
        bad = client.post(
            f"blind/sessions/{session}/evaluate", content=json.dumps({"elements": [short]})
        )
        assert bad.status_code == 400 and "32 bytes" in bad.json()["description"]
        other = client.post(
            "blind/sessions/nosuchsession/evaluate",
            content=json.dumps({"elements": [base64.b64encode(b"\x09" * 32).decode()]}),
        )
        assert other.status_code == 404
