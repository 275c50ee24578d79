"""Egress: export for a partner, the reference rule, companion markings, `explain`.

The property test builds random object graphs in a real node (SQLite store), exports for
every partner, and checks the result against the oracle of test_release: nothing the oracle
denies, and nothing that references what the oracle denies, ever leaves.
"""

from __future__ import annotations

import json
import sqlite3
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
from tests.conftest import (
    indicator,
    malware,
    peer_key,
    signed_as,
    write_bundle,
    write_lines,
)
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


def test_tightening_a_label_later_withholds_everything_that_reaches_it(
    cli: Cli, tmp_path: Path
) -> None:
    """The closure kept at write time follows new versions: relabelling an indicator SECRET
    REL USA withholds the relationship and the report that reach it from kr, and a later
    looser version releases them again."""
    labels = _setup(cli, tmp_path)
    shown = indicator(1, object_marking_refs=[TLP2_IDS["clear"]])
    rel = relationship(1, shown["id"], malware(1)["id"], [TLP2_IDS["clear"]])
    rep = report(1, [rel["id"]], [TLP2_IDS["clear"]])
    cli("import", str(write_bundle(tmp_path / "a.json", [shown, rel, rep])))
    assert {shown["id"], rel["id"], rep["id"]} <= {o["id"] for o in exported(cli, "--for", "kr")}
    tighter = {
        **shown,
        "modified": "2026-04-01T10:00:00.000Z",
        "object_marking_refs": [TLP2_IDS["amber"], labels["secret"]],
    }
    cli("import", str(write_bundle(tmp_path / "b.json", [tighter])))
    for_kr = {o["id"] for o in exported(cli, "--for", "kr")}
    assert not {shown["id"], rel["id"], rep["id"]} & for_kr
    assert {shown["id"], rel["id"], rep["id"]} <= {o["id"] for o in exported(cli, "--for", "us")}
    looser = {**shown, "modified": "2026-05-01T10:00:00.000Z"}
    cli("import", str(write_bundle(tmp_path / "c.json", [looser])))
    assert {shown["id"], rel["id"], rep["id"]} <= {o["id"] for o in exported(cli, "--for", "kr")}


def test_an_object_arriving_after_what_refers_to_it_is_taken_into_account(
    cli: Cli, tmp_path: Path
) -> None:
    """A reference to an object the node does not hold withholds nothing, until it arrives."""
    labels = _setup(cli, tmp_path)
    hidden = malware(1, object_marking_refs=[TLP2_IDS["amber"], labels["secret"]])
    rel = relationship(1, indicator(1)["id"], hidden["id"], [TLP2_IDS["clear"]])
    rep = report(1, [rel["id"], report(2, [], [])["id"]], [TLP2_IDS["clear"]])
    cli("import", str(write_bundle(tmp_path / "a.json", [rep, rel])))
    assert {rel["id"], rep["id"]} <= {o["id"] for o in exported(cli, "--for", "kr")}
    cli("import", str(write_bundle(tmp_path / "b.json", [hidden])))
    assert not {rel["id"], rep["id"]} & {o["id"] for o in exported(cli, "--for", "kr")}


def test_export_for_a_partner_of_one_type(cli: Cli, tmp_path: Path) -> None:
    labels = _setup(cli, tmp_path)
    hidden = malware(1, object_marking_refs=[TLP2_IDS["amber"], labels["secret"]])
    shown = indicator(1, object_marking_refs=[TLP2_IDS["clear"]])
    rel = relationship(1, shown["id"], hidden["id"], [TLP2_IDS["clear"]])
    rel2 = relationship(2, shown["id"], shown["id"], [TLP2_IDS["green"]])
    cli("import", str(write_bundle(tmp_path / "in.json", [hidden, shown, rel, rel2])))
    only = exported(cli, "--for", "kr", "--type", "relationship")
    assert [o["id"] for o in only] == [rel2["id"]]
    marks = exported(cli, "--for", "kr", "--type", "marking-definition")
    assert {o["id"] for o in marks} == {TLP2_IDS["clear"], TLP2_IDS["green"]}
    assert {o["id"] for o in exported(cli, "--for", "us", "--type", "marking-definition")} == {
        TLP2_IDS["clear"],
        TLP2_IDS["green"],
        TLP2_IDS["amber"],
        labels["secret"],
    }


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
    pem, key = peer_key(tmp_path, "us")
    us = node.add_partner("us", nation="USA", communities=["council"], key_file=pem)
    node.add_partner("kr", nation="KOR", communities=["council"])
    amber = indicator(1, object_marking_refs=[TLP2_IDS["amber"]])
    green = indicator(2, object_marking_refs=[TLP2_IDS["green"]])
    lines = write_lines(tmp_path / "in.jsonl", signed_as([amber, green], key, us.identity_id))
    import_file(node, lines, received_from="us")
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


Graph = list[tuple[str, int, list[str], list[int], bool]]


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """(kind, n, markings, refs, received from a peer) per object. Reports may refer to any
    object, later ones and other reports included, so references run forward and form
    cycles."""
    size = draw(st.integers(3, 14))
    objects: Graph = []
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
            others = [i for i in range(size) if i != n]
            refs = draw(st.lists(st.sampled_from(others), min_size=1, max_size=3, unique=True))
        objects.append((kind, n, markings, refs, draw(st.booleans())))
    return objects


@st.composite
def histories(draw: st.DrawFn) -> tuple[Graph, list[int], int, dict[int, list[str]]]:
    """A graph, the order its objects are imported in, into how many imports, and new
    versions with other markings imported afterwards (by object index)."""
    graph = draw(graphs())
    order = draw(st.permutations(range(len(graph))))
    imports = draw(st.integers(1, 3))
    relabel = draw(
        st.dictionaries(
            st.integers(0, len(graph) - 1),
            st.lists(st.sampled_from(MARKING_CHOICES), min_size=1, max_size=2, unique=True),
            max_size=3,
        )
    )
    return graph, order, imports, relabel


def _build(
    directory: Path,
    graph: Graph,
    order: list[int] | None = None,
    imports: int = 1,
    relabel: dict[int, list[str]] | None = None,
) -> tuple[Node, list[dict[str, Any]], dict[str, bool]]:
    """A real node holding ``graph``, imported in ``order`` over ``imports`` imports (local
    and peer objects in separate files), then the ``relabel`` versions; returns the node,
    the latest version of every object and which came from the peer."""
    init_node(directory / "n", name="T", nation="EST", communities=["council", "ccdcoe"])
    node = Node.open(directory / "n")
    pem, key = peer_key(directory, "us")
    for name, nation, clearances, communities in PARTNERS:
        node.add_partner(
            name,
            nation=nation,
            clearances=clearances,
            communities=communities,
            key_file=pem if name == "us" else None,
        )
    us = node.store.partner("us").identity_id
    ids = {
        name: node.add_label(name, tlp=t, policy=p, classification=c, releasable_to=r)
        for name, t, p, c, r in LABELS
    }
    ids |= {level: TLP2_IDS[level] for level in ("clear", "green", "amber", "red")}
    ids["unknown"] = UNKNOWN

    def marked(obj: dict[str, Any], markings: list[str]) -> dict[str, Any]:
        marks = [ids[m] for m in markings if m != "none"]
        obj = {**obj, "object_marking_refs": marks}
        if not marks:
            del obj["object_marking_refs"]
        return obj

    def make(kind: str, n: int, refs_ids: list[str]) -> dict[str, Any]:
        if kind == "relationship":
            return relationship(n, refs_ids[0], refs_ids[1], [])
        if kind == "report":
            return report(n, refs_ids, [])
        return (indicator if kind == "indicator" else malware)(n)

    id_of = [make(kind, n, ["x--1", "x--2"])["id"] for kind, n, *_rest in graph]
    objects = [
        marked(make(kind, n, [id_of[i] for i in refs]), markings)
        for kind, n, markings, refs, _from_peer in graph
    ]
    remote = {id_of[n]: from_peer for _kind, n, _m, _r, from_peer in graph}
    sequence = order if order is not None else list(range(len(graph)))
    step = -(-len(sequence) // imports)
    batches = [[objects[i] for i in sequence[k : k + step]] for k in range(0, len(sequence), step)]
    later = []
    for index, markings in sorted((relabel or {}).items()):
        newer = marked({**objects[index], "modified": "2026-04-01T10:00:00.000Z"}, markings)
        objects[index] = newer
        later.append(newer)
    for number, batch in enumerate([*batches, later]):
        local = [o for o in batch if not remote[o["id"]]]
        peer = [o for o in batch if remote[o["id"]]]
        if local:
            import_file(node, write_lines(directory / f"local-{number}.jsonl", local))
        if peer:
            path = write_lines(directory / f"peer-{number}.jsonl", signed_as(peer, key, us))
            import_file(node, path, received_from="us")
    return node, objects, remote


Judge = Callable[[dict[str, Any]], bool]


def oracle_for(
    node: Node, objects: list[dict[str, Any]], remote: dict[str, bool], name: str
) -> tuple[Judge, Judge]:
    """For a node built by :func:`_build` and partner ``name``: whether the oracle allows an
    object on its own labels, and whether it allows it with everything it refers to (the
    latest version of each held object), unless the partner sent it itself."""
    labels = node.store.label_markings()
    policy = ReleasePolicy(levels=dict(node.config.policies))
    partners = {p.name: p for p in node.store.partners()}
    who = recipient(partners[name])
    latest = {o["id"]: o for o in objects}

    def base(obj: dict[str, Any]) -> bool:
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

    def ok(obj: dict[str, Any], seen: frozenset[str] = frozenset(), top: bool = True) -> bool:
        """What the partner sent itself it gets back whatever it refers to; what refers to
        it follows the reference rule all the way down."""
        if top and remote[obj["id"]] and name == "us":
            return base(obj)
        refs = [v for k, v in obj.items() if k.endswith("_ref") and k != "created_by_ref"]
        refs += [
            r for k, v in obj.items() if k.endswith("_refs") and k != "object_marking_refs"
            for r in v
        ]  # fmt: skip
        return base(obj) and all(
            r in seen or ok(latest[r], seen | {obj["id"]}, False) for r in refs if r in latest
        )

    return base, ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_no_export_contains_or_references_what_the_oracle_denies(
    history: tuple[Graph, list[int], int, dict[int, list[str]]],
) -> None:
    """Whatever the import order (references forward and backward, cycles, several
    imports) and later relabelling: the export for every partner is exactly what the
    oracle allows, and explain agrees with it object by object."""
    graph, order, imports, relabel = history
    with tempfile.TemporaryDirectory() as tmp:
        node, objects, remote = _build(Path(tmp), graph, order, imports, relabel)
        try:
            partners = {p.name: p for p in node.store.partners()}
            by_id = {o["id"]: o for o in objects}
            for name in partners:
                _base, ok = oracle_for(node, objects, remote, name)

                released = [json.loads(t) for t in Egress(node).release(name)]
                got = {o["id"] for o in released if o["type"] != "marking-definition"}
                got = {i for i in got if i in by_id}
                expected = {i for i, o in by_id.items() if ok(o)}
                assert got == expected, name
                # labels cited by what the partner itself sent travel only on their own terms
                used = {
                    m
                    for o in released
                    if o["type"] != "marking-definition"
                    for m in o.get("object_marking_refs", [])
                    if m in TLP_BY_ID or not (remote.get(o["id"]) and name == "us")
                }
                markings = {o["id"] for o in released if o["type"] == "marking-definition"}
                assert markings == used - {UNKNOWN}, name
                egress = Egress(node)
                explained = {i for i in by_id if egress.explain(i, name).allowed}
                assert explained == expected, name
        finally:
            node.close()


def test_import_from_a_partner_is_not_forwarded_when_amber(cli: Cli, tmp_path: Path) -> None:
    pem, key = peer_key(tmp_path, "us")
    cli("partner", "add", "us", "--nation", "USA", "--community", "council", "--key", str(pem))
    cli("partner", "add", "kr", "--nation", "KOR", "--community", "council")
    us = json.loads(cli("partner", "list", "--json").output)
    identity = next(p["identity_id"] for p in us if p["name"] == "us")
    amber = indicator(1, object_marking_refs=[TLP2_IDS["amber"]])
    unsigned_path = write_bundle(tmp_path / "unsigned.json", [amber])
    result = cli("import", "--from", "us", str(unsigned_path))
    assert result.exit_code == 1 and "no origin signature (received from us)" in result.stderr
    path = write_bundle(tmp_path / "from-us.json", signed_as([amber], key, identity))
    result = cli("import", "--from", "nobody", str(path))
    assert result.exit_code == 1 and "no partner named 'nobody'" in result.stderr
    assert cli("import", "--from", "us", str(path)).exit_code == 0
    assert amber["id"] not in {o["id"] for o in exported(cli, "--for", "kr")}
    reasons = json.loads(cli("explain", amber["id"], "--for", "kr", "--json").output)["reasons"]
    assert reasons == ["denied: TLP:AMBER received from us is never forwarded"]


def _relay(node: Node, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """us relays a GREEN indicator kr signed, and a GREEN one of its own; ee shares a
    community with us only, nl with kr only."""
    us_pem, us_key = peer_key(tmp_path, "us")
    kr_pem, kr_key = peer_key(tmp_path, "kr")
    us = node.add_partner("us", nation="USA", communities=["us-ee"], key_file=us_pem)
    kr = node.add_partner("kr", nation="KOR", communities=["kr-nl"], key_file=kr_pem)
    node.add_partner("ee", nation="EST", communities=["us-ee"])
    node.add_partner("nl", nation="NLD", communities=["kr-nl"])
    green = [TLP2_IDS["green"]]
    from_kr = signed_as([indicator(1, object_marking_refs=green)], kr_key, kr.identity_id)[0]
    from_us = signed_as([indicator(2, object_marking_refs=green)], us_key, us.identity_id)[0]
    import_file(
        node, write_lines(tmp_path / "relayed.jsonl", [from_kr, from_us]), received_from="us"
    )
    return from_kr, from_us


def test_green_is_judged_on_the_originator_communities_not_the_relay(
    node: Node, tmp_path: Path
) -> None:
    from_kr, from_us = _relay(node, tmp_path)
    egress = Egress(node)
    for_ee = {json.loads(t)["id"] for t in egress.release("ee")}
    for_nl = {json.loads(t)["id"] for t in egress.release("nl")}
    assert for_ee >= {from_us["id"]} and from_kr["id"] not in for_ee
    assert for_nl >= {from_kr["id"]} and from_us["id"] not in for_nl
    assert egress.explain(from_kr["id"], "ee").reasons == (
        "denied: TLP:GREEN and no community shared with the originator kr",
    )
    assert egress.explain(from_kr["id"], "nl").allowed


def test_upgrading_a_store_splits_label_sets_by_signer(node_dir: Path, tmp_path: Path) -> None:
    """A store written before label sets knew their signer (one set for both relayed
    objects) is upgraded: each object gets its signer's set and releases follow."""
    with Node.open(node_dir) as node:
        from_kr, from_us = _relay(node, tmp_path)
    with sqlite3.connect(node_dir / "store.db") as conn:
        sets = dict(conn.execute("SELECT signer, id FROM label_sets WHERE received_from = 'us'"))
        kept = min(sets.values())
        conn.execute("UPDATE objects SET label_set = ? WHERE received_from = 'us'", (kept,))
        conn.execute("DELETE FROM label_sets WHERE id != ? AND received_from = 'us'", (kept,))
        conn.execute(  # the table as it was, without signers
            "CREATE TABLE old (id INTEGER NOT NULL PRIMARY KEY, markings TEXT NOT NULL, "
            "received_from VARCHAR(200), CONSTRAINT uq_label_sets UNIQUE (markings, received_from))"
        )
        conn.execute("INSERT INTO old SELECT id, markings, received_from FROM label_sets")
        conn.execute("DROP TABLE label_sets")
        conn.execute("ALTER TABLE old RENAME TO label_sets")
        conn.execute(
            "UPDATE objects SET closure = (SELECT id FROM label_closures "
            "WHERE label_sets = json_array(?)) WHERE received_from = 'us'",
            (kept,),
        )
        conn.execute("DELETE FROM schema_migrations WHERE version >= 8")
    with Node.open(node_dir) as node:
        egress = Egress(node)
        for_ee = {json.loads(t)["id"] for t in egress.release("ee")}
        for_nl = {json.loads(t)["id"] for t in egress.release("nl")}
        assert from_us["id"] in for_ee and from_kr["id"] not in for_ee
        assert from_kr["id"] in for_nl and from_us["id"] not in for_nl
        signers = {key[2] for key in node.store.label_sets().values() if key[1] == "us"}
        assert len(signers) == 2 and None not in signers


def test_verify_notices_an_object_moved_to_another_signers_label_set(
    node_dir: Path, tmp_path: Path
) -> None:
    """The signer decides TLP:GREEN, so `allied verify` checks it too: an object moved into
    the label set of another signer (same markings, same relay) is found."""
    with Node.open(node_dir) as node:
        from_kr, from_us = _relay(node, tmp_path)
    with sqlite3.connect(node_dir / "store.db") as conn:
        label_set, closure = conn.execute(
            "SELECT label_set, closure FROM objects WHERE id = ?", (from_us["id"],)
        ).fetchone()
        conn.execute(  # kr's GREEN object now judged on us's communities
            "UPDATE objects SET label_set = ?, closure = ? WHERE id = ?",
            (label_set, closure, from_kr["id"]),
        )
    with Node.open(node_dir) as node:
        assert from_kr["id"] in {json.loads(t)["id"] for t in Egress(node).release("ee")}
        audit = node.verify()
        assert any(
            from_kr["id"] in problem and "does not match its markings and originator" in problem
            for problem in audit.problems
        ), audit.problems
