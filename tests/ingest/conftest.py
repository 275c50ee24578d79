"""Shared pieces of the importer tests: the sample files, the OASIS validator, a node's view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from stix2validator import ValidationOptions, validate_instance

from allied.node import Node
from tests.conftest import unsigned

DATA = Path(__file__).parent / "data"
_OASIS = ValidationOptions(version="2.1")


def oasis_errors(objects: list[dict[str, Any]]) -> list[str]:
    """What the OASIS validator (stix2-validator) rejects in ``objects``."""
    errors = []
    for obj in objects:
        result = validate_instance(obj, _OASIS)
        errors.extend(f"{obj['id']}: {error}" for error in result.errors)
    return errors


def latest(node: Node, type_: str | None = None) -> list[dict[str, Any]]:
    """The latest version of every object of ``type_`` the node holds, as imported (unsigned)."""
    return [unsigned(orjson.loads(text)) for text in node.store.latest_json(type_)]


def by_name(node: Node, type_: str) -> dict[str, dict[str, Any]]:
    return {obj["name"]: obj for obj in latest(node, type_)}
