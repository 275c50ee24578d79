"""STIX 2.1 validation: every type of the spec, every kind of rule, every problem reported."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allied.errors import ValidationError
from allied.stix.model import parse_object
from allied.stix.types import SCO_TYPES, SDO_TYPES, TYPES
from allied.stix.validate import validate
from tests.conftest import TLP_GREEN, indicator, malware

EXAMPLES = Path(__file__).parent.parent / "data" / "spec_examples"


def spec_objects() -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        found.extend(json.loads(path.read_text())["objects"])
    return found


SPEC_OBJECTS = spec_objects()


def reasons(obj: Any) -> dict[str, str]:
    return dict(validate(obj))


def test_every_spec_type_has_an_example() -> None:
    seen = {o["type"] for o in SPEC_OBJECTS}
    assert set(TYPES) <= seen, sorted(set(TYPES) - seen)
    assert len(SDO_TYPES) == 19 and len(SCO_TYPES) == 18


@pytest.mark.parametrize("obj", SPEC_OBJECTS, ids=lambda o: o["id"])
def test_spec_examples_are_valid(obj: dict[str, Any]) -> None:
    assert validate(obj) == []


def _required_cases() -> list[tuple[dict[str, Any], str]]:
    cases, seen = [], set()
    for obj in SPEC_OBJECTS:
        spec = TYPES.get(obj["type"])
        if spec is None:
            continue
        for name in spec.required:
            if (obj["type"], name) not in seen:
                seen.add((obj["type"], name))
                cases.append((obj, name))
    return cases


@pytest.mark.parametrize(
    ("obj", "name"), _required_cases(), ids=lambda v: v if isinstance(v, str) else v["type"]
)
def test_each_required_property_is_required(obj: dict[str, Any], name: str) -> None:
    broken = {k: v for k, v in obj.items() if k != name}
    if name == "type":
        assert validate(broken) == [("type", "is required")]
    else:
        assert reasons(broken).get(name) == "is required"


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"id": "indicator--not-a-uuid"}, "id", "'indicator--not-a-uuid' is not a STIX identifier"),
        (
            {"id": "malware--00000001-0000-4000-8000-000000000000"},
            "id",
            "must start with indicator-- for an object of type indicator",
        ),
        ({"spec_version": "2.0"}, "spec_version", "must be one of 2.1, not '2.0'"),
        (
            {"created": "2026-03-01T10:00:00Z"},
            "created",
            "must be precise to the millisecond, not '2026-03-01T10:00:00Z'",
        ),
        (
            {"modified": "2026-02-30T10:00:00.000Z"},
            "modified",
            "must be an RFC 3339 UTC timestamp ending in Z, not '2026-02-30T10:00:00.000Z'",
        ),
        (
            {"valid_from": "2026-03-01 00:00:00"},
            "valid_from",
            "must be an RFC 3339 UTC timestamp ending in Z, not '2026-03-01 00:00:00'",
        ),
        (
            {"valid_until": "2026-02-01T00:00:00Z"},
            "valid_until",
            "valid_until must be after valid_from",
        ),
        (
            {"created_by_ref": "malware--00000001-0000-4000-8000-000000000001"},
            "created_by_ref",
            "must refer to identity, not malware",
        ),
        ({"object_marking_refs": []}, "object_marking_refs", "must not be an empty list"),
        (
            {"object_marking_refs": ["identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"]},
            "object_marking_refs[0]",
            "must refer to marking-definition, not identity",
        ),
        ({"confidence": 101}, "confidence", "must be at most 100, not 101"),
        ({"confidence": True}, "confidence", "must be an integer, not boolean"),
        ({"revoked": "no"}, "revoked", "must be true or false, not string"),
        (
            {"indicator_types": "malicious-activity"},
            "indicator_types",
            "must be a list, not string",
        ),
        (
            {"lang": "english language"},
            "lang",
            "'english language' is not an RFC 5646 language tag",
        ),
        ({"pattern": "[ipv4-addr:value = '1.2.3.4'"}, "pattern", "invalid STIX pattern"),
        (
            {"kill_chain_phases": [{"kill_chain_name": "lockheed"}]},
            "kill_chain_phases[0].phase_name",
            "is required",
        ),
        (
            {"external_references": [{"source_name": "cve"}]},
            "external_references[0]",
            "needs at least one of description, url, external_id",
        ),
        (
            {
                "external_references": [
                    {"source_name": "x", "url": "u", "hashes": {"SHA-256": "abc"}}
                ]
            },
            "external_references[0].hashes.SHA-256",
            "is not a valid SHA-256 digest",
        ),
        (
            {"valid_form": "2026-01-01T00:00:00Z"},
            "valid_form",
            "is not a property of indicator (custom properties start with x_)",
        ),
        ({"X-Bad": 1}, "X-Bad", "is not a valid property name"),
        ({"x_empty": []}, "x_empty", "must not be an empty list"),
        (
            {"extensions": {"unknown-ext": {}}},
            "extensions.unknown-ext",
            "unknown extension 'unknown-ext' for indicator",
        ),
        (
            {
                "granular_markings": [
                    {
                        "marking_ref": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
                        "selectors": ["description"],
                    }
                ]
            },
            "granular_markings[0].selectors[0]",
            "'description' does not select a property",
        ),
    ],
)
def test_indicator_problems_are_located(change: dict[str, Any], path: str, reason: str) -> None:
    found = reasons(indicator(**change))
    assert path in found, found
    assert found[path].startswith(reason), found[path]


def test_closed_vocabulary_rejects_other_values() -> None:
    opinion = next(o for o in SPEC_OBJECTS if o["type"] == "opinion")
    assert reasons({**opinion, "opinion": "maybe"})["opinion"].startswith("must be one of agree")


def test_open_vocabulary_accepts_any_value() -> None:
    assert validate(indicator(indicator_types=["home-grown-type"])) == []


def test_cross_property_rules() -> None:
    loc = next(o for o in SPEC_OBJECTS if o["type"] == "location" and "latitude" in o)
    assert reasons({k: v for k, v in loc.items() if k != "longitude"}) == {
        "latitude": "latitude requires longitude"
    }
    family = {k: v for k, v in malware().items() if k != "name"}
    assert reasons(family)["name"] == "is required when is_family is true"
    traffic = next(o for o in SPEC_OBJECTS if o["type"] == "network-traffic")
    bare = {k: v for k, v in traffic.items() if k not in ("src_ref", "dst_ref")}
    assert reasons(bare)[""] == "needs at least one of src_ref, dst_ref"


def test_predefined_sco_extensions_are_checked() -> None:
    file_with_pe = next(
        o
        for o in SPEC_OBJECTS
        if o["type"] == "file" and "windows-pebinary-ext" in o.get("extensions", {})
    )
    broken = copy.deepcopy(file_with_pe)
    del broken["extensions"]["windows-pebinary-ext"]["pe_type"]
    assert reasons(broken)["extensions.windows-pebinary-ext.pe_type"] == "is required"
    socket = next(
        o
        for o in SPEC_OBJECTS
        if o["type"] == "network-traffic" and "socket-ext" in o.get("extensions", {})
    )
    broken = copy.deepcopy(socket)
    broken["extensions"]["socket-ext"]["address_family"] = "AF_MARS"
    assert reasons(broken)["extensions.socket-ext.address_family"].startswith("must be one of")


def test_tlp_marking_with_a_standard_id_must_match_the_standard() -> None:
    forged = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        "created": "2022-10-01T00:00:00.000Z",
        "name": "TLP:CLEAR",
        "extensions": {
            "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                "extension_type": "property-extension",
                "tlp_2_0": "red",
            }
        },
    }
    assert reasons(forged)["extensions"].startswith("differs from the standard TLP marking")


def test_unknown_types_need_an_extension_definition() -> None:
    found = reasons({"type": "x-thing", "id": "x-thing--00000001-0000-4000-8000-000000000000"})
    assert found["type"].startswith("unknown object type 'x-thing'")
    assert reasons({"type": "Bad_Type"})["type"] == "'Bad_Type' is not a valid STIX type name"


def test_every_problem_is_reported_at_once() -> None:
    bad = indicator(confidence=500, created="yesterday", pattern_type=7)
    assert {"confidence", "created", "pattern_type"} <= set(reasons(bad))


def test_parse_object_raises_with_problems() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_object(indicator(confidence=-1), index=4, line=9)
    problem = excinfo.value.problems[0]
    assert (problem.index, problem.line, problem.path) == (4, 9, "confidence")
    assert problem.object_id == indicator()["id"]
    assert str(problem).startswith("line 9, object 4, indicator--00000001")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPEC_OBJECTS), st.data())
def test_validate_never_raises_on_any_value(obj: dict[str, Any], data: st.DataObject) -> None:
    """Whatever JSON sits in whatever property, validation answers with problems, never a crash."""
    broken = copy.deepcopy(obj)
    key = data.draw(st.sampled_from(sorted(broken)))
    broken[key] = data.draw(json_values)
    result = validate(broken)
    assert isinstance(result, list)
    assert all(isinstance(path, str) and isinstance(reason, str) for path, reason in result)


def test_review_crashes_are_problems() -> None:
    """Found in review: these raised instead of being reported."""
    unicode_digit = indicator(
        x_a=[1], granular_markings=[{"marking_ref": TLP_GREEN, "selectors": ["x_a.[²]"]}]
    )
    assert reasons(unicode_digit)["granular_markings[0].selectors[0]"].startswith("'x_a.[²]'")
    custom = {
        "type": "x-foo",
        "id": "x-foo--00000001-0000-4000-8000-000000000000",
        "extensions": {
            "extension-definition--00000001-0000-4000-8000-000000000000": {
                "extension_type": ["new-sdo"]
            }
        },
    }
    assert reasons(custom)["type"].startswith("unknown object type 'x-foo'")


def test_review_validation_gaps_are_closed() -> None:
    """Found in review: each of these was accepted."""
    assert reasons(indicator(modified="2026-01-01T00:00:00.000Z"))["modified"] == (
        "modified must be at or after created"
    )
    rel = next(o for o in SPEC_OBJECTS if o["type"] == "relationship")
    to_marking = {**rel, "target_ref": TLP_GREEN}
    assert reasons(to_marking)["target_ref"] == "must not refer to a marking-definition"
    ipv4 = next(o for o in SPEC_OBJECTS if o["type"] == "ipv4-addr")
    assert reasons({**ipv4, "value": "not an ip"})["value"] == (
        "'not an ip' is not an IPv4 address or CIDR block"
    )
    assert reasons({**ipv4, "value": "2001:db8::1"})["value"].endswith("IPv4 address or CIDR block")
    assert validate({**ipv4, "value": "198.51.100.0/24"}) == []
    sighting = next(o for o in SPEC_OBJECTS if o["type"] == "sighting")
    custom_sdo = "my-favorite-sdo--ac97aae4-83f1-46ca-a351-7aeb76678189"
    assert validate({**sighting, "sighting_of_ref": custom_sdo}) == []
    assert (
        reasons({**sighting, "sighting_of_ref": "file--00000001-0000-4000-8000-000000000001"})[
            "sighting_of_ref"
        ]
        == "must not refer to a file"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"id": indicator(1)["id"] + "\n"},
        {"created": "2026-03-01T10:00:00.000Z\n"},
        {"object_marking_refs": [TLP_GREEN + "\n"]},
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_value(change: dict[str, Any]) -> None:
    """An identifier or timestamp with a line break after it would be a second name for the
    same thing to tools that trim whitespace."""
    assert validate({**indicator(1), **change})
