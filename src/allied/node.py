"""A node: its configuration, store and keys, and the operator actions on them.

The command line and (later) the HTTP API are thin layers over these functions.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from allied import config as config_
from allied.config import DEFAULT_POLICIES, HEAD_FILE, HEAD_LOCK_FILE, RETIRED_KEY_DIR, NodeConfig
from allied.errors import ConfigError, NotFound
from allied.integrity.audit import Audit, audit
from allied.integrity.keys import (
    KeyFileError,
    create_key_pair,
    key_id,
    load_private_key,
    parse_public_key,
)
from allied.integrity.ledger import head_json, stored_head
from allied.integrity.origin import Origin
from allied.integrity.signing import Signer, TrustedKey, record_signed
from allied.stix.checks import IDENTIFIER
from allied.stix.labels import TLP2_IDS, TLP_LEVELS, Label, builtin_objects, label_marking
from allied.stix.model import parse_object
from allied.store import database as database_
from allied.store.store import Partner, Store, Writer, check_unused, now, stix_now
from allied.store.transfer import Copied, copy_store

NATION = re.compile(r"^([A-Z]{3}|NATO)\Z")
PARTNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
COMMUNITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
_PARTNER_NAMESPACE = uuid.UUID("d3ec5042-b412-40f3-be22-d33ea7fdf802")
_MIN_TOKEN = 24


def check_nation(value: str, *, option: str = "--nation") -> str:
    if NATION.match(value) is None:
        raise ConfigError(
            f"{option} {value!r}: a nation is an ISO 3166-1 alpha-3 code in capitals "
            "(KOR, USA, EST) or NATO"
        )
    return value


def check_community(value: str, *, option: str = "--community") -> str:
    if COMMUNITY.match(value) is None:
        raise ConfigError(
            f"{option} {value!r}: a community name is letters, digits, '.', '_' or '-' "
            "(e.g. nato-ccdcoe, or NATO for the alliance as a whole)"
        )
    return value


def check_audience(value: str, *, option: str) -> str:
    """releasable_to and blind_match name nations or communities."""
    if NATION.match(value) or COMMUNITY.match(value):
        return value
    raise ConfigError(
        f"{option} {value!r}: expected a nation code (KOR, NATO) or a community name (nato-ccdcoe)"
    )


@dataclass
class Node:
    config: NodeConfig
    store: Store

    @classmethod
    def open(cls, directory: Path) -> Node:
        cfg = config_.load(directory)
        return cls(cfg, Store.open(cfg.database_url))

    # -- keys and writing --------------------------------------------------------------------

    @cached_property
    def signer(self) -> Signer:
        """The node's signing key (refused if others can read its file)."""
        key = load_private_key(self.config.private_key_path)
        public = parse_public_key(
            self.config.public_key_path.read_text(encoding="utf-8"),
            source=str(self.config.public_key_path),
        )
        if key_id(key.public_key()) != key_id(public):
            raise KeyFileError(
                f"{self.config.private_key_path} does not match {self.config.public_key_path} "
                "(an interrupted key rotation?)"
            )
        return Signer.of(key, self.config.identity_id)

    def trusted_keys(self, *, include_revoked: bool = False) -> dict[str, TrustedKey]:
        """Every key whose signatures this node accepts, by key id: its own (current and
        rotated) and each partner's pinned key, each bound to the identity that owns it.
        A revoked partner's key signs nothing new, but what it signed before it was revoked
        is still checked against it (``include_revoked``, for ``verify``)."""
        found = self.own_keys()
        for partner in self.partners():
            if partner.public_key and (include_revoked or not partner.revoked):
                key = parse_public_key(partner.public_key, source=f"partner {partner.name}")
                trusted = TrustedKey.of(key, partner.identity_id)
                found.setdefault(trusted.key_id, trusted)  # the node's own keys come first
        return found

    def own_keys(self) -> dict[str, TrustedKey]:
        """The node's own keys, from its key folder, never from the store: a key slipped
        into the store must not let anyone sign as this node. Its tree heads and partner
        directory are signed with these."""
        found: dict[str, TrustedKey] = {}
        for path in self.own_key_files():
            key = parse_public_key(path.read_text(encoding="utf-8"), source=str(path))
            trusted = TrustedKey.of(key, self.config.identity_id)
            found[trusted.key_id] = trusted
        return found

    def partner(self, name: str) -> Partner:
        """The enrolled partner called ``name`` (see :meth:`partners`)."""
        for partner in self.partners():
            if partner.name == name:
                return partner
        if any(p.name == name for p in self.store.partners()):
            raise NotFound(
                f"partner {name!r}: its directory entry is not signed by this node "
                "(see 'allied verify')"
            )
        raise NotFound(f"no partner named {name!r} (see 'allied partner list')")

    def partners(self) -> list[Partner]:
        """The partners this node enrolled: rows of the directory that carry the node's
        signature. A row changed behind the node's back (another nation, more communities,
        a key of someone else's) is not a partner: it receives nothing and vouches for
        nothing (`allied verify` names it)."""
        own = self.own_keys()
        return [
            partner
            for partner in self.store.partners()
            if partner.identity_id != self.config.identity_id
            and record_signed(partner.record(), partner.signature, own)
        ]

    def own_key_files(self) -> list[Path]:
        """The node's current public key and those it rotated away from."""
        retired = self.config.public_key_path.parent / RETIRED_KEY_DIR
        return [self.config.public_key_path, *sorted(retired.glob("*.pub"))]

    def origin(self) -> Origin:
        partners = {p.identity_id: p.name for p in self.partners()}
        return Origin(self.signer, self.trusted_keys(), partners)

    @contextmanager
    def write(self) -> Iterator[Writer]:
        """A store transaction whose ledger growth ends in a tree head signed by this node;
        after it commits, the head is also kept outside the store (see :meth:`record_head`)."""
        with self.store.write(self.signer) as writer:
            yield writer
        self.record_head()

    def verify(self) -> Audit:
        """Every integrity check of this node's store and ledger (see allied.integrity.audit)."""
        recorded = None
        if self.head_path.exists():
            try:
                recorded = orjson.loads(self.head_path.read_bytes())
            except orjson.JSONDecodeError:
                recorded = {}
        keys = self.trusted_keys(include_revoked=True)
        with self.store.snapshot() as conn:
            result = audit(
                conn,
                keys,
                recorded,
                head_source=HEAD_FILE,
                head_keys=self.own_keys(),
                own_identity=self.config.identity_id,
                labels=self.store.label_markings(),
            )
        trusted = {p.name for p in self.partners()}
        for partner in self.store.partners():
            if partner.name not in trusted:
                result.problems.append(
                    f"partner {partner.name}: its directory entry is not signed by this node "
                    "(changed behind its back, or enrolled before entries were signed)"
                )
        own = {kid for kid, key in keys.items() if key.owner == self.config.identity_id}
        for kid, *_rest in self.store.node_keys():
            if kid not in own:
                result.problems.append(
                    f"the store lists node key {kid}, which is not among the node's key files"
                )
        return result

    def rotate_key(self) -> str:
        """A new signing key; the old public key stays trusted for what it signed, the old
        private key is destroyed. Returns the new key id."""
        directory = self.config.private_key_path.parent
        private, public = directory / "node.key.new", directory / "node.pub.new"
        for leftover in (private, public):
            leftover.unlink(missing_ok=True)
        create_key_pair(private, public)
        new = Signer.of(load_private_key(private), self.config.identity_id)
        retired = self.config.public_key_path.parent / RETIRED_KEY_DIR
        retired.mkdir(mode=0o700, exist_ok=True)
        current = self.config.public_key_path.read_text(encoding="utf-8")
        kid = key_id(parse_public_key(current, source=str(self.config.public_key_path)))
        shutil.copyfile(self.config.public_key_path, retired / f"{kid}.pub")
        with self.store.write() as writer:
            known = {kid for kid, *_rest in self.store.node_keys()}
            if self.signer.key_id not in known:  # a node created before keys were recorded
                writer.add_node_key(self.signer.key_id, self.config.public_key_path.read_text())
            writer.add_node_key(new.key_id, public.read_text())
            writer.retire_node_keys(except_key_id=new.key_id)
        os.replace(public, self.config.public_key_path)
        os.replace(private, self.config.private_key_path)
        self.__dict__.pop("signer", None)
        return new.key_id

    @property
    def head_path(self) -> Path:
        return self.config.directory / HEAD_FILE

    def record_head(self) -> None:
        """Keep the latest signed tree head in a file beside the store, so that a store
        rolled back to an older copy shows as older than the head this node once signed.
        Writers take turns (a lock file) and the file only ever moves forward."""
        with open(self.config.directory / HEAD_LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with self.store.engine.connect() as conn:
                latest = stored_head(conn)
            if latest is None:
                return
            if self.head_path.exists():
                try:
                    known = orjson.loads(self.head_path.read_bytes())
                    if int(known.get("tree_size", -1)) >= latest.size:
                        return
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    pass  # unreadable: replaced by the current head
            fd, name = tempfile.mkstemp(dir=self.config.directory, prefix=".head-")
            with os.fdopen(fd, "wb") as out:
                out.write(head_json(latest))
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, self.head_path)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- identity ----------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {
            "identity_id": self.config.identity_id,
            "name": self.config.name,
            "nation": self.config.nation,
            "org": self.config.org,
            "public_key": self.config.public_key_path.read_text(),
        }

    # -- partners --------------------------------------------------------------------------

    def add_partner(
        self,
        name: str,
        *,
        nation: str,
        clearances: Sequence[str] = (),
        communities: Sequence[str] = (),
        categories: Sequence[str] = (),
        key_file: Path | None = None,
        token_file: Path | None = None,
        identity_id: str | None = None,
    ) -> Partner:
        """Enrol a partner; its API token is kept only as a hash."""
        if PARTNER_NAME.match(name) is None:
            raise ConfigError(
                f"partner name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)"
            )
        check_nation(nation)
        levels = self._clearances(clearances)
        for community in communities:
            check_community(community)
        public_key = None
        if key_file is not None:
            text = _read_text(key_file, "--key")
            kid = key_id(parse_public_key(text, source=str(key_file)))
            held = {k: v.owner for k, v in self.trusted_keys(include_revoked=True).items()}
            if kid in held:
                raise ConfigError(
                    f"--key {key_file}: key {kid} already belongs to {held[kid]}; a key can "
                    "vouch for one identity only"
                )
            public_key = text
        if identity_id is None:
            identity_id = f"identity--{uuid.uuid5(_PARTNER_NAMESPACE, f'{nation}:{name}')}"
        else:
            parse_object_id(identity_id, "identity", option="--identity")
        if identity_id == self.config.identity_id:
            raise ConfigError(f"--identity {identity_id} is this node's own identity")
        token, write_token = (None, False)
        if token_file is not None:
            if token_file.exists():
                token = _read_text(token_file, "--token-file").strip()
                if len(token) < _MIN_TOKEN:
                    raise ConfigError(
                        f"--token-file {token_file}: the token must be at least {_MIN_TOKEN} "
                        "characters"
                    )
            else:
                token, write_token = secrets.token_urlsafe(32), True
        if token is not None:
            digest = hash_token(token)
            if any(p.token_hash == digest for p in self.store.partners()):
                raise ConfigError(
                    f"--token-file {token_file}: that token is already another partner's; "
                    "every partner needs its own"
                )
        partner = Partner(
            name=name,
            identity_id=identity_id,
            nation=nation,
            clearances=levels,
            communities=tuple(dict.fromkeys(communities)),
            categories=tuple(dict.fromkeys(categories)),
            public_key=public_key,
            token_hash=hash_token(token) if token is not None else None,
            created=now(),
            revoked=False,
        )
        with self.write() as writer:
            writer.add_partner(partner)
            if write_token and token_file is not None and token is not None:
                _write_secret(token_file, token + "\n")
        return partner

    def _clearances(self, specs: Sequence[str]) -> dict[str, str]:
        levels: dict[str, str] = {}
        for spec in specs:
            policy, sep, level = spec.partition("=")
            if not sep or not policy or not level:
                raise ConfigError(f"--clearance {spec!r}: expected POLICY=LEVEL, e.g. NATO=SECRET")
            self.check_level(policy, level, option="--clearance")
            levels[policy] = level
        return levels

    def check_level(self, policy: str, level: str, *, option: str) -> None:
        known = self.config.policies.get(policy)
        if known is None:
            names = ", ".join(sorted(self.config.policies)) or "none"
            raise ConfigError(
                f"{option}: unknown policy {policy!r} (policies in node.toml: {names})"
            )
        if level not in known:
            raise ConfigError(
                f"{option}: {level!r} is not a level of policy {policy} ({' < '.join(known)})"
            )

    # -- labels ----------------------------------------------------------------------------

    def add_label(
        self,
        name: str,
        *,
        tlp: str,
        policy: str | None = None,
        classification: str | None = None,
        releasable_to: Sequence[str] = (),
        handling: Sequence[str] = (),
        recipients: Sequence[str] = (),
        blind_match: Sequence[str] = (),
        informative: Sequence[str] = (),
        recipient_ids: Sequence[str] = (),
    ) -> str:
        """Create a classification label marking the node can apply; returns its id.
        ``recipients`` are partner names; ``recipient_ids`` identity ids (this node's own,
        say, which is no partner of it)."""
        if not name.strip():
            raise ConfigError("a label needs a non-empty name")
        if tlp not in TLP_LEVELS:
            raise ConfigError(f"--tlp {tlp!r}: expected one of {', '.join(TLP_LEVELS)}")
        if (policy is None) != (classification is None):
            raise ConfigError("--policy and --classification go together")
        if policy is not None and classification is not None:
            self.check_level(policy, classification, option="--classification")
        elif releasable_to or handling:
            raise ConfigError(
                "--releasable-to and --handling belong to a classification: give --policy and "
                "--classification too"
            )
        for value in releasable_to:
            check_audience(value, option="--releasable-to")
        for value in blind_match:
            check_audience(value, option="--blind-match")
        named = tuple(self.store.partner(r).identity_id for r in recipients)
        for value in recipient_ids:
            parse_object_id(value, "identity", option="recipient")
        recipient_ids = tuple(dict.fromkeys((*named, *recipient_ids)))
        label = Label(
            marking_id=f"marking-definition--{uuid.uuid4()}",
            name=name,
            tlp=tlp,
            policy=policy,
            classification=classification,
            releasable_to=tuple(dict.fromkeys(releasable_to)),
            handling=tuple(dict.fromkeys(handling)),
            informative=tuple(dict.fromkeys(informative)),
            recipients=recipient_ids,
            blind_match=tuple(dict.fromkeys(blind_match)),
        )
        marking = self.origin().admit(
            parse_object(
                label_marking(label, created=stix_now(), created_by_ref=self.config.identity_id)
            )
        )
        with self.write() as writer:
            writer.add_label(name, label.marking_id, tlp)
            writer.add([marking])
        return label.marking_id


def parse_object_id(value: str, kind: str, *, option: str) -> str:
    if IDENTIFIER.match(value) is None or not value.startswith(kind + "--"):
        raise ConfigError(f"{option} {value!r}: expected a {kind}--UUID identifier")
    return value


def hash_token(token: str) -> str:
    """API tokens are 256-bit random strings, so a plain SHA-256 is a safe verifier."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot read ({error.strerror or error})") from None


def _write_secret(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise ConfigError(f"cannot create {path}: {error.strerror or error}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def init_node(
    directory: Path,
    *,
    name: str,
    nation: str,
    org: str = "",
    communities: Sequence[str] = (),
    database: str | None = None,
) -> NodeConfig:
    """Create a node: configuration, key pair, store with built-in objects and identity.

    ``database`` is a PostgreSQL URL for the store (empty: the SQLite file in ``directory``;
    None: ``ALLIED_DATABASE_URL`` if set, else that file). It is written to the configuration
    unless it came from the environment; a URL with a password is refused there, as the file
    is not a secret. The database must hold nothing yet (see check_unused). Nothing is left
    behind if any step fails."""
    check_nation(nation)
    for community in communities:
        check_community(community)
    if not name.strip():
        raise ConfigError("--name must not be empty")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists and is not an empty directory")
    environ_url = os.environ.get(config_.DATABASE_ENV, "") if database is None else ""
    if database and database_.has_password(database):
        raise ConfigError(
            f"--database {database_.shown(database)}: a password would be written to "
            f"{config_.CONFIG_FILE}; keep it in ~/.pgpass or PGPASSWORD, or give the whole URL "
            f"in {config_.DATABASE_ENV}",
            key="database",
        )
    settings: dict[str, str] = {"database": database} if database else {}
    created_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return _create_node(directory, name, nation, org, communities, settings, environ_url)
    except BaseException:
        # the node's files go, and the directory if init made it; rows a failed store write
        # made were rolled back with its transaction
        for child in list(directory.iterdir()):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        if created_dir:
            directory.rmdir()
        raise


def _create_node(
    directory: Path,
    name: str,
    nation: str,
    org: str,
    communities: Sequence[str],
    settings: dict[str, str],
    environ_url: str,
) -> NodeConfig:
    created = stix_now()
    cfg = NodeConfig(
        directory=directory,
        name=name,
        nation=nation,
        org=org,
        identity_id=f"identity--{uuid.uuid4()}",
        created=created,
        communities=tuple(dict.fromkeys(communities)),
        policies=dict(DEFAULT_POLICIES),
        settings=config_.resolve_settings(settings, environ={}),
    )
    url = cfg.database_url if settings or not environ_url else environ_url
    check_unused(url)
    with Node(cfg, Store.open(url)) as node:
        create_key_pair(cfg.private_key_path, cfg.public_key_path)
        identity = {
            "type": "identity",
            "spec_version": "2.1",
            "id": cfg.identity_id,
            "created": created,
            "modified": created,
            "name": name,
            "identity_class": "organization",
            "object_marking_refs": [TLP2_IDS["clear"]],
            "x_allied_nation": nation,
        }
        if org:
            identity["description"] = org
        (directory / config_.CONFIG_FILE).write_text(config_.render(cfg), encoding="utf-8")
        origin = node.origin()
        with node.write() as writer:
            writer.add_node_key(node.signer.key_id, cfg.public_key_path.read_text())
            writer.add(origin.admit(parse_object(data)) for data in builtin_objects() + [identity])
    return cfg


def migrate_store(directory: Path, url: str) -> Copied:
    """Copy the store of the node in ``directory`` into the empty database at ``url``,
    verify the copy, and point the node at it. The old store is left as it was.

    The node's processes must be stopped first: one still running on the old store would
    go on writing there. The copy is checked row for row (see allied.store.transfer), then
    the node is verified on its new store as ``allied verify`` does; if that fails, the
    node stays on its old store."""
    if os.environ.get(config_.DATABASE_ENV):
        raise ConfigError(
            f"{config_.DATABASE_ENV} is set, and it would go on choosing the node's store "
            "whatever the configuration says: unset it to migrate"
        )
    cfg = config_.load(directory)
    if database_.has_password(url):
        raise ConfigError(
            f"--to {database_.shown(url)}: a password would be written to "
            f"{config_.CONFIG_FILE}; keep it in ~/.pgpass or PGPASSWORD",
            key="database",
        )
    if database_.same(url, cfg.database_url):
        raise ConfigError(f"--to {database_.shown(url)}: that is the node's store already")
    check_unused(url)
    with Store.open(cfg.database_url) as source, Store.open(url) as target:
        copied = copy_store(source, target, url)
    config_path = directory / config_.CONFIG_FILE
    before = config_path.read_text(encoding="utf-8")
    _replace_file(
        config_path, config_.render(replace(cfg, settings=_file_settings(directory, url)))
    )
    try:
        with Store.open(cfg.database_url) as source:
            written = (source.version_count(), source.journal_size())
        with Node.open(directory) as node:
            problems = node.verify().problems
    except BaseException:
        _replace_file(config_path, before)
        raise
    if written != (copied.object_versions, copied.rows["release_journal"]):
        _replace_file(config_path, before)
        raise ConfigError(
            "the node's store was written to while it was being copied, so the node stays on "
            "it: stop its serve and sync processes, empty the new database and try again"
        )
    if problems:
        _replace_file(config_path, before)
        raise ConfigError(
            f"the copy in {database_.shown(url)} does not verify, so the node stays on its "
            f"old store ({len(problems)} problems; the first: {problems[0]}). Run 'allied "
            "verify' on the old store, and empty the new database before trying again."
        )
    return copied


def _file_settings(directory: Path, url: str) -> dict[str, Any]:
    """The settings the node's file holds (not what the environment overrides), with the
    store moved to ``url``."""
    raw = dict(config_.read_file(directory).get("settings", {}))
    for old, new in config_.RENAMED.items():
        if new == "database":
            raw.pop(old, None)
    raw["database"] = url
    return config_.resolve_settings(raw, environ={})


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all at once: a crash leaves the old or the new file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
