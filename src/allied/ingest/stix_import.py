"""Importing STIX 2.1 into a node's store, one file per transaction: the one pipeline every
importer ends in (MISP, CSV and text reports convert to STIX first, then come here).

Objects are validated and written as they stream in, so a 1 GB file needs no more memory
than a small one; the transaction is what keeps a file from landing half-imported. With the
default policy one bad object rejects its whole file and every problem is listed;
``skip_invalid`` stores the good objects and reports the rest. A dry run goes through the
very same steps and rolls the transaction back, so its counts are what a real run would do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allied.allocation import rare_collections
from allied.errors import Problem, ValidationError
from allied.integrity.origin import Origin
from allied.integrity.signing import SIGNATURE_EXTENSION_ID, SignatureError
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from allied.stix.model import StixObject, check
from allied.stix.reader import Item, read_items
from allied.store.store import Writer

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
    #: of the stored versions, how many of each type
    created: Counter[str] = field(default_factory=Counter)
    #: what a converter left out of the STIX it produced, and why (one line each)
    skipped: list[str] = field(default_factory=list)
    #: what a converter wants the operator to know (e.g. how MISP distribution was mapped)
    notes: list[str] = field(default_factory=list)
    #: nothing was stored: the counts are what the import would have done
    dry_run: bool = False
    #: how many problems are kept (the rest are only counted)
    limit: int = 100

    def refuse(self, problems: list[Problem]) -> None:
        """Count one input object (or row) as invalid, keeping its problems up to the limit."""
        self.invalid += 1
        room = self.limit - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "read": self.read,
            "stored": self.stored,
            "created": dict(sorted(self.created.items())),
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "skipped": list(self.skipped),
            "notes": list(self.notes),
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


class _DryRun(Exception):
    """Raised inside the write transaction of a dry run, so that it rolls back."""


def import_file(
    node: Node,
    path: Path,
    *,
    skip_invalid: bool = False,
    label: str | None = None,
    received_from: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import one bundle or JSON-lines file; raises ValidationError and stores nothing if any
    object is invalid (unless ``skip_invalid``), InputFormatError if the file is not JSON."""
    return import_items(
        node,
        read_items(path),
        ImportReport(str(path)),
        skip_invalid=skip_invalid,
        label=label,
        received_from=received_from,
        dry_run=dry_run,
    )


def import_items(
    node: Node,
    items: Iterable[Item],
    report: ImportReport,
    *,
    skip_invalid: bool = False,
    label: str | None = None,
    received_from: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Validate, sign or verify, label and store ``items`` in one transaction, counting into
    ``report``; the items may be produced while this runs (a converter's generator)."""
    report.dry_run = dry_run
    report.limit = int(node.config.setting("max_reported_problems"))
    batch_size = int(node.config.setting("import_batch_size"))
    markings = label_markings(node, label)
    origin = node.origin()
    try:
        with rare_collections(), node.write() as writer:
            _import(writer, items, report, markings, origin, skip_invalid, received_from,
                    batch_size)  # fmt: skip
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _import(
    writer: Writer,
    items: Iterable[Item],
    report: ImportReport,
    markings: tuple[str, ...],
    origin: Origin,
    skip_invalid: bool,
    received_from: str | None,
    batch_size: int,
) -> None:
    batch: list[StixObject] = []
    for item in items:
        report.read += 1
        data = item.data
        if markings and isinstance(data, dict):
            data = apply_label(data, markings)
        if item.held and data == item.data:
            # the stored version itself: validating and signing it again would only find
            # it a duplicate (a no-op re-import of a list then costs a fraction)
            report.duplicates += 1
            continue
        result = check(data, index=item.index, line=item.line)
        if not isinstance(result, list):
            try:
                result = origin.admit(result, received_from=received_from)
            except SignatureError as error:
                result = [
                    Problem(item.index, error.object_id, _SIGNATURE_PATH, error.reason, item.line)
                ]
        if isinstance(result, list):
            report.refuse(result)
            continue
        batch.append(result)
        if len(batch) >= batch_size:
            if report.invalid and not skip_invalid:
                batch.clear()  # the file is refused; keep validating to list every problem
            else:
                _flush(writer, batch, report, received_from)
    if report.invalid and not skip_invalid:
        raise ValidationError(report.problems, source=report.source)
    _flush(writer, batch, report, received_from)


def _flush(
    writer: Writer, batch: list[StixObject], report: ImportReport, received_from: str | None
) -> None:
    if batch:
        added = writer.add(batch, received_from=received_from)
        report.stored += added.stored
        report.duplicates += added.duplicates
        report.created.update(added.types)
        batch.clear()


def label_markings(node: Node, label: str | None) -> tuple[str, ...]:
    """The marking refs of the node's label ``label`` (its TLP and its classification)."""
    if label is None:
        return ()
    marking_id, tlp = node.store.label(label)
    return (TLP2_IDS[tlp], marking_id)


def apply_label(data: Mapping[str, Any], markings: tuple[str, ...]) -> Any:
    """Objects that carry no marking at all get the label; marked ones keep their own."""
    if not markings or data.get("object_marking_refs") or data.get("type") in _UNLABELLED_TYPES:
        return data
    return {**data, "object_marking_refs": list(markings)}
