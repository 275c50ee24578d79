"""Many writers at once: 8 clients POSTing overlapping objects to 4 `allied serve` workers on
one store, while another process imports (as a sync stores what it pulls: through the same
writer). Nothing may be stored twice or lost, and the ledger must stay one tree."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from allied.cli import main
from allied.ingest.stix_import import import_file
from allied.integrity.ledger import object_leaf
from allied.node import Node
from allied.store import schema
from allied.taxii.protocol import MEDIA_TYPE
from tests.conftest import indicator, write_bundle
from tests.taxii.conftest import World
from tests.taxii.test_serve import serving

CLIENTS = 8
WORKERS = 4
PER_CLIENT = 60
BATCH = 15


def _objects(client: int) -> list[dict[str, Any]]:
    """Client ``client``'s share: its own range, half of it also posted by the next client of
    the same partner, and a second version of every fifth object (posted by both)."""
    start = 1000 + (client // 2) * 1000 + (client % 2) * PER_CLIENT // 2
    objects = [indicator(n) for n in range(start, start + PER_CLIENT)]
    objects += [
        indicator(n, modified="2026-03-02T10:00:00.000Z", name=f"second version {n}")
        for n in range(start, start + PER_CLIENT, 5)
    ]
    return objects


def _post_all(url: str, token: str, collection: str, objects: list[dict[str, Any]],
              failures: list[str], go: threading.Event) -> None:  # fmt: skip
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": MEDIA_TYPE,
        "Content-Type": MEDIA_TYPE,
    }
    go.wait()
    with httpx.Client(timeout=60) as http:
        for at in range(0, len(objects), BATCH):
            batch = objects[at : at + BATCH]
            response = http.post(
                f"{url}/api/collections/{collection}/objects/",
                headers=headers,
                content=json.dumps({"objects": batch}),
            )
            if response.status_code != 202:
                failures.append(f"{response.status_code}: {response.text[:300]}")
                continue
            status = response.json()
            if status["success_count"] != len(batch):
                failures.append(json.dumps(status["failures"])[:300])


def _import(world: World, objects: list[dict[str, Any]], failures: list[str],
            go: threading.Event) -> None:  # fmt: skip
    """An operator's import beside the server, in pieces, each its own write transaction."""
    go.wait()
    try:
        with Node.open(world.directory) as node:
            for at in range(0, len(objects), BATCH):
                path = write_bundle(world.directory.parent / f"import-{at}.json",
                                    objects[at : at + BATCH])  # fmt: skip
                import_file(node, path)
    except Exception as error:  # reported by the test
        failures.append(f"import: {error}")


def _verify_while(world: World, problems: list[str], done: threading.Event) -> None:
    """``allied verify`` over and over while the writers run: what it reads must be one
    moment, or a write committing between its queries looks like tampering."""
    with Node.open(world.directory) as node:
        while not done.is_set():
            problems.extend(node.verify().problems)


def _ready(url: str, token: str) -> None:
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {token}", "Accept": MEDIA_TYPE}
    while True:  # the workers may still be starting
        try:
            if httpx.get(f"{url}/api/collections/", headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("allied serve did not answer within 30 s")
        time.sleep(0.2)


@pytest.mark.slow
def test_eight_clients_posting_overlapping_objects_to_four_workers(world: World) -> None:
    # clients 0-3 post as usa to kor-usa, 4-7 as est to nato-ccdcoe; each pair overlaps
    partners = [("usa", "kor-usa")] * 4 + [("est", "nato-ccdcoe")] * 4
    posted = {client: _objects(client) for client in range(CLIENTS)}
    # objects of the node's own (what a partner posted, the node may not publish versions of)
    imported = [indicator(n) for n in range(9000, 9090)]
    expected = {(o["id"], o["modified"]) for objects in posted.values() for o in objects}
    expected |= {(o["id"], o["modified"]) for o in imported}
    with Node.open(world.directory) as node:
        before = node.store.version_count()
    failures: list[str] = []
    go = threading.Event()
    with serving(world, "--workers", str(WORKERS)) as (url, _log):
        _ready(url, world.tokens["usa"])
        threads = []
        for client, (partner, title) in enumerate(partners):
            args = (url, world.tokens[partner], world.collections[title], posted[client])
            threads.append(threading.Thread(target=_post_all, args=(*args, failures, go)))
        threads.append(threading.Thread(target=_import, args=(world, imported, failures, go)))
        done, problems = threading.Event(), []  # type: ignore[var-annotated]
        verifier = threading.Thread(target=_verify_while, args=(world, problems, done))
        verifier.start()
        for thread in threads:
            thread.start()
        go.set()  # all at once
        for thread in threads:
            thread.join(timeout=120)
        done.set()
        verifier.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert problems == []
    assert failures == []
    assert sum(len(objects) for objects in posted.values()) > len(expected)  # they overlap
    with Node.open(world.directory) as node, node.store.engine.connect() as conn:
        o = schema.objects
        rows = conn.execute(select(o.c.id, o.c.version, o.c.ledger_index, o.c.json)).all()
        ledger = dict(conn.execute(select(schema.ledger.c.idx, schema.ledger.c.leaf)).all())
        heads = conn.execute(select(func.count()).select_from(schema.tree_heads)).scalar()
    # every version stored, each exactly once
    counts = Counter((object_id, version) for object_id, version, _index, _json in rows)
    assert [key for key, n in counts.items() if n > 1] == []
    found = [json.loads(text) for _id, _version, _index, text in rows]
    stored = {(data["id"], data.get("modified")) for data in found}
    assert expected <= stored
    assert len(rows) == before + len(expected)
    # one ledger: one entry per version, numbered without a gap, each the leaf of its object
    assert sorted(ledger) == list(range(len(ledger)))
    indexes = [index for _id, _version, index, _json in rows]
    assert sorted(indexes) == list(range(len(rows)))
    assert all(bytes(ledger[index]) == object_leaf(json.loads(text))
               for _id, _version, index, text in rows)  # fmt: skip
    assert heads is not None and heads > 1
    verified = CliRunner().invoke(main, ["--node", str(world.directory), "verify", "--json"])
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] and report["ledger_size"] == len(ledger) == len(rows)
