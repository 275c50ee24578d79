"""TAXII 2.1 benchmark: Allied's TAXII server against medallion, the OASIS reference server.

One command, one run, both servers on this machine, the same generated objects, the same HTTP
client (one httpx client, keep-alive, one request at a time):

    .venv/bin/python benchmarks/taxii.py [--objects 10000] [--large 100000] [--page-size 1000]

1. POST the objects in envelopes of 100 (objects/s; also the first and the last 1,000 of them,
   to show how the rate moves as the collection fills). Failures in the returned status
   resources are counted.
2. GET all objects of the collection, page by page, with TAXII's `limit` and `next` parameters
   (the envelope's `more` and `next`); objects/s. The same page size for both servers.
3. GET 1,000 objects one by one (`collections/{id}/objects/{object_id}/`); requests/s. The
   same ids for both servers: a sample of what Allied returned to its partner.

Allied runs first. Its node holds the objects POSTed to the "bench" community collection; the
GETs are measured there and in the node's own collection (everything the node shares with the
partner). Then objects up to --large are bulk-loaded with `allied import` (they join the own
collection: a community collection holds only what partners POST to it), and the GETs and a
POST of --objects new objects are measured again: Allied's rates should not fall as it grows.

Medallion (memory backend under its own Flask server) is measured at --objects only, in the
order POST, GET by id, paginated GET: its paginated GET does all its work on the first request
(quadratic in the collection's size), so that step is last and cut by a client timeout when it
runs past --budget seconds; the server is stopped right after. Any GET step of either server
that runs past --budget stops at its next request; the rate is what it did until then, and the
output says so.

Only HTTP operations are timed: request bodies are encoded beforehand; decoding responses
(needed to follow `next`) is part of the timed operation.

Figures are printed and written into benchmarks/RESULTS.md (section "TAXII").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import orjson

from allied.stix.labels import LABEL_EXTENSION_ID
from allied.synthetic import Mix, generate
from report import machine, write_section

SECTION = "## TAXII"
TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
SEED = 11
NODE_NAME = "BENCH"  # also the title of the Allied node's own collection
COMMUNITY = "bench"  # the community collection both servers are POSTed to
GOALS = {"post": 20.0, "pages": 100.0, "by_id": 100.0}  # Allied/medallion


def say(text: str) -> None:
    print(text, flush=True)


# --- objects -------------------------------------------------------------------------------


@dataclass
class Objects:
    """One generated stream, cut in three: POSTed first, bulk-loaded, POSTed at the large size;
    its classification labels aside."""

    first: list[dict[str, Any]]
    bulk: list[dict[str, Any]]
    later: list[dict[str, Any]]
    #: the producer's classification labels: Allied refuses them unsigned from a partner
    #: (labels decide who receives what), so its operator imports them while setting up
    labels: list[dict[str, Any]]


def make_objects(count: int, large: int, seed: int) -> Objects:
    total = large + count
    # Mix.for_indicators(n) makes about 1.68 n objects (relationships, sightings, reports...)
    stream = generate(seed, Mix.for_indicators(math.ceil(total / 1.6) + 100))
    labels: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for obj in stream:
        if LABEL_EXTENSION_ID in obj.get("extensions", {}):
            labels.append(obj)
        else:
            objects.append(obj)
        if len(objects) == total:
            break
    if len(objects) < total:
        raise SystemExit(f"generated only {len(objects)} objects, {total} needed")
    return Objects(objects[:count], objects[count:large], objects[large:], labels)


def envelopes(objects: Sequence[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    """Request bodies, encoded before any timing: (objects in it, body)."""
    return [
        (len(objects[i : i + size]), orjson.dumps({"objects": objects[i : i + size]}))
        for i in range(0, len(objects), size)
    ]


def write_jsonl(path: Path, objects: Sequence[dict[str, Any]]) -> None:
    with open(path, "wb") as out:
        for obj in objects:
            out.write(orjson.dumps(obj) + b"\n")


# --- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """A TAXII server under test: where it is, how to authenticate, its collections."""

    name: str
    base: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    api_root: str = ""
    #: "community" (the "bench" collection, POSTed to) and, for Allied, "own": collection URLs
    collections: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def script(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name}: command not found")
    return found


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(client: httpx.Client, server: Server, timeout: float = 60.0) -> None:
    """Poll the discovery resource until the server answers it."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode}; "
                f"log {server.log}:\n{tail(server.log)}"
            )
        with contextlib.suppress(httpx.TransportError):
            response = client.get(f"{server.base}/taxii2/", headers=server.headers)
            if response.status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not ready after {timeout:.0f} s:\n{tail(server.log)}"
            )
        time.sleep(0.2)


def get_json(client: httpx.Client, server: Server, url: str) -> dict[str, Any]:
    response = client.get(url, headers=server.headers)
    if response.status_code != 200:
        raise RuntimeError(
            f"{server.name}: GET {url} -> {response.status_code} {response.text[:500]}"
        )
    return orjson.loads(response.content) if response.content else {}


def find_collections(client: httpx.Client, server: Server, own_title: str | None) -> None:
    """From discovery, each API root's collections: the one titled "bench" (which must be
    writable), and the one titled ``own_title`` if given."""
    discovery = get_json(client, server, f"{server.base}/taxii2/")
    roots = list(discovery.get("api_roots", []))
    for root in roots:
        root_url = urljoin(f"{server.base}/taxii2/", root)
        root_url = root_url if root_url.endswith("/") else root_url + "/"
        listed = get_json(client, server, urljoin(root_url, "collections/"))
        for collection in listed.get("collections", []):
            url = urljoin(root_url, f"collections/{collection['id']}/")
            if collection.get("title") == COMMUNITY:
                if not (collection.get("can_read") and collection.get("can_write")):
                    raise RuntimeError(f"{server.name}: collection {COMMUNITY} is not read-write")
                server.api_root = root_url
                server.collections["community"] = url
            elif own_title is not None and collection.get("title") == own_title:
                server.collections["own"] = url
        if "community" in server.collections:
            break
    if "community" not in server.collections:
        raise RuntimeError(f"{server.name}: no collection titled {COMMUNITY!r} under {roots}")
    if own_title is not None and "own" not in server.collections:
        raise RuntimeError(f"{server.name}: no collection titled {own_title!r}")


def medallion_config(directory: Path, base: str, page_size: int) -> tuple[Path, dict[str, str]]:
    """Medallion's JSON configuration, and the data file its memory backend starts from: the
    discovery resource, one API root, one empty read-write collection."""
    password = secrets.token_urlsafe(16)
    root = f"{base}/{COMMUNITY}/"
    data = {
        "/discovery": {
            "title": "medallion (benchmark)",
            "description": "OASIS TAXII 2.1 reference server, memory backend",
            "contact": "",
            "default": root,
            "api_roots": [root],
        },
        COMMUNITY: {  # the API root's path segment
            "information": {
                "title": "benchmark API root",
                "description": "",
                "versions": [TAXII],
                "max_content_length": 100 * 2**20,
            },
            "status": [],
            "collections": [
                {
                    "id": str(uuid.uuid4()),
                    "title": COMMUNITY,
                    "description": "",
                    "can_read": True,
                    "can_write": True,
                    "media_types": [STIX],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
    data_file = directory / "medallion-data.json"
    data_file.write_text(json.dumps(data, indent=1))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_file),
            # a `next` expires this long after the first page was asked for (default 30 s)
            "session_timeout": 24 * 3600,
        },
        "users": {"bench": password},
        "taxii": {"max_page_size": page_size},
    }
    config_file = directory / "medallion.json"
    config_file.write_text(json.dumps(config, indent=1))
    basic = base64.b64encode(f"bench:{password}".encode()).decode()
    return config_file, {"Authorization": f"Basic {basic}", "Accept": TAXII}


@contextlib.contextmanager
def medallion(client: httpx.Client, directory: Path, page_size: int) -> Iterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config, headers = medallion_config(directory, base, page_size)
    command = [sys.executable, "-m", "medallion.scripts.run"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARN", str(config)]
    log = directory / "medallion.log"
    server = Server("medallion", base, headers, start(command, log), log)
    try:
        wait_ready(client, server)
        find_collections(client, server, None)
        yield server
    finally:
        stop(server.process)


def allied_available() -> bool:
    try:
        done = subprocess.run(
            [script("allied"), "serve", "--help"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired, SystemExit):
        return False
    return done.returncode == 0


def allied(*args: str) -> str:
    done = subprocess.run([script("allied"), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"allied {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def allied_node(
    directory: Path, labels: Sequence[dict[str, Any]], *init_options: str
) -> tuple[Path, str]:
    """A fresh node holding the producer's labels, and a partner who may write to the
    community collection and may receive every label the generated objects carry (USA, NATO
    SECRET with CYBER-OPS, the NATO and nato-ccdcoe communities). ``init_options`` go to
    ``allied init`` (``--database URL``)."""
    node = directory / "node"
    init = ["init", str(node), "--name", NODE_NAME, "--nation", "USA", "--community", COMMUNITY]
    allied(*init, *init_options)
    write_jsonl(directory / "labels.jsonl", labels)
    allied("--node", str(node), "import", str(directory / "labels.jsonl"))
    token_file = directory / "reader.token"
    allied(
        "--node", str(node), "partner", "add", "reader", "--nation", "USA",
        "--clearance", "NATO=SECRET", "--category", "CYBER-OPS",
        "--community", COMMUNITY, "--community", "NATO", "--community", "nato-ccdcoe",
        "--token-file", str(token_file),
    )  # fmt: skip
    return node, token_file.read_text().strip()


@contextlib.contextmanager
def allied_server(
    client: httpx.Client, directory: Path, node: Path, token: str, workers: int
) -> Iterator[Server]:
    port = free_port()
    command = [script("allied"), "--node", str(node), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    log = directory / f"allied-{port}.log"
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII}
    server = Server("Allied", f"http://127.0.0.1:{port}", headers, start(command, log), log)
    try:
        wait_ready(client, server)
        find_collections(client, server, NODE_NAME)
        yield server
    finally:
        stop(server.process)


# --- measurements --------------------------------------------------------------------------


@dataclass
class Posted:
    objects: int
    seconds: float
    window: int  # objects in each of the first and last windows
    first_rate: float
    last_rate: float
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.objects / self.seconds


@dataclass
class Paged:
    objects: int
    pages: int
    seconds: float
    first_page: float  # seconds until the first page arrived (or the timeout)
    complete: bool
    timed_out: bool  # a request ran past the budget and was given up
    ids: list[str]
    largest_page: int
    expected: int  # objects the collection holds, for a bound when no page came

    @property
    def rate(self) -> float:
        if self.timed_out and self.pages == 0:
            return self.expected / self.seconds  # an upper bound: it needs longer than that
        return self.objects / self.seconds


@dataclass
class Fetched:
    planned: int
    requests: int
    found: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def complete(self) -> bool:
        return self.requests == self.planned


@dataclass
class Reads:
    pages: Paged | None = None
    by_id: Fetched | None = None


@dataclass
class Figures:
    """One server at one size: the POST, and the GETs on each collection."""

    stored: int
    post: Posted | None = None
    reads: dict[str, Reads] = field(default_factory=dict)


def post_all(
    client: httpx.Client, server: Server, bodies: list[tuple[int, bytes]], window: int
) -> Posted:
    """POST every envelope to the community collection; a status left pending is polled to
    completion within the timing."""
    url = urljoin(server.collections["community"], "objects/")
    headers = server.headers | {"Content-Type": TAXII}
    statuses: list[dict[str, Any]] = []
    times: list[float] = []
    started = time.perf_counter()
    for _, body in bodies:
        response = client.post(url, content=body, headers=headers)
        if response.status_code != 202:
            raise RuntimeError(
                f"{server.name}: POST -> {response.status_code} {response.text[:500]}"
            )
        statuses.append(orjson.loads(response.content))
        times.append(time.perf_counter())
    for n, status in enumerate(statuses):
        while status.get("status") != "complete":
            time.sleep(0.05)
            status = get_json(client, server, urljoin(server.api_root, f"status/{status['id']}/"))
            statuses[n] = status
    seconds = time.perf_counter() - started
    first, last = window_rates(bodies, times, started, window)
    result = Posted(sum(n for n, _ in bodies), seconds, window, first, last)
    for status in statuses:
        result.succeeded += int(status.get("success_count", 0))
        result.failed += int(status.get("failure_count", 0))
        result.pending += int(status.get("pending_count", 0))
        for failure in status.get("failures", []):
            if len(result.messages) < 5:
                result.messages.append(f"{failure.get('id')}: {failure.get('message', '')}")
    return result


def window_rates(
    bodies: list[tuple[int, bytes]], times: list[float], started: float, window: int
) -> tuple[float, float]:
    """Objects/s over the envelopes holding the first, and the last, `window` objects."""
    ends = [started, *times]
    sizes = [n for n, _ in bodies]
    k = count = 0
    while k < len(sizes) and count < window:
        count += sizes[k]
        k += 1
    first = count / (ends[k] - ends[0])
    k, count = len(sizes), 0
    while k > 0 and count < window:
        k -= 1
        count += sizes[k]
    return first, count / (ends[-1] - ends[k])


def get_pages(
    client: httpx.Client, server: Server, collection: str, args: argparse.Namespace, expected: int
) -> Paged:
    """Every object of the collection, following `next` while the envelope says `more`; the
    same `limit` on every request."""
    url = urljoin(collection, "objects/")
    timeout = httpx.Timeout(args.budget, connect=10.0)
    ids: list[str] = []
    pages = largest = 0
    params: dict[str, str | int] = {"limit": args.page_size}
    complete = timed_out = False
    first_page = 0.0
    started = time.perf_counter()
    while True:
        try:
            response = client.get(url, params=params, headers=server.headers, timeout=timeout)
        except httpx.TimeoutException:
            timed_out = True
            break
        finally:
            if pages == 0:
                first_page = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(
                f"{server.name}: GET objects/ {params} -> {response.status_code} "
                f"{response.text[:500]}"
            )
        envelope = orjson.loads(response.content) if response.content else {}
        objects = envelope.get("objects", [])
        ids.extend(obj["id"] for obj in objects)
        largest = max(largest, len(objects))
        pages += 1
        if not envelope.get("more"):
            complete = True
            break
        if "next" not in envelope:
            raise RuntimeError(f"{server.name}: an envelope with more but no next")
        if time.perf_counter() - started > args.budget:
            break
        params = {"limit": args.page_size, "next": envelope["next"]}
    seconds = time.perf_counter() - started
    return Paged(len(ids), pages, seconds, first_page, complete, timed_out, ids, largest, expected)


def get_by_id(
    client: httpx.Client, server: Server, collection: str, ids: list[str], budget: float
) -> Fetched:
    timeout = httpx.Timeout(budget, connect=10.0)
    found = requests = 0
    started = time.perf_counter()
    for object_id in ids:
        url = urljoin(collection, f"objects/{quote(object_id)}/")
        try:
            response = client.get(url, headers=server.headers, timeout=timeout)
        except httpx.TimeoutException:
            break
        if response.status_code == 200:
            envelope = orjson.loads(response.content) if response.content else {}
            found += bool(envelope.get("objects"))
        elif response.status_code != 404:
            raise RuntimeError(
                f"{server.name}: GET {object_id} -> {response.status_code} {response.text[:500]}"
            )
        requests += 1
        if time.perf_counter() - started > budget:
            break
    return Fetched(len(ids), requests, found, time.perf_counter() - started)


def report_post(label: str, posted: Posted) -> None:
    say(
        f"  {posted.rate:,.0f} objects/s ({posted.seconds:.1f} s); first {posted.window:,} "
        f"{posted.first_rate:,.0f}/s, last {posted.window:,} {posted.last_rate:,.0f}/s; "
        f"status: {posted.succeeded:,} succeeded, {posted.failed:,} failed, "
        f"{posted.pending:,} pending"
    )
    for message in posted.messages:
        say(f"  {label}: failure: {message}")


def measure_post(
    client: httpx.Client, server: Server, stored: int, objects: list[dict[str, Any]], args: Any
) -> Posted:
    bodies = envelopes(objects, args.envelope)
    label = f"{server.name} at {stored:,} objects"
    say(f"{label}: POST {len(objects):,} objects in envelopes of {args.envelope} ...")
    posted = post_all(client, server, bodies, args.window)
    report_post(label, posted)
    return posted


def measure_pages(
    client: httpx.Client, server: Server, key: str, stored: int, args: argparse.Namespace
) -> Paged:
    say(f"{server.name} at {stored:,} objects: GET {key} collection, pages of {args.page_size} ...")
    paged = get_pages(client, server, server.collections[key], args, stored)
    if paged.timed_out and paged.pages == 0:
        say(f"  no page within {args.budget:.0f} s: under {paged.rate:,.1f} objects/s")
    else:
        say(
            f"  {paged.rate:,.0f} objects/s: {paged.objects:,} objects in {paged.pages} pages, "
            f"{paged.seconds:.1f} s (first page {paged.first_page:.2f} s, largest page "
            f"{paged.largest_page})" + ("" if paged.complete else " STOPPED at the time budget")
        )
    return paged


def measure_by_id(
    client: httpx.Client,
    server: Server,
    key: str,
    stored: int,
    ids: list[str],
    args: argparse.Namespace,
) -> Fetched:
    say(f"{server.name} at {stored:,} objects: GET {len(ids):,} objects by id, {key} collection")
    fetched = get_by_id(client, server, server.collections[key], ids, args.budget)
    say(
        f"  {fetched.rate:,.1f} requests/s: {fetched.requests:,} requests, {fetched.found:,} "
        f"found, {fetched.seconds:.1f} s"
        + ("" if fetched.complete else f" STOPPED at the time budget (of {fetched.planned:,})")
    )
    return fetched


def sample(ids: Sequence[str], count: int) -> list[str]:
    unique = list(dict.fromkeys(ids))
    return random.Random(SEED).sample(unique, min(count, len(unique)))


def allied_reads(
    client: httpx.Client, server: Server, stored: int, args: argparse.Namespace
) -> dict[str, Reads]:
    """Paginated GET, then GET by id of a sample of what it returned, on each collection."""
    reads = {}
    for key in ("community", "own"):
        paged = measure_pages(client, server, key, stored, args)
        ids = sample(paged.ids, args.by_id)
        reads[key] = Reads(paged, measure_by_id(client, server, key, stored, ids, args))
    return reads


# --- the run -------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    objects: Objects
    allied_small: Figures | None = None
    allied_large: Figures | None = None
    medallion: Figures | None = None
    allied_note: str = ""
    import_rate: float = 0.0
    import_how: str = ""
    notes: list[str] = field(default_factory=list)


def run_allied(run: Run, client: httpx.Client, directory: Path) -> None:
    args = run.args
    directory.mkdir()
    node, token = allied_node(directory, run.objects.labels)
    bulk = directory / "bulk.jsonl"
    write_jsonl(bulk, run.objects.bulk)
    small = len(run.objects.first)
    large = small + len(run.objects.bulk)
    loaded = False
    with allied_server(client, directory, node, token, args.workers) as server:
        say(f"Allied serving {server.collections}")
        run.allied_small = Figures(small)
        run.allied_small.post = measure_post(client, server, small, run.objects.first, args)
        run.allied_small.reads = allied_reads(client, server, small, args)
        try:
            bulk_load(run, node, bulk, "server running")
            loaded = True
        except RuntimeError as error:
            run.notes.append(
                "`allied import` failed while the server ran, so the server was stopped for "
                f"the import and started again: {str(error).strip()[:300]}"
            )
            say(run.notes[-1])
        if loaded:
            run.allied_large = measure_large(run, client, server, large)
    if not loaded:
        bulk_load(run, node, bulk, "server stopped")
        with allied_server(client, directory, node, token, args.workers) as server:
            run.allied_large = measure_large(run, client, server, large)


def bulk_load(run: Run, node: Path, bulk: Path, how: str) -> None:
    say(f"allied import of {len(run.objects.bulk):,} objects ({how}) ...")
    started = time.perf_counter()
    output = allied("--node", str(node), "import", str(bulk))
    run.import_rate = len(run.objects.bulk) / (time.perf_counter() - started)
    run.import_how = how
    say(f"  {output.strip()} ({run.import_rate:,.0f} objects/s, not an HTTP figure)")


def measure_large(run: Run, client: httpx.Client, server: Server, stored: int) -> Figures:
    figures = Figures(stored)
    figures.reads = allied_reads(client, server, stored, run.args)
    figures.post = measure_post(client, server, stored, run.objects.later, run.args)
    return figures


def run_medallion(run: Run, client: httpx.Client, directory: Path) -> None:
    args = run.args
    directory.mkdir()
    stored = len(run.objects.first)
    if run.allied_small is not None:
        # the same ids as Allied's: a sample of what Allied gave its partner from the collection
        pages = run.allied_small.reads["community"].pages
        posted = {obj["id"] for obj in run.objects.first}
        ids = sample([i for i in (pages.ids if pages else []) if i in posted], args.by_id)
    else:
        ids = sample([obj["id"] for obj in run.objects.first], args.by_id)
    with medallion(client, directory, args.page_size) as server:
        say(f"medallion serving {server.collections}")
        figures = run.medallion = Figures(stored)
        figures.post = measure_post(client, server, stored, run.objects.first, args)
        reads = figures.reads["community"] = Reads()
        reads.by_id = measure_by_id(client, server, "community", stored, ids, args)
        reads.pages = measure_pages(client, server, "community", stored, args)


# --- the report ----------------------------------------------------------------------------


@dataclass
class Cell:
    value: float
    unit: str
    #: "" measured; "bounded": a part of the step, stopped at the budget; "upper": the step
    #: needs longer than the budget, the true rate is below the value
    kind: str = ""

    def text(self) -> str:
        digits = 1 if self.value < 100 else 0
        number = f"{self.value:,.{digits}f} {self.unit}"
        if self.kind == "upper":
            return f"< {number} (no page in the budget)"
        return number + (" (bounded)" if self.kind == "bounded" else "")


def post_cell(posted: Posted | None, what: str = "rate") -> Cell | None:
    if posted is None:
        return None
    value = {"rate": posted.rate, "first": posted.first_rate, "last": posted.last_rate}[what]
    return Cell(value, "objects/s")


def pages_cell(figures: Figures | None, key: str) -> Cell | None:
    reads = figures.reads.get(key) if figures is not None else None
    paged = reads.pages if reads is not None else None
    if paged is None:
        return None
    kind = ""
    if paged.timed_out and paged.pages == 0:
        kind = "upper"
    elif not paged.complete:
        kind = "bounded"
    return Cell(paged.rate, "objects/s", kind)


def by_id_cell(figures: Figures | None, key: str) -> Cell | None:
    reads = figures.reads.get(key) if figures is not None else None
    fetched = reads.by_id if reads is not None else None
    if fetched is None:
        return None
    return Cell(fetched.rate, "requests/s", "" if fetched.complete else "bounded")


def ratio(numerator: Cell | None, denominator: Cell | None) -> tuple[str, float | None, bool]:
    """The ratio as text, its value, and whether it is only a lower bound."""
    if numerator is None or denominator is None or denominator.value == 0:
        return "-", None, False
    value = numerator.value / denominator.value
    lower = denominator.kind == "upper"
    return ("> " if lower else "") + f"{value:,.1f}x", value, lower


def table(run: Run) -> tuple[list[str], list[str]]:
    args = run.args
    small, large, med = run.allied_small, run.allied_large, run.medallion
    n, big = len(run.objects.first), len(run.objects.first) + len(run.objects.bulk)
    post = [f.post if f else None for f in (med, small, large)]
    pages = [pages_cell(f, "community") for f in (med, small, large)]
    by_id = [by_id_cell(f, "community") for f in (med, small, large)]
    own_pages = [None, pages_cell(small, "own"), pages_cell(large, "own")]
    own_by_id = [None, by_id_cell(small, "own"), by_id_cell(large, "own")]
    indent = "&nbsp;&nbsp;"
    rows: list[tuple[str, str, list[Cell | None], float | None]] = [
        (f'POST {n:,} objects to "{COMMUNITY}", envelopes of {args.envelope}', "POST",
         [post_cell(p) for p in post], GOALS["post"]),
        (f"{indent}its first {args.window:,} objects", "", [post_cell(p, "first") for p in post],
         None),
        (f"{indent}its last {args.window:,} objects", "", [post_cell(p, "last") for p in post],
         None),
        (f'GET "{COMMUNITY}" objects/, pages of {args.page_size} (`limit`, `next`)',
         "paginated GET", pages, GOALS["pages"]),
        (f'GET "{COMMUNITY}" objects/{{id}}/, one at a time', "GET by id", by_id, GOALS["by_id"]),
        (f"GET the node's own collection, pages of {args.page_size}", "", own_pages, None),
        ("GET the node's own collection objects/{id}/", "", own_by_id, None),
    ]  # fmt: skip
    lines = [
        f"| operation | medallion, {n:,} stored | Allied, {n:,} stored | Allied/medallion "
        f"| goal | Allied, {big:,} stored | Allied {big // 1000:,}k/{n // 1000:,}k |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    status = []
    for name, short, (m, a, a_large), goal in rows:
        text, value, lower = ratio(a, m)
        verdict = ""
        if goal is not None:
            verdict = f"{goal:.0f}x"
            if value is not None:
                if value >= goal:
                    verdict += ": met"
                else:
                    verdict += ": undetermined" if lower else ": NOT met"
                status.append(f"{short} goal ({goal:.0f}x) {verdict.split(': ')[1]}")
        cells = [c.text() if c else "-" for c in (m, a, a_large)]
        lines.append(
            f"| {name} | {cells[0]} | {cells[1]} | {text} | {verdict} | {cells[2]} | "
            f"{ratio(a_large, a)[0]} |"
        )
    return lines, status


def details(run: Run) -> list[str]:
    n = len(run.objects.first)
    big = n + len(run.objects.bulk)
    who = [
        ("medallion", run.medallion),
        (f"Allied at {n:,}", run.allied_small),
        (f"Allied at {big:,}", run.allied_large),
    ]
    pages, by_id, failures = [], [], []
    for name, figures in who:
        if figures is None:
            continue
        for key, reads in figures.reads.items():
            where = f"{name}, {key} collection"
            p = reads.pages
            if p is not None and p.timed_out and p.pages == 0:
                pages.append(f"{where}: no page within {p.seconds:.0f} s")
            elif p is not None:
                pages.append(
                    f"{where}: {p.objects:,} objects in {p.pages} pages (largest "
                    f"{p.largest_page}), {p.seconds:.1f} s, first page {p.first_page:.2f} s"
                    + ("" if p.complete else ", stopped at the time budget")
                )
            g = reads.by_id
            if g is not None:
                by_id.append(
                    f"{where}: {g.requests:,} of {g.planned:,} requests, {g.found:,} found"
                    + ("" if g.complete else " (stopped at the time budget)")
                )
        if figures.post is not None:
            f = figures.post
            failures.append(f"{name}: {f.failed:,} failed, {f.succeeded:,} succeeded")
            failures += [f"{name}: {message}" for message in f.messages]
    return [
        "Paginated GET, objects returned: " + "; ".join(pages) + ".",
        "",
        "GET by id: " + "; ".join(by_id) + ".",
        "",
        "POST, failures in the status resources: " + "; ".join(failures) + ".",
    ]


def report(run: Run, command: str) -> str:
    args = run.args
    n, bulk, later = len(run.objects.first), len(run.objects.bulk), len(run.objects.later)
    lines, status = table(run)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    input_line = (
        f"- input: the first {n:,} objects of one generated stream (seed {SEED}: a producer "
        "identity, intrusion sets, malware, campaigns, indicators, relationships, "
        "sightings, reports under mixed TLP and classification labels), POSTed to both servers; "
        f"the producer's {len(run.objects.labels)} classification labels are imported by "
        "Allied's operator beforehand (Allied takes no unsigned label from a partner)"
    )
    if run.allied_large is not None:
        input_line += (
            f"; for Allied the next {bulk:,} bulk-loaded with `allied import` "
            f"({run.import_rate:,.0f} objects/s, {run.import_how}), then the {later:,} after "
            "them POSTed"
        )
    body = [
        SECTION,
        "",
        f"- date: {today}",
        f"- machine: {machine()}",
        f"- command: `{command.strip()}`",
        input_line,
        f"- servers: medallion {metadata.version('medallion')} (memory backend, its own Flask "
        f"server), Allied `serve --workers {args.workers}`; both on 127.0.0.1; one httpx "
        f"{metadata.version('httpx')} client with keep-alive, one request at a time",
        f"- page size {args.page_size} for both (medallion's `max_page_size` set to it); "
        f"time budget per GET step {args.budget:.0f} s",
        "",
        *lines,
        "",
        *details(run),
    ]
    body += ["", *(f"Note: {note}" for note in run.notes)] if run.notes else []
    body += ["", f"Allied: {run.allied_note}"] if run.allied_note else []
    body += [
        "",
        "Status: " + ("; ".join(status) if status else "nothing to compare") + ".",
        "",
        "Goals: paginated GET and GET by id at least 100x medallion, POST at least 20x; Allied's",
        "rates should not fall as the node grows (last column). The GET-by-id ids are the same",
        "for both servers: a sample of what Allied gave its partner. Allied returns what its",
        "release rules give the partner (the counts above), medallion returns everything. A",
        "community collection holds what partners POST to it, so the bulk load grows the node's",
        f'own collection (everything the node shares) and its store, not "{COMMUNITY}". Medallion',
        "runs POST, GET by id, then the paginated GET, which does all its work (quadratic in the",
        "collection's size) before the first page: when no page comes within the budget, its",
        "rate is given as an upper bound and the ratio as a lower bound (`--budget 900` lets it",
        'finish). "bounded": the step stopped at the budget; its rate is that of the part it did.',
        "Medallion's POST rate falls as its collection fills (each object is compared with every",
        "stored one, and every request deep-copies the collection), hence the first/last rows.",
    ]
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=10_000, help="POSTed to each server")
    parser.add_argument("--large", type=int, default=100_000, help="Allied's second size")
    parser.add_argument("--page-size", type=int, default=1_000, help="TAXII limit, both")
    parser.add_argument("--envelope", type=int, default=100, help="objects per POST")
    parser.add_argument("--by-id", type=int, default=1_000, help="GET-by-id requests")
    parser.add_argument("--window", type=int, default=1_000, help="first/last objects of a POST")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per GET step")
    parser.add_argument("--workers", type=int, default=1, help="allied serve --workers")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--skip-medallion", action="store_true")
    parser.add_argument("--skip-allied", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.objects, args.large = min(args.objects, 1_000), min(args.large, 3_000)
        args.by_id, args.window = min(args.by_id, 100), min(args.window, 200)
        args.budget = min(args.budget, 30.0)
    if args.large <= args.objects:
        parser.error("--large must exceed --objects")
    command = "python benchmarks/taxii.py " + " ".join(sys.argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # servers stop on the way out

    say(f"generating {args.large + args.objects:,} objects (seed {SEED}) ...")
    run = Run(args, make_objects(args.objects, args.large, SEED))
    with (
        tempfile.TemporaryDirectory(prefix="allied-taxii-bench-") as tmp,
        httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client,
    ):
        directory = Path(tmp)
        if args.skip_allied:
            run.allied_note = "skipped (--skip-allied)."
        elif not allied_available():
            run.allied_note = "not measured: `allied serve` is not available in this build."
            say(run.allied_note)
        else:
            run_allied(run, client, directory / "allied")
        if not args.skip_medallion:
            run_medallion(run, client, directory / "medallion")
    body = report(run, command)
    say("")
    say(body)
    if not args.no_write:
        write_section(SECTION, body + "\n")


if __name__ == "__main__":
    main()
