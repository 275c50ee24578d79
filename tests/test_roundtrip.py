"""Round trip: the specification's examples import and export unchanged but for the node's
origin signature, and what Allied exports passes the OASIS validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from stix2validator import ValidationOptions, validate_instance

from allied.cli import main
from allied.integrity.origin import is_standard_id
from allied.integrity.signing import verify
from allied.node import Node
from allied.stix.model import version_key
from tests.conftest import unsigned
from tests.stix.test_validate import EXAMPLES

_OPTIONS = ValidationOptions(version="2.1")


def _latest_by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for obj in objects:
        current = latest.get(obj["id"])
        if current is None or version_key(obj) > version_key(current):
            latest[obj["id"]] = obj
    return latest


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_spec_example_round_trip(tmp_path: Path, example: Path) -> None:
    runner = CliRunner()
    node = tmp_path / "node"
    assert runner.invoke(main, ["init", str(node), "--name", "T", "--nation", "EST"]).exit_code == 0
    result = runner.invoke(main, ["--node", str(node), "import", str(example)])
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "export.json"
    assert runner.invoke(main, ["--node", str(node), "export", "-o", str(out)]).exit_code == 0
    exported = json.loads(out.read_text())
    assert exported["type"] == "bundle"
    by_id = {obj["id"]: obj for obj in exported["objects"]}
    assert len(by_id) == len(exported["objects"])
    with Node.open(node) as opened:
        keys = opened.trusted_keys()
    for object_id, original in _latest_by_id(json.loads(example.read_text())["objects"]).items():
        # what was imported, plus this node's origin signature (it published the object first)
        assert unsigned(by_id[object_id]) == original
        if not is_standard_id(object_id):
            assert verify(by_id[object_id], keys) == opened.config.identity_id
    for obj in exported["objects"]:
        verdict = validate_instance(obj, _OPTIONS)
        assert verdict.is_valid, [str(e) for e in verdict.errors]
