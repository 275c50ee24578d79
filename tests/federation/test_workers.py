"""Admission in a worker process (allied.federation.workers): the same verdicts as in the
node's own process, no private key in the worker, and a worker that dies costs nothing."""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from allied.federation import workers
from allied.ingest.envelope import admit_objects
from allied.ingest.stix_import import import_file
from allied.integrity.signing import SIGNATURE_EXTENSION_ID
from allied.node import Node
from allied.stix.model import parse_object
from tests.conftest import indicator, malware, peer_key, signed_as, unsigned, write_bundle
from tests.federation.conftest import ALLIED, Federation


@pytest.fixture(scope="module")
def ready() -> Iterator[None]:
    """The worker, started once for these tests (it takes most of a second)."""
    assert workers.start().result(timeout=120) is True
    yield


def _page(node: Node, tmp_path: Path) -> list[dict[str, Any]]:
    """What a peer might serve: signed objects, one altered, one invalid, one unsigned."""
    pem, key = peer_key(tmp_path, "us")
    us = node.add_partner("us", nation="USA", communities=["council"], key_file=pem)
    good = signed_as([indicator(n) for n in range(1, 6)] + [malware(7)], key, us.identity_id)
    altered = copy.deepcopy(good[1])
    altered["name"] = "changed on the way"
    invalid = copy.deepcopy(good[2])
    invalid["created"] = "yesterday"
    return [*good, altered, invalid, unsigned(good[3]), {"not": "stix"}]


def test_the_worker_admits_exactly_as_the_node_itself(
    ready: None, node: Node, tmp_path: Path
) -> None:
    page = _page(node, tmp_path)
    origin = node.origin()
    here = admit_objects(page, origin, partner="us", posted=False)
    pending = workers.admit(page, origin.verifier(), "us")
    assert pending is not None
    there = pending.result()

    def described(objects: Any) -> list[tuple[Any, ...]]:
        return [
            (
                o.id,
                o.type,
                o.version,
                o.created_by_ref,
                o.marking_refs,
                o.refs,
                o.json,
                dict(o.data),
            )
            for o in objects
        ]

    assert described(there.admitted) == described(here.admitted)
    assert there.failures == here.failures and there.positions == here.positions
    assert len(here.admitted) == 6 and len(here.failures) == 4
    reasons = " ".join(failure.message for failure in there.failures)
    assert "does not match" in reasons and "no origin signature" in reasons


def test_the_worker_gets_no_private_key(node: Node) -> None:
    verifier = node.origin().verifier()
    assert verifier.signer is None and verifier.identity == node.config.identity_id
    assert node.signer.secret not in pickle.dumps(verifier)
    own = node.origin().admit  # the node's own gate signs what it publishes first
    with pytest.raises(RuntimeError, match="holds no key"):
        verifier.admit(_checked(indicator(1)))
    assert own(_checked(indicator(1))).data["extensions"][SIGNATURE_EXTENSION_ID]


def _checked(data: dict[str, Any]) -> Any:
    return parse_object(data)


def test_a_long_pull_is_admitted_by_the_worker_even_after_it_is_killed(
    ready: None, federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLIED_SYNC_PAGE_SIZE", "5")
    taken: list[int] = []
    admit = workers.admit

    def counted(objects: Any, verifier: Any, partner: str) -> Any:
        pending = admit(objects, verifier, partner)
        if pending is not None:
            taken.append(len(objects))
        return pending

    monkeypatch.setattr(workers, "admit", counted)
    with federation.node("USA") as usa:
        creator = usa.config.identity_id
    first = [indicator(n, created_by_ref=creator) for n in range(200, 260)]
    with federation.node("USA") as usa:
        import_file(usa, write_bundle(federation.root / "first.json", first))
    [result] = federation.sync("NATO")
    assert (result.status, result.rejected) == ("ok", 0)
    assert {obj["id"] for obj in first} <= federation.ids("NATO")
    assert taken, "no page went through the worker"

    _kill_workers()
    taken.clear()
    second = [indicator(n, created_by_ref=creator) for n in range(300, 360)]
    with federation.node("USA") as usa:
        import_file(usa, write_bundle(federation.root / "second.json", second))
    [result] = federation.sync("NATO")
    assert (result.status, result.rejected) == ("ok", 0)
    assert {obj["id"] for obj in second} <= federation.ids("NATO")
    with federation.node("NATO") as nato:
        audit = nato.verify()
        assert audit.ok, audit.problems


def _kill_workers() -> None:
    """SIGKILL the worker processes, as the kernel's out-of-memory killer would."""
    pool = workers._pool
    assert pool is not None
    pids = [process.pid for process in pool._processes.values()]  # type: ignore[attr-defined]
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_the_worker_leaves_when_the_syncing_process_is_killed(federation: Federation) -> None:
    with federation.node("USA") as usa:
        creator = usa.config.identity_id
        objects = [indicator(n, created_by_ref=creator) for n in range(400, 1400)]
        import_file(usa, write_bundle(federation.root / "many.json", objects))
    process = long_sync(federation, "NATO")
    try:
        children = worker_started(process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate()  # waits, and closes its pipe
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, f"worker {children} outlived the killed sync"
        time.sleep(0.1)


def long_sync(federation: Federation, name: str) -> subprocess.Popen[bytes]:
    """``allied sync --once`` of node ``name`` in pages of two objects: a long pull."""
    env = {**os.environ, "ALLIED_NODE": "", "ALLIED_SYNC_PAGE_SIZE": "2"}
    return subprocess.Popen(
        [ALLIED, "--node", str(federation.directories[name]), "sync", "--once"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def worker_started(process: subprocess.Popen[bytes]) -> list[int]:
    """The admission workers of a running sync, once there are some: a worker starts when
    the pull proves long, so pages are flowing."""
    deadline = time.monotonic() + 60
    while not (children := _children(process.pid, "spawn_main")):
        assert process.poll() is None, "the sync ended before its worker started"
        assert time.monotonic() < deadline, "no worker was started"
        time.sleep(0.05)
    return children


def _children(parent: int, marker: str) -> list[int]:
    """The child processes of ``parent`` whose command line contains ``marker``."""
    found = []
    for task in Path(f"/proc/{parent}/task").glob("*/children"):
        for pid in task.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and marker in cmdline.read_text(errors="replace"):
                found.append(int(pid))
    return found


def test_a_stalled_worker_is_killed_and_its_pages_admitted_here(
    ready: None, node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that hangs (stopped here with SIGSTOP) would hold a pull for ever: after
    ADMIT_TIMEOUT the page fails (Stalled: the pull fails, and is retried at the next sync,
    rather than admit in the node's process a page that may be what hangs), the worker is
    killed, the page behind it fails over (BrokenProcessPool), and start() begins anew."""
    monkeypatch.setattr(workers, "ADMIT_TIMEOUT", 2.0)
    assert workers.start().result(timeout=120) is True
    pool = workers._pool
    assert pool is not None
    stalled = [process.pid for process in pool._processes.values()]  # type: ignore[attr-defined]
    page = _page(node, tmp_path)
    verifier = node.origin().verifier()
    for pid in stalled:
        os.kill(pid, signal.SIGSTOP)
    try:
        first = workers.admit(page, verifier, "us")
        queued = workers.admit(page, verifier, "us")
        assert first is not None and queued is not None
        started = time.monotonic()
        with pytest.raises(workers.Stalled, match="not admitted within 2 s"):
            first.result()
        assert time.monotonic() - started < 30
        with pytest.raises(BrokenProcessPool):  # the page behind it, too
            queued.result()
    finally:
        for pid in stalled:  # harmless once it is killed
            _signal_if_alive(pid, signal.SIGCONT)
    assert workers._pool is None, "the stalled pool is still in use"
    assert workers.admit(page, verifier, "us") is None  # until a new one is started
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in stalled):
        assert time.monotonic() < deadline, f"stalled worker {stalled} was not killed"
        time.sleep(0.1)
    assert workers.start().result(timeout=120) is True
    fresh = workers.admit(page, verifier, "us")
    assert fresh is not None
    here = admit_objects(page, node.origin(), partner="us", posted=False)
    assert [o.json for o in fresh.result().admitted] == [o.json for o in here.admitted]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a killed child not yet reaped is a zombie: not alive)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def _signal_if_alive(pid: int, number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)
