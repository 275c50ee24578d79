"""TLP markings and the Allied classification label."""

from __future__ import annotations

import pytest

from allied.stix.labels import (
    LABEL_EXTENSION_ID,
    TLP1_IDS,
    TLP2_IDS,
    TLP_LEVELS,
    Alternative,
    Label,
    builtin_objects,
    label_marking,
    read_label,
    resolve_labels,
    strictest_tlp,
)
from allied.stix.validate import validate
from tests.stix.test_validate import SPEC_OBJECTS


def test_builtin_tlp_markings_equal_the_published_ones() -> None:
    published = {o["id"]: o for o in SPEC_OBJECTS if o["type"] == "marking-definition"}
    for obj in builtin_objects():
        assert validate(obj) == []
        if obj["id"] in TLP2_IDS.values():
            assert obj == published[obj["id"]]


def test_tlp1_ids_map_to_tlp2_levels() -> None:
    assert resolve_labels([TLP1_IDS["white"]], {}).tlp == "clear"
    assert resolve_labels([TLP1_IDS["amber"], TLP2_IDS["green"]], {}).tlp == "amber"


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ((), None),
        (("clear", None), "clear"),
        (("green", "red", "amber"), "red"),
        (("amber", "amber+strict"), "amber+strict"),
    ],
)
def test_strictest_tlp(levels: tuple[str | None, ...], expected: str | None) -> None:
    assert strictest_tlp(levels) == expected


def test_unknown_marking_gives_no_tlp() -> None:
    unknown = "marking-definition--00000000-0000-4000-8000-000000000000"
    resolved = resolve_labels([unknown], {})
    assert resolved.tlp is None and resolved.unknown == (unknown,)


def test_label_round_trip_and_tlp_through_label() -> None:
    label = Label(
        marking_id="marking-definition--1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a99",
        name="NATO SECRET REL USA",
        tlp="red",
        policy="NATO",
        classification="SECRET",
        releasable_to=("USA",),
        handling=("CYBER",),
        informative=("EYES ONLY",),
        alternatives=(Alternative("USA", "SECRET"),),
        recipients=("identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",),
        blind_match=("KOR",),
    )
    marking = label_marking(
        label,
        created="2026-01-01T00:00:00.000Z",
        created_by_ref="identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
    )
    assert validate(marking) == []
    assert read_label(marking) == label
    assert resolve_labels([label.marking_id], {label.marking_id: label}).tlp == "red"


def test_label_extension_body_is_validated() -> None:
    marking = label_marking(
        Label("marking-definition--1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a98", "x", "green"),
        created="2026-01-01T00:00:00.000Z",
        created_by_ref="identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
    )
    body = marking["extensions"][LABEL_EXTENSION_ID]
    body["tlp"] = "purple"
    body["policy"] = "NATO"
    found = dict(validate(marking))
    assert found[f"extensions.{LABEL_EXTENSION_ID}.tlp"].startswith("must be one of")
    assert found[f"extensions.{LABEL_EXTENSION_ID}"] == "policy and classification go together"


def test_tlp_levels_are_ordered() -> None:
    assert TLP_LEVELS == ("clear", "green", "amber", "amber+strict", "red")


def test_releasable_to_without_a_classification_is_invalid() -> None:
    """Found in review: such a label's audience would be silently unenforced."""
    marking = label_marking(
        Label(
            "marking-definition--1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a97",
            "x",
            "green",
            releasable_to=("KOR",),
            handling=("EYES",),
        ),
        created="2026-01-01T00:00:00.000Z",
        created_by_ref="identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
    )
    found = dict(validate(marking))
    path = f"extensions.{LABEL_EXTENSION_ID}"
    assert found[f"{path}.releasable_to"] == "needs a classification (policy)"
    assert found[f"{path}.handling"] == "needs a classification (policy)"
