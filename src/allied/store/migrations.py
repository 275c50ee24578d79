"""Schema migrations, numbered from the first version of the store.

Each migration is applied once, in order, inside one transaction with its record in
``schema_migrations``, so a store is always at a known version. New migrations are appended;
published ones are never edited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select

from allied.store import schema

Migration = Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    for table in (schema.objects, schema.label_sets, schema.partners, schema.labels):
        table.create(conn)


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "initial tables: objects, label_sets, partners, labels", _v1_initial),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    versions = conn.execute(select(schema.schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


def upgrade(conn: Connection) -> list[int]:
    """Apply every pending migration; returns the versions applied."""
    schema.schema_migrations.create(conn, checkfirst=True)
    done = current_version(conn)
    applied = []
    for version, name, step in MIGRATIONS:
        if version <= done:
            continue
        step(conn)
        conn.execute(
            schema.schema_migrations.insert().values(
                version=version, name=name, applied_at=datetime.now(UTC).isoformat()
            )
        )
        applied.append(version)
    return applied
