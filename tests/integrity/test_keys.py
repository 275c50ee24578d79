"""Node keys: created private, refused when others can read them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from allied.integrity.keys import (
    KeyFileError,
    create_key_pair,
    key_id,
    load_private_key,
    parse_public_key,
    public_pem,
)


def test_key_pair_round_trip(tmp_path: Path) -> None:
    public = create_key_pair(tmp_path / "k" / "node.key", tmp_path / "k" / "node.pub")
    assert os.stat(tmp_path / "k").st_mode & 0o777 == 0o700
    private = load_private_key(tmp_path / "k" / "node.key")
    assert key_id(private.public_key()) == key_id(public)
    assert len(key_id(public)) == 16
    pem = (tmp_path / "k" / "node.pub").read_text()
    assert key_id(parse_public_key(pem, source="node.pub")) == key_id(public)
    assert public_pem(public) == pem


def test_readable_private_key_is_refused(tmp_path: Path) -> None:
    create_key_pair(tmp_path / "node.key", tmp_path / "node.pub")
    os.chmod(tmp_path / "node.key", 0o644)
    with pytest.raises(KeyFileError, match="accessible by group or others"):
        load_private_key(tmp_path / "node.key")


def test_missing_private_key(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is missing"):
        load_private_key(tmp_path / "absent.key")


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    create_key_pair(tmp_path / "node.key", tmp_path / "node.pub")
    with pytest.raises(FileExistsError):
        create_key_pair(tmp_path / "node.key", tmp_path / "node.pub")
