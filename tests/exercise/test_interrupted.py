"""A drill ended from outside (SIGTERM, as a CI job's timeout sends) stops its nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.exercise.conftest import ALLIED

pytestmark = pytest.mark.slow

SCENARIO = """\
name: interrupted
sync_interval: 0.5
partners:
  KOR: {nation: KOR}
  USA: {nation: USA}
peers: [[KOR, USA]]
labels:
  open: {tlp: clear}
injects:
  - {at: 60, id: late, kind: share, by: KOR, label: open, indicators: {domain: 1}}
"""


def _serving(root: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "serve" in cmdline and any(str(root) in part for part in cmdline):
            found.append(process)
    return found


def test_sigterm_ends_the_drill_and_stops_every_node(tmp_path: Path) -> None:
    scenario = tmp_path / "interrupted.yaml"
    scenario.write_text(SCENARIO)
    root = tmp_path / "drill"
    output = tmp_path / "runner.log"
    with open(output, "wb") as log:
        runner = subprocess.Popen(
            [ALLIED, "exercise", "run", str(scenario), "-o", str(root)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ALLIED_NODE": ""},
        )
    try:
        deadline = time.monotonic() + 60
        while len(_serving(root)) < 2:  # both nodes up: the drill is under way
            assert runner.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "the nodes did not start"
            time.sleep(0.2)
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode != 0, output.read_text()
    deadline = time.monotonic() + 10
    while _serving(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _serving(root) == []
    assert (root / "nodes" / "kor" / "store.db").is_file()  # kept for inspection
