"""Blind-matching benchmark: a partner's distinct log values against indicators it may only
blind-match, end to end between two real nodes on 127.0.0.1, beside the limits, in one run:

    .venv/bin/python benchmarks/blind.py [--values 1000000] [--indicators 100000] [--quick]

- NATO's node holds --indicators indicators (domains and IPv4 addresses, half each) labelled
  NATO SECRET REL NATO with blind_match KOR: KOR may not receive them;
- KOR's log has --values rows, each with a value no other row has (half domains, half
  addresses), about 0.1% of them an indicator's;
- measured side by side: `allied match --blind-with NATO` at KOR (NATO serving: the offer,
  every evaluation, KOR's blinding, unblinding and the sightings), end to end in distinct
  values/s; `allied match` of the same log in clear at NATO (what matching costs when one may
  see the indicators); and the raw rate of this machine's X25519 scalar multiplication, on
  one core and on every core (the limit: the protocol needs three per value, plus one per
  indicator value for the offer).

Goal: at least 10,000 distinct values/s end to end, on this 2-core machine using both cores.
Figures go into benchmarks/RESULTS.md ("Blind matching").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from allied.federation.peers import add_peer
from allied.matching import oprf
from allied.node import Node, init_node
from allied.stix.labels import TLP2_IDS
from report import machine, write_section

SECTION = "## Blind matching"
BIN = Path(sys.executable).parent
ALLIED = str(BIN / "allied")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Run:
    name: str
    values: int
    seconds: float
    hits: int | None = None

    @property
    def rate(self) -> float:
        return self.values / self.seconds if self.seconds else 0.0


def raw_rate(threads: int, count: int = 20_000) -> float:
    """X25519 scalar multiplications per second on ``threads`` threads (libsodium lets go of
    the interpreter while it multiplies)."""
    key = oprf.new_key()
    elements, _ = oprf.blind_many([str(n).encode() for n in range(count // threads)])

    def work() -> None:
        for element in elements:
            oprf.evaluate(key, element)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(elements) * threads / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup(root: Path, indicators: int, values: int) -> tuple[dict[str, Path], Path]:
    """The two nodes (partners of each other, KOR peering with NATO), NATO's indicators
    imported, KOR's log written."""
    dirs = {name: root / name.lower() for name in ("NATO", "KOR")}
    configs = {
        "NATO": init_node(dirs["NATO"], name="NATO", nation="NATO", communities=["nato"]),
        "KOR": init_node(dirs["KOR"], name="KOR", nation="KOR", communities=["kor-usa"]),
    }
    token = root / "kor-at-nato.token"
    with Node.open(dirs["NATO"]) as nato:
        nato.add_partner("KOR", nation="KOR", clearances=["NATO=RESTRICTED"], communities=[
            "kor-usa"], key_file=configs["KOR"].public_key_path, token_file=token,
            identity_id=configs["KOR"].identity_id)  # fmt: skip
        label = nato.add_label(
            "NATO SECRET REL NATO", tlp="amber", policy="NATO", classification="SECRET",
            releasable_to=["NATO"], blind_match=["KOR"],
        )  # fmt: skip
    with Node.open(dirs["KOR"]) as kor:
        kor.add_partner("NATO", nation="NATO", clearances=["NATO=SECRET"], communities=["nato"],
                        key_file=configs["NATO"].public_key_path,
                        identity_id=configs["NATO"].identity_id)  # fmt: skip
    con = duckdb.connect()
    stix = root / "indicators.jsonl"
    marks = f"['{TLP2_IDS['amber']}', '{label}']"
    con.execute(f"""COPY (SELECT 'indicator' AS type, '2.1' AS spec_version,
        'indicator--' || lpad(to_hex(i), 8, '0') || '-0000-4000-8000-000000000002' AS id,
        '2026-01-01T00:00:00.000Z' AS created, '2026-01-01T00:00:00.000Z' AS modified,
        CASE WHEN i % 2 = 0 THEN '[domain-name:value = ''c2-' || i || '.bad.example'']'
             ELSE '[ipv4-addr:value = ''203.' || (i // 65536 % 256) || '.' || (i // 256 % 256)
                  || '.' || (i % 256) || ''']' END AS pattern,
        'stix' AS pattern_type, '2026-01-01T00:00:00Z' AS valid_from,
        {marks} AS object_marking_refs
        FROM range({indicators}) t(i)) TO '{stix}' (FORMAT json)""")
    log = root / "kor.csv"
    # every row one new value; one row in a thousand an indicator's
    con.execute(f"""COPY (SELECT '2026-03-01T10:00:00Z' AS ts,
        CASE WHEN i % 2 = 1 THEN CASE WHEN i % 1000 = 1 THEN
                  '203.' || (k // 65536 % 256) || '.' || (k // 256 % 256) || '.' || (k % 256)
             ELSE '10.' || (i // 65536 % 256) || '.' || (i // 256 % 256) || '.' || (i % 256) END
        END AS dst_ip,
        CASE WHEN i % 2 = 0 THEN CASE WHEN i % 1000 = 0 THEN 'c2-' || (k - k % 2) || '.bad.example'
             ELSE 'host-' || i || '.example.org' END END AS domain
        FROM (SELECT i, (i * 7919) % {indicators} AS k FROM range({values}) t(i)))
        TO '{log}' (HEADER true)""")  # fmt: skip
    con.close()
    subprocess.run([ALLIED, "--node", str(dirs["NATO"]), "import", str(stix)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return dirs, log


def timed(command: list[str]) -> tuple[float, dict]:  # type: ignore[type-arg]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "ALLIED_NODE": ""})  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])}...: exit {done.returncode}\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--indicators", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.values, args.indicators = 20_000, 2_000
    command = " ".join(["python benchmarks/blind.py", *sys.argv[1:]])
    runs: list[Run] = []
    say("raw X25519 ...")
    one, every = raw_rate(1), raw_rate(os.cpu_count() or 1)
    say(f"  {one:,.0f}/s on one core, {every:,.0f}/s on {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="allied-blind-bench-") as tmp:
        root = Path(tmp)
        say(f"{args.indicators:,} indicators at NATO, {args.values:,} distinct values at KOR ...")
        dirs, log = setup(root, args.indicators, args.values)
        say("clear allied match at NATO ...")
        seconds, report = timed([ALLIED, "--node", str(dirs["NATO"]), "match", str(log), "--json"])
        clear_hits = sum(h["count"] for h in report["hits"])
        runs.append(Run("`allied match` in clear (at NATO, DuckDB)", args.values, seconds,
                        clear_hits))  # fmt: skip
        say(f"  {runs[-1].rate:,.0f} values/s, {clear_hits} rows hit")
        port = free_port()
        serve = subprocess.Popen(
            [ALLIED, "--node", str(dirs["NATO"]), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "ALLIED_NODE": ""},
        )  # fmt: skip
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            with Node.open(dirs["KOR"]) as kor:
                add_peer(kor, "NATO", f"http://127.0.0.1:{port}/", partner="NATO",
                         token_file=root / "kor-at-nato.token")  # fmt: skip
            say("allied match --blind-with NATO at KOR ...")
            seconds, report = timed(
                [
                    ALLIED,
                    "--node",
                    str(dirs["KOR"]),
                    "match",
                    str(log),
                    "--blind-with",
                    "NATO",
                    "--json",
                ]
            )
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=30)
        blind_hits = sum(h["count"] for h in report["hits"])
        runs.append(Run("`allied match --blind-with NATO` (at KOR, end to end)", args.values,
                        seconds, blind_hits))  # fmt: skip
        say(f"  {runs[-1].rate:,.0f} values/s, {blind_hits} rows hit")
    if blind_hits != clear_hits:
        raise SystemExit(f"blind matching found {blind_hits} rows, clear matching {clear_hits}")
    blind_run = runs[-1]
    lines = [
        SECTION,
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d}",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- input: {args.indicators:,} indicators at NATO (half domains, half IPv4 addresses) "
        "labelled NATO SECRET REL NATO, blind_match KOR; a log at KOR of "
        f"{args.values:,} rows, each with a value no other row has, 0.1% of them an "
        "indicator's",
        "",
        "| run | distinct values | seconds | values/s | rows hit |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r.name} | {r.values:,} | {r.seconds:.1f} | {r.rate:,.0f} | {r.hits:,} |"
            for r in runs
        ),
        f"| raw X25519 scalar multiplication, one core | | | {one:,.0f} | |",
        f"| raw X25519 scalar multiplication, {os.cpu_count()} cores | | | {every:,.0f} | |",
        "",
        f"Goal: at least 10,000 distinct values/s end to end: {blind_run.rate:,.0f}, "
        f"{'met' if blind_run.rate >= 10_000 else 'NOT met'}. The protocol needs three "
        "multiplications per value (blind, evaluate, unblind) and one per indicator value for "
        f"the offer: at the raw rate on every core, at most about {every / 3:,.0f} values/s "
        "with the offer left out. Both nodes ran on this machine, sharing its cores.",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
