"""The one-regex fast path for ``[type:prop = 'value']`` gives exactly what the parser gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from allied.errors import PatternError
from allied.stix.pattern import _SIMPLE, _parse_full, parse_pattern

names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
props = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True) | st.sampled_from(
    ["value", "hashes", "name", "true", "false"]
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except PatternError as error:
        return ("error", error.reason, error.position)


@settings(max_examples=400, deadline=None)
@given(names, props, st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_fast_path_agrees_with_the_parser(kind: str, prop: str, value: str) -> None:
    text = f"[{kind}:{prop} = '{_escape(value)}']"
    assert _outcome(parse_pattern, text) == _outcome(_parse_full, text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="[]:= 'ab\\-_xyz0", max_size=24))
def test_fast_path_agrees_on_arbitrary_text(text: str) -> None:
    assert _outcome(parse_pattern, text) == _outcome(_parse_full, text)


def test_fast_path_is_taken_for_the_common_shape() -> None:
    assert _SIMPLE.fullmatch("[ipv4-addr:value = '198.51.100.7']") is not None
    assert _SIMPLE.fullmatch("[file:hashes.MD5 = 'x']") is None
    assert parse_pattern("[url:value = 'it\\'s']").root.comparison.value == "it's"  # type: ignore[union-attr]
