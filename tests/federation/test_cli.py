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
from tests.conftest import NewDatabase


@pytest.fixture
def node_dir(tmp_path: Path, new_database: NewDatabase) -> Path:
    directory = tmp_path / "kor"
    init_node(directory, name="KOR", nation="KOR", communities=["kor-usa"], database=new_database())
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


def test_the_token_never_goes_to_a_host_discovery_names() -> None:
    """A discovery answer naming another host (``//host/...``) is refused before any page
    is asked for with the token."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from allied.federation.remote import Remote, RemoteError

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"default": "http://x//127.0.0.1:1/api/"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/taxii+json;version=2.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with (
            Remote("evil", url, "secret-token", timeout=5) as remote,
            pytest.raises(RemoteError, match="another host"),
        ):
            remote.collection_url("00000000-0000-4000-8000-000000000000")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("stamp", "before", "problem"),
    [
        ("yesterday", None, "not a timestamp"),
        ("2099-12-31T00:00:00.000000Z", None, "in the future"),
        ("2026-01-01T00:00:00.000000Z", "2026-02-01T00:00:00.000000Z", "goes back"),
    ],
)
def test_a_peer_cannot_push_a_cursor_where_it_would_skip_objects(
    stamp: str, before: str | None, problem: str
) -> None:
    from allied.federation.peers import Peer
    from allied.federation.remote import RemoteError
    from allied.federation.sync import _checked_time

    peer = Peer("usa", "http://127.0.0.1:9/", "USA", None, "2026-01-01T00:00:00.000000Z")
    with pytest.raises(RemoteError, match=problem):
        _checked_time(peer, stamp, before)
