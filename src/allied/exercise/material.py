"""What injects are made of: generated indicators and sensor logs that contain some of them.

Both are a pure function of the scenario (seeded by the inject's id), so a drill can be run
again and give the same objects and the same logs. Indicator values come from public-looking
address space and made-up domains; background traffic only from private addresses and an
internal domain, so a log hits exactly the indicators the inject names.
"""

from __future__ import annotations

import csv
import hashlib
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

#: kind of indicator -> (STIX pattern template, log field)
KINDS = {
    "domain": ("[domain-name:value = '{}']", "domain"),
    "ipv4": ("[ipv4-addr:value = '{}']", "dst_ip"),
    "url": ("[url:value = '{}']", "url"),
    "sha256": ("[file:hashes.'SHA-256' = '{}']", "sha256"),
}
_WORDS = (
    "update", "secure", "login", "cloud", "mail", "portal", "account", "verify", "office",
    "drive", "service", "notice", "files", "share", "docs", "help", "auth", "sync",
)  # fmt: skip
_TLDS = ("com", "net", "org", "info", "io", "biz")


@dataclass(frozen=True)
class Indicator:
    id: str
    kind: str
    value: str
    pattern: str


def indicators(inject_id: str, counts: dict[str, int]) -> list[Indicator]:
    """The indicators a share inject publishes, in a fixed order."""
    rng = random.Random(f"indicators/{inject_id}")
    made = []
    for kind in KINDS:
        for n in range(counts.get(kind, 0)):
            value = _value(rng, kind)
            template, _ = KINDS[kind]
            made.append(
                Indicator(
                    id=f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                    kind=kind,
                    value=value,
                    pattern=template.format(value.replace("'", "\\'")),
                )
            )
            del n
    return made


def _value(rng: random.Random, kind: str) -> str:
    if kind == "ipv4":  # public unicast, away from private and documentation ranges
        octets = (
            rng.randint(23, 91),
            rng.randint(0, 255),
            rng.randint(0, 255),
            rng.randint(1, 254),
        )
        return ".".join(map(str, octets))
    if kind == "sha256":
        return hashlib.sha256(rng.randbytes(32)).hexdigest()
    domain = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}{rng.randint(1, 999)}.{rng.choice(_TLDS)}"
    if kind == "url":
        return f"http://{domain}/{rng.choice(_WORDS)}/{rng.randint(1000, 9999)}.php"
    return domain


def bundle(made: list[Indicator], *, creator: str, title: str, created: datetime) -> dict[str, Any]:
    """A STIX bundle of ``made``, created by ``creator``; the label is given on import."""
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    objects = [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": item.id,
            "created": stamp,
            "modified": stamp,
            "created_by_ref": creator,
            "name": f"{title}: {item.kind} {item.value}",
            "indicator_types": ["malicious-activity"],
            "pattern": item.pattern,
            "pattern_type": "stix",
            "valid_from": stamp,
        }
        for item in made
    ]
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


# -- sensor logs ----------------------------------------------------------------------------

_CSV_FIELDS = ("ts", "src_ip", "dst_ip", "dst_port", "domain", "url", "sha256")
#: Zeek log (#path) that carries each kind of indicator, and its columns
_ZEEK = {
    "conn": ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"),
    "dns": ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "query"),
    "http": ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "host", "uri"),
    "files": ("ts", "fuid", "md5", "sha1", "sha256"),
}
_ZEEK_OF = {"ipv4": "conn", "domain": "dns", "url": "http", "sha256": "files"}


def traffic(
    directory: Path,
    fmt: str,
    *,
    seed: str,
    rows: int,
    hits: list[Indicator],
    start: datetime | None = None,
) -> tuple[list[Path], dict[str, int]]:
    """Write a sensor log of ``rows`` background rows plus a few rows for each of ``hits``,
    streamed (a log of millions of rows is never held whole); returns the files and how
    many rows each hit indicator got."""
    rng = random.Random(f"traffic/{seed}")
    start = start or datetime.now(UTC) - timedelta(hours=1)
    planted: dict[int, list[Indicator]] = {}  # before which background row each goes
    expected: dict[str, int] = {}
    for item in hits:
        expected[item.id] = rng.randint(1, 4)
        for _ in range(expected[item.id]):
            planted.setdefault(rng.randrange(rows + 1), []).append(item)

    def records() -> Iterator[dict[str, str]]:
        for n in range(rows + 1):
            at = start + timedelta(milliseconds=n * 37)
            for item in planted.get(n, ()):
                record = _background(rng, at)
                if item.kind == "url":
                    record.update(domain=item.value.split("/")[2], url=item.value)
                else:
                    record[KINDS[item.kind][1]] = item.value
                record["_kind"] = item.kind
                yield record
            if n < rows:
                yield _background(rng, at)

    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return [_write_csv(directory / "sensor.csv", records())], expected
    return _write_zeek(directory, records()), expected


def _background(rng: random.Random, at: datetime) -> dict[str, str]:
    host = f"host{rng.randint(1, 400)}.corp.internal"
    return {
        "ts": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "src_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "dst_ip": f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "dst_port": str(rng.choice((53, 80, 443, 8080))),
        "domain": host,
        "url": f"http://{host}/{rng.choice(_WORDS)}",
        "sha256": "",
        "_kind": "",
    }


def _write_csv(path: Path, records: Iterable[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(_CSV_FIELDS)
        for record in records:
            writer.writerow([record[name] for name in _CSV_FIELDS])
    return path


def _write_zeek(directory: Path, records: Iterable[dict[str, str]]) -> list[Path]:
    """Each record to the Zeek log its kind belongs in; background rows spread over the
    conn, dns and http logs."""
    outputs: dict[str, TextIO] = {}

    def out(path: str) -> TextIO:
        if path not in outputs:
            fields = _ZEEK[path]
            handle = open(directory / f"{path}.log", "w", encoding="utf-8")  # noqa: SIM115
            head = [
                "#separator \\x09",
                "#set_separator\t,",
                "#empty_field\t(empty)",
                "#unset_field\t-",
                f"#path\t{path}",
                "#fields\t" + "\t".join(fields),
                "#types\t" + "\t".join("string" for _ in fields),
            ]
            handle.write("\n".join(head) + "\n")
            outputs[path] = handle
        return outputs[path]

    try:
        for n, record in enumerate(records):
            path = _ZEEK_OF.get(record["_kind"]) or tuple(_ZEEK)[n % 3]
            moment = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            ts = f"{moment.timestamp():.6f}"
            uid = f"C{n:011d}"
            conn = [ts, uid, record["src_ip"], "49152", record["dst_ip"], record["dst_port"]]
            if path == "conn":
                row = [*conn, "tcp"]
            elif path == "dns":
                row = [*conn[:4], "192.168.0.53", "53", record["domain"]]
            elif path == "http":
                host, _, rest = record["url"].removeprefix("http://").partition("/")
                row = [*conn[:4], record["dst_ip"], "80", host, "/" + rest]
            else:
                row = [ts, f"F{n:011d}", "-", "-", record["sha256"] or "-"]
            out(path).write("\t".join(row) + "\n")
    finally:
        for handle in outputs.values():
            handle.close()
    return [directory / f"{path}.log" for path in _ZEEK if path in outputs]
