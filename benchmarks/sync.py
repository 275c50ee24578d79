"""Federation benchmark: how fast a node syncs from a peer, and how fast a new object crosses
two hops. One command, one run, everything on this machine:

    .venv/bin/python benchmarks/sync.py [--objects 122000] [--rounds 20] [--quick]

1. Throughput. Node KOR holds --objects generated objects (seed 11, mixed labels), signed as
   their originator; node USA is its partner, cleared for most of them. Measured side by side:
   - `allied sync --once` at USA, pulling from `allied serve` at KOR: every object verified
     against KOR's pinned key, stored with its ledger entry, page by page (objects/s);
   - the baseline: the same objects from a file, `allied import --from KOR` at a fresh node
     (the same checks and store, no network);
   - the transfer alone: the same pages fetched over HTTP and decoded, nothing checked.
   Goal: sync at least 5,000 objects/s.
2. Propagation. Three nodes in a chain, KOR - USA - NATO, each `allied serve
   --sync-interval 1`; --rounds times, a new GREEN indicator is stored at KOR and the time
   until it is in NATO's store is taken (median, 95th percentile, worst). Goal: 95th
   percentile under 3 s.

Figures are printed and written into benchmarks/RESULTS.md (section "Federation").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from allied.federation.peers import add_peer
from allied.ingest.stix_import import import_file
from allied.node import Node, init_node
from allied.stix.labels import TLP2_IDS
from allied.synthetic import Mix, generate
from allied.taxii.service import own_collection_id
from report import machine, write_section

SECTION = "## Federation"
SEED = 11
GOAL_RATE = 5_000.0
GOAL_P95 = 3.0
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(text, flush=True)


def allied(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "allied"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ALLIED_NODE": "", **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"allied {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(directory: Path, *options: str, port: int | None = None) -> Iterator[str]:
    """``allied serve`` for the node in ``directory`` until the block ends."""
    port = port or free_port()
    log = open(directory.parent / f"{directory.name}-serve.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "allied"), "--node", str(directory), "serve", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "ALLIED_NODE": ""},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"allied serve of {directory} did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- nodes ---------------------------------------------------------------------------------

CLEARED = {
    "clearances": ["NATO=SECRET"],
    "categories": ["CYBER-OPS"],
    "communities": ["bench", "NATO", "nato-ccdcoe"],
}


@dataclass
class Nodes:
    root: Path
    directories: dict[str, Path] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    keys: dict[str, Path] = field(default_factory=dict)

    def create(self, name: str, nation: str | None = None) -> Path:
        directory = self.root / name.lower()
        config = init_node(
            directory, name=name, nation=nation or name, communities=["bench", "NATO"]
        )
        self.directories[name] = directory
        self.identities[name] = config.identity_id
        self.keys[name] = config.public_key_path
        return directory

    def enrol(self, at: str, other: str, *, token: bool) -> Path | None:
        """Make ``other`` a partner of ``at`` (its key pinned); with ``token``, one that may
        use ``at``'s API, with the token in the returned file."""
        token_file = self.root / f"{other}-at-{at}.token" if token else None
        with Node.open(self.directories[at]) as node:
            node.add_partner(
                other,
                nation=other,
                key_file=self.keys[other],
                identity_id=self.identities[other],
                token_file=token_file,
                **CLEARED,  # type: ignore[arg-type]
            )
        return token_file

    def peer(self, at: str, other: str, url: str, token_file: Path) -> None:
        with Node.open(self.directories[at]) as node:
            add_peer(node, other, url, partner=other, token_file=token_file)


# --- 1. throughput -------------------------------------------------------------------------


@dataclass
class Throughput:
    generated: int
    synced: int = 0
    sync_seconds: float = 0.0
    pages: int = 0
    baseline: int = 0
    baseline_seconds: float = 0.0
    transfer: int = 0
    transfer_seconds: float = 0.0
    verified: bool = False

    def rate(self, count: int, seconds: float) -> float:
        return count / seconds if seconds else 0.0


def throughput(root: Path, count: int, page_size: int) -> Throughput:
    nodes = Nodes(root)
    kor = nodes.create("KOR")
    nodes.create("USA")
    nodes.create("USA2", nation="USA")
    say(f"generating {count:,} objects (seed {SEED}) and storing them at KOR ...")
    source = root / "generated.jsonl"
    with open(source, "wb") as out:
        for n, obj in enumerate(generate(SEED, Mix.for_indicators(int(count / 1.6) + 100))):
            if n >= count:
                break
            out.write(orjson.dumps(obj) + b"\n")
    allied("--node", str(kor), "import", str(source))
    token = nodes.enrol("KOR", "USA", token=True)
    assert token is not None
    nodes.enrol("USA", "KOR", token=False)
    nodes.enrol("USA2", "KOR", token=False)
    figures = Throughput(count)
    with serving(kor) as url:
        nodes.peer("USA", "KOR", url, token)
        say("allied sync --once at USA, from KOR ...")
        env = {"ALLIED_SYNC_PAGE_SIZE": str(page_size)}
        started = time.perf_counter()
        out = allied("--node", str(nodes.directories["USA"]), "sync", "--once", "--json", env=env)
        figures.sync_seconds = time.perf_counter() - started
        [result] = json.loads(out)
        if result["status"] != "ok" or result["rejected"]:
            raise RuntimeError(f"the sync did not go through: {result}")
        figures.synced, figures.pages = result["received"], result["pages"]
        say(f"  {figures.synced:,} objects in {figures.sync_seconds:.1f} s")
        say("the transfer alone: the same pages over HTTP, decoded ...")
        figures.transfer, figures.transfer_seconds = fetch_all(url, token, nodes, page_size)
    with Node.open(nodes.directories["USA"]) as usa:
        audit = usa.verify()
        figures.verified = audit.ok
        if not audit.ok:
            raise RuntimeError(f"USA does not verify after the sync: {audit.problems[:3]}")
    say("baseline: the same objects from a file, allied import --from KOR at a fresh node ...")
    exported = root / "for-usa.json"
    allied("--node", str(kor), "export", "--for", "USA", "-o", str(exported))
    started = time.perf_counter()
    allied("--node", str(nodes.directories["USA2"]), "import", str(exported), "--from", "KOR")
    figures.baseline_seconds = time.perf_counter() - started
    figures.baseline = len(json.loads(exported.read_text())["objects"])
    return figures


def fetch_all(url: str, token_file: Path, nodes: Nodes, page_size: int) -> tuple[int, float]:
    token = token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/taxii+json;version=2.1"}
    collection = f"{url}api/collections/{own_collection_id(nodes.identities['KOR'])}/objects/"
    count, after = 0, None
    started = time.perf_counter()
    with httpx.Client(headers=headers, timeout=120) as client:
        while True:
            params: dict[str, Any] = {"limit": page_size, "match[version]": "all"}
            if after:
                params["next"] = after
            body = orjson.loads(client.get(collection, params=params).content)
            count += len(body.get("objects", []))
            after = body.get("next")
            if not body.get("more"):
                break
    return count, time.perf_counter() - started


# --- 2. propagation ------------------------------------------------------------------------


def propagation(root: Path, rounds: int, interval: float) -> list[float]:
    nodes = Nodes(root)
    for name in ("KOR", "USA", "NATO"):
        nodes.create(name)
    tokens = {
        ("KOR", "USA"): nodes.enrol("KOR", "USA", token=True),
        ("USA", "KOR"): nodes.enrol("USA", "KOR", token=True),
        ("USA", "NATO"): nodes.enrol("USA", "NATO", token=True),
        ("NATO", "USA"): nodes.enrol("NATO", "USA", token=True),
    }
    nodes.enrol("KOR", "NATO", token=False)
    nodes.enrol("NATO", "KOR", token=False)
    pulls = {"USA": ["KOR", "NATO"], "NATO": ["USA"], "KOR": ["USA"]}
    ports = {name: free_port() for name in pulls}
    urls = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
    for name, others in pulls.items():
        for other in others:
            token = tokens[(other, name)]
            assert token is not None
            nodes.peer(name, other, urls[other], token)
    latencies: list[float] = []
    option = ["--sync-interval", str(interval)]
    with ExitStack() as stack:
        for name in ("KOR", "USA", "NATO"):
            stack.enter_context(serving(nodes.directories[name], *option, port=ports[name]))
        kor, nato = Node.open(nodes.directories["KOR"]), Node.open(nodes.directories["NATO"])
        try:
            time.sleep(2 * interval)  # the first syncs find each other's empty ledgers
            for n in range(rounds):
                obj = indicator(n, nodes.identities["KOR"])
                path = root / f"new-{n}.json"
                path.write_bytes(orjson.dumps({"type": "bundle", "id": _bundle_id(n),
                                               "objects": [obj]}))  # fmt: skip
                import_file(kor, path)
                stored = time.perf_counter()
                deadline = stored + 30
                while not nato.store.versions(obj["id"]):
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"object {n} did not reach NATO within 30 s")
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - stored)
                say(f"  round {n + 1}: {latencies[-1]:.2f} s")
                time.sleep((n % 7) * interval / 7)  # spread over the sync cycle
        finally:
            kor.close()
            nato.close()
    return latencies


def indicator(n: int, creator: str) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{n:08x}-0000-4000-8000-00000000beef",
        "created": stamp,
        "modified": stamp,
        "created_by_ref": creator,
        "name": f"propagation probe {n}",
        "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": stamp,
        "object_marking_refs": [TLP2_IDS["green"]],
    }


def _bundle_id(n: int) -> str:
    return f"bundle--{n:08x}-0000-4000-8000-00000000beef"


# --- report --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(t: Throughput, latencies: list[float], command: str, interval: float) -> str:
    sync_rate = t.rate(t.synced, t.sync_seconds)
    base_rate = t.rate(t.baseline, t.baseline_seconds)
    transfer_rate = t.rate(t.transfer, t.transfer_seconds)
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    rate_ok, p95_ok = sync_rate >= GOAL_RATE, p95 < GOAL_P95
    lines = [
        SECTION,
        "",
        f"- date: {datetime.now(UTC).date().isoformat()}",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- input: {t.generated:,} generated objects (seed {SEED}, mixed TLP and classification "
        "labels) stored at node KOR, signed by it; node USA, its partner, may receive "
        f"{t.synced:,} of them",
        "- nodes: `allied serve` (one worker) on 127.0.0.1; `allied sync --once` as a process",
        "",
        "| operation | objects | seconds | objects/s | goal |",
        "|---|---:|---:|---:|---|",
        f"| `allied sync --once`: USA pulls from KOR ({t.pages} pages), every signature "
        f"verified, stored with ledger entries | {t.synced:,} | {t.sync_seconds:.1f} | "
        f"{sync_rate:,.0f} | {GOAL_RATE:,.0f}/s: {'met' if rate_ok else 'NOT met'} |",
        f"| baseline: `allied import --from KOR` of the same objects from a file, at a fresh "
        f"node (same checks, no network) | {t.baseline:,} | {t.baseline_seconds:.1f} | "
        f"{base_rate:,.0f} | |",
        f"| the transfer alone: the same pages fetched and decoded, nothing checked | "
        f"{t.transfer:,} | {t.transfer_seconds:.1f} | {transfer_rate:,.0f} | |",
        "",
        f"After the sync, `allied verify` at USA: {'all verified' if t.verified else 'FAILED'}.",
        "",
        f"Propagation KOR -> USA -> NATO, every node `allied serve --sync-interval "
        f"{interval:g}`, {len(latencies)} new objects stored at KOR one after another, time "
        "until each is in NATO's store:",
        "",
        "| median | 95th percentile | worst | goal |",
        "|---:|---:|---:|---|",
        f"| {p50:.2f} s | {p95:.2f} s | {max(latencies):.2f} s | 95th percentile under "
        f"{GOAL_P95:g} s: {'met' if p95_ok else 'NOT met'} |",
        "",
        "Each hop waits for the next sync of the node that pulls (up to the interval), then "
        "for one pull: two hops average one interval of waiting. The baseline and the sync "
        "do the same work per object (validation, signature, labels, store, ledger); the "
        "import does it in one process, one step after the other, while the sync admits "
        "pages (validation, signatures) in a worker process, and itself when the worker "
        'has a backlog, beside the thread that stores them (docs/federation.md, "Pull"). '
        "Server, sync process and worker share this machine's 2 cores.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=122_000, help="generated at KOR")
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20, help="propagation measurements")
    parser.add_argument("--interval", type=float, default=1.0, help="sync interval, seconds")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.objects, args.rounds = min(args.objects, 3_000), min(args.rounds, 5)
    command = "python benchmarks/sync.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="allied-sync-bench-") as tmp:
        root = Path(tmp)
        (root / "throughput").mkdir()
        (root / "propagation").mkdir()
        figures = throughput(root / "throughput", args.objects, args.page_size)
        say(f"propagation, {args.rounds} rounds, sync interval {args.interval:g} s ...")
        latencies = propagation(root / "propagation", args.rounds, args.interval)
    body = report(figures, latencies, command, args.interval)
    say("")
    say(body)
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
