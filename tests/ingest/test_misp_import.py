"""MISP events and feeds, converted by misp-stix, with MISP's tags and distribution levels
carried into Allied labels: never less restricted than MISP said, refused when unsure."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from allied.errors import InputFormatError
from allied.ingest.importers import Options, run, sources
from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.labels import TLP1_IDS, TLP2_IDS
from tests.ingest.conftest import DATA, latest, oasis_errors

EVENT = "5e3c1a7e-1b2c-4d5e-8f90-0a1b2c3d4e5f"
GROUP_EVENT = "6f4d2b8f-2c3d-4e6f-9a01-1b2c3d4e5f60"
RED_IP = "11111111-1111-4111-8111-111111111111"  # the attribute tagged tlp:red
HASH = "33333333-3333-4333-8333-333333333333"
FILE_OBJECT = "44444444-4444-4444-8444-444444444444"


def _nr(node: Node, name: str = "nato-r") -> str:
    return node.add_label(name, tlp="amber", policy="NATO", classification="RESTRICTED",
                          releasable_to=["NATO"])  # fmt: skip


def _objects(node: Node) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in latest(node)}


def _event(tmp_path: Path, change: Callable[[dict[str, Any]], None], name: str = "e.json") -> Path:
    document = json.loads((DATA / "misp-event.json").read_text())
    change(document["Event"])
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_an_event_with_attributes_objects_tags_galaxies_and_sightings(node: Node) -> None:
    label = _nr(node)
    report = run(node, "misp", DATA / "misp-event.json", Options())
    assert report.created == {
        "domain-name": 1, "file": 2, "identity": 1, "indicator": 3, "ipv4-addr": 1,
        "network-traffic": 1, "observed-data": 4, "relationship": 3, "report": 1,
        "sighting": 1, "threat-actor": 1,
    }  # fmt: skip
    assert report.notes == [f"event {EVENT}: distribution all communities"]
    objects = _objects(node)
    event = objects[f"report--{EVENT}"]
    assert event["name"] == "Spear-phishing campaign against ministries of defence"
    # tlp:amber and nato:classification="NR" are markings now, PAP:WHITE is PAP:CLEAR
    assert event["object_marking_refs"] == [TLP2_IDS["amber"], label]
    assert "PAP:CLEAR" in event["labels"] and "campaign:spear" in event["labels"]
    assert not [t for t in event["labels"] if t.lower().startswith(("tlp:", "nato:"))]
    # the attribute tagged tlp:red is RED, and so is what refers to it
    red = [TLP2_IDS["red"], label]
    assert objects[f"indicator--{RED_IP}"]["object_marking_refs"] == red
    assert objects[f"ipv4-addr--{RED_IP}"]["object_marking_refs"] == red
    sighting = next(o for o in objects.values() if o["type"] == "sighting")
    assert sighting["sighting_of_ref"] == f"indicator--{RED_IP}"
    assert sighting["object_marking_refs"] == red
    for relationship in (o for o in objects.values() if o["type"] == "relationship"):
        if RED_IP in relationship["source_ref"]:
            assert relationship["object_marking_refs"] == red
    # everything else carries the event's markings, objects' attributes included
    amber = [TLP2_IDS["amber"], label]
    assert objects[f"indicator--{HASH}"]["object_marking_refs"] == amber
    assert objects[f"indicator--{FILE_OBJECT}"]["object_marking_refs"] == amber
    actor = next(o for o in objects.values() if o["type"] == "threat-actor")
    assert actor["name"] == "APT28" and actor["aliases"] == ["Fancy Bear", "Sofacy"]
    assert actor["object_marking_refs"] == amber
    assert len(event["object_refs"]) == 17
    assert set(event["object_refs"]) | {event["id"], event["created_by_ref"]} == set(objects) - {
        o["id"]
        for o in objects.values()
        if o["type"] in ("marking-definition", "extension-definition")
        or o["id"] == node.config.identity_id
        or o.get("name") == "Allied"
    }
    tlp1 = set(TLP1_IDS.values())
    assert not [o["id"] for o in objects.values() if tlp1 & set(o.get("object_marking_refs", []))]
    assert not tlp1 & set(objects)
    assert oasis_errors(list(objects.values())) == []
    assert node.verify().ok


def test_a_re_import_changes_nothing(node: Node) -> None:
    _nr(node)
    first = run(node, "misp", DATA / "misp-event.json", Options())
    count = node.store.version_count()
    again = run(node, "misp", DATA / "misp-event.json", Options())
    assert (again.stored, again.duplicates) == (0, first.stored)
    assert node.store.version_count() == count


def test_an_updated_event_is_new_versions(node: Node, tmp_path: Path) -> None:
    _nr(node)
    run(node, "misp", DATA / "misp-event.json", Options())

    def update(event: dict[str, Any]) -> None:
        event["timestamp"] = "1759500000"
        event["Attribute"][2]["timestamp"] = "1759500000"
        event["Attribute"][2]["comment"] = "dropper, second stage"

    report = run(node, "misp", _event(tmp_path, update), Options())
    assert report.stored >= 2 and report.created["indicator"] == 1
    assert len(node.store.versions(f"indicator--{HASH}")) == 2
    assert _objects(node)[f"indicator--{HASH}"]["description"] == "dropper, second stage"


def test_a_classification_without_a_label_refuses_the_event(node: Node, tmp_path: Path) -> None:
    before = node.store.version_count()
    with pytest.raises(InputFormatError) as excinfo:
        run(node, "misp", DATA / "misp-event.json", Options())
    message = str(excinfo.value)
    assert "this node has no label for NATO RESTRICTED" in message
    assert "--tag-label 'nato:classification=\"NR\"=LABEL'" in message
    assert node.store.version_count() == before
    label = node.add_label("ours", tlp="amber", policy="NATO", classification="RESTRICTED",
                           releasable_to=["EST", "LVA"])  # fmt: skip
    _nr(node, "theirs")
    with pytest.raises(InputFormatError, match="labels ours, theirs for NATO RESTRICTED"):
        run(node, "misp", DATA / "misp-event.json", Options())
    chosen = Options(tag_labels={'nato:classification="NR"': "ours"})
    run(node, "misp", DATA / "misp-event.json", chosen)
    assert _objects(node)[f"report--{EVENT}"]["object_marking_refs"] == [TLP2_IDS["amber"], label]


@pytest.mark.parametrize(
    "tag", ['nato:classification="NATO_RESTRICTED"', 'nato:classification="NATO RESTRICTED"']
)
def test_expanded_classification_names_map_too(node: Node, tmp_path: Path, tag: str) -> None:
    label = _nr(node)

    def retag(event: dict[str, Any]) -> None:
        event["Tag"][1]["name"] = tag

    run(node, "misp", _event(tmp_path, retag), Options())
    assert label in _objects(node)[f"report--{EVENT}"]["object_marking_refs"]


@pytest.mark.parametrize("tag", ['nato:classification="TOP-ISH"', "nato:classification"])
def test_a_classification_not_understood_refuses_the_event(
    node: Node, tmp_path: Path, tag: str
) -> None:
    _nr(node)

    def retag(event: dict[str, Any]) -> None:
        event["Attribute"][1]["Tag"] = [{"name": tag}]

    with pytest.raises(InputFormatError, match="not a value of the nato taxonomy"):
        run(node, "misp", _event(tmp_path, retag), Options())
    assert latest(node, "report") == []


def test_sharing_groups_and_organisation_only_stay_inside(node: Node) -> None:
    node.add_partner("lva", nation="LVA", communities=["baltic"])
    report = run(node, "misp", DATA / "misp-sharing-group.json", Options())
    assert report.notes == [
        f"event {GROUP_EVENT}: distribution sharing group 'Baltic CERTs' (CERT-EE) -> TLP:RED "
        "(map it with --sharing-group)",
        f"event {GROUP_EVENT}: 1 attributes, objects or notes kept in house (distribution 0 "
        "or an unmapped sharing group) -> TLP:RED",
    ]
    objects = _objects(node)
    assert objects[f"report--{GROUP_EVENT}"]["object_marking_refs"] == [TLP2_IDS["red"]]
    egress = Egress(node)
    assert not egress.explain(f"report--{GROUP_EVENT}", "lva").allowed


def test_a_mapped_sharing_group_takes_its_label_but_organisation_only_stays_red(
    node: Node,
) -> None:
    node.add_partner("lva", nation="LVA", communities=["council"])
    label = node.add_label("baltic", tlp="amber", recipients=["lva"])
    options = Options(sharing_groups={"Baltic CERTs": "baltic"})
    report = run(node, "misp", DATA / "misp-sharing-group.json", options)
    assert report.notes[0].endswith("(CERT-EE) -> label baltic")
    objects = _objects(node)
    # tlp:green from the tag, the sharing group's label, whose own TLP (amber) is stricter
    assert objects[f"report--{GROUP_EVENT}"]["object_marking_refs"] == [TLP2_IDS["amber"], label]
    url = objects["indicator--77777777-7777-4777-8777-777777777777"]
    assert url["object_marking_refs"] == [TLP2_IDS["amber"], label]
    in_house = objects["indicator--88888888-8888-4888-8888-888888888888"]
    assert in_house["object_marking_refs"] == [TLP2_IDS["red"]]  # distribution 0: no group
    egress = Egress(node)
    assert egress.explain(url["id"], "lva").allowed
    assert not egress.explain(in_house["id"], "lva").allowed


def test_a_feed_directory(node: Node, tmp_path: Path) -> None:
    _nr(node)
    feed = sources("misp", DATA / "misp-feed")
    assert [p.name for p in feed] == [f"{EVENT}.json", f"{GROUP_EVENT}.json"]
    reports = [run(node, "misp", path, Options()) for path in feed]
    assert [r.created["report"] for r in reports] == [1, 1]
    assert {o["id"] for o in latest(node, "report")} == {
        f"report--{EVENT}",
        f"report--{GROUP_EVENT}",
    }
    broken = tmp_path / "feed"
    shutil.copytree(DATA / "misp-feed", broken)
    (broken / f"{EVENT}.json").unlink()
    with pytest.raises(InputFormatError, match="cannot read: No such file"):
        run(node, "misp", sources("misp", broken)[0], Options())
    (broken / "manifest.json").unlink()
    with pytest.raises(InputFormatError, match=r"not a MISP feed: no manifest\.json"):
        sources("misp", broken)


def test_an_export_of_several_events(node: Node, tmp_path: Path) -> None:
    _nr(node)
    export = {"response": [json.loads((DATA / name).read_text())
                           for name in ("misp-event.json", "misp-sharing-group.json")]}  # fmt: skip
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    report = run(node, "misp", path, Options())
    assert report.created["report"] == 2 and len(report.notes) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ('{"Event": {"info": "x"}}', "Event has no uuid"),
        ('{"Event": {"uuid": "5e3c1a7e-1b2c-4d5e-8f90-0a1b2c3d4e5f"}}', "Event.info is missing"),
        (
            '{"response": [{"Event": {"uuid": "5e3c1a7e-1b2c-4d5e-8f90-0a1b2c3d4e5f", '
            '"info": "x"}}, 3]}',
            "events[1] has no uuid",
        ),
        (
            '{"Event": {"uuid": " 5e3c1a7e-1b2c-4d5e-8f90-0a1b2c3d4e5f ", "info": "x"}}',
            "is not a uuid",
        ),
    ],
)
def test_what_is_no_misp_event(node: Node, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(InputFormatError, match=message.replace("[", r"\[")):
        run(node, "misp", path, Options())


def test_the_command_line(cli: Callable[..., Result], node: Node, tmp_path: Path) -> None:
    _nr(node)
    result = cli("import", "--format", "misp", str(DATA / "misp-feed"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.count("would be stored") == 2
    assert latest(node, "report") == []
    result = cli("import", "--format", "misp", str(DATA / "misp-feed"),
                 "--sharing-group", "Baltic CERTs=nato-r")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "-> label nato-r" in result.output
    result = cli("import", "--format", "misp", str(DATA / "misp-event.json"),
                 "--sharing-group", "Baltic CERTs=blue")  # fmt: skip
    assert result.exit_code != 0 and "no label named 'blue'" in result.output
    result = cli("import", "--format", "misp", "--tag-label", "oops", str(DATA / "misp-event.json"))
    assert result.exit_code == 2 and "expected NAME=LABEL" in result.output
    result = cli("import", "--tag-label", "a=b", str(DATA / "misp-event.json"))
    assert result.exit_code == 2 and "are for --format misp" in result.output
    broken = tmp_path / "feed"
    shutil.copytree(DATA / "misp-feed", broken)
    (broken / f"{EVENT}.json").unlink()
    result = cli("import", "--format", "misp", str(broken))
    assert result.exit_code == 1
    assert f"{EVENT}.json: cannot read: No such file or directory" in result.output
    assert "0 stored, " in result.output  # the other event: already stored above


def test_event_reports_and_opinions_follow_what_they_are_about(node: Node, tmp_path: Path) -> None:
    """An analyst's event report kept in house, and a false-positive sighting (an opinion)
    on an attribute kept in house, stay on this node while the event itself is shared."""
    _nr(node)
    node.add_partner("usa", nation="USA", clearances=["NATO=SECRET"], communities=["NATO"])

    def annotate(event: dict[str, Any]) -> None:
        event["EventReport"] = [{
            "uuid": "abababab-1111-4111-8111-111111111111", "name": "Analyst notes",
            "content": "Internal only: the source is a liaison officer.", "distribution": "0",
            "timestamp": "1759400000", "deleted": False,
        }]  # fmt: skip
        domain = event["Attribute"][1]
        domain["distribution"] = "0"
        domain["Sighting"] = [{
            "uuid": "cdcdcdcd-1111-4111-8111-111111111111", "date_sighting": "1759400600",
            "type": "1", "Organisation": event["Orgc"],
        }]  # fmt: skip

    report = run(node, "misp", _event(tmp_path, annotate), Options())
    assert report.created["note"] == 1 and report.created["opinion"] == 1
    objects = _objects(node)
    note = objects["note--abababab-1111-4111-8111-111111111111"]
    opinion = objects["opinion--cdcdcdcd-1111-4111-8111-111111111111"]
    assert note["object_marking_refs"][0] == TLP2_IDS["red"]
    assert opinion["object_marking_refs"][0] == TLP2_IDS["red"]
    egress = Egress(node)
    assert egress.explain(f"report--{EVENT}", "usa").decision.allowed
    assert egress.explain(f"indicator--{HASH}", "usa").allowed
    for kept in (note["id"], opinion["id"], "observed-data--22222222-2222-4222-8222-222222222222"):
        assert not egress.explain(kept, "usa").allowed, kept


def test_converted_objects_cannot_claim_a_partner(cli: Callable[..., Result]) -> None:
    result = cli("import", "--format", "misp", "--from", "usa", str(DATA / "misp-event.json"))
    assert result.exit_code == 2 and "--from is for STIX objects a partner signed" in result.output


def test_attributes_without_a_stix_type_become_notes(node: Node, tmp_path: Path) -> None:
    """Comments, free text and custom object templates have no STIX type; misp-stix writes
    deprecated x-misp-* objects, which the pipeline refuses, so they are kept as notes."""
    _nr(node)

    def extend(event: dict[str, Any]) -> None:
        common = {"to_ids": False, "timestamp": "1759400000", "category": "Other"}
        event["Attribute"] += [
            {"uuid": "12121212-1111-4111-8111-111111111111", "type": "comment",
             "value": "Seen during the exercise", "distribution": "5", **common},
            {"uuid": "14141414-1111-4111-8111-111111111111", "type": "vulnerability",
             "value": "CVE-2024-3400", "distribution": "0", **common},
        ]  # fmt: skip
        event["Object"].append({
            "uuid": "16161616-1111-4111-8111-111111111111", "name": "drill-note",
            "meta-category": "misc", "timestamp": "1759400000", "distribution": "0",
            "Attribute": [{"uuid": "17171717-1111-4111-8111-111111111111", "type": "text",
                           "object_relation": "phase", "value": "red team", **common}],
        })  # fmt: skip

    report = run(node, "misp", _event(tmp_path, extend), Options())
    assert "kept as notes (no STIX type for them): 1 comment, 1 drill-note" in report.notes
    objects = _objects(node)
    comment = objects["note--12121212-1111-4111-8111-111111111111"]
    assert (comment["abstract"], comment["content"]) == (
        "MISP attribute comment", "Seen during the exercise",
    )  # fmt: skip
    assert comment["object_refs"] == [f"report--{EVENT}"]
    assert comment["object_marking_refs"][0] == TLP2_IDS["amber"]
    custom = objects["note--16161616-1111-4111-8111-111111111111"]
    assert custom["content"] == "phase: red team"
    assert custom["object_marking_refs"][0] == TLP2_IDS["red"]  # the object's distribution 0
    vulnerability = objects["vulnerability--14141414-1111-4111-8111-111111111111"]
    assert vulnerability["object_marking_refs"][0] == TLP2_IDS["red"]
    refs = objects[f"report--{EVENT}"]["object_refs"]
    assert "note--12121212-1111-4111-8111-111111111111" in refs
    assert not [ref for ref in refs if ref.startswith("x-")]
    assert not [o for o in objects if o.startswith("x-")]
    assert oasis_errors(list(objects.values())) == []


# -- what a review found leaking, each now marked at least as strictly as MISP said -------------


def _scratch_event(**event: Any) -> dict[str, Any]:
    base = {
        "uuid": "9a9a9a9a-0000-4000-8000-000000000001", "info": "Review case",
        "date": "2026-10-02", "timestamp": "1759400000", "publish_timestamp": "1759400100",
        "published": True, "analysis": "2", "threat_level_id": "2", "distribution": "3",
        "Orgc": {"name": "CERT-EE", "uuid": "bbbb1111-2222-4333-8444-555566667777"},
        "Tag": [{"name": "tlp:green"}], "Attribute": [], "Object": [],
    }  # fmt: skip
    return {"Event": base | event}


def _attribute(uuid: str, type_: str, value: str, **more: Any) -> dict[str, Any]:
    return {"uuid": uuid, "type": type_, "category": "Network activity", "value": value,
            "to_ids": True, "timestamp": "1759400000", "distribution": "5", **more}  # fmt: skip


def _import(node: Node, tmp_path: Path, document: dict[str, Any], **options: Any) -> Any:
    path = tmp_path / f"case-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(document))
    return run(node, "misp", path, Options(**options))


def _partners(node: Node) -> Egress:
    node.add_partner("deu", nation="DEU", clearances=["NATO=SECRET"], communities=["council"])
    return Egress(node)


def test_in_house_objects_never_go_to_a_labels_recipients(node: Node, tmp_path: Path) -> None:
    """A NATO label naming recipients is never chosen for a tag by itself; chosen by hand
    for something kept in house, it refuses the event rather than send it to them."""
    node.add_partner("deu", nation="DEU", clearances=["NATO=SECRET"], communities=["council"])
    node.add_label("nr-deu", tlp="amber", policy="NATO", classification="RESTRICTED",
                   releasable_to=["DEU"], recipients=["deu"])  # fmt: skip
    document = _scratch_event(
        distribution="0",
        Tag=[{"name": "tlp:amber"}, {"name": 'nato:classification="NR"'}],
        Attribute=[_attribute("9a9a9a9a-0000-4000-8000-0000000000a1", "ip-dst", "198.51.100.2")],
    )
    with pytest.raises(InputFormatError, match="no label for NATO RESTRICTED"):
        _import(node, tmp_path, document)
    tagged = {'nato:classification="NR"': "nr-deu"}
    with pytest.raises(InputFormatError, match="label nr-deu names recipients"):
        _import(node, tmp_path, document, tag_labels=tagged)
    assert latest(node, "indicator") == []
    # shared with the community, the same hand-chosen label is the operator's to choose
    document["Event"]["distribution"] = "3"
    _import(node, tmp_path, document, tag_labels=tagged)
    assert Egress(node).explain("indicator--9a9a9a9a-0000-4000-8000-0000000000a1", "deu").allowed


def test_an_objects_indicator_is_as_strict_as_its_strictest_attribute(
    node: Node, tmp_path: Path
) -> None:
    """misp-stix writes one indicator for a MISP object, holding every attribute's value:
    an attribute kept in house keeps that indicator in house too."""
    egress = _partners(node)
    document = _scratch_event(Object=[{
        "uuid": "9a9a9a9a-0000-4000-8000-0000000000b0", "name": "domain-ip",
        "meta-category": "network", "timestamp": "1759400000", "distribution": "5",
        "Attribute": [
            _attribute("9a9a9a9a-0000-4000-8000-0000000000b1", "domain", "evil.example",
                       object_relation="domain"),
            _attribute("9a9a9a9a-0000-4000-8000-0000000000b2", "ip-dst", "198.51.100.2",
                       object_relation="ip", distribution="0", Tag=[{"name": "tlp:red"}]),
        ],
    }])  # fmt: skip
    _import(node, tmp_path, document)
    objects = _objects(node)
    indicator = objects["indicator--9a9a9a9a-0000-4000-8000-0000000000b0"]
    assert "198.51.100.2" in indicator["pattern"]
    assert indicator["object_marking_refs"] == [TLP2_IDS["red"]]
    assert not egress.explain(indicator["id"], "deu").allowed
    domain = objects["domain-name--9a9a9a9a-0000-4000-8000-0000000000b1"]
    assert domain["object_marking_refs"] == [TLP2_IDS["green"]]  # the domain alone is shared


def test_sharing_groups_count_at_every_level(node: Node, tmp_path: Path) -> None:
    egress = _partners(node)
    node.add_label("baltic", tlp="amber", recipients=["deu"])
    group = {"name": "Baltic CERTs", "uuid": "aaaa1111-2222-4333-8444-555566667777"}
    document = _scratch_event(Attribute=[
        _attribute("9a9a9a9a-0000-4000-8000-0000000000c1", "ip-dst", "198.51.100.3",
                   distribution="4", sharing_group_id="7", SharingGroup=group),
    ])  # fmt: skip
    _import(node, tmp_path, document)
    ip = "indicator--9a9a9a9a-0000-4000-8000-0000000000c1"
    assert _objects(node)[ip]["object_marking_refs"] == [TLP2_IDS["red"]]
    assert not egress.explain(ip, "deu").allowed
    document["Event"]["Attribute"][0]["timestamp"] = "1759400500"  # a new version
    _import(node, tmp_path, document, sharing_groups={"Baltic CERTs": "baltic"})
    assert _objects(node)[ip]["object_marking_refs"][1] == node.store.label("baltic")[0]
    assert Egress(node).explain(ip, "deu").allowed


@pytest.mark.parametrize(
    ("tag", "outcome"),
    [
        ("TLP: RED", "red"),
        ("tlp：red", "red"),  # a full-width colon
        ("tlp:red\u200b", "red"),  # an invisible character
        ("tlp:ex:chr", "red"),  # Chatham House rule: never passed on
        ("tlp:amber-strict", "amber+strict"),
        ("tlp:unclear", "refused"),
        ('nato:classification:"NS"', "refused"),
        ('nato-classification="NS"', "refused"),
        ("nato:NS", "refused"),
        ("classification:NATO SECRET", "refused"),
        ('de-vs:einstufung="VS-NfD"', "refused"),  # German classification (Einstufung)
        ('estonia:classification="secret"', "refused"),
        ('iep:traffic-light-protocol="RED"', "refused"),  # FIRST IEP: not mapped by itself
        ('circl:incident-classification="phishing"', None),  # classifies incidents: a label
        ("TLP-RED", "red"),
        ("[tlp red]", "red"),
        ('"tlp:amber"', "amber"),
        ("tlp_amber+strict", "amber+strict"),
        ('fr-classif:classifie="confidentiel-defense"', "refused"),
    ],
)
def test_tags_are_read_whatever_their_spelling_or_refuse(
    node: Node, tmp_path: Path, tag: str, outcome: str | None
) -> None:
    document = _scratch_event(Attribute=[
        _attribute("9a9a9a9a-0000-4000-8000-0000000000d1", "ip-dst", "198.51.100.4",
                   Tag=[tag]),  # a plain string, as pymisp also accepts
    ])  # fmt: skip
    if outcome == "refused":
        with pytest.raises(InputFormatError, match=r"--tag-label|nato taxonomy"):
            _import(node, tmp_path, document)
        return
    _import(node, tmp_path, document)
    marked = _objects(node)["indicator--9a9a9a9a-0000-4000-8000-0000000000d1"]
    assert marked["object_marking_refs"][0] == TLP2_IDS[outcome or "green"]


def test_galaxies_sightings_and_analyst_notes_take_their_elements_scope(
    node: Node, tmp_path: Path
) -> None:
    egress = _partners(node)
    secret_cluster = "9a9a9a9a-0000-4000-8000-0000000000e9"
    public_cluster = "7cdd1f7c-3a6b-4e5c-9d0a-1b2c3d4e5f60"
    galaxy = {"uuid": "c4e851fa-775f-11e7-8163-b774922098cd", "name": "Threat Actor",
              "type": "threat-actor", "description": "Threat actors"}  # fmt: skip
    document = _scratch_event(
        Galaxy=[galaxy | {"GalaxyCluster": [{
            "uuid": public_cluster, "type": "threat-actor", "value": "APT28",
            "description": "Russian actor", "tag_name": 'misp-galaxy:threat-actor="APT28"',
        }]}],
        Attribute=[_attribute(
            "9a9a9a9a-0000-4000-8000-0000000000e1", "ip-dst", "198.51.100.5", distribution="0",
            Galaxy=[galaxy | {"GalaxyCluster": [{
                "uuid": secret_cluster, "type": "threat-actor", "value": "Operation Nightjar",
                "description": "our own operation", "tag_name": 'misp-galaxy:threat-actor="x"',
            }]}],
            Sighting=[{"uuid": "9a9a9a9a-0000-4000-8000-0000000000e2", "type": "1",
                       "date_sighting": "1759400600",
                       "Organisation": {"name": "Liaison", "uuid":
                                        "9a9a9a9a-0000-4000-8000-0000000000e3"}}],
        )],
    )  # fmt: skip
    _import(node, tmp_path, document)
    objects = _objects(node)
    assert objects[f"threat-actor--{public_cluster}"]["object_marking_refs"] == [TLP2_IDS["green"]]
    kept = [
        f"threat-actor--{secret_cluster}",
        "identity--9a9a9a9a-0000-4000-8000-0000000000e3",
        "opinion--9a9a9a9a-0000-4000-8000-0000000000e2",
    ]
    for object_id in kept:
        assert objects[object_id]["object_marking_refs"] == [TLP2_IDS["red"]], object_id
        assert not egress.explain(object_id, "deu").allowed, object_id
    creator = objects["identity--bbbb1111-2222-4333-8444-555566667777"]
    assert creator["object_marking_refs"] == [TLP2_IDS["green"]]


def test_an_attribute_without_a_uuid_refuses_the_event(node: Node, tmp_path: Path) -> None:
    attribute = _attribute("x", "ip-dst", "198.51.100.6", Tag=[{"name": "tlp:red"}])
    del attribute["uuid"]
    with pytest.raises(InputFormatError, match=r"Event.Attribute\[0\] has no uuid"):
        _import(node, tmp_path, _scratch_event(Attribute=[attribute]))


@pytest.mark.parametrize(
    "change",
    [
        {"distribution": [1]},
        {"timestamp": "yesterday"},
        {"date": "2026-13-45"},
        {"Tag": [None]},
        {"Tag": 3},
        {"Galaxy": ["x"]},
        {"Attribute": {"a": 1}},
        {"Attribute": ["x"]},
        {"Object": "x"},
        {"EventReport": [1]},
        {"Object": [{"uuid": "9a9a9a9a-0000-4000-8000-0000000000f0", "name": "file",
                     "Attribute": {"x": 1}}]},
        {"distribution": "4", "SharingGroup": {"name": "x", "SharingGroupOrg": ["a"]}},
        {"distribution": "4", "SharingGroup": "abc"},
    ],
)  # fmt: skip
def test_malformed_events_are_refused_with_a_reason(
    node: Node, tmp_path: Path, change: dict[str, Any]
) -> None:
    document = _scratch_event(**change)
    try:
        _import(node, tmp_path, document)
    except InputFormatError as error:
        assert "9a9a9a9a-0000-4000-8000-000000000001" in str(error)
    else:  # what the converter can read is imported, marked as strictly as ever
        for obj in latest(node):
            assert obj["type"] != "report" or obj["object_marking_refs"]


def test_an_unpublished_event_with_comments(node: Node, tmp_path: Path) -> None:
    document = _scratch_event(published=False, Attribute=[
        {**_attribute("9a9a9a9a-0000-4000-8000-0000000000a9", "comment", "a remark"),
         "category": "Other", "to_ids": False},
    ])  # fmt: skip
    del document["Event"]["publish_timestamp"]
    report = _import(node, tmp_path, document)
    assert report.created["grouping"] == 1 and report.created["note"] == 1
    note = _objects(node)["note--9a9a9a9a-0000-4000-8000-0000000000a9"]
    assert note["object_refs"] == ["grouping--9a9a9a9a-0000-4000-8000-000000000001"]


# -- what a second review found ------------------------------------------------------------------


def test_objects_folded_in_by_the_converter_keep_their_scope(node: Node, tmp_path: Path) -> None:
    """misp-stix folds a pe object (and its sections) into the file object that includes it:
    a section kept in house keeps the file's indicator in house too."""
    egress = _partners(node)
    file_uuid, pe_uuid, section_uuid = (f"9a9a9a9a-0000-4000-8000-00000000010{n}" for n in range(3))

    def attribute(n: int, relation: str, type_: str, value: str) -> dict[str, Any]:
        uuid = f"9a9a9a9a-0000-4000-8000-0000000002{n:02d}"
        return _attribute(uuid, type_, value, object_relation=relation, category="Payload delivery")

    document = _scratch_event(Object=[
        {"uuid": file_uuid, "name": "file", "meta-category": "file", "timestamp": "1759400000",
         "distribution": "5",
         "Attribute": [attribute(1, "filename", "filename", "invite.exe"),
                       attribute(2, "md5", "md5", "d41d8cd98f00b204e9800998ecf8427e")],
         "ObjectReference": [{"uuid": "9a9a9a9a-0000-4000-8000-000000000301",
                              "referenced_uuid": pe_uuid, "relationship_type": "includes",
                              "Object": {"name": "pe"}}]},
        {"uuid": pe_uuid, "name": "pe", "meta-category": "file", "timestamp": "1759400000",
         "distribution": "5", "Attribute": [attribute(3, "original-filename", "filename", "x.exe")],
         "ObjectReference": [{"uuid": "9a9a9a9a-0000-4000-8000-000000000302",
                              "referenced_uuid": section_uuid, "relationship_type": "includes",
                              "Object": {"name": "pe-section"}}]},
        {"uuid": section_uuid, "name": "pe-section", "meta-category": "file",
         "timestamp": "1759400000", "distribution": "0",
         "Attribute": [attribute(4, "name", "text", ".secret")]},
    ])  # fmt: skip
    _import(node, tmp_path, document)
    objects = _objects(node)
    file_indicator = objects[f"indicator--{file_uuid}"]
    assert ".secret" in file_indicator["pattern"]  # folded in by the converter
    assert file_indicator["object_marking_refs"] == [TLP2_IDS["red"]]
    assert not egress.explain(file_indicator["id"], "deu").allowed


def test_notes_on_an_event_report_have_their_own_scope(node: Node, tmp_path: Path) -> None:
    egress = _partners(node)
    document = _scratch_event(EventReport=[{
        "uuid": "9a9a9a9a-0000-4000-8000-000000000401", "name": "Analysis",
        "content": "The infrastructure is shared.", "distribution": "5",
        "timestamp": "1759400000", "deleted": False,
        "Note": [{"uuid": "9a9a9a9a-0000-4000-8000-000000000402", "note": "source: agent X",
                  "distribution": "0", "language": "en", "note_type_name": "Note",
                  "created": "2026-10-02 10:00:00", "modified": "2026-10-02 10:00:00"}],
    }])  # fmt: skip
    _import(node, tmp_path, document)
    objects = _objects(node)
    report_note = objects["note--9a9a9a9a-0000-4000-8000-000000000401"]
    assert report_note["object_marking_refs"] == [TLP2_IDS["green"]]
    analyst_note = objects["note--9a9a9a9a-0000-4000-8000-000000000402"]
    assert analyst_note["object_marking_refs"] == [TLP2_IDS["red"]]
    assert not egress.explain(analyst_note["id"], "deu").allowed


def test_a_tlp_tag_mapped_to_a_label_keeps_its_tlp(node: Node, tmp_path: Path) -> None:
    """The TLP is the strictest of the tags' and of every label's own."""
    node.add_label("chr", tlp="red")
    document = _scratch_event(Attribute=[
        _attribute("9a9a9a9a-0000-4000-8000-000000000501", "ip-dst", "198.51.100.9",
                   Tag=[{"name": "tlp:red"}]),
    ])  # fmt: skip
    _import(node, tmp_path, document, tag_labels={"tlp:red": "chr"})
    marked = _objects(node)["indicator--9a9a9a9a-0000-4000-8000-000000000501"]
    assert marked["object_marking_refs"][0] == TLP2_IDS["red"]


def test_in_house_objects_are_not_blind_matchable(node: Node, tmp_path: Path) -> None:
    node.add_label("nr-blind", tlp="amber", policy="NATO", classification="RESTRICTED",
                   releasable_to=["NATO"], blind_match=["NATO"])  # fmt: skip
    document = _scratch_event(Tag=[{"name": 'nato:classification="NR"'}], Attribute=[
        _attribute("9a9a9a9a-0000-4000-8000-000000000601", "ip-dst", "198.51.100.10",
                   distribution="0"),
    ])  # fmt: skip
    with pytest.raises(InputFormatError, match="no label for NATO RESTRICTED"):
        _import(node, tmp_path, document)  # never chosen by itself
    tagged = {'nato:classification="NR"': "nr-blind"}
    with pytest.raises(InputFormatError, match="lets partners blind-match it"):
        _import(node, tmp_path, document, tag_labels=tagged)


def test_tags_in_misps_internal_form_are_read(node: Node, tmp_path: Path) -> None:
    document = _scratch_event(Attribute=[
        _attribute("9a9a9a9a-0000-4000-8000-000000000701", "ip-dst", "198.51.100.11",
                   AttributeTag=[{"Tag": {"name": "tlp:red"}}]),
    ])  # fmt: skip
    _import(node, tmp_path, document)
    marked = _objects(node)["indicator--9a9a9a9a-0000-4000-8000-000000000701"]
    assert marked["object_marking_refs"][0] == TLP2_IDS["red"]
