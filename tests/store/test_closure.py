"""Label closures: the label sets an object's release depends on, computed per strongly
connected component, and kept by the store as objects and new versions arrive."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from allied.stix.model import parse_object
from allied.store.closure import closures
from allied.store.store import Store
from tests.conftest import indicator, malware


def test_chain_forward_reference_outside_and_missing_targets() -> None:
    # 0 -> 1 -> 2 (forward), 2 -> "out" (outside, closure {7}), 1 -> "gone" (not held)
    found = closures(
        [1, 2, 3],
        [["b"], ["c", "gone"], ["out"]],
        {"a": 0, "b": 1, "c": 2},
        {"out": frozenset({7})},
    )
    assert found == [frozenset({1, 2, 3, 7}), frozenset({2, 3, 7}), frozenset({3, 7})]


def test_a_cycle_shares_one_closure_and_what_it_reaches() -> None:
    # 0 <-> 1, 1 -> 2, 3 -> 0 ; 4 refers to itself
    found = closures(
        [1, 2, 3, 4, 5],
        [["b"], ["a", "c"], [], ["a"], ["e"]],
        {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4},
        {},
    )
    assert found[0] == found[1] == frozenset({1, 2, 3})
    assert found[2] == frozenset({3})
    assert found[3] == frozenset({1, 2, 3, 4})
    assert found[4] == frozenset({5})


def test_only_the_latest_version_of_a_target_counts() -> None:
    # two versions of "t": nodes 1 (old, label 2) and 2 (latest, label 3)
    found = closures([1, 2, 3], [["t"], [], []], {"t": 2}, {})
    assert found[0] == frozenset({1, 3})


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 5), min_size=n, max_size=n),
            st.lists(st.lists(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n),
        )
    )
)
def test_closure_is_the_union_over_everything_reachable(graph: Any) -> None:
    label_sets, edges = graph
    ids = [f"n{i}" for i in range(len(label_sets))]
    found = closures(
        label_sets, [[ids[j] for j in e] for e in edges], {i: n for n, i in enumerate(ids)}, {}
    )
    for start in range(len(label_sets)):
        seen, stack = {start}, [start]
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        assert found[start] == frozenset(label_sets[i] for i in seen)


def _closure_of(store: Store, object_id: str) -> frozenset[int]:
    with store.engine.connect() as conn:
        number = conn.execute(
            text("SELECT closure FROM objects WHERE id = :id ORDER BY version DESC LIMIT 1"),
            {"id": object_id},
        ).scalar_one()
    return store.label_closures()[number]


def _report(refs: list[str]) -> dict[str, Any]:
    return {
        "type": "report",
        "spec_version": "2.1",
        "id": "report--00000001-0000-4000-8000-000000000003",
        "created": "2026-03-01T10:00:00.000Z",
        "modified": "2026-03-01T10:00:00.000Z",
        "name": "r",
        "published": "2026-03-01T10:00:00.000Z",
        "object_refs": refs,
    }


def test_the_store_keeps_closures_and_the_migration_rebuilds_them(store_url: str) -> None:
    """An older store (no closure column or tables) is upgraded and filled in; the closures
    equal those kept while importing."""
    url = store_url
    store = Store.open(url)
    amber = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
    report = _report([indicator(1)["id"], malware(1)["id"]])
    with store.write() as writer:
        writer.add([parse_object(report)])  # refers forward to objects not held yet
        writer.add([parse_object(indicator(1))])
    with store.write() as writer:
        writer.add([parse_object(malware(1, object_marking_refs=[amber]))])
    sets = {key[0]: n for n, key in store.label_sets().items()}
    assert len(sets) == 3  # the report's (none), the indicator's (green), the malware's (amber)
    expected = frozenset(sets.values())
    kept = {i: _closure_of(store, i) for i in (report["id"], indicator(1)["id"])}
    assert kept[report["id"]] == expected
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE objects DROP COLUMN closure"))
        conn.execute(text("DROP TABLE label_closures"))
        conn.execute(text("DROP TABLE object_refs"))
        conn.execute(text("DELETE FROM schema_migrations WHERE version >= 2"))
    store.close()
    upgraded = Store.open(url)
    try:
        assert {i: _closure_of(upgraded, i) for i in kept} == kept
        with upgraded.engine.connect() as conn:
            edges = conn.execute(text("SELECT target, source FROM object_refs")).all()
        assert sorted(edges) == sorted(
            [(indicator(1)["id"], report["id"]), (malware(1)["id"], report["id"])]
        )
    finally:
        upgraded.close()
