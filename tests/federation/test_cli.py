"""`allied peer` and `allied sync` as an operator uses them, on one node."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from allied.cli import main
from allied.federation.peers import token_path
from allied.node import Node, init_node


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "kor"
    init_node(directory, name="KOR", nation="KOR", communities=["kor-usa"])
    other = init_node(tmp_path / "usa", name="USA", nation="USA")
    with Node.open(directory) as node:
        node.add_partner("USA", nation="USA", key_file=other.public_key_path,
                         identity_id=other.identity_id)  # fmt: skip
        node.add_partner("KEYLESS", nation="EST")
    (tmp_path / "token").write_text("t" * 43 + "\n")
    return directory


def run(node_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--node", str(node_dir), *args])


def test_a_peer_is_added_listed_and_removed(node_dir: Path) -> None:
    token = str(node_dir.parent / "token")
    added = run(node_dir, "peer", "add", "usa", "http://127.0.0.1:9/", "--partner", "USA",
                "--token-file", token)  # fmt: skip
    assert added.exit_code == 0, added.output
    with Node.open(node_dir) as node:
        path = token_path(node, "usa")
    assert path.read_text() == "t" * 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    listed = json.loads(run(node_dir, "peer", "list", "--json").output)
    assert listed[0]["name"] == "usa" and "token" not in json.dumps(listed)
    assert run(node_dir, "peer", "remove", "usa").exit_code == 0
    assert not path.exists()
    assert json.loads(run(node_dir, "peer", "list", "--json").output) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x/", "--partner", "USA"], "expected http(s)://HOST[:PORT]/"),
        (["http://u:p@x/", "--partner", "USA"], "no query, fragment or credentials"),
        (["http://x/", "--partner", "NOBODY"], "no such partner"),
        (["http://x/", "--partner", "KEYLESS"], "no public key is pinned"),
    ],
)
def test_a_bad_peer_is_refused_with_a_reason(node_dir: Path, args: list[str], message: str) -> None:
    token = str(node_dir.parent / "token")
    result = run(node_dir, "peer", "add", "p", *args, "--token-file", token)
    assert result.exit_code == 1
    assert message in result.output
    assert json.loads(run(node_dir, "peer", "list", "--json").output) == []


def test_an_unreachable_peer_fails_the_sync_and_shows_in_its_status(node_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    token = str(node_dir.parent / "token")
    run(node_dir, "peer", "add", "usa", f"http://127.0.0.1:{port}/", "--partner", "USA",
        "--token-file", token)  # fmt: skip
    result = run(node_dir, "sync", "--once", "--json")
    assert result.exit_code == 1
    [outcome] = json.loads(result.output)
    assert outcome["status"] == "failed" and "peer usa" in outcome["message"]
    status = run(node_dir, "peer", "status", "--json")
    assert status.exit_code == 0
    [row] = json.loads(status.output)
    assert (row["state"], row["failures"]) == ("failing", 1)
    assert "t" * 43 not in status.output + result.output


def test_a_flagged_peer_makes_status_exit_3_until_accepted(node_dir: Path) -> None:
    token = str(node_dir.parent / "token")
    run(node_dir, "peer", "add", "usa", "http://127.0.0.1:9/", "--partner", "USA",
        "--token-file", token)  # fmt: skip
    with Node.open(node_dir) as node, node.store.write() as writer:
        writer.conn.exec_driver_sql("UPDATE peers SET flagged = 'rewrote its history'")
    result = run(node_dir, "peer", "status")
    assert result.exit_code == 3
    assert "FLAGGED peer usa: rewrote its history" in result.output
    assert run(node_dir, "sync", "--once").exit_code == 3
    assert run(node_dir, "peer", "accept", "usa").exit_code == 0
    assert run(node_dir, "peer", "status").exit_code == 0
