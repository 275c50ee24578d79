"""TAXII 2.1 benchmark: Allied's TAXII server against medallion, the OASIS reference server.

One command, one run, both servers on this machine, the same generated objects, the same HTTP
client (one httpx client, keep-alive):

    .venv/bin/python benchmarks/taxii.py [--objects 10000] [--large 100000] [--page-size 1000]

1. POST the objects in envelopes of 100 (objects/s; also the first and the last 1,000 of them,
   to show how the rate moves as the collection fills).
2. GET all objects of the collection, page by page, with TAXII's `limit` and `next` parameters
   (the envelope's `more` and `next`); objects/s. The same page size for both servers.
3. GET 1,000 objects one by one (`collections/{id}/objects/{object_id}/`); requests/s.

Allied is measured with the collection holding --objects objects, then again after bulk-loading
objects up to --large with `allied import` (paginated GET, GET by id, and a POST of --objects
new objects), to show its throughput does not fall as the collection grows. Medallion (memory
backend, its own Flask server) is measured at --objects only. A GET step that runs past
--budget seconds stops at the next page or request and its rate is computed from what it did,
for either server (the output says so).

Both servers run as subprocesses on 127.0.0.1, on a free port, and are stopped at the end, also
on error. Only the HTTP operations are timed: request bodies are encoded beforehand, response
decoding (needed to follow `next`) is part of the timed operation.

Figures are printed and written into benchmarks/RESULTS.md (section "TAXII").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
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

from allied.synthetic import Mix, generate
from report import machine, write_section

SECTION = "## TAXII"
TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
COLLECTION = "bench"
GOALS = {"post": 20.0, "pages": 100.0, "by_id": 100.0}
SEED = 11


# --- objects -------------------------------------------------------------------------------


@dataclass
class Objects:
    """One generated stream, cut in three: posted first, bulk-loaded, posted at the large size."""

    first: list[dict[str, Any]]
    bulk: list[dict[str, Any]]
    later: list[dict[str, Any]]


def make_objects(count: int, large: int, seed: int) -> Objects:
    total = large + count
    # Mix.for_indicators(n) makes about 1.68 n objects (relationships, sightings, reports...)
    stream = generate(seed, Mix.for_indicators(math.ceil(total / 1.6) + 100))
    objects = list(itertools.islice(stream, total))
    if len(objects) < total:
        raise SystemExit(f"generated only {len(objects)} objects, {total} needed")
    return Objects(objects[:count], objects[count:large], objects[large:])


def envelopes(objects: Sequence[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    """Request bodies, encoded before any timing: (objects in it, body)."""
    return [
        (len(objects[i : i + size]), orjson.dumps({"objects": objects[i : i + size]}))
        for i in range(0, len(objects), size)
    ]


# --- servers -------------------------------------------------------------------------------


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


@dataclass
class Server:
    """A TAXII server under test: where it is, how to authenticate, its bench collection."""

    name: str
    base: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    api_root: str = ""
    collection: str = ""  # the collection's URL, ending in "/"

    def url(self, tail: str) -> str:
        return urljoin(self.collection, tail)


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


def wait_ready(client: httpx.Client, server: Server, timeout: float = 60.0) -> None:
    """Poll the discovery resource until the server answers it."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode}; "
                f"log {server.log}:\n{tail(server.log)}"
            )
        try:
            response = client.get(f"{server.base}/taxii2/", headers=server.headers)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not ready after {timeout:.0f} s:\n{tail(server.log)}"
            )
        time.sleep(0.2)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def find_collection(client: httpx.Client, server: Server) -> None:
    """Discovery, then each API root's collections: the one titled "bench"."""
    discovery = get_json(client, server, f"{server.base}/taxii2/")
    roots = list(discovery.get("api_roots", []))
    for root in roots:
        root_url = urljoin(f"{server.base}/taxii2/", root)
        root_url = root_url if root_url.endswith("/") else root_url + "/"
        collections = get_json(client, server, urljoin(root_url, "collections/"))
        for collection in collections.get("collections", []):
            if collection.get("title") == COLLECTION:
                if not collection.get("can_write") or not collection.get("can_read"):
                    raise RuntimeError(f"{server.name}: collection {COLLECTION} not read-write")
                server.api_root = root_url
                server.collection = urljoin(root_url, f"collections/{collection['id']}/")
                return
    raise RuntimeError(f"{server.name}: no collection titled {COLLECTION!r} under {roots}")


def get_json(
    client: httpx.Client, server: Server, url: str, params: dict[str, str | int] | None = None
) -> dict[str, Any]:
    response = client.get(url, params=params, headers=server.headers)
    if response.status_code != 200:
        raise RuntimeError(
            f"{server.name}: GET {url} {params or ''} -> {response.status_code} "
            f"{response.text[:500]}"
        )
    return orjson.loads(response.content) if response.content else {}


def medallion_config(directory: Path, base: str, page_size: int) -> tuple[Path, dict[str, str]]:
    """Medallion's JSON configuration and its memory backend's data file (see module notes)."""
    password = secrets.token_urlsafe(16)
    data = {
        "/discovery": {
            "title": "medallion (benchmark)",
            "description": "OASIS TAXII 2.1 reference server, memory backend",
            "contact": "",
            "default": f"{base}/{COLLECTION}/",
            "api_roots": [f"{base}/{COLLECTION}/"],
        },
        COLLECTION: {
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
                    "title": COLLECTION,
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
            # `next` sessions expire this many seconds after the first page (default 30)
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
        find_collection(client, server)
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


def allied_node(directory: Path) -> tuple[Path, str]:
    """A fresh node and a partner who may write to the community collection and read it all."""
    node = directory / "node"
    allied("init", str(node), "--name", "BENCH", "--nation", "USA", "--community", COLLECTION)
    token_file = directory / "reader.token"
    allied(
        "--node", str(node), "partner", "add", "reader", "--nation", "USA",
        "--clearance", "NATO=SECRET", "--category", "CYBER-OPS",
        "--community", COLLECTION, "--community", "NATO", "--community", "nato-ccdcoe",
        "--token-file", str(token_file),
    )  # fmt: skip
    return node, token_file.read_text().strip()


@contextlib.contextmanager
def allied_server(
    client: httpx.Client, directory: Path, node: Path, token: str, workers: int | None
) -> Iterator[Server]:
    port = free_port()
    command = [script("allied"), "--node", str(node), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    log = directory / "allied.log"
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII}
    server = Server("Allied", f"http://127.0.0.1:{port}", headers, start(command, log), log)
    try:
        wait_ready(client, server)
        find_collection(client, server)
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
    first_page: float  # seconds for the first page alone
    complete: bool
    ids: list[str]
    largest_page: int

    @property
    def rate(self) -> float:
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


def say(text: str) -> None:
    print(text, flush=True)


def post_all(
    client: httpx.Client, server: Server, bodies: list[tuple[int, bytes]], window: int
) -> Posted:
    """POST every envelope; a status left pending is polled to completion within the timing."""
    headers = server.headers | {"Content-Type": TAXII}
    statuses: list[dict[str, Any]] = []
    times: list[float] = []
    started = time.perf_counter()
    for _, body in bodies:
        response = client.post(server.url("objects/"), content=body, headers=headers)
        if response.status_code != 202:
            raise RuntimeError(
                f"{server.name}: POST -> {response.status_code} {response.text[:500]}"
            )
        statuses.append(orjson.loads(response.content))
        times.append(time.perf_counter())
    for n, status in enumerate(statuses):
        while status.get("status") != "complete":
            time.sleep(0.05)
            url = urljoin(server.api_root, f"status/{status['id']}/")
            status = get_json(client, server, url)
            statuses[n] = status
    seconds = time.perf_counter() - started
    count = sum(n for n, _ in bodies)
    first, last = window_rates(bodies, times, started, window)
    result = Posted(count, seconds, window, first, last)
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
    k = 0
    count = 0
    while k < len(sizes) and count < window:
        count += sizes[k]
        k += 1
    first = count / (ends[k] - ends[0])
    k = len(sizes)
    count = 0
    while k > 0 and count < window:
        k -= 1
        count += sizes[k]
    last = count / (ends[-1] - ends[k])
    return first, last


def get_pages(client: httpx.Client, server: Server, page_size: int, budget: float) -> Paged:
    """Every object of the collection, following `next` while the envelope says `more`."""
    headers = server.headers
    url = server.url("objects/")
    ids: list[str] = []
    pages = 0
    largest = 0
    params: dict[str, str | int] = {"limit": page_size}
    started = time.perf_counter()
    first_page = 0.0
    complete = False
    while True:
        response = client.get(url, params=params, headers=headers)
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
        now = time.perf_counter()
        if pages == 1:
            first_page = now - started
        if not envelope.get("more"):
            complete = True
            break
        if "next" not in envelope:
            raise RuntimeError(f"{server.name}: envelope has more but no next")
        if now - started > budget:
            break
        params = {"limit": page_size, "next": envelope["next"]}
    seconds = time.perf_counter() - started
    return Paged(len(ids), pages, seconds, first_page, complete, ids, largest)


def get_by_id(client: httpx.Client, server: Server, ids: list[str], budget: float) -> Fetched:
    headers = server.headers
    found = 0
    requests = 0
    started = time.perf_counter()
    for object_id in ids:
        response = client.get(server.url(f"objects/{quote(object_id)}/"), headers=headers)
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


@dataclass
class Figures:
    """One server at one collection size."""

    stored: int
    post: Posted | None = None
    pages: Paged | None = None
    by_id: Fetched | None = None


def measure(
    client: httpx.Client,
    server: Server,
    stored: int,
    post: list[tuple[int, bytes]] | None,
    args: argparse.Namespace,
    sample: list[str] | None,
) -> Figures:
    """POST (if given), then the paginated GET, then GET by id of `sample` (or of a sample of
    what the paginated GET returned)."""
    figures = Figures(stored)
    label = f"{server.name} at {stored:,} objects"
    if post is not None:
        count = sum(n for n, _ in post)
        say(f"{label}: POST {count:,} objects in envelopes of {args.envelope} ...")
        figures.post = posted = post_all(client, server, post, args.window)
        say(
            f"  {posted.rate:,.0f} objects/s ({posted.seconds:.1f} s); first {posted.window:,} "
            f"{posted.first_rate:,.0f}/s, last {posted.window:,} {posted.last_rate:,.0f}/s; "
            f"status: {posted.succeeded:,} succeeded, {posted.failed:,} failed, "
            f"{posted.pending:,} pending"
        )
        for message in posted.messages:
            say(f"  failure: {message}")
    say(f"{label}: GET objects/, pages of {args.page_size} (limit/next) ...")
    figures.pages = paged = get_pages(client, server, args.page_size, args.budget)
    say(
        f"  {paged.rate:,.0f} objects/s: {paged.objects:,} objects in {paged.pages} pages, "
        f"{paged.seconds:.1f} s (first page {paged.first_page:.2f} s, largest page "
        f"{paged.largest_page})" + ("" if paged.complete else " STOPPED at the time budget")
    )
    if sample is None:
        sample = random.Random(SEED).sample(paged.ids, min(args.by_id, len(paged.ids)))
    say(f"{label}: GET {len(sample):,} objects by id ...")
    figures.by_id = fetched = get_by_id(client, server, sample, args.budget)
    say(
        f"  {fetched.rate:,.1f} requests/s: {fetched.requests:,} requests, {fetched.found:,} "
        f"found, {fetched.seconds:.1f} s"
        + ("" if fetched.complete else f" STOPPED at the time budget (of {fetched.planned:,})")
    )
    return figures


# --- the run -------------------------------------------------------------------------------


def write_jsonl(path: Path, objects: list[dict[str, Any]]) -> None:
    with open(path, "wb") as out:
        for obj in objects:
            out.write(orjson.dumps(obj) + b"\n")


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
    node, token = allied_node(directory)
    bulk = directory / "bulk.jsonl"
    write_jsonl(bulk, run.objects.bulk)
    stored = len(run.objects.first) + len(run.objects.bulk)
    loaded = False
    with allied_server(client, directory, node, token, args.workers) as server:
        say(f"Allied serving {server.collection}")
        first = envelopes(run.objects.first, args.envelope)
        run.allied_small = measure(client, server, len(run.objects.first), first, args, None)
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
            run.allied_large = measure_large(run, client, server, stored)
    if not loaded:
        bulk_load(run, node, bulk, "server stopped")
        with allied_server(client, directory, node, token, args.workers) as server:
            run.allied_large = measure_large(run, client, server, stored)


def bulk_load(run: Run, node: Path, bulk: Path, how: str) -> None:
    say(f"allied import of {len(run.objects.bulk):,} objects ({how}) ...")
    started = time.perf_counter()
    output = allied("--node", str(node), "import", str(bulk))
    run.import_rate = len(run.objects.bulk) / (time.perf_counter() - started)
    run.import_how = how
    say(f"  {output.strip()} ({run.import_rate:,.0f} objects/s, not an HTTP figure)")


def measure_large(run: Run, client: httpx.Client, server: Server, stored: int) -> Figures:
    figures = measure(client, server, stored, None, run.args, None)
    later = envelopes(run.objects.later, run.args.envelope)
    figures.post = measure_post_only(client, server, stored, later, run.args)
    return figures


def measure_post_only(
    client: httpx.Client,
    server: Server,
    stored: int,
    bodies: list[tuple[int, bytes]],
    args: argparse.Namespace,
) -> Posted:
    count = sum(n for n, _ in bodies)
    say(f"{server.name} at {stored:,} objects: POST {count:,} new objects ...")
    posted = post_all(client, server, bodies, args.window)
    say(
        f"  {posted.rate:,.0f} objects/s ({posted.seconds:.1f} s); first {posted.window:,} "
        f"{posted.first_rate:,.0f}/s, last {posted.window:,} {posted.last_rate:,.0f}/s; "
        f"status: {posted.succeeded:,} succeeded, {posted.failed:,} failed"
    )
    for message in posted.messages:
        say(f"  failure: {message}")
    return posted


def run_medallion(run: Run, client: httpx.Client, directory: Path) -> None:
    args = run.args
    directory.mkdir()
    first = envelopes(run.objects.first, args.envelope)
    sample: list[str] | None = None
    if run.allied_small is not None and run.allied_small.pages is not None:
        # the same ids as Allied: a sample of what Allied released to its partner
        posted = {obj["id"] for obj in run.objects.first}
        released = [i for i in run.allied_small.pages.ids if i in posted]
        sample = random.Random(SEED).sample(released, min(args.by_id, len(released)))
    with medallion(client, directory, args.page_size) as server:
        say(f"medallion serving {server.collection}")
        run.medallion = measure(client, server, len(run.objects.first), first, args, sample)


def rate_cell(value: float | None, unit: str, bounded: bool = False) -> str:
    if value is None:
        return "-"
    digits = 1 if value < 100 else 0
    return f"{value:,.{digits}f} {unit}" + (" (bounded)" if bounded else "")


def ratio_cell(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:,.1f}x"


def report(run: Run, command: str) -> str:
    args = run.args
    small, large, med = run.allied_small, run.allied_large, run.medallion
    n = len(run.objects.first)
    big = n + len(run.objects.bulk)
    rows: list[tuple[str, float | None, bool, float | None, float | None, str, str]] = []
    # (operation, medallion, medallion bounded, allied small, allied large, unit, goal key)

    def posted(f: Figures | None) -> Posted | None:
        return f.post if f is not None else None

    def paged(f: Figures | None) -> Paged | None:
        return f.pages if f is not None else None

    def fetched(f: Figures | None) -> Fetched | None:
        return f.by_id if f is not None else None

    mp, ap, lp = posted(med), posted(small), posted(large)
    rows.append(
        (
            f"POST {n:,} objects, envelopes of {args.envelope}",
            mp.rate if mp else None,
            False,
            ap.rate if ap else None,
            lp.rate if lp else None,
            "objects/s",
            "post",
        )
    )
    rows.append(
        (
            f"  of which the first {args.window:,}",
            mp.first_rate if mp else None,
            False,
            ap.first_rate if ap else None,
            lp.first_rate if lp else None,
            "objects/s",
            "",
        )
    )
    rows.append(
        (
            f"  of which the last {args.window:,}",
            mp.last_rate if mp else None,
            False,
            ap.last_rate if ap else None,
            lp.last_rate if lp else None,
            "objects/s",
            "",
        )
    )
    mg, ag, lg = paged(med), paged(small), paged(large)
    rows.append(
        (
            f"GET objects/, pages of {args.page_size} (`limit`/`next`)",
            mg.rate if mg else None,
            bool(mg and not mg.complete),
            ag.rate if ag else None,
            lg.rate if lg else None,
            "objects/s",
            "pages",
        )
    )
    mi, ai, li = fetched(med), fetched(small), fetched(large)
    rows.append(
        (
            "GET objects/{id}/, one by one",
            mi.rate if mi else None,
            bool(mi and not mi.complete),
            ai.rate if ai else None,
            li.rate if li else None,
            "requests/s",
            "by_id",
        )
    )
    lines = [
        f"| operation | medallion, {n:,} stored | Allied, {n:,} stored | Allied/medallion "
        f"| goal | Allied, {big:,} stored | Allied {big:,}/{n:,} |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    status: list[str] = []
    for name, m, bounded, a, a_large, unit, goal in rows:
        target = GOALS.get(goal)
        verdict = ""
        if target is not None:
            if m is not None and a is not None:
                met = a / m >= target
                verdict = f"{target:.0f}x: {'met' if met else 'NOT met'}"
                status.append(f"{name.split(',')[0]} {'met' if met else 'NOT met'}")
            else:
                verdict = f"{target:.0f}x"
        lines.append(
            f"| {name} | {rate_cell(m, unit, bounded)} | {rate_cell(a, unit)} | "
            f"{ratio_cell(a, m)} | {verdict} | {rate_cell(a_large, unit)} | "
            f"{ratio_cell(a_large, a)} |"
        )
    counts = []
    for who, f in (("medallion", mg), (f"Allied at {n:,}", ag), (f"Allied at {big:,}", lg)):
        if f is not None:
            counts.append(
                f"{who} {f.objects:,} objects in {f.pages} pages "
                f"({f.seconds:.1f} s, first page {f.first_page:.2f} s"
                + (")" if f.complete else ", stopped at the time budget)")
            )
    failures = []
    for who, p in (("medallion", mp), (f"Allied at {n:,}", ap), (f"Allied at {big:,}", lp)):
        if p is not None:
            failures.append(f"{who} {p.failed:,} failed of {p.succeeded + p.failed:,}")
    by_id = []
    for who, g in (("medallion", mi), (f"Allied at {n:,}", ai), (f"Allied at {big:,}", li)):
        if g is not None:
            by_id.append(
                f"{who} {g.requests:,} of {g.planned:,} requests, {g.found:,} found"
                + ("" if g.complete else " (stopped at the time budget)")
            )
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    versions = f"medallion {metadata.version('medallion')}, httpx {metadata.version('httpx')}"
    body = [
        SECTION,
        "",
        f"- date: {today}",
        f"- machine: {machine()}",
        f"- command: `{command.strip()}`",
        f"- input: the first {n:,} objects of one generated stream (seed {SEED}: producer "
        "identity, its labels, intrusion sets, malware, campaigns, indicators, relationships, "
        "sightings, reports under mixed TLP and classification labels) POSTed to both servers"
        + (
            f"; for Allied, the next {len(run.objects.bulk):,} bulk-loaded with `allied import` "
            f"({run.import_rate:,.0f} objects/s, {run.import_how}) and the "
            f"{len(run.objects.later):,} after them POSTed at the large size"
            if large is not None
            else ""
        ),
        f"- servers: {versions}; medallion's memory backend under its own Flask server "
        f"(threaded), Allied `serve`"
        + (f" --workers {args.workers}" if args.workers else "")
        + "; both on 127.0.0.1, one httpx client with keep-alive, requests one at a time",
        f"- page size {args.page_size} for both (medallion's `max_page_size` set to it); "
        f"time budget per GET step {args.budget:.0f} s",
        "",
        *lines,
        "",
        "Paginated GET: " + "; ".join(counts) + ".",
        "GET by id: "
        + "; ".join(by_id)
        + (
            " (the same ids for both servers: a sample of what Allied released to the partner)."
            if small is not None and med is not None
            else " (a sample of the ids the paginated GET returned)."
        ),
        "POST status failures: " + "; ".join(failures) + ".",
    ]
    body += [f"Note: {note}" for note in run.notes]
    if run.allied_note:
        body.append(f"Allied: {run.allied_note}")
    body += [
        "",
        "Status: " + ("; ".join(status) if status else "no comparison") + ".",
        "",
        "Goals: paginated GET and GET by id at least 100x medallion, POST at least 20x, and",
        "Allied's rates not falling as its collection grows (last column). A step marked",
        '"bounded" stopped when it ran past the time budget; its rate is what it did until',
        "then (medallion works out every page of a paginated GET on the first request). Allied",
        "returns what its release rules give the partner (TLP:RED and what refers to it stay",
        "home), medallion returns everything; medallion is measured at the small size only.",
    ]
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=10_000, help="POSTed to each server")
    parser.add_argument("--large", type=int, default=100_000, help="Allied's second size")
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--envelope", type=int, default=100, help="objects per POST")
    parser.add_argument("--by-id", type=int, default=1_000, help="GET-by-id requests")
    parser.add_argument("--window", type=int, default=1_000, help="first/last objects of a POST")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per GET step")
    parser.add_argument("--workers", type=int, default=1, help="allied serve --workers")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
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
        httpx.Client(timeout=httpx.Timeout(3600.0, connect=10.0)) as client,
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
    print()
    print(body)
    if not args.no_write:
        write_section(SECTION, body + "\n")


if __name__ == "__main__":
    main()
