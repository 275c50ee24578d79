"""RFC 8785 canonical form: the RFC's own examples, and agreement with an independent
implementation (the `rfc8785` package) on arbitrary JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from allied.integrity.canonical import (
    _SPECIAL_NUMBER,
    CanonicalFormError,
    _plain,
    _write,
    canonical,
    number_text,
)
from tests.conftest import indicator


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # RFC 8785 section 3.2.2.3 and appendix B
        (333333333.33333329, "333333333.3333333"),
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (0.000000000000000000000000001, "1e-27"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-1.5, "-1.5"),
        (123e-20, "1.23e-18"),
    ],
)
def test_numbers_as_the_rfc_writes_them(value: float, text: str) -> None:
    assert number_text(value) == text


def test_the_rfc_example_object() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        '"literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical(json.loads(source)) == expected.encode()


def test_members_sort_by_utf16_code_units() -> None:
    # U+1F600 (a surrogate pair, 0xD83D...) sorts before U+FB33 in UTF-16, after it in UTF-8
    value = {"\ufb33": 1, "\U0001f600": 2, "a": 3}
    assert canonical(value) == '{"a":3,"\U0001f600":2,"\ufb33":1}'.encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": [float("nan")]}, "$.x[0]: nan has no JSON form"),
        ({"x": 2**53}, "$.x: integer 9007199254740992 is beyond 2**53 - 1 (I-JSON)"),
        ({1: "a"}, "$: object member name 1 is not a string"),
        ({"x": {1, 2}}, "$.x: set is not a JSON value"),
    ],
)
def test_values_without_a_canonical_form(value: Any, message: str) -> None:
    with pytest.raises(CanonicalFormError) as excinfo:
        canonical(value)
    assert excinfo.value.message == message


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=800, deadline=None)
@given(json_values)
def test_agrees_with_an_independent_implementation(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_key_order_and_spacing_do_not_matter(value: Any) -> None:
    """What a peer re-serialises differently still has the same canonical bytes."""
    respelled = json.loads(json.dumps(value, indent=3, sort_keys=True))
    assert canonical(respelled) == canonical(value)


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip(value: float) -> None:
    text = number_text(value)
    assert float(text) == value or (value == 0 and float(text) == 0)
    assert not math.isnan(float(text))


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_PLAIN)
def test_the_fast_path_writes_the_same_bytes_as_the_full_one(value: Any) -> None:
    """Plain values (what STIX objects nearly always are) go through orjson; every string,
    control characters and astral code points included, must come out as RFC 8785 says."""
    assert _plain(value)
    assert canonical(value) == rfc8785.dumps(value)
    parts: list[str] = []
    _write(value, parts, "$")
    assert canonical(value) == "".join(parts).encode()


@pytest.mark.parametrize(
    "value", [{"a": 1.5}, {"é": 1}, [2**53], {"a": (1, 2)}, {1: "x"}], ids=repr
)
def test_anything_else_takes_the_full_path(value: Any) -> None:
    assert not _plain(value)


def test_stix_objects_take_the_fast_path() -> None:
    """Timestamps such as 10:00:00.000Z look like numbers only inside strings."""
    data = indicator(1, confidence=85, x_ratio="a:1.5")
    assert _SPECIAL_NUMBER.search(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)) is None
    assert canonical(data) == rfc8785.dumps(data)
    assert canonical({**data, "x_score": 0.5}) == rfc8785.dumps({**data, "x_score": 0.5})
    with pytest.raises(CanonicalFormError):
        canonical({"a": [float("nan")]})
