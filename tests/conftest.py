"""Shared fixtures: real nodes in temporary folders, the real command line, valid objects."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from allied.cli import main
from allied.integrity.keys import public_pem
from allied.integrity.signing import SIGNATURE_EXTENSION_ID, Signer, sign
from allied.node import Node, init_node

IDENTITY = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"
TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
STAMP = "2026-03-01T10:00:00.000Z"


def indicator(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid indicator; ``n`` makes distinct ids and patterns."""
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{n:08x}-0000-4000-8000-000000000000",
        "created": STAMP,
        "modified": STAMP,
        "created_by_ref": IDENTITY,
        "name": f"bad address {n}",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z",
        "object_marking_refs": [TLP_GREEN],
    }
    obj.update(overrides)
    return obj


def malware(n: int = 1, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{n:08x}-0000-4000-8000-000000000001",
        "created": STAMP,
        "modified": STAMP,
        "name": f"Family {n}",
        "is_family": True,
        "object_marking_refs": [TLP_GREEN],
    }
    obj.update(overrides)
    return obj


def bundle(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": list(objects),
    }


def write_bundle(path: Path, objects: Iterable[dict[str, Any]], *, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(bundle(objects), indent=indent))
    return path


def write_lines(path: Path, objects: Iterable[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "node"
    init_node(
        directory, name="Test CERT", nation="EST", org="Test organisation", communities=["council"]
    )
    return directory


@pytest.fixture
def node(node_dir: Path) -> Iterable[Node]:
    with Node.open(node_dir) as opened:
        yield opened


@pytest.fixture
def cli(node_dir: Path) -> Callable[..., Result]:
    """Run the real command line in-process against the test node."""
    runner = CliRunner()

    def invoke(*args: str, node: bool = True) -> Result:
        full = ["--node", str(node_dir), *args] if node else list(args)
        return runner.invoke(main, full, catch_exceptions=False)

    return invoke


# -- signatures -------------------------------------------------------------------------------


def unsigned(data: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its origin signature: what was imported, before the node signed."""
    plain = dict(data)
    extensions = {
        k: v for k, v in (plain.get("extensions") or {}).items() if k != SIGNATURE_EXTENSION_ID
    }
    if extensions:
        plain["extensions"] = extensions
    else:
        plain.pop("extensions", None)
    return plain


def peer_key(directory: Path, name: str) -> tuple[Path, Ed25519PrivateKey]:
    """A partner's key pair: the public key as a PEM file (to pin with --key), and the key."""
    key = Ed25519PrivateKey.generate()
    path = directory / f"{name}.pub"
    path.write_text(public_pem(key.public_key()))
    return path, key


def signed_as(
    objects: Iterable[dict[str, Any]], key: Ed25519PrivateKey, identity: str
) -> list[dict[str, Any]]:
    """Objects as the partner owning ``identity`` publishes them: signed with its key."""
    signer = Signer.of(key, identity)
    return [sign(obj, signer) for obj in objects]


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``process`` (an ``allied serve``) accepts connections on ``port`` of 127.0.0.1;
    its log in the error if it ends or takes over 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"allied serve did not start:\n{log.read_text()}") from None
            time.sleep(0.05)
