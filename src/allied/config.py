"""Node configuration: one TOML file per node, settings declared once as a table.

``SETTINGS`` drives the config file's ``[settings]`` section, the ``ALLIED_*`` environment
variables that override it, ``allied settings`` output and the README test that documents
every setting. Label policies (names and ordered levels) are configuration, not code.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allied.errors import ConfigError, NodeNotFound
from allied.stix.labels import TLP_LEVELS

CONFIG_FILE = "node.toml"
STORE_FILE = "store.db"
HEAD_FILE = "ledger-head.json"
HEAD_LOCK_FILE = ".ledger-head.lock"
RETIRED_KEY_DIR = "retired"  # in KEY_DIR: public keys the node signed with before
KEY_DIR = "keys"
PRIVATE_KEY_FILE = "node.key"
PUBLIC_KEY_FILE = "node.pub"
DATABASE_ENV = "ALLIED_DATABASE_URL"

DEFAULT_POLICIES: dict[str, tuple[str, ...]] = {
    "NATO": ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"),
}


def _tlp_or_empty(value: str) -> str:
    if value not in ("",) + TLP_LEVELS:
        raise ValueError(f"must be empty or one of {', '.join(TLP_LEVELS)}")
    return value


def _name_set(value: str) -> frozenset[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    return frozenset(names)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off", ""):
        return False
    raise ValueError("must be true or false")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    cast: Callable[[str], Any] = str
    #: the environment variable that overrides it, when not ``ALLIED_<NAME>``
    env: str | None = None

    @property
    def env_name(self) -> str:
        return self.env or f"ALLIED_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "default_tlp",
        "",
        "TLP level assumed for objects that carry none; empty keeps such objects inside "
        "the node (fail closed).",
        _tlp_or_empty,
    ),
    Setting(
        "confined_communities",
        "",
        "Comma-separated communities whose objects (labelled releasable to them) are never "
        "released to a partner outside them: a stricter local rule on top of the labels.",
        _name_set,
    ),
    Setting(
        "database",
        "",
        "Where the node keeps its store: empty for the SQLite file store.db in the node "
        "directory, or a PostgreSQL URL (postgresql://USER@HOST:PORT/NAME). Keep a password out "
        "of this file: in ~/.pgpass, PGPASSWORD or the ALLIED_DATABASE_URL variable.",
        env=DATABASE_ENV,
    ),
    Setting(
        "max_reported_problems",
        "1000",
        "How many invalid-object problems an import lists before it only counts them.",
        _positive_int,
    ),
    Setting(
        "anonymous_discovery",
        "false",
        "Whether the TAXII discovery endpoint answers without a partner token (every other "
        "endpoint always needs one).",
        _flag,
    ),
    Setting(
        "own_collection_writable",
        "false",
        "Whether partners may POST to the node's own TAXII collection (community collections "
        "are writable by their members unless listed in read_only_communities).",
        _flag,
    ),
    Setting(
        "read_only_communities",
        "",
        "Comma-separated communities whose TAXII collections partners may read but not write.",
        _name_set,
    ),
    Setting(
        "max_page_size",
        "1000",
        "Most objects a TAXII page holds, whatever limit a client asks for.",
        _positive_int,
    ),
    Setting(
        "max_content_length",
        "10485760",
        "Largest TAXII request body in bytes (larger ones get 413).",
        _positive_int,
    ),
    Setting(
        "max_envelope_objects",
        "10000",
        "Most objects one TAXII POST may carry (more get 413).",
        _positive_int,
    ),
    Setting(
        "max_partner_label_sets",
        "1000",
        "Most distinct lists of markings the objects one partner posts may carry: each is a "
        "label set every release decision considers, so a partner may not mint them freely.",
        _positive_int,
    ),
    Setting(
        "blind_session_cap",
        "2000000",
        "Most values one blind-matching session of a partner may have evaluated.",
        _positive_int,
    ),
    Setting(
        "blind_partner_cap",
        "10000000",
        "Most values one partner may have evaluated by blind matching over a day, all its "
        "sessions together: far below the 2^32 IPv4 addresses, so the oracle cannot be "
        "walked like a dictionary.",
        _positive_int,
    ),
    Setting(
        "blind_sessions_cap",
        "100",
        "Most blind-matching sessions one partner may open over a day (each costs this node "
        "an evaluation per indicator value the partner may blind-match).",
        _positive_int,
    ),
    Setting(
        "max_json_depth",
        "64",
        "Deepest nesting of arrays and objects a TAXII request body may have (deeper gets 400).",
        _positive_int,
    ),
    Setting(
        "sync_interval",
        "60",
        "Seconds between syncs from peers, for 'allied sync' without --once and 'allied serve "
        "--sync-interval' without a value.",
        _positive_int,
    ),
    Setting(
        "sync_timeout",
        "30",
        "Seconds a peer may take to answer one request before the sync counts it as failed.",
        _positive_int,
    ),
    Setting(
        "sync_backoff",
        "2",
        "Seconds before a failed peer is tried again; doubled after each further failure.",
        _positive_int,
    ),
    Setting(
        "sync_backoff_max",
        "300",
        "Longest wait, in seconds, before a failing peer is tried again.",
        _positive_int,
    ),
    Setting(
        "sync_page_size",
        "1000",
        "Objects asked of a peer per page (its own max_page_size may give fewer).",
        _positive_int,
    ),
    Setting(
        "sync_max_pages",
        "1000",
        "Most pages pulled from one peer in one sync; the rest follow at the next, so a peer "
        "that never stops saying there is more holds up nothing.",
        _positive_int,
    ),
    Setting(
        "import_batch_size",
        "2000",
        "Objects written to the store per statement during an import.",
        _positive_int,
    ),
    Setting(
        "console",
        "true",
        "Whether 'allied serve' serves the analyst console at /ui/ beside the API (a node "
        "whose API listens where partners reach it may run its console elsewhere).",
        _flag,
    ),
    Setting(
        "console_idle_minutes",
        "30",
        "Minutes a console session may stay unused before it ends.",
        _positive_int,
    ),
    Setting(
        "console_session_hours",
        "12",
        "Hours a console session lasts at most, however busy.",
        _positive_int,
    ),
    Setting(
        "console_login_attempts",
        "5",
        "Failed console logins one client may have for one account within "
        "console_login_window_minutes before it is refused even the right password until the "
        "window passes; all clients together may have ten times as many for an account, and "
        "one client four times as many over all accounts.",
        _positive_int,
    ),
    Setting(
        "console_login_window_minutes",
        "15",
        "The window console_login_attempts counts failed logins in.",
        _positive_int,
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS}
#: settings renamed since nodes were first created: their config files keep the old name
RENAMED = {"store_url": "database"}


@dataclass(frozen=True)
class NodeConfig:
    directory: Path
    name: str
    nation: str
    org: str
    identity_id: str
    created: str
    communities: tuple[str, ...]
    policies: Mapping[str, tuple[str, ...]]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, name: str) -> Any:
        return self.settings[name]

    @property
    def database_url(self) -> str:
        """The store's SQLAlchemy URL (see :func:`allied.store.store.database_url`)."""
        url = str(self.settings["database"])
        return url or f"sqlite:///{self.directory / STORE_FILE}"

    @property
    def private_key_path(self) -> Path:
        return self.directory / KEY_DIR / PRIVATE_KEY_FILE

    @property
    def public_key_path(self) -> Path:
        return self.directory / KEY_DIR / PUBLIC_KEY_FILE


def resolve_settings(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """File values, overridden by ``ALLIED_<NAME>`` variables, each cast strictly."""
    environ = os.environ if environ is None else environ
    raw = dict(raw)
    for old, new in RENAMED.items():
        if old in raw:
            if new in raw:
                raise ConfigError(
                    f"[settings] {old} and {new} are both set: {old} is the older name of "
                    f"{new}; keep only {new}",
                    key=new,
                )
            raw[new] = raw.pop(old)
    unknown = sorted(set(raw) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in [settings]", key=unknown[0])
    resolved: dict[str, Any] = {}
    for setting in SETTINGS:
        env_name = setting.env_name
        value = environ.get(env_name, raw.get(setting.name, setting.default))
        try:
            resolved[setting.name] = setting.cast(str(value))
        except ValueError as error:
            where = env_name if env_name in environ else f"[settings] {setting.name}"
            raise ConfigError(f"{where} = {value!r}: {error}", key=setting.name) from None
    return resolved


def read_file(directory: Path) -> dict[str, Any]:
    """The node's configuration file as written, nothing resolved."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise NodeNotFound(
            f"{directory} is not an Allied node (no {CONFIG_FILE}); create one with "
            "'allied init DIR --name NAME --nation XXX'"
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None


def load(directory: Path) -> NodeConfig:
    path = directory / CONFIG_FILE
    data = read_file(directory)
    node = data.get("node", {})
    for key in ("name", "nation", "identity_id", "created"):
        if not isinstance(node.get(key), str):
            raise ConfigError(f"{path}: [node] {key} is missing", key=key)
    communities = node.get("communities", [])
    if not isinstance(communities, list) or not all(isinstance(c, str) for c in communities):
        raise ConfigError(f"{path}: [node] communities must be a list of names", key="communities")
    policies: dict[str, tuple[str, ...]] = {}
    for policy, body in data.get("policies", {}).items():
        levels = body.get("levels") if isinstance(body, dict) else None
        if (
            not isinstance(levels, list)
            or not levels
            or not all(isinstance(level, str) for level in levels)
        ):
            raise ConfigError(
                f"{path}: [policies.{policy}] levels must be a non-empty list of names",
                key=f"policies.{policy}",
            )
        if len(set(levels)) != len(levels):
            raise ConfigError(f"{path}: [policies.{policy}] levels repeat a name")
        policies[policy] = tuple(levels)
    return NodeConfig(
        directory=directory,
        name=node["name"],
        nation=node["nation"],
        org=node.get("org", ""),
        identity_id=node["identity_id"],
        created=node["created"],
        communities=tuple(communities),
        policies=policies,
        settings=resolve_settings(data.get("settings", {})),
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the config file")


def setting_text(value: Any) -> str:
    """A resolved setting as the config file writes it (the inverse of its cast)."""
    return ",".join(sorted(value)) if isinstance(value, frozenset) else str(value)


def render(config: NodeConfig) -> str:
    """The config file for ``config``: every setting written out with its help as a comment."""
    lines = ["# Allied node configuration.", "", "[node]"]
    for key in ("name", "nation", "org", "identity_id", "created"):
        lines.append(f"{key} = {_toml_value(getattr(config, key))}")
    lines.append("# Communities this node belongs to (TLP:GREEN goes to partners sharing one).")
    lines.append(f"communities = {_toml_value(list(config.communities))}")
    lines += ["", "[settings]"]
    for setting in SETTINGS:
        lines.append(f"# {setting.help}")
        value = setting_text(config.settings.get(setting.name, setting.default))
        lines.append(f"{setting.name} = {_toml_value(value)}")
    for policy, levels in config.policies.items():
        lines += ["", f"# Levels of the {policy} policy, lowest first.", f"[policies.{policy}]"]
        lines.append(f"levels = {_toml_value(list(levels))}")
    return "\n".join(lines) + "\n"
