"""CSV indicator lists as spreadsheets export them: BOM, semicolons, quotes, comments, extra
columns, defanged values, no type column; located problems; re-imports that change nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from allied.errors import InputFormatError, ValidationError
from allied.ingest.importers import Options, run
from allied.integrity.origin import Origin
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from tests.ingest.conftest import DATA, by_name, latest, oasis_errors


def _csv(node: Node, path: Path, **options: object) -> object:
    return run(node, "csv", path, Options(**options))  # type: ignore[arg-type]


def test_a_messy_spreadsheet_export_is_read(node: Node) -> None:
    marking = node.add_label("nr", tlp="amber", policy="NATO", classification="RESTRICTED",
                             releasable_to=["NATO"])  # fmt: skip
    report = run(node, "csv", DATA / "messy.csv", Options(label="nr"))
    assert (report.stored, report.duplicates, report.invalid) == (5, 0, 0)
    assert report.created == {"indicator": 5}
    assert report.notes == ["columns ignored: Analyst"]
    found = by_name(node, "indicator")
    assert set(found) == {
        "url: https://evil.example.com/a;b",
        "ipv4: 198.51.100.7",
        "MD5: 44d88612fea8a8f36de82e1278abb02f",
        "domain: secure-mail.gov-update.org",
        "ipv4: 10.20.0.0/16",
    }
    url = found["url: https://evil.example.com/a;b"]
    assert url["pattern"] == "[url:value = 'https://evil.example.com/a;b']"
    assert url["valid_from"] == "2026-03-01T00:00:00Z"
    assert url["valid_until"] == "2026-06-01T00:00:00Z"
    assert url["confidence"] == 85  # "high" on STIX's High/Medium/Low scale
    assert url["description"] == "phish, stage 1"
    assert url["object_marking_refs"] == [TLP2_IDS["amber"], marking]
    assert url["created_by_ref"] == node.config.identity_id
    ip = found["ipv4: 198.51.100.7"]
    assert (ip["valid_from"], ip["confidence"]) == ("2026-03-02T10:00:00Z", 80)
    assert "description" not in ip
    assert found["MD5: 44d88612fea8a8f36de82e1278abb02f"]["description"] == 'quoted "name"'
    assert found["ipv4: 10.20.0.0/16"]["pattern"] == "[ipv4-addr:value ISSUBSET '10.20.0.0/16']"
    assert oasis_errors(latest(node, "indicator")) == []
    assert node.verify().ok


def test_a_re_import_changes_nothing_and_an_edited_row_is_a_new_version(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "list.csv"
    shutil.copy(DATA / "messy.csv", path)
    first = run(node, "csv", path, Options())
    ids = {obj["id"]: obj for obj in latest(node, "indicator")}
    count = node.store.version_count()
    signed: list[str] = []  # rows whose stored version is unchanged are not signed again
    admit = Origin.admit

    def counted(self: Origin, obj: Any, **options: Any) -> Any:
        signed.append(obj.id)
        return admit(self, obj, **options)

    monkeypatch.setattr(Origin, "admit", counted)
    again = run(node, "csv", path, Options())
    assert (again.stored, again.duplicates) == (0, first.stored)
    assert node.store.version_count() == count and signed == []
    path.write_text(path.read_text("utf-8-sig").replace("phish, stage 1", "phish, stage 2"))
    edited = run(node, "csv", path, Options())
    assert (edited.stored, edited.duplicates) == (1, 4)
    assert len(signed) == 1
    now = {obj["id"]: obj for obj in latest(node, "indicator")}
    assert set(now) == set(ids)
    changed = [i for i in ids if now[i] != ids[i]]
    assert len(changed) == 1
    old, new = ids[changed[0]], now[changed[0]]
    assert new["description"] == "phish, stage 2"
    assert new["created"] == old["created"] and new["modified"] > old["modified"]
    assert len(node.store.versions(changed[0])) == 2


def test_a_value_listed_twice_keeps_the_edited_row(node: Node, tmp_path: Path) -> None:
    """Two rows of one value share an id: the unchanged one is a duplicate, the edited one
    still becomes the new version (held is decided per row, not per id)."""
    path = tmp_path / "twice.csv"
    path.write_text("type,value,comment\nipv4,198.51.100.7,first\n")
    run(node, "csv", path, Options())
    path.write_text("type,value,comment\nipv4,198.51.100.7,first\nipv4,198.51.100.7,second\n")
    again = run(node, "csv", path, Options())
    assert (again.stored, again.duplicates) == (1, 1)
    (latest_one,) = latest(node, "indicator")
    assert latest_one["description"] == "second"


def test_a_list_without_dates_keeps_its_first_valid_from(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("value,comment\n203.0.113.50,first\n")
    run(node, "csv", path, Options())
    (first,) = latest(node, "indicator")
    assert first["valid_from"] == first["created"]
    path.write_text("value,comment\n203.0.113.50,second\n")
    run(node, "csv", path, Options())
    (second,) = latest(node, "indicator")
    assert second["description"] == "second"
    assert second["valid_from"] == first["valid_from"]


def test_a_headerless_one_column_feed(node: Node) -> None:
    report = run(node, "csv", DATA / "feed.txt.csv", Options())
    assert report.stored == 3
    assert set(by_name(node, "indicator")) == {
        "url: http://203.0.113.9/payload.bin",
        "ipv4: 203.0.113.10",
        "email: bad-mail@phish.example.com",
    }


def test_columns_name_a_headerless_file(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "cols.tsv"
    path.write_text("ip-src\t203.0.113.77\tignored\tseen at the border\n"
                    "domain\tc2[.]example[.]net\tx\t\n")  # fmt: skip
    report = run(node, "csv", path, Options(columns=["type", "value", "", "description"]))
    assert report.stored == 2
    found = by_name(node, "indicator")
    assert found["ipv4: 203.0.113.77"]["description"] == "seen at the border"
    assert "domain: c2.example.net" in found


def test_every_bad_row_is_located_and_nothing_is_stored(node: Node) -> None:
    before = node.store.version_count()
    with pytest.raises(ValidationError) as excinfo:
        run(node, "csv", DATA / "bad.csv", Options())
    assert [(p.line, p.path) for p in excinfo.value.problems] == [
        (3, "column 1 (value)"),
        (4, "column 3 (confidence)"),
    ]
    assert "'not an indicator' is not an IP address" in excinfo.value.problems[0].reason
    assert "not a confidence from 0 to 100" in excinfo.value.problems[1].reason
    assert node.store.version_count() == before


def test_skip_invalid_keeps_the_good_rows(node: Node) -> None:
    report = run(node, "csv", DATA / "bad.csv", Options(skip_invalid=True))
    assert (report.stored, report.invalid, report.read) == (1, 2, 3)
    assert set(by_name(node, "indicator")) == {"domain: example.org"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type,value\nsha256,abc\n", "not a well-formed sha256 value"),
        ("type,value\nyara,rule x {}\n", "unknown indicator type 'yara'"),
        ("value,first_seen\n203.0.113.1,yesterday\n", "'yesterday' is not a date"),
        ("value,first_seen,last_seen\n203.0.113.1,2026-03-02,2026-03-01\n", "is not after"),
        ("value,first_seen\n203.0.113.1,²²²²²²²²²²\n", "is not a date"),
        ("value,first_seen\n203.0.113.1,0001-01-01T00:00+01:00\n", "is not a date"),
        ("value,first_seen\n203.0.113.1,9999-12-31T23:59-01:00\n", "is not a date"),
        ("value,first_seen\n203.0.113.1,0001-01-01\n", "is not a date"),
        ("value\n0.0.0.0/0\n", "network of more than a /8"),
    ],
)
def test_row_problems_say_what_is_wrong(
    node: Node, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "one.csv"
    path.write_text(text)
    with pytest.raises(ValidationError) as excinfo:
        run(node, "csv", path, Options())
    assert message in str(excinfo.value.problems[0])
    assert excinfo.value.problems[0].line == 2


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("type,comment\nip,x\n", None, "no value column"),
        ("a,b\n203.0.113.1,x\n", None, "no header row naming the columns"),
        ("value,indicator\nx,y\n", None, "more than one column means 'value'"),
        ("203.0.113.1\n", ["value", "colour"], "unknown column 'colour'"),
        ('value\n"unterminated\n', None, None),
        ('value,comment\n203.0.113.1,"abc\n203.0.113.2,x\n', None, "never closed"),
        ("203.0.113.1,x\n", ["value", "value"], "--columns names 'value' twice"),
    ],
)
def test_files_that_are_no_indicator_list(
    node: Node, tmp_path: Path, text: str, columns: list[str] | None, message: str | None
) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text)
    try:
        run(node, "csv", path, Options(columns=columns))
    except (InputFormatError, ValidationError) as error:
        assert message is None or message in str(error)
    else:
        raise AssertionError("accepted")


def test_windows_1252_is_read_and_said(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("value;comment\n203.0.113.60;Cafétéria Wi-Fi\n".encode("cp1252"))
    report = run(node, "csv", path, Options())
    assert report.stored == 1
    assert "read as Windows-1252" in report.notes[0]
    (found,) = latest(node, "indicator")
    assert found["description"] == "Cafétéria Wi-Fi"


def test_a_dry_run_stores_nothing_and_counts_what_would_be(node: Node) -> None:
    before = (node.store.version_count(), node.store.tree_heads())
    report = run(node, "csv", DATA / "messy.csv", Options(dry_run=True))
    assert report.dry_run and report.stored == 5 and report.created == {"indicator": 5}
    assert (node.store.version_count(), node.store.tree_heads()) == before
    real = run(node, "csv", DATA / "messy.csv", Options())
    assert real.stored == 5
    assert node.verify().ok


def test_the_command_line(cli: Callable[..., Result], node_dir: Path) -> None:
    result = cli("import", "--format", "csv", str(DATA / "messy.csv"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "5 would be stored (dry run: nothing stored) (5 indicator)" in result.output
    result = cli("import", "--format", "csv", str(DATA / "messy.csv"))
    assert "5 stored (5 indicator), 0 duplicates" in result.output
    assert "note: columns ignored: Analyst" in result.output
    result = cli("import", "--format", "csv", str(DATA / "bad.csv"))
    assert result.exit_code == 1
    assert "line 3 at column 1 (value)" in result.output
    assert "bad.csv: nothing stored" in result.output
    result = cli("import", "--format", "csv", "--columns", "type,value", str(DATA / "feed.txt.csv"))
    assert result.exit_code == 1
    result = cli("import", "--columns", "value", str(DATA / "feed.txt.csv"))
    assert result.exit_code == 2 and "--columns is for --format csv" in result.output
    result = cli("import", "--format", "csv", "--label", "nope", str(DATA / "messy.csv"))
    assert result.exit_code != 0 and "no label named 'nope'" in result.output
    result = cli("import", "--format", "csv", str(DATA))
    assert result.exit_code == 1 and "only --format misp reads a feed directory" in result.output


def test_lists_under_different_labels_never_overwrite_each_other(node: Node) -> None:
    """The same value imported under another label is another indicator: a GREEN list
    cannot rewrite (or widen) what a RED list said about the same address."""
    node.add_label("red", tlp="red")
    node.add_label("green", tlp="green")
    run(node, "csv", DATA / "feed.txt.csv", Options(label="red"))
    run(node, "csv", DATA / "feed.txt.csv", Options(label="green"))
    found = latest(node, "indicator")
    assert len(found) == 6
    by_tlp = {TLP2_IDS["red"]: 0, TLP2_IDS["green"]: 0}
    for indicator in found:
        by_tlp[indicator["object_marking_refs"][0]] += 1
        assert len(node.store.versions(indicator["id"])) == 1
    assert by_tlp == {TLP2_IDS["red"]: 3, TLP2_IDS["green"]: 3}
