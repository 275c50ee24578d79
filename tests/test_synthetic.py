"""Synthetic intelligence: reproducible, valid, and covering every pattern kind."""

from __future__ import annotations

import itertools
import json

from stix2validator import ValidationOptions, validate_instance

from allied.stix.pattern import parse_pattern
from allied.stix.validate import validate
from allied.synthetic import Mix, generate


def test_same_seed_same_bytes_other_seed_other_objects() -> None:
    first = [json.dumps(o) for o in generate(5, Mix.for_indicators(200))]
    assert first == [json.dumps(o) for o in generate(5, Mix.for_indicators(200))]
    assert first != [json.dumps(o) for o in generate(6, Mix.for_indicators(200))]


def test_every_object_is_valid_and_references_resolve() -> None:
    objects = list(generate(9, Mix.for_indicators(500)))
    ids = {o["id"] for o in objects}
    for obj in objects:
        assert validate(obj) == [], obj
        for key, value in obj.items():
            refs = value if key.endswith("_refs") else [value] if key.endswith("_ref") else []
            for ref in refs:
                assert ref in ids or ref.startswith("marking-definition--"), (obj["id"], ref)
    kinds = {o["type"] for o in objects}
    assert kinds == {
        "identity",
        "marking-definition",
        "intrusion-set",
        "malware",
        "campaign",
        "indicator",
        "relationship",
        "sighting",
        "report",
    }


def test_oasis_validator_accepts_a_sample() -> None:
    options = ValidationOptions(version="2.1")
    for obj in itertools.islice(generate(3, Mix.for_indicators(100)), 0, 400, 7):
        result = validate_instance(obj, options)
        assert result.is_valid, [str(e) for e in result.errors]


def test_patterns_cover_the_matchable_kinds() -> None:
    patterns = [o["pattern"] for o in generate(4, Mix(indicators=400)) if o["type"] == "indicator"]
    for pattern in patterns:
        parse_pattern(pattern)
    text = " ".join(patterns)
    for needle in (
        "ipv4-addr:value =",
        "ISSUBSET",
        "ipv6-addr:",
        "domain-name:",
        "url:",
        "email-addr:",
        "file:hashes.'SHA-256'",
        "file:hashes.MD5",
        "network-traffic:",
        "] OR [",
        " OR domain-name:",
    ):
        assert needle in text, needle


def test_labels_mix_tlp_and_classification() -> None:
    objects = list(generate(2, Mix.for_indicators(300)))
    refs = {len(o.get("object_marking_refs", [])) for o in objects if o["type"] == "indicator"}
    assert refs == {1, 2}
