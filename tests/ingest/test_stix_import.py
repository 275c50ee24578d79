"""Importing files: whole-file rejection, --skip-invalid, versions and duplicates, labels."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from allied.errors import Conflict, InputFormatError, NotFound, ValidationError
from allied.ingest.stix_import import import_file
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from tests.conftest import (
    TLP_AMBER,
    TLP_RED,
    indicator,
    malware,
    unsigned,
    write_bundle,
    write_lines,
)


def test_valid_bundle_is_stored(node: Node, tmp_path: Path) -> None:
    before = node.store.version_count()
    path = write_bundle(tmp_path / "b.json", [indicator(1), indicator(2), malware(1)])
    report = import_file(node, path)
    assert (report.read, report.stored, report.duplicates, report.invalid) == (3, 3, 0, 0)
    assert node.store.version_count() == before + 3
    stored = node.store.latest(indicator(1)["id"])
    assert stored is not None and unsigned(stored.data) == indicator(1)


def test_one_bad_object_rejects_the_whole_file_listing_every_problem(
    node: Node, tmp_path: Path
) -> None:
    before = node.store.version_count()
    objects = [indicator(1), indicator(2, confidence=900), indicator(3), malware(1, is_family=1)]
    path = write_bundle(tmp_path / "b.json", objects)
    with pytest.raises(ValidationError) as excinfo:
        import_file(node, path)
    problems = excinfo.value.problems
    assert [(p.index, p.object_id, p.path) for p in problems] == [
        (1, indicator(2)["id"], "confidence"),
        (3, malware(1)["id"], "is_family"),
    ]
    assert all(p.line is not None for p in problems)
    assert node.store.version_count() == before


def test_rejection_holds_across_batches(node: Node, tmp_path: Path) -> None:
    """Objects already flushed in earlier batches are rolled back too."""
    before = node.store.version_count()
    objects = [indicator(n) for n in range(1, 5000)] + [indicator(9999, pattern="[oops")]
    path = write_lines(tmp_path / "many.jsonl", objects)
    with pytest.raises(ValidationError) as excinfo:
        import_file(node, path)
    assert excinfo.value.problems[0].line == 5000
    assert node.store.version_count() == before


def test_skip_invalid_stores_the_good_and_reports_the_bad(node: Node, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [indicator(1), {"type": "indicator"}, indicator(2)])
    report = import_file(node, path, skip_invalid=True)
    assert (report.stored, report.invalid) == (2, 1)
    assert report.problems[0].line == 2
    assert {p.path for p in report.problems} >= {"id", "pattern"}


def test_syntax_error_stores_nothing_even_with_skip_invalid(node: Node, tmp_path: Path) -> None:
    before = node.store.version_count()
    path = write_lines(tmp_path / "in.jsonl", [indicator(1)])
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(InputFormatError):
        import_file(node, path, skip_invalid=True)
    assert node.store.version_count() == before


def test_versions_and_duplicates(node: Node, tmp_path: Path) -> None:
    first = indicator(1)
    newer = indicator(1, modified="2026-04-01T00:00:00.000Z", name="renamed")
    import_file(node, write_bundle(tmp_path / "a.json", [first]))
    report = import_file(node, write_bundle(tmp_path / "b.json", [first, newer, newer]))
    assert (report.stored, report.duplicates) == (1, 2)
    versions = node.store.versions(first["id"])
    assert [v.data["name"] for v in versions] == ["bad address 1", "renamed"]
    latest = node.store.latest(first["id"])
    assert latest is not None and unsigned(latest.data) == newer


def test_versions_compare_as_time_not_text(node: Node, tmp_path: Path) -> None:
    """.1234Z is later than .123Z although, as text, 'Z' sorts after '4'."""
    early = indicator(1, modified="2026-04-01T00:00:00.123Z")
    late = indicator(1, modified="2026-04-01T00:00:00.1234Z", name="later")
    import_file(node, write_bundle(tmp_path / "a.json", [late, early]))
    assert node.store.latest(early["id"]).data["name"] == "later"  # type: ignore[union-attr]


def test_label_applies_to_unmarked_objects_only(node: Node, tmp_path: Path) -> None:
    marking = node.add_label(
        "confidential",
        tlp="amber",
        policy="NATO",
        classification="CONFIDENTIAL",
        releasable_to=["KOR", "USA"],
    )
    unmarked = {k: v for k, v in indicator(1).items() if k != "object_marking_refs"}
    marked = indicator(2, object_marking_refs=[TLP_RED])
    import_file(node, write_bundle(tmp_path / "a.json", [unmarked, marked]), label="confidential")
    labelled = node.store.latest(unmarked["id"])
    assert labelled is not None
    assert labelled.data["object_marking_refs"] == [TLP2_IDS["amber"], marking]
    assert labelled.tlp == "amber"
    assert unsigned(node.store.latest(marked["id"]).data) == marked  # type: ignore[union-attr]


def test_unknown_label_is_an_error(node: Node, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no label named 'nope'"):
        import_file(node, write_bundle(tmp_path / "a.json", [indicator(1)]), label="nope")


def test_tlp_summary_is_the_strictest_marking(node: Node, tmp_path: Path) -> None:
    obj = indicator(1, object_marking_refs=[TLP2_IDS["green"], TLP_AMBER])
    import_file(node, write_bundle(tmp_path / "a.json", [obj]))
    assert node.store.latest(obj["id"]).tlp == "amber"  # type: ignore[union-attr]


def test_collector_threshold_is_restored_even_on_failure(node: Node, tmp_path: Path) -> None:
    before = gc.get_threshold()
    import_file(node, write_bundle(tmp_path / "ok.json", [indicator(1)]))
    with pytest.raises(ValidationError):
        import_file(node, write_bundle(tmp_path / "bad.json", [indicator(2, confidence=-5)]))
    assert gc.get_threshold() == before


def test_envelope_error_after_the_objects_stores_nothing(node: Node, tmp_path: Path) -> None:
    """A bundle's faults may come after its objects; by then they were written, and roll back."""
    before = node.store.version_count()
    path = tmp_path / "late.json"
    objects = ",".join(json.dumps(indicator(n)) for n in range(1, 3000))
    path.write_text(
        f'{{"objects": [{objects}], "type": "bundle", "spec_version": "2.0", '
        '"id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d"}'
    )
    with pytest.raises(InputFormatError, match=r"STIX 2\.0 bundle"):
        import_file(node, path)
    assert node.store.version_count() == before


def test_versions_a_nanosecond_apart_stay_apart(node: Node, tmp_path: Path) -> None:
    """Found in review: versions were cut to microseconds, so a tighter label 100 ns later
    was taken for a duplicate and the looser one stayed the latest."""
    loose = indicator(
        1, modified="2026-04-01T00:00:00.0000001Z", object_marking_refs=[TLP2_IDS["clear"]]
    )
    tight = indicator(1, modified="2026-04-01T00:00:00.0000009Z", object_marking_refs=[TLP_RED])
    import_file(node, write_bundle(tmp_path / "v1.json", [loose]))
    report = import_file(node, write_bundle(tmp_path / "v2.json", [tight]))
    assert (report.stored, report.duplicates) == (1, 0)
    latest = node.store.latest(loose["id"])
    assert latest is not None and unsigned(latest.data) == tight
    same = indicator(1, modified="2026-04-01T00:00:00.00000090Z", object_marking_refs=[TLP_RED])
    assert import_file(node, write_bundle(tmp_path / "v3.json", [same])).duplicates == 1


def test_a_marking_definition_cannot_be_redefined(node: Node, tmp_path: Path) -> None:
    """Found in review: a partner could send a new 'version' of a label's marking definition
    and so relabel every object using it as TLP:CLEAR."""
    secret = node.add_label(
        "S", tlp="amber", policy="NATO", classification="SECRET", releasable_to=["USA"]
    )
    stored = node.store.latest(secret)
    assert stored is not None
    forged = dict(stored.data, created="2000-01-01T00:00:00.000Z")
    forged["extensions"] = {
        next(iter(stored.data["extensions"])): {
            "extension_type": "property-extension",
            "tlp": "clear",
        }
    }
    before = node.store.version_count()
    with pytest.raises(Conflict, match="cannot change"):
        import_file(node, write_bundle(tmp_path / "forged.json", [forged]))
    assert node.store.version_count() == before
    assert node.store.label_markings()[secret].tlp == "amber"
    same = import_file(node, write_bundle(tmp_path / "same.json", [stored.data]))
    assert (same.stored, same.duplicates) == (0, 1)
