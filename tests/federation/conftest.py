"""Three real nodes (KOR, USA, NATO), each served by `allied serve` in its own process on
127.0.0.1, peered in a chain KOR - USA - NATO: USA pulls from both, KOR and NATO from USA.

Every node knows the other two as partners with pinned keys (NATO must verify what KOR
signed, relayed by USA); only direct peers hold tokens for each other.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import update

from allied.federation.peers import add_peer
from allied.federation.sync import SyncResult, sync_all
from allied.node import Node, init_node
from allied.store import schema
from tests.conftest import NewDatabase, wait_listening

ALLIED = str(Path(sys.executable).parent / "allied")

NODES = {
    # name: (nation, communities, clearance others give it)
    "KOR": ("KOR", ["kor-usa", "nato-ccdcoe"], "NATO=SECRET"),
    "USA": ("USA", ["kor-usa", "nato-ccdcoe"], "NATO=SECRET"),
    "NATO": ("NATO", ["nato-ccdcoe"], "NATO=SECRET"),
}
#: who pulls from whom
PEERS = {"KOR": ["USA"], "USA": ["KOR", "NATO"], "NATO": ["USA"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Federation:
    root: Path
    directories: dict[str, Path]
    identities: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return Node.open(self.directories[name])

    def sync(self, name: str, **options: bool) -> list[SyncResult]:
        with self.node(name) as node:
            return sync_all(node, force=True, **options)

    def repoint(self, name: str, peer: str, url: str) -> None:
        """Make node ``name`` reach ``peer`` at ``url`` (a relay, say)."""
        with self.node(name) as node, node.store.write() as writer:
            writer.conn.execute(
                update(schema.peers).where(schema.peers.c.name == peer).values(url=url)
            )

    def ids(self, name: str) -> set[str]:
        with self.node(name) as node:
            return {s.id for s in node.store.summaries()}

    def start(self, name: str, port: int | None = None) -> None:
        """``allied serve`` for node ``name`` (again on its old port, if it had one)."""
        if port is None:
            port = int(self.urls[name].rstrip("/").rsplit(":", 1)[1]) if name in self.urls else 0
        port = port or free_port()
        log = self.root / f"{name}-serve.log"
        with open(log, "ab") as err:
            process = subprocess.Popen(
                [ALLIED, "--node", str(self.directories[name]), "serve", "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "ALLIED_NODE": ""},
            )
        self.processes[name] = process
        self.urls[name] = f"http://127.0.0.1:{port}/"
        wait_listening(port, process, log)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def build(
    root: Path, pulls: dict[str, list[str]] | None = None, database: NewDatabase = lambda: ""
) -> Federation:
    """The three nodes, each pulling from the nodes ``pulls`` names (the chain by default),
    each with a store from ``database``."""
    pulls = PEERS if pulls is None else pulls
    directories = {name: root / name.lower() for name in NODES}
    identities: dict[str, str] = {}
    keys: dict[str, Path] = {}
    for name, (nation, communities, _) in NODES.items():
        config = init_node(
            directories[name],
            name=name,
            nation=nation,
            communities=communities,
            database=database(),
        )
        identities[name] = config.identity_id
        keys[name] = config.public_key_path
    federation = Federation(root, directories, identities)
    tokens: dict[tuple[str, str], Path] = {}  # (server, client) -> token file
    for name in NODES:
        with federation.node(name) as node:
            for other, (nation, communities, clearance) in NODES.items():
                if other == name:
                    continue
                direct = other in pulls[name] or name in pulls[other]
                token_file = root / f"{other}-at-{name}.token" if direct else None
                node.add_partner(
                    other,
                    nation=nation,
                    clearances=[clearance],
                    communities=communities,
                    key_file=keys[other],
                    token_file=token_file,
                    identity_id=identities[other],
                )
                if token_file is not None:
                    tokens[(name, other)] = token_file
    for name in NODES:
        federation.start(name)
    for name, sources in pulls.items():
        with federation.node(name) as node:
            for other in sources:
                add_peer(
                    node,
                    other,
                    federation.urls[other],
                    partner=other,
                    token_file=tokens[(other, name)],
                )
    return federation


@pytest.fixture
def federation(tmp_path: Path, new_database: NewDatabase) -> Iterator[Federation]:
    built = build(tmp_path, database=new_database)
    try:
        yield built
    finally:
        built.close()
