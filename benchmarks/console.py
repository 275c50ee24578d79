"""Console benchmark: how long the analyst console's pages take on a node holding many
objects, beside the TAXII API answering a page of the same size and one object, from the same
server in the same run (the baseline: the node's own fastest listings, which partners' syncs
use all day).

    .venv/bin/python benchmarks/console.py [--objects 200000] [--repeat 15] [--database URL]

A node is filled with generated objects (`allied import`: indicators, malware, actors,
relationships, sightings, reports under TLP levels and classification labels), an analyst
account is added, `allied serve` runs on 127.0.0.1, and one httpx client (keep-alive, one
request at a time) logs in and asks each page ``--repeat`` times after one warm-up request.
Timed: the whole request, server-side rendering included. Median and 95th percentile in ms.

Figures are printed and written into benchmarks/RESULTS.md (section "Console", or "Console
(PostgreSQL)" with --database).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from report import machine, write_section
from taxii import (
    NODE_NAME,
    TAXII,
    Server,
    allied,
    allied_node,
    find_collections,
    free_port,
    make_objects,
    script,
    start,
    stop,
    wait_ready,
    write_jsonl,
)

SECTION = "## Console"
PASSWORD = "benchmark password 1"


@dataclass
class Timing:
    name: str
    path: str
    median_ms: float
    p95_ms: float
    bytes: int


def timed(client: httpx.Client, name: str, path: str, repeat: int, **kwargs: object) -> Timing:
    first = client.get(path, **kwargs)  # type: ignore[arg-type]
    if first.status_code != 200:
        raise SystemExit(f"{name}: {path} answered {first.status_code}: {first.text[:300]}")
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, **kwargs)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return Timing(name, path, statistics.median(samples), p95, len(first.content))


def log_in(client: httpx.Client) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/ui/login",
        data={"name": "analyst", "password": PASSWORD, "login_token": token.group(1)},
    )
    if answer.status_code != 303:
        raise SystemExit(f"login failed: {answer.status_code} {answer.text[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database", default="", help="a PostgreSQL URL for the node's store")
    args = parser.parse_args()
    command = "python benchmarks/console.py " + " ".join(sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="allied-console-bench-"))
    made = make_objects(0, args.objects, seed=5)
    objects = made.bulk
    write_jsonl(root / "objects.jsonl", objects)
    node, token = allied_node(
        root, made.labels, *(["--database", args.database] if args.database else [])
    )
    started = time.perf_counter()
    allied("--node", str(node), "import", str(root / "objects.jsonl"))
    print(f"imported {len(objects)} objects in {time.perf_counter() - started:.1f} s", flush=True)
    (root / "password").write_text(PASSWORD)
    allied("--node", str(node), "user", "add", "analyst", "--role", "analyst",
           "--password-file", str(root / "password"))  # fmt: skip

    indicator = next(o for o in reversed(objects) if o["type"] == "indicator")
    related = next(
        (o["source_ref"] for o in objects if o["type"] == "relationship"), indicator["id"]
    )
    value = re.search(r"'([^']+)'", indicator["pattern"])
    needle = value.group(1) if value else indicator["name"]
    label = made.labels[0]

    port = free_port()
    log = root / "serve.log"
    serve = [
        script("allied"),
        "--node",
        str(node),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII}
    server = Server("Allied", f"http://127.0.0.1:{port}", headers, start(serve, log), log)
    timings: list[Timing] = []
    try:
        with httpx.Client(base_url=server.base, timeout=120) as client:
            wait_ready(client, server)
            find_collections(client, server, NODE_NAME)
            api = f"{server.collections['own']}objects/"
            baseline = [
                ("TAXII: a page of 50 (baseline)", f"{api}?limit=50"),
                ("TAXII: one object (baseline)", f"{api}{indicator['id']}/"),
            ]
            for name, path in baseline:
                timings.append(timed(client, name, path, args.repeat, headers=headers))
            log_in(client)
            pages = [
                ("dashboard", "/ui/"),
                ("search: newest 50", "/ui/search"),
                ("search: type indicator", "/ui/search?type=indicator"),
                (f"search: label {label['name']}", f"/ui/search?label={label['id']}"),
                ("search: text (one hit)", f"/ui/search?q={needle}"),
                ("search: text + type", f"/ui/search?q={needle}&type=indicator"),
                ("object page", f"/ui/objects/{related}"),
                ("graph JSON", f"/ui/objects/{related}/graph.json"),
                ("release journal", "/ui/journal"),
            ]
            for name, path in pages:
                timings.append(timed(client, name, path, args.repeat))
                print(f"{timings[-1].name:<40} {timings[-1].median_ms:8.1f} ms", flush=True)
    finally:
        stop(server.process)

    when = datetime.now(UTC).strftime("%Y-%m-%d")
    backend = "PostgreSQL" if args.database else "SQLite"
    lines = [
        SECTION,
        "",
        f"{machine()}; {when}; `{command.strip()}`; {len(objects):,} objects, store on {backend}; "
        f"one client, keep-alive, {args.repeat} requests per page after a warm-up.",
        "",
        "| page | median ms | p95 ms | bytes |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {t.name} | {t.median_ms:.1f} | {t.p95_ms:.1f} | {t.bytes:,} |" for t in timings]
    lines += [
        "",
        "Pages read indexes (newest first, by type, by label) and a page of rows; the dashboard "
        "counts from a covering index. Free-text search reads every object's JSON (there is no "
        "text index), so it grows with the store: a substring of anything, names, patterns and "
        "values alike.",
    ]
    heading = SECTION if not args.database else f"{SECTION} (PostgreSQL)"
    lines[0] = heading
    write_section(heading, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
