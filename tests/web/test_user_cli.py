"""``allied user``: console accounts from the command line, passwords never as arguments."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from allied.cli import main
from allied.errors import AuthError
from allied.node import Node
from allied.web.accounts import Accounts

Cli = Callable[..., Result]


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "password"
    path.write_text(text)
    return str(path)


def test_add_list_role_password_remove(cli: Cli, node_dir: Path, tmp_path: Path) -> None:
    added = cli("user", "add", "ann", "--role", "analyst", "--password-file",
                _file(tmp_path, "first password 1\nignored"))  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "added account ann (analyst)" in added.output
    listed = json.loads(cli("user", "list", "--json").output)
    assert [(a["name"], a["role"]) for a in listed] == [("ann", "analyst")]
    assert "password" not in json.dumps(listed) and "argon2" not in json.dumps(listed)
    assert cli("user", "role", "ann", "viewer").exit_code == 0
    changed = cli(
        "user", "password", "ann", "--password-file", _file(tmp_path, "second password 2")
    )
    assert changed.exit_code == 0, changed.output
    with Node.open(node_dir) as node:
        account = Accounts(node.store).login("ann", "second password 2", "127.0.0.1")
    assert account.role == "viewer"
    with Node.open(node_dir) as node, pytest.raises(AuthError):
        Accounts(node.store).login("ann", "a wrong password", "127.0.0.1")
    unlocked = cli("user", "unlock", "ann")
    assert unlocked.exit_code == 0 and "ann: 1 failed logins forgotten" in unlocked.output
    assert cli("user", "remove", "ann").exit_code == 0
    assert cli("user", "list").output == ""


def test_the_password_is_asked_twice_on_the_terminal(node_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["--node", str(node_dir), "user", "add", "vic", "--role", "viewer"],
        input="typed password 3\ntyped password 3\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "typed password 3" not in result.output
    with Node.open(node_dir) as node:
        assert Accounts(node.store).login("vic", "typed password 3", "127.0.0.1").name == "vic"


def test_mistakes_exit_non_zero_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    short = cli(
        "user", "add", "ann", "--role", "admin", "--password-file", _file(tmp_path, "short")
    )
    assert short.exit_code == 1 and "too short" in short.output
    bad_name = cli("user", "add", "a b", "--role", "admin", "--password-file", _file(tmp_path, "x"))
    assert bad_name.exit_code == 1 and "account name 'a b'" in bad_name.output
    missing = cli("user", "add", "ann", "--role", "admin", "--password-file", str(tmp_path / "no"))
    assert missing.exit_code == 1 and "cannot read" in missing.output
    assert cli("user", "add", "ann", "--role", "owner").exit_code == 2
    assert cli("user", "remove", "nobody").exit_code == 1
    assert (
        cli(
            "user", "password", "nobody", "--password-file", _file(tmp_path, "long password 12")
        ).exit_code
        == 1
    )
    ok = cli(
        "user",
        "add",
        "ann",
        "--role",
        "admin",
        "--password-file",
        _file(tmp_path, "long password 12"),
    )
    assert ok.exit_code == 0
    again = cli(
        "user",
        "add",
        "ann",
        "--role",
        "admin",
        "--password-file",
        _file(tmp_path, "long password 12"),
    )
    assert again.exit_code == 1 and "exists already" in again.output
