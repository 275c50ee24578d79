"""Ctrl-C during a sync: each pull stores what it verified and ends at its next page,
without waiting for the rest of the pull, and without counting against the peer."""

from __future__ import annotations

import signal
import threading
import time

from allied.federation import peers
from allied.federation.sync import FAILED, OK, sync_all
from allied.ingest.stix_import import import_file
from tests.conftest import indicator, write_bundle
from tests.federation.conftest import Federation
from tests.federation.test_workers import long_sync, worker_started


def _published(federation: Federation, count: int, start: int) -> set[str]:
    with federation.node("USA") as usa:
        creator = usa.config.identity_id
        objects = [indicator(n, created_by_ref=creator) for n in range(start, start + count)]
        import_file(usa, write_bundle(federation.root / f"batch-{start}.json", objects))
    return {obj["id"] for obj in objects}


def test_a_stopped_sync_pulls_nothing_more_and_is_no_failure_of_the_peer(
    federation: Federation,
) -> None:
    wanted = _published(federation, 20, 600)
    stop = threading.Event()
    stop.set()
    with federation.node("NATO") as nato:
        [result] = sync_all(nato, force=True, stop=stop)
        peer = peers.peer(nato, result.peer)
    assert result.status == FAILED and "interrupted" in result.message
    assert result.pages == 0 and not wanted & federation.ids("NATO")
    assert peer.failures == 0 and peer.next_attempt is None, "an interrupt is no back-off"
    [again] = federation.sync("NATO")
    assert again.status == OK and wanted <= federation.ids("NATO")


def test_ctrl_c_ends_a_long_sync_at_its_next_page(federation: Federation) -> None:
    wanted = _published(federation, 1500, 2000)
    process = long_sync(federation, "NATO")
    try:
        worker_started(process)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, err = process.communicate(timeout=30)
        stopped_after = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0, err
    assert stopped_after < 15, f"the sync took {stopped_after:.1f} s to stop"
    held = wanted & federation.ids("NATO")
    assert held < wanted, "the pull was not interrupted (it finished first)"
    with federation.node("NATO") as nato:
        peer = peers.peer(nato, "USA")
        audit = nato.verify()
    assert audit.ok, audit.problems
    assert peer.failures == 0, "an interrupt is no failure of the peer"
    [result] = federation.sync("NATO")  # the next sync goes on from there
    assert result.status == OK and wanted <= federation.ids("NATO")
