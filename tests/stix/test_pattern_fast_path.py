"""The regex fast path for equalities (and OR-lists of them) gives exactly what the parser
gives: the same tree, or the same error."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from allied.errors import PatternError
from allied.stix.pattern import _SIMPLE, Pattern, _parse_full, check_pattern, parse_pattern

types = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True) | st.sampled_from(
    ["file", "ipv4-addr", "true", "x-AND"]
)
simple_steps = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True) | st.sampled_from(
    ["value", "hashes", "MD5", "SHA1", "true", "false", "AND", "OR", "name"]
)
quoted_steps = st.sampled_from(["'SHA-256'", "'SHA-1'", "'x-key'", "'MD5'", "'a_b'"])
steps = st.lists(simple_steps | quoted_steps, min_size=1, max_size=3)
values = st.text(max_size=20) | st.sampled_from(
    ["a" * 32, "b" * 40, "c" * 64, "d" * 128, "A" * 32, "zz", "0" * 64]
)


operators = st.sampled_from(["=", "ISSUBSET", "ISSUPERSET", "LIKE", "!="])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@st.composite
def equalities(draw: st.DrawFn) -> str:
    parts = [
        f"{draw(types)}:{'.'.join(draw(steps))} = '{_escape(draw(values))}'"
        for _ in range(draw(st.integers(1, 4)))
    ]
    return "[" + " OR ".join(parts) + "]"


def _outcome(parse: Callable[[str], Pattern], text: str) -> object:
    try:
        return parse(text)
    except PatternError as error:
        return ("error", error.reason, error.position)


@settings(max_examples=600, deadline=None)
@given(equalities())
def test_fast_path_agrees_with_the_parser(text: str) -> None:
    assert _outcome(parse_pattern, text) == _outcome(_parse_full, text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="[]:.= 'ab\\-_xyzOR0", max_size=30))
def test_fast_path_agrees_on_arbitrary_text(text: str) -> None:
    assert _outcome(parse_pattern, text) == _outcome(_parse_full, text)


def test_fast_path_is_taken_for_the_common_shapes() -> None:
    md5 = "a" * 32
    for text in (
        "[ipv4-addr:value = '198.51.100.7']",
        f"[file:hashes.MD5 = '{md5}' OR file:hashes.'SHA-256' = '{'b' * 64}']",
        "[domain-name:value = 'a.example' OR domain-name:value = 'b.example']",
    ):
        assert _SIMPLE.fullmatch(text) is not None
        assert parse_pattern(text) == _parse_full(text)
    assert _SIMPLE.fullmatch("[network-traffic:dst_port = 443]") is None
    quoted = parse_pattern("[url:value = 'it\\'s']")
    assert quoted.root.comparison.value == "it's"  # type: ignore[union-attr]


def _verdict(text: str) -> object:
    try:
        check_pattern(text)
    except PatternError as error:
        return ("error", error.reason, error.position)
    return "valid"


@st.composite
def observations(draw: st.DrawFn) -> str:
    """OR-lists of observations holding OR-lists of = and ISSUBSET comparisons."""
    groups = []
    for _ in range(draw(st.integers(1, 3))):
        parts = [
            f"{draw(types)}:{'.'.join(draw(steps))} {draw(operators)} '{_escape(draw(values))}'"
            for _ in range(draw(st.integers(1, 3)))
        ]
        groups.append("[" + " OR ".join(parts) + "]")
    return " OR ".join(groups)


@settings(max_examples=800, deadline=None)
@given(observations() | equalities() | st.text(alphabet="[]:.= 'ab\\-_xyzOR0", max_size=30))
def test_check_pattern_agrees_with_the_parser(text: str) -> None:
    full = _outcome(_parse_full, text)
    assert _verdict(text) == (full if isinstance(full, tuple) else "valid")
