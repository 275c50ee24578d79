"""The store's tables, in one place; :mod:`allied.store.migrations` brings a database here.

The STIX JSON of each object version is the source of truth; the other columns are indexes
derived from it at import and never edited by hand.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("applied_at", String(32), nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    # modified (or created) in a form that sorts as text in time order; '' for SCOs
    Column("version", Text, nullable=False),
    Column("created", String(40)),
    Column("modified", String(40)),
    Column("date_added", String(32), nullable=False),
    Column("name", Text),
    Column("originator", String(300)),
    Column("tlp", String(16)),
    Column("markings", Text, nullable=False),
    # (markings, received_from, signer) as a small integer: all the release decision needs
    # of a row
    Column("label_set", Integer, nullable=False),
    # ids referred to (JSON list), NULL when none: what the reference rule follows
    Column("refs", Text),
    Column("received_from", String(200)),
    Column("ledger_index", Integer),
    Column("json", Text, nullable=False),
    # every label set the release of this version depends on (allied.store.closure), as a
    # number in label_closures: egress releases a row when all of them are allowed
    Column("closure", Integer),
    UniqueConstraint("id", "version", name="uq_objects_id_version"),
    Index("ix_objects_type", "type"),
    Index("ix_objects_date_added", "date_added"),
    # the order of the node's own TAXII collection: objects and partners' posted copies
    # (their ledger entries are numbered together) in the order they were added
    Index("ix_objects_added_ledger", "date_added", "ledger_index"),
)

label_sets = Table(
    "label_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("markings", Text, nullable=False),
    Column("received_from", String(200)),
    # the identity whose origin signature the objects carry, for objects received from a
    # partner: TLP:GREEN goes to partners sharing a community with the originator, and a
    # relaying peer is not the originator
    Column("signer", String(300)),
    UniqueConstraint("markings", "received_from", "signer", name="uq_label_sets"),
)

label_closures = Table(
    "label_closures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # the label set numbers, sorted, as a JSON list
    Column("label_sets", Text, nullable=False, unique=True),
)

# The reverse reference index: who refers to an id (any version), so that a new version of
# the target can update their closures.
object_refs = Table(
    "object_refs",
    metadata,
    Column("target", String(300), primary_key=True),
    Column("source", String(300), primary_key=True),
    sqlite_with_rowid=False,
)

# The ledger (allied.integrity.ledger): leaf hashes by index, and the hashes of complete
# subtrees above them (level >= 1), so that appends and proofs are O(log n).
ledger = Table(
    "ledger",
    metadata,
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary(32), nullable=False),
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("size", Integer, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("timestamp", String(40), nullable=False),
    Column("signer", String(300), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

# The node's own public keys, the current one and those it rotated away from: old object
# versions and tree heads stay verifiable.
node_keys = Table(
    "node_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("created", String(32), nullable=False),
    Column("retired", String(32)),
)

partners = Table(
    "partners",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("identity_id", String(300), nullable=False, unique=True),
    Column("nation", String(16), nullable=False),
    Column("clearances", Text, nullable=False),
    Column("communities", Text, nullable=False),
    Column("categories", Text, nullable=False),
    Column("public_key", Text),
    Column("token_hash", String(100)),
    Column("created", String(32), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    # "key id:signature" by the node over the row (allied.store.store.Partner.record)
    Column("signature", Text),
)

labels = Table(
    "labels",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("marking_id", String(300), nullable=False, unique=True),
    Column("tlp", String(16), nullable=False),
    Column("created", String(32), nullable=False),
)

# TAXII community collections (allied.taxii): which object versions were posted to which
# collection, by whom and when. The node's own collection is every object it holds, so it
# has no rows here. Objects stay in the store and the ledger whatever happens to a
# membership: the ledger is append-only, a collection is a view.
collection_objects = Table(
    "collection_objects",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("collection", String(100), nullable=False),
    Column("pk", Integer, nullable=False),
    Column("date_added", String(32), nullable=False),
    Column("posted_by", String(200)),
    UniqueConstraint("collection", "pk", name="uq_collection_objects"),
    Index("ix_collection_objects_added", "collection", "date_added"),
    Index("ix_collection_objects_pk", "pk"),
)

# Objects a partner posted whose id this node holds under labels the partner may not see
# (allied.ingest.envelope): kept apart, for that partner alone, so that posting an id says
# nothing about what the node holds. Each has its own ledger entry; it joins community
# collections as a collection_objects row whose pk is minus its seq.
posted_copies = Table(
    "posted_copies",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("partner", String(200), nullable=False),
    Column("id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("version", Text, nullable=False),
    Column("created", String(40)),
    Column("modified", String(40)),
    Column("date_added", String(32), nullable=False),
    Column("ledger_index", Integer, nullable=False),
    Column("json", Text, nullable=False),
    UniqueConstraint("partner", "id", "version", name="uq_posted_copies"),
    Index("ix_posted_copies_added", "partner", "date_added", "ledger_index"),
)

# TAXII status resources: the outcome of each POST, readable by the partner who posted.
taxii_status = Table(
    "taxii_status",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("partner", String(200), nullable=False),
    Column("created", String(32), nullable=False),
    Column("json", Text, nullable=False),
)

# Federation (allied.federation): the nodes this node pulls from, and where each stands.
# The token this node presents to a peer is a secret: it lives in a 0600 file in the node's
# peers folder, never here.
peers = Table(
    "peers",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("url", Text, nullable=False),
    # the partner (in ``partners``) the peer node is: its identity and pinned key
    Column("partner", String(200), nullable=False),
    # the TAXII collection pulled; NULL: the peer's own collection
    Column("collection", String(100)),
    Column("created", String(32), nullable=False),
    # every object added at the peer up to this time is stored here (TAXII added_after)
    Column("cursor", String(32)),
    # the peer's ``next`` token where a pull stopped midway: the pull resumes there
    Column("resume", Text),
    # withdrawals the peer announced up to this time are applied
    Column("withdrawn_cursor", String(32)),
    # the peer's TAXII collection this node pushes to (NULL: no push), and how far it got:
    # the (date added, position) of the last of this node's rows it pushed
    Column("push_to", String(100)),
    Column("push_added", String(32)),
    Column("push_position", Integer),
    Column("pushed", Integer, nullable=False, default=0),
    # the peer's latest signed tree head this node verified (JSON)
    Column("head", Text),
    Column("last_attempt", String(32)),
    Column("last_success", String(32)),
    Column("last_error", Text),
    Column("failures", Integer, nullable=False, default=0),
    Column("next_attempt", String(32)),
    # why syncing from it stopped (its ledger contradicts what it signed before); NULL: it
    # has not
    Column("flagged", Text),
    Column("received", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
)

# Heads of a peer as another peer saw them (ledger gossip): checked against what the peer
# shows this node at its next sync, so that a node showing different histories to different
# partners is caught.
peer_views = Table(
    "peer_views",
    metadata,
    Column("peer", String(100), primary_key=True),
    Column("via", String(100), primary_key=True),
    Column("head", Text, nullable=False),
    Column("seen", String(32), nullable=False),
)

# What a peer served that this node refused, and why: the evidence of a tampering peer.
peer_rejections = Table(
    "peer_rejections",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("peer", String(100), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", String(32), nullable=False),
    Index("ix_peer_rejections_peer", "peer", "seq"),
)

# The release journal: every object version released to a partner, when and how (a TAXII
# response, which is also how peers sync), append-only: "who received what, when", for the
# originator's audit.
release_journal = Table(
    "release_journal",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("partner", String(200), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", String(40), nullable=False),
    Column("released", String(32), nullable=False),
    Column("via", String(100), nullable=False),
    Index("ix_release_journal_partner", "partner", "seq"),
    Index("ix_release_journal_object", "object_id", "seq"),
)

# Objects a peer withdrew: it may no longer release them to this node (their originator
# tightened their label), so this node stops releasing them to anyone. A newer version from
# the same peer lifts the withdrawal.
withdrawals = Table(
    "withdrawals",
    metadata,
    Column("object_id", String(300), primary_key=True),
    Column("peer", String(100), nullable=False),
    Column("withdrawn", String(32), nullable=False),
)

# Blind-matching sessions this node opened for partners, and every batch of values it
# evaluated for them: the caps are counted here (across serving processes) and the log is
# the owner's record of how many values each partner asked about, never which.
blind_sessions = Table(
    "blind_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("partner", String(100), nullable=False),
    Column("created", String(32), nullable=False),
    Column("cap", Integer, nullable=False),
    Column("evaluated", Integer, nullable=False),
    Index("ix_blind_sessions_partner", "partner", "created"),
)
blind_log = Table(
    "blind_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("session", String(64), nullable=False),
    Column("partner", String(100), nullable=False),
    Column("count", Integer, nullable=False),
    Column("at", String(32), nullable=False),
)

# The analyst console's local accounts (the node's own people, never partners: those hold API
# tokens), their sessions (by the SHA-256 of the cookie, so a copy of the table logs nobody
# in) and recent failed logins, which the rate limit counts across serving processes.
console_accounts = Table(
    "console_accounts",
    metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created", Text, nullable=False),
)
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("csrf", Text, nullable=False),
    Column("created", Text, nullable=False),
    Column("last_seen", Text, nullable=False),
    Index("ix_console_sessions_account", "account"),
)
console_login_failures = Table(
    "console_login_failures",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    # "account:NAME" or "client:ADDRESS"
    Column("key", Text, nullable=False),
    Column("at", Text, nullable=False),
    Index("ix_console_login_failures_key", "key", "at"),
    # every attempt first drops the rows past the window
    Index("ix_console_login_failures_at", "at"),
)
