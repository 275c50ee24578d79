"""The shipped drill, run once per test session through the real command line (`allied demo`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ALLIED = str(Path(sys.executable).parent / "allied")
#: where tests leave what a person may want to look at (screenshots); kept out of git
ARTIFACTS = Path(
    os.environ.get("ALLIED_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


@dataclass(frozen=True)
class Drill:
    root: Path
    exit_code: int
    output: str
    errors: str

    @property
    def score(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.root / "score.json").read_text())
        return loaded


def run_allied(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALLIED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "ALLIED_NODE": ""},
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    root = tmp_path_factory.mktemp("demo") / "drill"
    done = run_allied("demo", "-o", str(root))
    yield Drill(root, done.returncode, done.stdout, done.stderr)
