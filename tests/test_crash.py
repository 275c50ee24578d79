"""A crash at any moment of an import loses no committed object and leaves no half file.

The import runs in a real ``allied`` process that is killed with SIGKILL part-way; the store
must then hold exactly what was committed before, pass SQLite's integrity check, and accept
the same import again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allied.demo import write_jsonl
from allied.node import Node
from allied.synthetic import Mix
from tests.conftest import indicator, write_bundle


def _allied(*args: str) -> list[str]:
    return [sys.executable, "-c", "from allied.cli import main; main()", *args]


def _object_count(node_dir: Path) -> int:
    with sqlite3.connect(node_dir / "store.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(db.execute("SELECT count(*) FROM objects").fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_sigkill_during_import_leaves_store_consistent(
    node_dir: Path, tmp_path: Path, delay: float
) -> None:
    committed = write_bundle(tmp_path / "first.json", [indicator(n) for n in range(1, 51)])
    subprocess.run(
        _allied("--node", str(node_dir), "import", str(committed)), check=True, capture_output=True
    )
    before = _object_count(node_dir)
    big = tmp_path / "big.jsonl"
    written = write_jsonl(big, seed=11, mix=Mix(indicators=60_000))
    process = subprocess.Popen(
        _allied("--node", str(node_dir), "import", str(big)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    still_running = process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert still_running, "the import finished before it could be killed; use a bigger file"
    assert _object_count(node_dir) == before
    with Node.open(node_dir) as node:
        assert node.store.latest(indicator(50)["id"]) is not None
    done = subprocess.run(
        _allied("--node", str(node_dir), "import", str(big)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{written} stored" in done.stdout
    assert _object_count(node_dir) == before + written
