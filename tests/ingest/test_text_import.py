"""Written reports: a national CERT's advisory (Markdown) and a news article (HTML) become a
STIX report referring to the indicators, vulnerabilities, techniques, countries, actors and
organisations they mention, all under the report's label."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from allied.errors import InputFormatError
from allied.ingest.entities import find_entities
from allied.ingest.importers import Options, run
from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.labels import TLP2_IDS
from tests.ingest.conftest import DATA, latest, oasis_errors


def test_a_cert_advisory(node: Node) -> None:
    marking = node.add_label("nr-nato", tlp="amber", policy="NATO", classification="RESTRICTED",
                             releasable_to=["NATO"])  # fmt: skip
    report = run(node, "text", DATA / "advisory.md", Options(label="nr-nato"))
    assert report.created == {
        "attack-pattern": 2, "identity": 2, "indicator": 7, "intrusion-set": 1, "location": 3,
        "report": 1, "vulnerability": 1,
    }  # fmt: skip
    (written,) = latest(node, "report")
    assert written["name"] == "CERT-EE advisory 2026-014: spear-phishing against defence ministries"
    assert written["description"] == (DATA / "advisory.md").read_text().strip()
    assert written["report_types"] == ["threat-report"]
    everything = latest(node)
    mine = [o for o in everything if o["id"] in written["object_refs"]]
    assert len(mine) == len(written["object_refs"]) == 16
    for obj in [*mine, written]:
        assert obj["object_marking_refs"] == [TLP2_IDS["amber"], marking], obj["id"]
        assert obj["created_by_ref"] == node.config.identity_id
    patterns = {o["pattern"] for o in mine if o["type"] == "indicator"}
    assert patterns == {
        "[url:value = 'https://mod-update.example.net/login.php']",
        "[domain-name:value = 'secure-mail.gov-update.org']",
        "[ipv4-addr:value = '198.51.100.23']",
        "[ipv6-addr:value = '2001:db8:4a::17']",
        "[email-addr:value = 'recruitment@mod-careers.com']",
        "[file:hashes.'SHA-256' = "
        "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
        "[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f']",
    }
    names = {o["type"]: set() for o in mine}
    for o in mine:
        names[o["type"]].add(o["name"])
    assert names["vulnerability"] == {"CVE-2024-3400"}
    assert names["attack-pattern"] == {"T1566.001", "T1190"}
    assert names["intrusion-set"] == {"APT28"}
    assert names["location"] == {"Estonia", "Latvia", "Lithuania"}
    assert names["identity"] == {
        "Estonian Information System Authority",
        "NATO Cooperative Cyber Defence Centre of Excellence",
    }
    countries = {o["name"]: o["country"] for o in mine if o["type"] == "location"}
    assert countries == {"Estonia": "EE", "Latvia": "LV", "Lithuania": "LT"}
    technique = next(o for o in mine if o.get("name") == "T1566.001")
    assert technique["external_references"][0] == {
        "source_name": "mitre-attack", "external_id": "T1566.001",
        "url": "https://attack.mitre.org/techniques/T1566/001/",
    }  # fmt: skip
    actor = next(o for o in mine if o["type"] == "intrusion-set")
    assert "Fancy Bear" in actor["aliases"]
    assert oasis_errors(everything) == []
    assert node.verify().ok


def test_a_news_article_in_html(node: Node) -> None:
    report = run(node, "text", DATA / "news.html", Options())
    (written,) = latest(node, "report")
    assert written["name"] == "Allies rehearse a joint response to a cyber attack on the grid"
    assert "var tracking" not in written["description"]  # scripts and styles are no text
    assert "font-family" not in written["description"]
    assert written["description"].startswith("Allies rehearse")
    assert "TALLINN — Cyber defenders" in written["description"]  # entities decoded
    found = {(o["type"], o["name"]) for o in latest(node) if o["id"] in written["object_refs"]}
    assert {name for kind, name in found if kind == "location"} == {
        "Estonia", "Finland", "Poland", "South Korea", "United States", "United Kingdom",
        "Ukraine",
    }  # fmt: skip
    assert {name for kind, name in found if kind == "intrusion-set"} == {
        "Sandworm Team", "Volt Typhoon",
    }  # fmt: skip
    assert {name for kind, name in found if kind == "identity"} == {
        "NATO Cooperative Cyber Defence Centre of Excellence",
        "European Union Agency for Cybersecurity",
        "CERT-EU",
    }
    assert {name for kind, name in found if kind == "indicator"} == {
        "ipv4: 203.0.113.45", "domain: grid-telemetry.example.net",
    }  # fmt: skip
    assert "tracker.example.com" not in str(found)
    assert report.created["report"] == 1
    # without a label nothing of it leaves the node (fail closed)
    assert all(
        "object_marking_refs" not in o for o in latest(node) if o["id"] in written["object_refs"]
    )


def test_unlabelled_reports_stay_inside_and_labelled_ones_follow_their_label(
    node: Node, tmp_path: Path
) -> None:
    node.add_partner("usa", nation="USA", clearances=["NATO=SECRET"], communities=["council"])
    node.add_partner("kor", nation="KOR", communities=["council"])
    node.add_label("nato-r", tlp="green", policy="NATO", classification="RESTRICTED",
                   releasable_to=["USA"])  # fmt: skip
    run(node, "text", DATA / "advisory.md", Options(label="nato-r"))
    run(node, "text", DATA / "news.html", Options())
    egress = Egress(node)
    for written in latest(node, "report"):
        labelled = "object_marking_refs" in written
        assert egress.explain(written["id"], "usa").allowed is labelled
        assert not egress.explain(written["id"], "kor").allowed


def test_a_re_import_changes_nothing(node: Node, tmp_path: Path) -> None:
    first = run(node, "text", DATA / "advisory.md", Options())
    count = node.store.version_count()
    again = run(node, "text", DATA / "advisory.md", Options())
    assert (again.stored, again.duplicates) == (0, first.stored)
    assert node.store.version_count() == count
    edited = tmp_path / "advisory-v2.md"
    edited.write_text((DATA / "advisory.md").read_text() + "\nUpdate: also seen in Finland.\n")
    second = run(node, "text", edited, Options())
    assert second.created["report"] == 1 and second.created["location"] == 4
    assert len(latest(node, "report")) == 2  # another text is another report


@pytest.mark.parametrize(
    "page",
    [
        "<html><head><title>T</title>head-text 203.0.113.50</head><body>Body 192.0.2.9</body>",
        "<html><head><title>T</title><meta name=x><body>Body 192.0.2.9</body></html>",
    ],
)
def test_html_text_is_what_the_page_shows(node: Node, tmp_path: Path, page: str) -> None:
    path = tmp_path / "page.html"
    path.write_text(page)
    run(node, "text", path, Options())
    (written,) = latest(node, "report")
    assert (written["name"], written["description"]) == ("T", "Body 192.0.2.9")
    assert [o["name"] for o in latest(node, "indicator")] == ["ipv4: 192.0.2.9"]


def test_plain_text_and_a_report_that_names_nothing(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "minutes.txt"
    path.write_text("\n\nMinutes of the planning meeting\n\nThe next drill is in spring.\n")
    report = run(node, "text", path, Options())
    (written,) = latest(node, "report")
    assert written["name"] == "Minutes of the planning meeting"
    assert written["object_refs"] == [node.config.identity_id]
    assert "nothing found in the text" in report.notes[0]


def test_entities_are_whole_words_and_acronyms_only_in_capitals() -> None:
    found = {(e.kind, e.key) for e in find_entities(
        "The nsa and the uk chose a snake-oil remedy from Chadwick; Fancy Bear and the "
        "NSA met in Tallinn, Estonia. Sandworm's tooling; the DPRK; Republic of Korea."
    )}  # fmt: skip
    assert found == {
        ("intrusion-set", "APT28"), ("identity", "National Security Agency"),
        ("location", "EE"), ("intrusion-set", "Sandworm Team"), ("location", "KP"),
        ("location", "KR"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "holds no text"), (b"\xff\xfe\x00bad", "not UTF-8 text"), (b"a\x00b", "NUL")],
)
def test_what_is_no_report(node: Node, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match=message):
        run(node, "text", path, Options())
    assert latest(node, "report") == []


def test_the_command_line(cli: Callable[..., Result]) -> None:
    result = cli("import", "--format", "text", str(DATA / "advisory.md"), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert '"dry_run": true' in result.output and '"indicator": 7' in result.output
    result = cli("import", "--format", "text", str(DATA / "advisory.md"), str(DATA / "news.html"))
    assert result.exit_code == 0, result.output
    assert "advisory.md: 17 stored (2 attack-pattern, 2 identity, 7 indicator" in result.output
    result = cli("import", "--format", "text", str(DATA / "missing.md"))
    assert result.exit_code == 1
    assert "missing.md: cannot read: No such file or directory" in result.output
