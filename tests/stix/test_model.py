"""The validated object: references found at any depth, markings, version keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from allied.stix.model import _may_refer, parse_object, references, version_key
from tests.conftest import indicator
from tests.stix.test_validate import SPEC_OBJECTS

GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def test_references_at_any_depth_except_identities_and_markings() -> None:
    obj: dict[str, Any] = {
        "created_by_ref": "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
        "object_marking_refs": [GREEN],
        "source_ref": "malware--00000001-0000-4000-8000-000000000001",
        "object_refs": ["report--00000001-0000-4000-8000-000000000003", "not-an-id"],
        "extensions": {"x-ext": {"deep": [{"sample_ref": "file--00000001-0000-4000-8000-0000"}]}},
        "granular_markings": [{"marking_ref": GREEN, "selectors": ["name"]}],
    }
    assert references(obj) == (
        "malware--00000001-0000-4000-8000-000000000001",
        "report--00000001-0000-4000-8000-000000000003",
        "file--00000001-0000-4000-8000-0000",
    )


def test_spec_examples_refs_are_found_with_or_without_the_shortcut() -> None:
    for obj in SPEC_OBJECTS:
        assert parse_object(obj).refs == references(obj), obj["id"]


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z_]{1,12}(_ref|_refs)?", fullmatch=True), st.text(max_size=12))
def test_the_shortcut_never_misses_a_reference(key: str, value: str) -> None:
    """Whatever custom key and value an object carries, a reference is never skipped."""
    obj = indicator(1, **{f"x_{key}": {"nested_ref": "malware--00000001-0000-4000-8000-0000"},
                          "x_note": value})  # fmt: skip
    assert parse_object(obj).refs == ("malware--00000001-0000-4000-8000-0000",)
    assert _may_refer(parse_object(indicator(1)).json) is False


def test_markings_include_granular_ones_and_versions_sort_as_time() -> None:
    red = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    obj = parse_object(
        indicator(1, granular_markings=[{"marking_ref": red, "selectors": ["name"]}])
    )
    assert obj.marking_refs == (GREEN, red)
    assert version_key({"modified": "2026-01-01T00:00:00.1234Z"}) > version_key(
        {"modified": "2026-01-01T00:00:00.123Z"}
    )
    assert version_key({"type": "ipv4-addr"}) == ""


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # second
            st.text(alphabet="0123456789", min_size=0, max_size=12),  # fraction digits
        ),
        min_size=2,
        max_size=2,
    )
)
def test_version_keys_sort_in_time_order(stamps: list[tuple[int, str]]) -> None:
    texts = [f"2026-01-01T00:00:0{s}{'.' + f if f else ''}Z" for s, f in stamps]
    times = [Decimal(f"{s}.{f or '0'}") for s, f in stamps]
    keys = [version_key({"modified": t}) for t in texts]
    assert (keys[0] < keys[1]) == (times[0] < times[1])
    assert (keys[0] == keys[1]) == (times[0] == times[1])
