"""PostgreSQL benchmark: one node's TAXII ingest and reads on PostgreSQL with 1, 2 and 4
`allied serve` workers, beside the same on SQLite, in one run.

    .venv/bin/python benchmarks/postgres.py [--objects 20000] [--clients 8] [--database-url URL]

For each backend and worker count, a fresh node (and a fresh database) is made, then:

1. POST: the objects, in envelopes of 100, by --clients concurrent clients (each its own
   connection, keep-alive) into the node's community collection; objects/s over all clients.
2. GET: every client pages through the whole collection (`limit` 1000, following `next`) at
   the same time; objects/s over all clients.

Before the servers, the same objects are loaded with `allied import` (one process) into a fresh
node of each backend: the bulk path, for comparison.

PostgreSQL: --database-url names a server on which this may create databases (any database on
it); without it, a server of its own is started with `.ci/postgres` (initdb into a temporary
folder, 127.0.0.1, fsync on, as deployed) and stopped at the end. SQLite runs with its usual
settings (WAL, synchronous FULL), so both commit to disk.

Figures are printed and written into benchmarks/RESULTS.md (section "PostgreSQL").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson
import psycopg

from report import machine, write_section
from taxii import (
    TAXII,
    Server,
    allied,
    allied_node,
    envelopes,
    find_collections,
    free_port,
    make_objects,
    script,
    start,
    stop,
    wait_ready,
    write_jsonl,
)

SECTION = "## PostgreSQL"
ROOT = Path(__file__).resolve().parent.parent
WORKERS = (1, 2, 4)
SEED = 23


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """The server to make databases on: the one given, or one started here."""
    if url:
        yield url
        return
    state = Path(tempfile.mkdtemp(prefix="allied-bench-postgres-"))
    os.chmod(state, 0o755)
    env = {**os.environ, "ALLIED_PG_PORT": str(free_port()), "ALLIED_PG_STATE": str(state / "pg"),
           "ALLIED_PG_FSYNC": "on"}  # fmt: skip
    command = ["bash", str(ROOT / ".ci" / "postgres")]
    started = subprocess.run([*command, "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"could not start PostgreSQL:\n{started.stderr[-2000:]}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([*command, "stop"], env=env, capture_output=True, check=False)


class Databases:
    """Fresh databases on the server, dropped at the end."""

    def __init__(self, url: str) -> None:
        self._base = url.rsplit("/", 1)[0]
        self._admin = psycopg.connect(url, autocommit=True)
        self._made: list[str] = []

    def create(self) -> str:
        name = f"allied_bench_{uuid.uuid4().hex[:12]}"
        self._admin.execute(f"CREATE DATABASE {name}")
        self._made.append(name)
        return f"{self._base}/{name}"

    def version(self) -> str:
        row = self._admin.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def close(self) -> None:
        for name in self._made:
            self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._admin.close()


def make_node(directory: Path, database: str, labels: list[dict[str, Any]]) -> tuple[Path, str]:
    """A node with its store where ``database`` says ("" for SQLite), set up as the TAXII
    benchmark's (see taxii.allied_node)."""
    return allied_node(directory, labels, *(["--database", database] if database else []))


@contextmanager
def serving(directory: Path, node: Path, token: str, workers: int) -> Iterator[Server]:
    port = free_port()
    command = [script("allied"), "--node", str(node), "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    log = directory / f"serve-{port}.log"
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII}
    server = Server("Allied", f"http://127.0.0.1:{port}", headers, start(command, log), log)
    try:
        with httpx.Client(timeout=60) as client:
            wait_ready(client, server)
            # every worker answers before anything is timed (each opens the store first)
            for _ in range(4 * workers):
                client.get(f"{server.base}/api/collections/", headers=headers)
            find_collections(client, server, None)
        yield server
    finally:
        stop(server.process)


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def in_parallel(work: list[list[object]], run: object) -> tuple[float, float]:
    """Seconds for every client to run ``run(items)`` on its share, started together, and
    the share of the machine's cores busy meanwhile (server, database and clients)."""
    errors: list[BaseException] = []
    go = threading.Barrier(len(work) + 1)

    def client(items: list[object]) -> None:
        go.wait()
        try:
            run(items)  # type: ignore[operator]
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=client, args=(items,)) for items in work]
    for thread in threads:
        thread.start()
    go.wait()
    started, (busy, total) = time.perf_counter(), cpu_times()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    busy_after, total_after = cpu_times()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}") from errors[0]
    return seconds, (busy_after - busy) / max(total_after - total, 1.0)


@dataclass
class Row:
    backend: str
    workers: int
    post_rate: float
    get_rate: float
    stored: int
    post_busy: float
    get_busy: float


def measure(server: Server, bodies: list[tuple[int, bytes]], clients: int, expected: int) -> Row:
    url = urljoin(server.collections["community"], "objects/")
    headers = server.headers | {"Content-Type": TAXII}

    def post(share: list[object]) -> None:
        with httpx.Client(timeout=300) as http:
            for _count, body in share:  # type: ignore[misc]
                response = http.post(url, content=body, headers=headers)
                status = orjson.loads(response.content) if response.status_code == 202 else {}
                if status.get("success_count") != _count:
                    raise RuntimeError(f"POST -> {response.status_code} {response.text[:300]}")

    shares: list[list[object]] = [list(bodies[k::clients]) for k in range(clients)]
    post_seconds, post_busy = in_parallel(shares, post)
    seen: list[int] = []

    def page_through(_: list[object]) -> None:
        found = 0
        params: dict[str, str | int] = {"limit": 1000}
        with httpx.Client(timeout=300) as http:
            while True:
                response = http.get(url, params=params, headers=server.headers)
                if response.status_code != 200:
                    raise RuntimeError(f"GET -> {response.status_code} {response.text[:300]}")
                envelope = orjson.loads(response.content)
                found += len(envelope.get("objects", []))
                if not envelope.get("more"):
                    break
                params = {"limit": 1000, "next": envelope["next"]}
        seen.append(found)

    get_seconds, get_busy = in_parallel([[] for _ in range(clients)], page_through)
    if seen != [expected] * clients:
        raise RuntimeError(f"the clients saw {seen} objects, {expected} expected each")
    return Row(
        "", 0, expected / post_seconds, sum(seen) / get_seconds, expected, post_busy, get_busy
    )


def bulk_import(
    directory: Path, database: str, objects_file: Path, labels: list[dict[str, Any]]
) -> float:
    node, _token = make_node(directory, database, labels)
    started = time.perf_counter()
    allied("--node", str(node), "import", str(objects_file))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database-url", help="a PostgreSQL server to make databases on")
    args = parser.parse_args()
    command = "python benchmarks/postgres.py " + " ".join(sys.argv[1:])
    say(f"generating {args.objects} objects")
    objects = make_objects(args.objects, args.objects, SEED)
    bodies = envelopes(objects.first, 100)
    root = Path(tempfile.mkdtemp(prefix="allied-bench-pg-"))
    objects_file = root / "objects.jsonl"
    write_jsonl(objects_file, objects.first)
    rows: list[Row] = []
    imports: dict[str, float] = {}
    with postgres_server(args.database_url) as server_url:
        databases = Databases(server_url)
        try:
            pg_version = databases.version()
            for backend in ("sqlite", "postgresql"):
                database = databases.create() if backend == "postgresql" else ""
                seconds = bulk_import(root / f"import-{backend}", database, objects_file,
                                      objects.labels)  # fmt: skip
                imports[backend] = args.objects / seconds
                say(f"{backend}: allied import {imports[backend]:,.0f} objects/s")
            for backend in ("sqlite", "postgresql"):
                for workers in WORKERS:
                    directory = root / f"{backend}-{workers}"
                    directory.mkdir()
                    database = databases.create() if backend == "postgresql" else ""
                    node, token = make_node(directory, database, objects.labels)
                    with serving(directory, node, token, workers) as server:
                        row = measure(server, bodies, args.clients, args.objects)
                    row.backend, row.workers = backend, workers
                    rows.append(row)
                    say(f"{backend}, {workers} worker(s): POST {row.post_rate:,.0f} objects/s "
                        f"(cores {row.post_busy:.0%} busy), GET {row.get_rate:,.0f} objects/s "
                        f"({row.get_busy:.0%})")  # fmt: skip
        finally:
            databases.close()
    write_section(SECTION, report(rows, imports, args, command, pg_version))
    say(f"written to {Path(__file__).parent / 'RESULTS.md'}")


def report(
    rows: list[Row], imports: dict[str, float], args: argparse.Namespace, command: str,
    pg_version: str,
) -> str:  # fmt: skip
    by = {(r.backend, r.workers): r for r in rows}
    lines = [
        SECTION,
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command.strip()}`",
        f"- PostgreSQL {pg_version} on 127.0.0.1 (fsync on), psycopg 3; SQLite WAL, "
        "synchronous FULL. Server and clients share the machine's cores.",
        f"- {args.objects:,} generated objects; {args.clients} concurrent clients (threads of "
        'this process, on the same cores). "cores busy": the share of all cores in use '
        "during the phase, by the server, the database and the clients. POST: "
        "envelopes of 100 into the community collection. GET: every client pages through "
        "the whole collection (limit 1000) at once.",
        "",
        "| backend | workers | POST objects/s | cores busy | GET objects/s | cores busy "
        "| GET vs 1 worker |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = by[(r.backend, 1)].get_rate
        lines.append(
            f"| {r.backend} | {r.workers} | {r.post_rate:,.0f} | {r.post_busy:.0%} | "
            f"{r.get_rate:,.0f} | {r.get_busy:.0%} | {r.get_rate / base:.2f}x |"
        )
    lines += [
        "",
        "| backend | `allied import` objects/s (one process) |",
        "|---|---:|",
        *(f"| {backend} | {rate:,.0f} |" for backend, rate in imports.items()),
        "",
    ]
    for workers in WORKERS:
        pg, lite = by.get(("postgresql", workers)), by.get(("sqlite", workers))
        if pg and lite:
            plural = "s" if workers > 1 else ""
            lines.append(
                f"- {workers} worker{plural}: PostgreSQL POST "
                f"{pg.post_rate / lite.post_rate:.2f}x SQLite's, GET "
                f"{pg.get_rate / lite.get_rate:.2f}x."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
