"""Egress: export for a partner, the reference rule, companion markings, `explain`.

The property test builds random object graphs in a real node (SQLite store), exports for
every partner, and checks the result against the oracle of test_release: nothing the oracle
denies, and nothing that references what the oracle denies, ever leaves.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.policy.egress import Egress, recipient
from allied.policy.release import Provenance, ReleasePolicy
from allied.stix.labels import TLP2_IDS, TLP_BY_ID, Label
from tests.conftest import indicator, malware, write_bundle, write_lines
from tests.policy.test_release import oracle

Cli = Callable[..., Result]
UNKNOWN = "marking-definition--00000000-0000-4000-8000-00000000dead"


def relationship(n: int, source: str, target: str, markings: list[str]) -> dict[str, Any]:
    return {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{n:08x}-0000-4000-8000-000000000002",
        "created": "2026-03-01T10:00:00.000Z",
        "modified": "2026-03-01T10:00:00.000Z",
        "relationship_type": "indicates",
        "source_ref": source,
        "target_ref": target,
        "object_marking_refs": markings,
    }


def report(n: int, refs: list[str], markings: list[str]) -> dict[str, Any]:
    return {
        "type": "report",
        "spec_version": "2.1",
        "id": f"report--{n:08x}-0000-4000-8000-000000000003",
        "created": "2026-03-01T10:00:00.000Z",
        "modified": "2026-03-01T10:00:00.000Z",
        "name": f"report {n}",
        "published": "2026-03-01T10:00:00Z",
        "object_refs": refs,
        "object_marking_refs": markings,
    }


def exported(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli("export", *args)
    assert result.exit_code == 0, result.stderr
    objects: list[dict[str, Any]] = json.loads(result.output)["objects"]
    return objects


# -- examples -------------------------------------------------------------------------------


def _setup(cli: Cli, tmp_path: Path) -> dict[str, str]:
    assert (
        cli(
            "partner",
            "add",
            "kr",
            "--nation",
            "KOR",
            "--clearance",
            "NATO=RESTRICTED",
            "--community",
            "council",
        ).exit_code
        == 0
    )
    assert (
        cli(
            "partner",
            "add",
            "us",
            "--nation",
            "USA",
            "--clearance",
            "NATO=SECRET",
            "--community",
            "council",
        ).exit_code
        == 0
    )
    secret = cli(
        "label",
        "add",
        "NATO SECRET REL USA",
        "--tlp",
        "amber",
        "--policy",
        "NATO",
        "--classification",
        "SECRET",
        "--releasable-to",
        "USA",
    ).output.strip()
    return {"secret": secret}


def test_export_for_withholds_the_object_and_what_refers_to_it(cli: Cli, tmp_path: Path) -> None:
    labels = _setup(cli, tmp_path)
    hidden = malware(1, object_marking_refs=[TLP2_IDS["amber"], labels["secret"]])
    shown = indicator(1, object_marking_refs=[TLP2_IDS["clear"]])
    rel = relationship(1, shown["id"], hidden["id"], [TLP2_IDS["clear"]])
    rep = report(1, [rel["id"]], [TLP2_IDS["clear"]])
    cli("import", str(write_bundle(tmp_path / "in.json", [hidden, shown, rel, rep])))
    for_kr = {o["id"] for o in exported(cli, "--for", "kr")}
    assert shown["id"] in for_kr
    assert not {hidden["id"], rel["id"], rep["id"]} & for_kr
    assert TLP2_IDS["clear"] in for_kr and labels["secret"] not in for_kr
    for_us = {o["id"] for o in exported(cli, "--for", "us")}
    assert {hidden["id"], rel["id"], rep["id"], labels["secret"], TLP2_IDS["amber"]} <= for_us


def test_explain_gives_every_reason_and_the_reference_chain(cli: Cli, tmp_path: Path) -> None:
    labels = _setup(cli, tmp_path)
    hidden = malware(1, object_marking_refs=[TLP2_IDS["amber"], labels["secret"]])
    rel = relationship(1, indicator(1)["id"], hidden["id"], [TLP2_IDS["clear"]])
    rep = report(1, [rel["id"]], [TLP2_IDS["clear"]])
    cli("import", str(write_bundle(tmp_path / "in.json", [indicator(1), hidden, rel, rep])))
    text = cli("explain", hidden["id"], "--for", "kr").output
    assert f"{hidden['id']} for kr: denied" in text
    assert "denied: KOR not in releasable_to (USA) of NATO SECRET REL USA" in text
    assert "denied: classification NATO SECRET above clearance RESTRICTED" in text
    chain = json.loads(cli("explain", rep["id"], "--for", "kr", "--json").output)
    assert chain["decision"] == "denied"
    assert chain["reasons"] == [
        f"denied: references {rel['id']}, which references {hidden['id']}, which is withheld "
        "(denied: KOR not in releasable_to (USA) of NATO SECRET REL USA)"
    ]
    allowed = json.loads(cli("explain", hidden["id"], "--for", "us", "--json").output)
    assert allowed["decision"] == "allowed"
    assert "allowed: clearance NATO SECRET covers SECRET" in allowed["reasons"]


def test_explain_errors(cli: Cli) -> None:
    result = cli("explain", "indicator--00000000-0000-4000-8000-000000000000", "--for", "x")
    assert result.exit_code == 1 and "no partner named 'x'" in result.stderr
    cli("partner", "add", "kr", "--nation", "KOR")
    result = cli("explain", "indicator--00000000-0000-4000-8000-000000000000", "--for", "kr")
    assert result.exit_code == 1 and "no object indicator--0000" in result.stderr


def test_unlabelled_objects_stay_inside_the_node(cli: Cli, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    bare = {k: v for k, v in indicator(1).items() if k != "object_marking_refs"}
    cli("import", str(write_bundle(tmp_path / "in.json", [bare])))
    assert bare["id"] not in {o["id"] for o in exported(cli, "--for", "us")}


def test_objects_received_from_a_peer_are_not_forwarded_if_amber(
    node: Node, tmp_path: Path
) -> None:
    node.add_partner("us", nation="USA", communities=["council"])
    node.add_partner("kr", nation="KOR", communities=["council"])
    amber = indicator(1, object_marking_refs=[TLP2_IDS["amber"]])
    green = indicator(2, object_marking_refs=[TLP2_IDS["green"]])
    import_file(node, write_lines(tmp_path / "in.jsonl", [amber, green]), received_from="us")
    released = {json.loads(t)["id"] for t in Egress(node).release("kr")}
    assert green["id"] in released and amber["id"] not in released


def test_marking_definitions_travel_with_their_objects(cli: Cli, tmp_path: Path) -> None:
    labels = _setup(cli, tmp_path)
    cli("import", str(write_bundle(tmp_path / "in.json", [indicator(1)])))
    for_us = {o["id"] for o in exported(cli, "--for", "us")}
    assert TLP2_IDS["green"] in for_us
    assert labels["secret"] not in for_us  # no released object uses it
    assert TLP2_IDS["red"] not in for_us


# -- property: random graphs in a real node --------------------------------------------------

PARTNERS = [
    ("kr", "KOR", ["NATO=RESTRICTED"], ["council"]),
    ("us", "USA", ["NATO=SECRET"], ["council", "five"]),
    ("ee", "EST", ["NATO=CONFIDENTIAL"], ["ccdcoe"]),
]
LABELS = [
    ("G", "green", None, None, []),
    ("C-KU", "amber", "NATO", "CONFIDENTIAL", ["KOR", "USA"]),
    ("S-U", "amber+strict", "NATO", "SECRET", ["USA"]),
    ("R-ccd", "green", "NATO", "RESTRICTED", ["ccdcoe"]),
    ("U-all", "clear", "NATO", "UNCLASSIFIED", ["KOR", "USA", "EST"]),
]
MARKING_CHOICES = ["clear", "green", "amber", "red", "none", "unknown", *[n for n, *_ in LABELS]]


@st.composite
def graphs(draw: st.DrawFn) -> list[tuple[str, int, list[str], list[int], bool]]:
    """(kind, n, markings, refs to earlier objects, received from a peer) per object."""
    size = draw(st.integers(3, 14))
    objects = []
    for n in range(size):
        kind = (
            draw(st.sampled_from(["indicator", "malware", "relationship", "report"]))
            if n > 1
            else "indicator"
        )
        markings = draw(
            st.lists(st.sampled_from(MARKING_CHOICES), min_size=1, max_size=2, unique=True)
        )
        refs: list[int] = []
        if kind == "relationship":  # joins SDOs, never another relationship
            ends = [i for i, (k, *_rest) in enumerate(objects) if k != "relationship"]
            refs = draw(st.lists(st.sampled_from(ends), min_size=2, max_size=2))
        elif kind == "report":
            refs = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True))
        objects.append((kind, n, markings, refs, draw(st.booleans())))
    return objects


def _build(
    directory: Path, graph: list[tuple[str, int, list[str], list[int], bool]]
) -> tuple[Node, list[dict[str, Any]], dict[str, bool]]:
    init_node(directory / "n", name="T", nation="EST", communities=["council", "ccdcoe"])
    node = Node.open(directory / "n")
    for name, nation, clearances, communities in PARTNERS:
        node.add_partner(name, nation=nation, clearances=clearances, communities=communities)
    ids = {
        name: node.add_label(name, tlp=t, policy=p, classification=c, releasable_to=r)
        for name, t, p, c, r in LABELS
    }
    ids |= {level: TLP2_IDS[level] for level in ("clear", "green", "amber", "red")}
    ids["unknown"] = UNKNOWN
    objects, remote = [], {}
    for kind, n, markings, refs, from_peer in graph:
        refs_ids = [objects[i]["id"] for i in refs]
        marks = [ids[m] for m in markings if m != "none"]
        if kind == "relationship":
            obj = relationship(n, refs_ids[0], refs_ids[1], marks)
        elif kind == "report":
            obj = report(n, refs_ids, marks)
        else:
            obj = (indicator if kind == "indicator" else malware)(n, object_marking_refs=marks)
        if not marks:
            del obj["object_marking_refs"]
        objects.append(obj)
        remote[obj["id"]] = from_peer
    local = [o for o in objects if not remote[o["id"]]]
    peer = [o for o in objects if remote[o["id"]]]
    if local:
        import_file(node, write_lines(directory / "local.jsonl", local))
    if peer:
        import_file(node, write_lines(directory / "peer.jsonl", peer), received_from="us")
    return node, objects, remote


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_no_export_contains_or_references_what_the_oracle_denies(
    graph: list[tuple[str, int, list[str], list[int], bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node, objects, remote = _build(Path(tmp), graph)
        try:
            labels = node.store.label_markings()
            policy = ReleasePolicy(levels=dict(node.config.policies))
            partners = {p.name: p for p in node.store.partners()}
            by_id = {o["id"]: o for o in objects}
            for name in partners:
                who = recipient(partners[name])

                def base(obj: dict[str, Any], who: Any = who) -> bool:
                    marks = obj.get("object_marking_refs", [])
                    prov = (
                        Provenance(False, frozenset(partners["us"].communities), "us")
                        if remote[obj["id"]]
                        else Provenance(True, frozenset(node.config.communities))
                    )
                    tlps = [TLP_BY_ID[m] for m in marks if m in TLP_BY_ID]
                    labs: list[Label] = [labels[m] for m in marks if m in labels]
                    unknown = any(m not in TLP_BY_ID and m not in labels for m in marks)
                    return oracle(tlps, labs, unknown, prov, who, policy)

                def ok(obj: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
                    refs = [
                        v for k, v in obj.items() if k.endswith("_ref") and k != "created_by_ref"
                    ]
                    refs += [
                        r
                        for k, v in obj.items()
                        if k.endswith("_refs") and k != "object_marking_refs"
                        for r in v
                    ]
                    return base(obj) and all(
                        r in seen or ok(by_id[r], seen | {obj["id"]}) for r in refs if r in by_id
                    )

                released = [json.loads(t) for t in Egress(node).release(name)]
                got = {o["id"] for o in released if o["type"] != "marking-definition"}
                got = {i for i in got if i in by_id}
                expected = {i for i, o in by_id.items() if ok(o)}
                assert got == expected, name
                used = {
                    m
                    for o in released
                    if o["type"] != "marking-definition"
                    for m in o.get("object_marking_refs", [])
                }
                markings = {o["id"] for o in released if o["type"] == "marking-definition"}
                assert markings == used - {UNKNOWN}, name
        finally:
            node.close()


def test_import_from_a_partner_is_not_forwarded_when_amber(cli: Cli, tmp_path: Path) -> None:
    cli("partner", "add", "us", "--nation", "USA", "--community", "council")
    cli("partner", "add", "kr", "--nation", "KOR", "--community", "council")
    amber = indicator(1, object_marking_refs=[TLP2_IDS["amber"]])
    path = write_bundle(tmp_path / "from-us.json", [amber])
    result = cli("import", "--from", "nobody", str(path))
    assert result.exit_code == 1 and "no partner named 'nobody'" in result.stderr
    assert cli("import", "--from", "us", str(path)).exit_code == 0
    assert amber["id"] not in {o["id"] for o in exported(cli, "--for", "kr")}
    reasons = json.loads(cli("explain", amber["id"], "--for", "kr", "--json").output)["reasons"]
    assert reasons == ["denied: TLP:AMBER received from us is never forwarded"]
