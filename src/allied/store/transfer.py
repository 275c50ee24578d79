"""Copying a node's store into another database (SQLite into PostgreSQL), verified.

Rows are copied as they are, keys and all: ledger indexes, label-set and closure numbers are
referred to by other rows and by signed tree heads, so nothing may be renumbered. The source
is held under its write lock throughout, so the copy is of one moment; the target is written
in one transaction and compared with the source, table by table, before it commits, so a copy
that fails or differs leaves the target as empty as it was.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Table, func, insert, select, text

from allied.errors import AlliedError, ConfigError
from allied.integrity.merkle import MerkleLog
from allied.store import database, schema
from allied.store.store import Store

_BATCH = 5000
_JOURNAL = schema.release_journal
#: copied as the target's migrations left it; the journal comes from wherever the source keeps it
_SKIPPED = frozenset({schema.schema_migrations.name, _JOURNAL.name})


class CopyMismatch(AlliedError):
    """The target does not hold what the source does (nothing was committed)."""


@dataclass(frozen=True)
class Copied:
    """What a copy moved, and the figures both stores were found to agree on."""

    rows: Mapping[str, int]
    object_versions: int
    ledger_size: int
    #: base64, as ``allied verify`` and tree heads show it
    ledger_root: str
    #: SHA-256 over every copied row, table by table in key order
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": dict(self.rows),
            "object_versions": self.object_versions,
            "ledger_size": self.ledger_size,
            "ledger_root": self.ledger_root,
            "digest": self.digest,
        }


def _tables() -> list[Table]:
    return [t for t in schema.metadata.sorted_tables if t.name not in _SKIPPED]


def _ordered(table: Table) -> Any:
    return select(table).order_by(*table.primary_key.columns)


def _plain(value: Any) -> Any:
    """A value as both backends give it back, for comparing: drivers differ only in how
    they hand out bytes."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def _rows(conn: Connection, query: Any) -> Iterator[list[dict[str, Any]]]:
    # per statement: the connection's own options would make its inserts use the streaming
    # (server-side) cursor too
    result = conn.execute(query, execution_options={"yield_per": _BATCH}).mappings()
    for batch in result.partitions(_BATCH):
        yield [dict(row) for row in batch]


class _Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._hash.update(orjson.dumps([_plain(v) for v in row.values()]) + b"\n")
        self.count += len(rows)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _check_empty(conn: Connection, url: str) -> None:
    for table in [*_tables(), _JOURNAL]:
        held = conn.execute(select(func.count()).select_from(table)).scalar_one()
        if held:
            raise ConfigError(
                f"database {database.shown(url)} is not empty ({table.name} holds {held} rows): "
                "a store is copied into an empty database only",
                key="database",
            )


def _ledger_root(conn: Connection) -> tuple[int, str]:
    log = MerkleLog()
    for (leaf,) in conn.execute(select(schema.ledger.c.leaf).order_by(schema.ledger.c.idx)):
        log.append(bytes(leaf))
    return len(log), base64.b64encode(log.root()).decode()


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL numbers new rows from a sequence, which copied keys did not move."""
    if conn.dialect.name != database.POSTGRESQL:
        return
    for table in [*_tables(), _JOURNAL]:
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                        f"COALESCE(MAX({column.name}), 1), MAX({column.name}) IS NOT NULL) "
                        f"FROM {table.name}"
                    )
                )


def copy_store(source: Store, target: Store, target_url: str) -> Copied:
    """Copy everything ``source`` holds into the empty ``target``, and check the target
    then holds the same rows, the same object versions and the same ledger root."""
    with source._transaction() as src, target._transaction(wait=False) as dst:
        _check_empty(dst, target_url)
        counts: dict[str, int] = {}
        digest = hashlib.sha256()
        batches = [(table, _rows(src, _ordered(table))) for table in _tables()]
        batches.append((_JOURNAL, source.journal_rows()))
        for table, rows in batches:
            copied = _copy_table(dst, table, rows)
            counts[table.name] = copied.count
            digest.update(f"{table.name}:{copied.hexdigest()}\n".encode())
        _advance_sequences(dst)
        size, root = _ledger_root(src)
        if _ledger_root(dst) != (size, root):
            raise CopyMismatch("the copied ledger has another root than the original")
        return Copied(counts, counts[schema.objects.name], size, root, digest.hexdigest())


def _copy_table(dst: Connection, table: Table, batches: Iterator[list[dict[str, Any]]]) -> _Digest:
    """Insert the rows, then read them back and compare: what was copied, as digested."""
    copied, written = _Digest(), _Digest()
    for rows in batches:
        dst.execute(insert(table), rows)
        copied.add(rows)
    for rows in _rows(dst, _ordered(table)):
        written.add(rows)
    _compare(table.name, copied, written)
    return copied


def _compare(name: str, copied: _Digest, written: _Digest) -> None:
    if (copied.count, copied.hexdigest()) != (written.count, written.hexdigest()):
        raise CopyMismatch(
            f"{name}: the target holds {written.count} rows that differ from the "
            f"{copied.count} copied (nothing was committed)"
        )
