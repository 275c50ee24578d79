"""Importing STIX 2.1 files into a node's store, one file per transaction.

Objects are validated and written as they stream in, so a 1 GB file needs no more memory
than a small one; the transaction is what keeps a file from landing half-imported. With the
default policy one bad object rejects its whole file and every problem is listed;
``skip_invalid`` stores the good objects and reports the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allied.allocation import rare_collections
from allied.errors import Problem, ValidationError
from allied.integrity.signing import SIGNATURE_EXTENSION_ID, SignatureError
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from allied.stix.model import StixObject, check
from allied.stix.reader import read_items

#: Types that are never given a label by ``--label``: a marking does not mark itself.
_UNLABELLED_TYPES = frozenset({"marking-definition", "extension-definition"})
_SIGNATURE_PATH = f"extensions.{SIGNATURE_EXTENSION_ID}"


@dataclass
class ImportReport:
    source: str
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "problems": [
                {
                    "index": p.index,
                    "line": p.line,
                    "id": p.object_id,
                    "path": p.path,
                    "reason": p.reason,
                }
                for p in self.problems
            ],
        }


def import_file(
    node: Node,
    path: Path,
    *,
    skip_invalid: bool = False,
    label: str | None = None,
    received_from: str | None = None,
) -> ImportReport:
    """Import one bundle or JSON-lines file; raises ValidationError and stores nothing if any
    object is invalid (unless ``skip_invalid``), InputFormatError if the file is not JSON."""
    report = ImportReport(str(path))
    limit = int(node.config.setting("max_reported_problems"))
    batch_size = int(node.config.setting("import_batch_size"))
    markings: tuple[str, ...] = ()
    if label is not None:
        marking_id, tlp = node.store.label(label)
        markings = (TLP2_IDS[tlp], marking_id)
    batch: list[StixObject] = []
    origin = node.origin()
    with rare_collections(), node.write() as writer:
        for item in read_items(path):
            report.read += 1
            data = item.data
            if markings and isinstance(data, dict):
                data = _apply_label(data, markings)
            result = check(data, index=item.index, line=item.line)
            if not isinstance(result, list):
                try:
                    result = origin.admit(result, received_from=received_from)
                except SignatureError as error:
                    result = [
                        Problem(
                            item.index, error.object_id, _SIGNATURE_PATH, error.reason, item.line
                        )
                    ]
            if isinstance(result, list):
                report.invalid += 1
                room = limit - len(report.problems)
                if room > 0:
                    report.problems.extend(result[:room])
                continue
            batch.append(result)
            if len(batch) >= batch_size:
                if report.invalid and not skip_invalid:
                    batch.clear()  # the file is refused; keep validating to list every problem
                else:
                    _flush(writer, batch, report, received_from)
        if report.invalid and not skip_invalid:
            raise ValidationError(report.problems, source=str(path))
        _flush(writer, batch, report, received_from)
    return report


def _flush(
    writer: Any, batch: list[StixObject], report: ImportReport, received_from: str | None
) -> None:
    if batch:
        added = writer.add(batch, received_from=received_from)
        report.stored += added.stored
        report.duplicates += added.duplicates
        batch.clear()


def _apply_label(data: Mapping[str, Any], markings: tuple[str, ...]) -> Any:
    """Objects that carry no marking at all get the label; marked ones keep their own."""
    if data.get("object_marking_refs") or data.get("type") in _UNLABELLED_TYPES:
        return data
    return {**data, "object_marking_refs": list(markings)}
