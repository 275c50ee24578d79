"""Node configuration: the settings table, strict casts, environment overrides, policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from allied import config
from allied.config import SETTINGS, load, resolve_settings
from allied.errors import ConfigError, NodeNotFound

README = Path(__file__).parent.parent / "README.md"


def test_defaults_cast() -> None:
    values = resolve_settings({}, environ={})
    assert values == {
        "default_tlp": "",
        "confined_communities": frozenset(),
        "database": "",
        "max_reported_problems": 1000,
        "anonymous_discovery": False,
        "own_collection_writable": False,
        "read_only_communities": frozenset(),
        "max_page_size": 1000,
        "max_content_length": 10485760,
        "max_envelope_objects": 10000,
        "max_partner_label_sets": 1000,
        "blind_session_cap": 2_000_000,
        "blind_partner_cap": 10_000_000,
        "blind_sessions_cap": 100,
        "max_json_depth": 64,
        "sync_interval": 60,
        "sync_timeout": 30,
        "sync_backoff": 2,
        "sync_backoff_max": 300,
        "sync_page_size": 1000,
        "sync_max_pages": 1000,
        "import_batch_size": 2000,
        "console": True,
        "console_idle_minutes": 30,
        "console_session_hours": 12,
        "console_login_attempts": 5,
        "console_login_window_minutes": 15,
    }


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("Yes", True), ("0", False), ("", False)]
)
def test_flags(text: str, value: bool) -> None:
    assert (
        resolve_settings({}, environ={"ALLIED_ANONYMOUS_DISCOVERY": text})["anonymous_discovery"]
        is value
    )


def test_a_bad_flag_is_named() -> None:
    with pytest.raises(
        ConfigError, match="ALLIED_OWN_COLLECTION_WRITABLE = 'maybe': must be true or false"
    ):
        resolve_settings({}, environ={"ALLIED_OWN_COLLECTION_WRITABLE": "maybe"})


def test_environment_overrides_file() -> None:
    values = resolve_settings({"default_tlp": "green"}, environ={"ALLIED_DEFAULT_TLP": "amber"})
    assert values["default_tlp"] == "amber"


@pytest.mark.parametrize(
    ("raw", "environ", "key", "message"),
    [
        ({"default_tlp": "purple"}, {}, "default_tlp", "[settings] default_tlp = 'purple'"),
        (
            {},
            {"ALLIED_IMPORT_BATCH_SIZE": "0"},
            "import_batch_size",
            "ALLIED_IMPORT_BATCH_SIZE = '0': must be a positive integer",
        ),
        ({"max_reported_problems": "many"}, {}, "max_reported_problems", "invalid literal"),
        ({"colour": "blue"}, {}, "colour", "unknown setting 'colour'"),
    ],
)
def test_bad_values_name_the_key(
    raw: dict[str, str], environ: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        resolve_settings(raw, environ=environ)
    assert excinfo.value.key == key
    assert message in excinfo.value.message


def test_config_file_round_trip(node_dir: Path) -> None:
    loaded = load(node_dir)
    assert (loaded.name, loaded.nation, loaded.org) == ("Test CERT", "EST", "Test organisation")
    assert loaded.policies["NATO"] == ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")
    assert config.render(loaded) == (node_dir / "node.toml").read_text()


def test_policies_are_configuration(node_dir: Path) -> None:
    path = node_dir / "node.toml"
    path.write_text(path.read_text() + '\n[policies.KOR]\nlevels = ["OPEN", "SECRET"]\n')
    assert load(node_dir).policies["KOR"] == ("OPEN", "SECRET")
    path.write_text(path.read_text() + "\n[policies.BAD]\nlevels = []\n")
    with pytest.raises(ConfigError, match=r"\[policies.BAD\] levels must be a non-empty list"):
        load(node_dir)


def test_broken_config_file(node_dir: Path) -> None:
    (node_dir / "node.toml").write_text("[node\nname=")
    with pytest.raises(ConfigError, match=r"node\.toml"):
        load(node_dir)


def test_not_a_node(tmp_path: Path) -> None:
    with pytest.raises(NodeNotFound, match="is not an Allied node"):
        load(tmp_path)


def test_the_older_name_of_the_database_setting_is_still_read() -> None:
    assert resolve_settings({"store_url": "sqlite:///x.db"}, environ={})["database"] == (
        "sqlite:///x.db"
    )
    with pytest.raises(ConfigError, match="store_url and database are both set") as excinfo:
        resolve_settings({"store_url": "", "database": ""}, environ={})
    assert excinfo.value.key == "database"


def test_the_database_is_overridden_by_allied_database_url() -> None:
    values = resolve_settings({"database": "sqlite:///a.db"}, environ={
        "ALLIED_DATABASE_URL": "postgresql://u@h/db"})  # fmt: skip
    assert values["database"] == "postgresql://u@h/db"


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name
        assert setting.env_name in text, setting.name
