"""Streaming input: bundles and JSON lines, chunk boundaries, and located syntax errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allied.errors import InputFormatError
from allied.stix import reader
from allied.stix.reader import read_items
from tests.conftest import bundle, indicator, write_bundle, write_lines


def ids(path: Path) -> list[str]:
    return [item.data["id"] for item in read_items(path)]


def test_pretty_bundle_objects_with_index_and_line(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "b.json", [indicator(1), indicator(2)])
    items = list(read_items(path))
    assert [i.index for i in items] == [0, 1]
    assert [i.data for i in items] == [indicator(1), indicator(2)]
    text = path.read_text().splitlines()
    for item in items:
        assert text[item.line - 1].strip() == "{"


def test_compact_one_line_bundle(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "b.json", [indicator(1), indicator(2)], indent=None)
    assert ids(path) == [indicator(1)["id"], indicator(2)["id"]]


def test_envelope_keys_after_objects_and_empty_objects(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        '{"objects": [], "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "type": "bundle"}'
    )
    assert ids(path) == []


def test_json_lines_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(indicator(1)) + "\n\n" + json.dumps(indicator(2)) + "\n")
    items = list(read_items(path))
    assert [(i.index, i.line) for i in items] == [(0, 1), (1, 3)]


def test_objects_straddling_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny read chunks force every object, string and number across a buffer boundary."""
    monkeypatch.setattr(reader, "CHUNK", 7)
    objects = [indicator(n, confidence=n % 100, x_big="z" * (n * 37)) for n in range(1, 40)]
    path = write_bundle(tmp_path / "b.json", objects, indent=1)
    assert [i.data for i in read_items(path)] == objects


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(bundle([indicator(1)])).encode())
    assert ids(path) == [indicator(1)["id"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("[1, 2]", "expected a STIX bundle or JSON lines"),
        ('{\n "type": "indicator",\n "id": "x"\n}', "the top-level object has type 'indicator'"),
        (
            '{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d"}',
            "the bundle has no 'objects' list",
        ),
        ('{"type": "bundle", "id": "bundle--1", "objects": []}', "the bundle id 'bundle--1'"),
        (
            '{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", '
            '"spec_version": "2.0", "objects": []}',
            "that is a STIX 2.0 bundle",
        ),
        ('{"type": "bundle", "objects": {}}', "'objects' must be a list"),
        ('{"type": "bundle", "objects": [{"a": 1} {"b": 2}]}', "expected ',' or ']' in 'objects'"),
        ('{"type": "bundle", "objects": [{"a": NaN}]}', "invalid JSON"),
        ('{"type": "bundle", "objects": []} trailing', "unexpected data after the bundle"),
        ('{"type": "bundle", "objects": [{"a": "unterminated', "invalid JSON: Unterminated"),
    ],
)
def test_bad_input_is_located(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputFormatError) as excinfo:
        list(read_items(path))
    assert message in excinfo.value.message
    assert excinfo.value.source == str(path)


def test_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "b.json", [indicator(1), indicator(2)])
    lines = path.read_text().splitlines()
    broken = next(n for n, line in enumerate(lines) if '"confidence"' in line or '"name"' in line)
    lines[broken] = lines[broken].replace('": ', '" ', 1)
    path.write_text("\n".join(lines))
    with pytest.raises(InputFormatError) as excinfo:
        list(read_items(path))
    assert excinfo.value.line == broken + 1
    assert excinfo.value.column is not None
    assert f"{path}:{broken + 1}:" in excinfo.value.message


def test_json_lines_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [indicator(1), indicator(2)])
    path.write_text(path.read_text() + "{not json}\n")
    with pytest.raises(InputFormatError) as excinfo:
        list(read_items(path))
    assert excinfo.value.line == 3


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"type": "bundle", "objects": [{"name": "caf\xe9"}]}')
    with pytest.raises(InputFormatError, match="not UTF-8"):
        list(read_items(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot read"):
        list(read_items(tmp_path / "absent.json"))


def test_numbers_beyond_a_double_are_refused(tmp_path: Path) -> None:
    """Found in review: 1e999 became infinity and was stored as null."""
    path = tmp_path / "b.json"
    path.write_text(
        '{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", '
        '"objects": [{"x_big": 1e999}]}'
    )
    with pytest.raises(InputFormatError, match="too large for a double"):
        list(read_items(path))


def test_json_lines_with_a_long_first_line_or_a_single_object(tmp_path: Path) -> None:
    """Found in review: a first line over 64 KiB, or one line without a newline, was taken
    for a bundle."""
    long_first = write_lines(
        tmp_path / "long.jsonl", [indicator(1, x_pad="p" * 100_000), indicator(2)]
    )
    assert ids(long_first) == [indicator(1)["id"], indicator(2)["id"]]
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(indicator(3)))
    assert ids(single) == [indicator(3)["id"]]
