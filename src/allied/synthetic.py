"""Seeded synthetic intelligence: realistic, valid STIX 2.1 for tests, the demo and benchmarks.

Real shared intelligence cannot be shipped, so Allied makes its own: a producer identity, its
classification labels, intrusion sets, malware and campaigns, indicators over every pattern
kind the matching engines handle (IPv4/IPv6 and CIDR, domain, URL, e-mail, file hashes,
network traffic), the relationships between them, sightings and reports. The same seed always
gives the same objects, byte for byte.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from allied.stix.labels import TLP2_IDS, Label, label_marking

_BASE = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
_TLDS = ("example", "example.com", "example.net", "example.org", "test", "invalid")
_WORDS = (
    "aurora",
    "basalt",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "indigo",
    "juniper",
    "krypton",
    "lumen",
    "magnet",
    "nimbus",
    "onyx",
    "prism",
    "quartz",
    "raven",
    "sierra",
    "tundra",
    "umbra",
    "vortex",
    "willow",
    "xenon",
    "yonder",
    "zephyr",
)
_MALWARE_TYPES = (
    "backdoor",
    "downloader",
    "dropper",
    "ransomware",
    "remote-access-trojan",
    "spyware",
    "webshell",
    "wiper",
)
_MOTIVATIONS = ("espionage", "ideology", "organizational-gain", "dominance")
_SECTORS = ("government", "defense", "energy", "telecommunications", "financial-services")
_KILL_CHAIN = (
    "reconnaissance",
    "weaponization",
    "delivery",
    "exploitation",
    "installation",
    "command-and-control",
    "actions-on-objectives",
)


@dataclass(frozen=True)
class Mix:
    """How many of each kind to make; ``for_indicators`` scales a realistic mix."""

    indicators: int
    intrusion_sets: int = 0
    malware: int = 0
    campaigns: int = 0
    sightings: int = 0
    reports: int = 0

    @classmethod
    def for_indicators(cls, indicators: int) -> Mix:
        return cls(
            indicators=indicators,
            intrusion_sets=max(1, indicators // 200),
            malware=max(1, indicators // 50),
            campaigns=max(1, indicators // 100),
            sightings=max(1, indicators // 10),
            reports=max(1, indicators // 100),
        )


class _Maker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def id(self, kind: str) -> str:
        return f"{kind}--{self.uuid()}"

    def time(self, spread_days: int = 300) -> datetime:
        return _BASE + timedelta(
            seconds=self.rng.randrange(spread_days * 86400), milliseconds=self.rng.randrange(1000)
        )

    @staticmethod
    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def name(self, parts: int = 2) -> str:
        return " ".join(self.rng.choice(_WORDS).capitalize() for _ in range(parts))

    def domain(self) -> str:
        word = "-".join(self.rng.choice(_WORDS) for _ in range(2))
        return f"{word}{self.rng.randrange(1000)}.{self.rng.choice(_TLDS)}"

    def ipv4(self) -> str:
        block = self.rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{block}.{self.rng.randrange(1, 255)}"

    def ipv6(self) -> str:
        groups = ":".join(f"{self.rng.getrandbits(16):x}" for _ in range(4))
        return f"2001:db8:{groups}::{self.rng.getrandbits(16):x}"

    def hexdigest(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"

    def pattern(self) -> str:
        rng = self.rng
        kind = rng.randrange(11)
        if kind == 0:
            return f"[ipv4-addr:value = '{self.ipv4()}']"
        if kind == 1:
            net = self.ipv4().rsplit(".", 1)[0]
            return f"[ipv4-addr:value ISSUBSET '{net}.0/24']"
        if kind == 2:
            return f"[ipv6-addr:value = '{self.ipv6()}']"
        if kind == 3:
            return f"[domain-name:value = '{self.domain()}']"
        if kind == 4:
            path = "/".join(rng.choice(_WORDS) for _ in range(rng.randrange(1, 4)))
            return f"[url:value = 'https://{self.domain()}/{path}']"
        if kind == 5:
            return f"[email-addr:value = '{rng.choice(_WORDS)}@{self.domain()}']"
        if kind == 6:
            return f"[file:hashes.'SHA-256' = '{self.hexdigest(64)}']"
        if kind == 7:
            return (
                f"[file:hashes.MD5 = '{self.hexdigest(32)}' OR file:hashes.'SHA-1' = "
                f"'{self.hexdigest(40)}']"
            )
        if kind == 8:
            return (
                f"[network-traffic:dst_ref.value = '{self.ipv4()}' AND "
                f"network-traffic:dst_port = {rng.choice((22, 443, 445, 3389, 8080))}]"
            )
        if kind == 9:
            return f"[domain-name:value = '{self.domain()}'] OR [ipv4-addr:value = '{self.ipv4()}']"
        return f"[domain-name:value = '{self.domain()}' OR domain-name:value = '{self.domain()}']"


def sample_labels(producer: str) -> list[Label]:
    """The classification labels the synthetic producer uses (policy NATO)."""
    base = "marking-definition--"
    return [
        Label(
            f"{base}1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a01",
            "NATO RESTRICTED REL NATO",
            "green",
            "NATO",
            "RESTRICTED",
            ("NATO",),
        ),
        Label(
            f"{base}1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a02",
            "NATO CONFIDENTIAL REL KOR, USA",
            "amber",
            "NATO",
            "CONFIDENTIAL",
            ("KOR", "USA"),
        ),
        Label(
            f"{base}1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a03",
            "NATO SECRET REL USA",
            "amber+strict",
            "NATO",
            "SECRET",
            ("USA",),
            ("CYBER-OPS",),
        ),
        Label(
            f"{base}1b0e8a52-6c0e-4d8e-9f3e-5a1d2c3b4a04",
            "NATO UNCLASSIFIED REL nato-ccdcoe",
            "green",
            "NATO",
            "UNCLASSIFIED",
            ("nato-ccdcoe",),
            blind_match=("KOR",),
        ),
    ]


def generate(seed: int = 1, mix: Mix | None = None) -> Iterator[dict[str, Any]]:
    """Yield a reproducible stream of valid STIX 2.1 objects, referenced objects first."""
    mix = mix or Mix.for_indicators(100)
    make = _Maker(seed)
    rng = make.rng
    created = make.stamp(_BASE - timedelta(days=30))
    producer = make.id("identity")
    yield {
        "type": "identity",
        "spec_version": "2.1",
        "id": producer,
        "created": created,
        "modified": created,
        "name": f"{make.name()} Cyber Centre",
        "identity_class": "organization",
        "sectors": ["government"],
    }
    labels = sample_labels(producer)
    for label in labels:
        yield label_marking(label, created=created, created_by_ref=producer)
    markings = [[TLP2_IDS[level]] for level in ("clear", "green", "amber", "amber+strict", "red")]
    markings += [[TLP2_IDS[label.tlp], label.marking_id] for label in labels]

    def common(kind: str, moment: datetime) -> dict[str, Any]:
        stamp = make.stamp(moment)
        return {
            "type": kind,
            "spec_version": "2.1",
            "id": make.id(kind),
            "created": stamp,
            "modified": stamp,
            "created_by_ref": producer,
            "object_marking_refs": rng.choice(markings),
        }

    intrusion_sets = []
    for _ in range(mix.intrusion_sets):
        obj = common("intrusion-set", make.time(60))
        obj |= {
            "name": f"{make.name()} Group",
            "aliases": [make.name(1).upper()],
            "primary_motivation": rng.choice(_MOTIVATIONS),
            "resource_level": "government",
        }
        intrusion_sets.append(obj["id"])
        yield obj
    malware = []
    for _ in range(mix.malware):
        obj = common("malware", make.time(90))
        obj |= {
            "name": make.name(1) + rng.choice(("Loader", "RAT", "Wiper", "Stealer")),
            "is_family": True,
            "malware_types": [rng.choice(_MALWARE_TYPES)],
        }
        malware.append(obj["id"])
        yield obj
        if intrusion_sets:
            yield _relationship(common, make, "uses", rng.choice(intrusion_sets), obj["id"])
    campaigns = []
    for _ in range(mix.campaigns):
        first = make.time(120)
        obj = common("campaign", first)
        obj |= {
            "name": f"Operation {make.name()}",
            "first_seen": make.stamp(first),
            "objective": f"Access to {rng.choice(_SECTORS)} networks",
        }
        campaigns.append(obj["id"])
        yield obj
        if intrusion_sets:
            yield _relationship(
                common, make, "attributed-to", obj["id"], rng.choice(intrusion_sets)
            )
    indicators = []
    for _ in range(mix.indicators):
        moment = make.time()
        obj = common("indicator", moment)
        obj |= {
            "name": f"{make.name(1)} infrastructure",
            "indicator_types": ["malicious-activity"],
            "pattern": make.pattern(),
            "pattern_type": "stix",
            "valid_from": make.stamp(moment),
            "kill_chain_phases": [
                {
                    "kill_chain_name": "lockheed-martin-cyber-kill-chain",
                    "phase_name": rng.choice(_KILL_CHAIN),
                }
            ],
        }
        indicators.append(obj["id"])
        yield obj
        if malware and rng.random() < 0.5:
            yield _relationship(common, make, "indicates", obj["id"], rng.choice(malware))
    for _ in range(mix.sightings if indicators else 0):
        first = make.time()
        obj = common("sighting", first)
        obj |= {
            "sighting_of_ref": rng.choice(indicators),
            "count": rng.randrange(1, 500),
            "first_seen": make.stamp(first),
            "last_seen": make.stamp(first + timedelta(hours=rng.randrange(1, 72))),
            "where_sighted_refs": [producer],
        }
        yield obj
    pool = indicators + malware + campaigns + intrusion_sets
    for _ in range(mix.reports if pool else 0):
        moment = make.time()
        obj = common("report", moment)
        obj |= {
            "name": f"{make.name()} activity report",
            "published": make.stamp(moment),
            "report_types": ["threat-report"],
            "object_refs": rng.sample(pool, min(len(pool), rng.randrange(2, 12))),
        }
        yield obj


def _relationship(common: Any, make: _Maker, kind: str, source: str, target: str) -> dict[str, Any]:
    obj: dict[str, Any] = common("relationship", make.time())
    obj |= {"relationship_type": kind, "source_ref": source, "target_ref": target}
    return obj
