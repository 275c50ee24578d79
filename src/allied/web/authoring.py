"""Objects the node's analysts write in the console: an indicator or a report, under a label
chosen from the node's own. They go through the same gate as ``allied import``: validated
(patterns with the matching engines' grammar), signed by the node as their publisher,
recorded in the ledger, and released only as their label allows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from allied.errors import AlliedError, NotFound
from allied.node import Node
from allied.stix.checks import IDENTIFIER
from allied.stix.labels import TLP2_IDS, TLP_LEVELS
from allied.stix.model import check
from allied.store.store import stix_now

INDICATOR_TYPES = (
    "anomalous-activity", "anonymization", "benign", "compromised", "malicious-activity",
    "attribution", "unknown",
)  # fmt: skip
REPORT_TYPES = (
    "threat-report", "attack-pattern", "campaign", "identity", "indicator", "intrusion-set",
    "malware", "observed-data", "threat-actor", "tool", "vulnerability",
)  # fmt: skip


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Draft:
    """A form's outcome: the stored object's id, or the problems by form field."""

    object_id: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _markings(node: Node, label: str, errors: dict[str, str]) -> list[str]:
    if "label" in errors:
        return []
    if label.startswith("tlp:") and label[4:] in TLP_LEVELS:
        return [TLP2_IDS[label[4:]]]
    try:
        marking_id, tlp = node.store.label(label)
    except NotFound:
        errors["label"] = "choose one of the node's labels"
        return []
    return [TLP2_IDS[tlp], marking_id]


def _common(
    node: Node, kind: str, form: Mapping[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    name = form.get("name", "").strip()
    if not name:
        errors["name"] = "a name is required"
    stamp = stix_now()
    data: dict[str, Any] = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": stamp,
        "modified": stamp,
        "created_by_ref": node.config.identity_id,
        "name": name,
    }
    description = form.get("description", "").strip()
    if description:
        data["description"] = description
    data["object_marking_refs"] = _markings(node, form.get("label", ""), errors)
    return data


def _control_characters(form: Mapping[str, str], errors: dict[str, str]) -> None:
    """Text may hold tabs and line breaks; no other control character belongs in STIX text
    (PostgreSQL cannot even store a NUL)."""
    for key, value in form.items():
        if _CONTROL.search(value):
            errors[key] = "holds a control character (only tabs and line breaks may be in text)"


def indicator(node: Node, form: Mapping[str, str]) -> Draft:
    errors: dict[str, str] = {}
    _control_characters(form, errors)
    data = _common(node, "indicator", form, errors)
    pattern = form.get("pattern", "").strip()
    if not pattern:
        errors["pattern"] = "a STIX pattern is required, e.g. [ipv4-addr:value = '203.0.113.7']"
    kind = form.get("indicator_type", "").strip()
    if kind and kind not in INDICATOR_TYPES:
        errors["indicator_type"] = "not an indicator type of the STIX vocabulary"
    data |= {"pattern": pattern, "pattern_type": "stix", "valid_from": data["created"]}
    if kind:
        data["indicator_types"] = [kind]
    return _store(node, data, errors)


def report(node: Node, form: Mapping[str, str]) -> Draft:
    errors: dict[str, str] = {}
    _control_characters(form, errors)
    data = _common(node, "report", form, errors)
    kind = form.get("report_type", "").strip() or "threat-report"
    if kind not in REPORT_TYPES:
        errors["report_type"] = "not a report type of the STIX vocabulary"
    refs = list(dict.fromkeys(form.get("object_refs", "").split()))
    wrong = [ref for ref in refs if IDENTIFIER.match(ref) is None]
    held = node.store.latest_json_of(refs) if not wrong else {}
    unknown = [ref for ref in refs if ref not in held]
    if not refs:
        errors["object_refs"] = "list the ids of the objects the report is about, one per line"
    elif wrong:
        errors["object_refs"] = f"not a STIX id: {wrong[0][:80]}"
    elif unknown:
        errors["object_refs"] = f"this node holds no {unknown[0]}"
    data |= {"report_types": [kind], "published": data["created"], "object_refs": refs}
    return _store(node, data, errors)


def _store(node: Node, data: dict[str, Any], errors: dict[str, str]) -> Draft:
    if errors:
        return Draft(errors=errors)
    checked = check(data)
    if isinstance(checked, list):
        for problem in checked:
            errors.setdefault(problem.path.split(".")[0].split("[")[0] or "form", problem.reason)
        return Draft(errors=errors)
    try:
        signed = node.origin().admit(checked)
        with node.write() as writer:
            writer.add([signed])
    except AlliedError as error:
        return Draft(errors={"form": error.message})
    return Draft(object_id=signed.id)
