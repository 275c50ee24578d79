"""Schema migrations, numbered from the first version of the store.

Each migration is applied once, in order, inside one transaction with its record in
``schema_migrations``, so a store is always at a known version. New migrations are appended;
published ones are never edited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, inspect, select, text, update

from allied.integrity.ledger import Appender, object_leaf
from allied.integrity.signing import signer_of
from allied.store import schema
from allied.store.closure import closures

Migration = Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    for table in (schema.objects, schema.label_sets, schema.partners, schema.labels):
        table.create(conn)


def _v2_label_closures(conn: Connection) -> None:
    """The reverse reference index and label closures (:mod:`allied.store.closure`), which
    let egress apply the reference rule in SQL. A store created by this code already has the
    column and tables from the first migration; an older one gets them here, filled from the
    objects it holds."""
    columns = {column["name"] for column in inspect(conn).get_columns("objects")}
    if "closure" not in columns:
        conn.execute(text("ALTER TABLE objects ADD COLUMN closure INTEGER"))
    for table in (schema.label_closures, schema.object_refs):
        table.create(conn, checkfirst=True)
    objects = schema.objects
    rows = conn.execute(
        select(objects.c.pk, objects.c.id, objects.c.version, objects.c.label_set, objects.c.refs)
    ).all()
    if not rows:
        return
    targets = [tuple(orjson.loads(row.refs)) if row.refs else () for row in rows]
    edges = {(target, row.id) for row, refs in zip(rows, targets, strict=True) for target in refs}
    if edges:
        conn.execute(
            schema.object_refs.insert(), [{"target": t, "source": s} for t, s in sorted(edges)]
        )
    _fill_closures(conn, rows, targets)


def _fill_closures(conn: Connection, rows: Sequence[Any], targets: list[tuple[str, ...]]) -> None:
    """Compute the closure of every row (pk, id, version, label_set, …) from scratch and
    store it; ``targets`` are the ids each row refers to. Closures are append-only: one
    already numbered keeps its number."""
    objects = schema.objects
    latest: dict[str, int] = {}
    for index, row in enumerate(rows):
        best = latest.get(row.id)
        if best is None or row.version > rows[best].version:
            latest[row.id] = index
    computed = closures([row.label_set for row in rows], targets, latest, {})
    table = schema.label_closures
    numbers = {
        frozenset(orjson.loads(text)): int(number)
        for number, text in conn.execute(select(table.c.id, table.c.label_sets))
    }
    for members in sorted(set(computed) - numbers.keys(), key=sorted):
        inserted = conn.execute(
            schema.label_closures.insert().values(label_sets=orjson.dumps(sorted(members)).decode())
        )
        assert inserted.inserted_primary_key is not None
        numbers[members] = int(inserted.inserted_primary_key[0])
    conn.execute(
        update(objects).where(objects.c.pk == bindparam("row")).values(closure=bindparam("c")),
        [
            {"row": row.pk, "c": numbers[members]}
            for row, members in zip(rows, computed, strict=True)
        ],
    )


def _v3_ledger(conn: Connection) -> None:
    """The ledger, tree heads and the node's key history; objects stored before it get
    their leaves here, in the order they were stored (their signed tree head comes with the
    node's next write)."""
    for table in (schema.ledger, schema.ledger_nodes, schema.tree_heads, schema.node_keys):
        table.create(conn, checkfirst=True)
    objects = schema.objects
    rows = conn.execute(
        select(objects.c.pk, objects.c.json)
        .where(objects.c.ledger_index.is_(None))
        .order_by(objects.c.pk)
    ).all()
    if not rows:
        return
    appender = Appender(conn)
    first = appender.size
    appender.append(object_leaf(orjson.loads(row.json)) for row in rows)
    conn.execute(
        update(objects).where(objects.c.pk == bindparam("row")).values(ledger_index=bindparam("n")),
        [{"row": row.pk, "n": first + n} for n, row in enumerate(rows)],
    )


def _v4_partner_signatures(conn: Connection) -> None:
    """Partner rows signed by the node. Rows enrolled before carry none: the node does not
    trust them until they are enrolled again (`allied verify` lists them)."""
    columns = {column["name"] for column in inspect(conn).get_columns("partners")}
    if "signature" not in columns:
        conn.execute(text("ALTER TABLE partners ADD COLUMN signature TEXT"))


def _v5_taxii(conn: Connection) -> None:
    """TAXII community collections and status resources (allied.taxii)."""
    for table in (schema.collection_objects, schema.taxii_status):
        table.create(conn, checkfirst=True)


def _v6_posted_copies(conn: Connection) -> None:
    """Partners' private copies of objects whose id the node holds out of their sight, and
    the order they share with objects: (date added, ledger index)."""
    schema.posted_copies.create(conn, checkfirst=True)
    for index in schema.objects.indexes:
        if index.name == "ix_objects_added_ledger":
            index.create(conn, checkfirst=True)


def _v7_federation(conn: Connection) -> None:
    """Peers to sync from, what they served that was refused, what they withdrew, and the
    journal of what was released to whom (allied.federation)."""
    for table in (
        schema.peers,
        schema.peer_views,
        schema.peer_rejections,
        schema.withdrawals,
        schema.release_journal,
    ):
        table.create(conn, checkfirst=True)


def _v8_label_set_signers(conn: Connection) -> None:
    """Label sets keyed by the signer of the objects too (for objects received from a
    partner), so that TLP:GREEN is decided on the originator's communities and not on those
    of the peer that relayed it. Each stored object gets the set of its own signer; a set
    shared by objects of several signers is split, and then every closure is computed
    again."""
    columns = {column["name"] for column in inspect(conn).get_columns("label_sets")}
    if "signer" not in columns:
        _add_signer_column(conn)
    objects, sets = schema.objects, schema.label_sets
    known = {
        (row.markings, row.received_from, row.signer): row.id
        for row in conn.execute(
            select(sets.c.id, sets.c.markings, sets.c.received_from, sets.c.signer)
        )
    }
    keys = {number: key for key, number in known.items()}
    moves: list[dict[str, int]] = []  # objects moved to a new set: closures change
    query = select(objects.c.pk, objects.c.label_set, objects.c.json).where(
        objects.c.received_from.is_not(None)
    )
    # each set's objects by the signer they carry, first: what a set becomes must not
    # depend on the order its rows are read in
    members: dict[int, dict[str | None, list[int]]] = {}
    for row in conn.execute(query).all():
        wanted = signer_of(orjson.loads(row.json))
        members.setdefault(row.label_set, {}).setdefault(wanted, []).append(row.pk)
    for number, by_signer in sorted(members.items()):
        markings, source, signer = keys[number]
        if signer not in by_signer:
            # none of its objects has the set's signer (an old set, keyed by none): it
            # becomes the set of the signer with most objects (ties: the first by name)
            taken = min(by_signer, key=lambda s: (-len(by_signer[s]), s or ""))
            key = (markings, source, taken)
            if key not in known:
                conn.execute(update(sets).where(sets.c.id == number).values(signer=taken))
                del known[keys[number]]
                known[key], keys[number] = number, key
                signer = taken
        for wanted, pks in sorted(by_signer.items(), key=lambda item: item[0] or ""):
            if wanted == signer:
                continue
            key = (markings, source, wanted)
            target = known.get(key)
            if target is None:
                inserted = conn.execute(
                    sets.insert().values(markings=markings, received_from=source, signer=wanted)
                )
                assert inserted.inserted_primary_key is not None
                target = known[key] = int(inserted.inserted_primary_key[0])
                keys[target] = key
            moves += [{"row": pk, "n": target} for pk in pks]
    if moves:
        conn.execute(
            update(objects)
            .where(objects.c.pk == bindparam("row"))
            .values(label_set=bindparam("n")),
            moves,
        )
        rows = conn.execute(
            select(
                objects.c.pk, objects.c.id, objects.c.version, objects.c.label_set, objects.c.refs
            )
        ).all()
        targets = [tuple(orjson.loads(row.refs)) if row.refs else () for row in rows]
        _fill_closures(conn, rows, targets)


def _add_signer_column(conn: Connection) -> None:
    """The signer column, and the unique key that now includes it. SQLite cannot change a
    table's constraints: the table is copied into a new one (its documented procedure)."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(
                "CREATE TABLE label_sets_next (id INTEGER NOT NULL PRIMARY KEY, "
                "markings TEXT NOT NULL, received_from VARCHAR(200), signer VARCHAR(300), "
                "CONSTRAINT uq_label_sets UNIQUE (markings, received_from, signer))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO label_sets_next (id, markings, received_from) "
                "SELECT id, markings, received_from FROM label_sets"
            )
        )
        conn.execute(text("DROP TABLE label_sets"))
        conn.execute(text("ALTER TABLE label_sets_next RENAME TO label_sets"))
        return
    conn.execute(text("ALTER TABLE label_sets ADD COLUMN signer VARCHAR(300)"))
    conn.execute(text("ALTER TABLE label_sets DROP CONSTRAINT uq_label_sets"))
    conn.execute(
        text(
            "ALTER TABLE label_sets ADD CONSTRAINT uq_label_sets "
            "UNIQUE (markings, received_from, signer)"
        )
    )


def _v9_blind_matching(conn: Connection) -> None:
    """Blind-matching sessions and the log of what they evaluated (allied.matching.blind)."""
    for table in (schema.blind_sessions, schema.blind_log):
        table.create(conn, checkfirst=True)


def _v10_posted_copy_keys(conn: Connection) -> None:
    """A community collection's row names a partner's posted copy by the copy's number,
    negated (``collection_objects.pk = -posted_copies.seq``). Without an index on that
    expression a planner that expects few rows joins by scanning every copy of the partner
    for each row of the page: PostgreSQL took seconds per page of 1,000."""
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_posted_copies_negated_seq ON posted_copies ((-seq))")
    )


def _v11_unbounded_text(conn: Connection) -> None:
    """PostgreSQL enforces the lengths of VARCHAR columns, SQLite never did: a timestamp
    with many fractional digits (which STIX allows), a long cursor from a peer or a long id
    it refused would be stored by one backend and fail the whole write on the other, and a
    sync would retry that page for ever. Every VARCHAR becomes TEXT (no table is rewritten);
    lengths are the validators' business."""
    if conn.dialect.name != "postgresql":
        return
    columns = conn.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'character varying'"
        )
    ).all()
    known = {table.name for table in schema.metadata.sorted_tables}
    for table, column in columns:
        if table in known:
            conn.execute(text(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE TEXT'))


def _v12_console(conn: Connection) -> None:
    """The analyst console's accounts, sessions and failed logins (allied.web), and
    indexes for its pages: newest first by type (without it a page of indicators sorts
    every indicator the node holds) and, on PostgreSQL, of everything, and the dashboard's
    counts (without it they read every
    object's row, JSON and all: 0.7 s at 200,000 objects, 17 ms with it)."""
    for table in (schema.console_accounts, schema.console_sessions, schema.console_login_failures):
        table.create(conn, checkfirst=True)
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_objects_type_added ON objects (type, date_added, pk)")
    )
    if conn.dialect.name == "postgresql":
        # SQLite's date_added index holds the key already (the rowid); PostgreSQL's does not,
        # and an import gives all its objects one date_added: newest first then sorted them
        # all by key (0.2 s a page at 200,000 objects, 0.4 ms with this index)
        conn.execute(
            text("CREATE INDEX IF NOT EXISTS ix_objects_added_pk ON objects (date_added, pk)")
        )
    # what the dashboard counts, readable without the objects' rows (a covering index)
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_objects_summary ON objects (type, tlp, label_set)")
    )


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "initial tables: objects, label_sets, partners, labels", _v1_initial),
    (2, "label closures and the reverse reference index", _v2_label_closures),
    (3, "the ledger, signed tree heads and the node's key history", _v3_ledger),
    (4, "partner rows signed by the node", _v4_partner_signatures),
    (5, "TAXII community collections and status resources", _v5_taxii),
    (6, "partners' private copies of posted objects", _v6_posted_copies),
    (7, "peers, refusals, withdrawals and the release journal", _v7_federation),
    (8, "label sets keyed by the signer of what partners sent", _v8_label_set_signers),
    (9, "blind-matching sessions and their log", _v9_blind_matching),
    (10, "an index on the key collections know posted copies by", _v10_posted_copy_keys),
    (11, "text columns without a length limit", _v11_unbounded_text),
    (
        12,
        "the analyst console's accounts, sessions and logins; objects by type and time",
        _v12_console,
    ),
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
