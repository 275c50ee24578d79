"""Which converter reads which input format; all of them end in the one STIX import pipeline.

``allied import --format FORMAT`` lands here: STIX files are read as they are; MISP events,
CSV lists and written reports are converted to STIX objects first; all then take the same
path (validation, labels, origin signature, ledger), one source per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from allied.errors import InputFormatError
from allied.ingest.stix_import import ImportReport, import_items
from allied.node import Node
from allied.stix.reader import Item, read_items

FORMATS = ("stix", "misp", "csv", "text")


@dataclass(frozen=True)
class Options:
    """What the command line says about an import, whatever its format."""

    skip_invalid: bool = False
    label: str | None = None
    received_from: str | None = None
    dry_run: bool = False
    #: CSV: the field of each column, in order
    columns: Sequence[str] | None = None
    #: MISP: tag -> label name, for tags the node cannot map by itself
    tag_labels: dict[str, str] = field(default_factory=dict)
    #: MISP: sharing group name -> label name
    sharing_groups: dict[str, str] = field(default_factory=dict)


def sources(format_: str, path: Path) -> list[Path]:
    """The inputs ``path`` stands for: itself, or for MISP a feed directory's event files."""
    if path.is_dir():
        if format_ != "misp":
            raise InputFormatError("is a directory (only --format misp reads a feed directory)",
                                   source=str(path))  # fmt: skip
        from allied.ingest.misp_import import feed_events

        return feed_events(path)
    return [path]  # a file that cannot be read is its reader's to report


def run(node: Node, format_: str, path: Path, options: Options) -> ImportReport:
    """Import one source file of ``format_``; raises what its converter or the pipeline
    raises, with nothing stored."""
    report = ImportReport(str(path))
    items: Iterator[Item]
    if format_ == "stix":
        items = read_items(path)
    elif format_ == "csv":
        from allied.ingest.csv_import import read_csv

        items = read_csv(node, path, report, options.columns, options.label)
    elif format_ == "text":
        from allied.ingest.text_import import read_text

        items = read_text(node, path, report, options.label)
    elif format_ == "misp":
        from allied.ingest.misp_import import read_event

        items = read_event(node, path, report, options)
    else:
        raise ValueError(f"unknown import format {format_!r}")
    return import_items(
        node,
        items,
        report,
        skip_invalid=options.skip_invalid,
        label=options.label,
        received_from=options.received_from,
        dry_run=options.dry_run,
    )
