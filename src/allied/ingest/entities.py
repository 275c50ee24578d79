"""The named things a written report mentions: countries, threat actors and intrusion sets,
organisations, found by name or alias.

Countries come from ISO 3166 (pycountry) plus the everyday names ISO spells otherwise
("Russia", "South Korea", "UK"); actors and organisations from the documented list
``data/entities.yaml``, which a node may edit. Matching is whole-word; names in capitals
only (acronyms: APT28, NSA, DPRK) match only in capitals, so that ordinary words are not
mistaken for them. No statistical model is involved: what is found is what the lists name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pycountry
import yaml


@dataclass(frozen=True)
class Entity:
    """``kind`` is the STIX type written for it: location, intrusion-set, threat-actor or
    identity; ``key`` is what identifies it (a country's alpha-2 code, an actor's name)."""

    kind: str
    key: str
    name: str
    aliases: tuple[str, ...] = ()


@cache
def _catalogue() -> tuple[re.Pattern[str], re.Pattern[str], dict[str, Entity]]:
    """(case-insensitive pattern, case-sensitive pattern, entity by lower-cased name)."""
    data: dict[str, Any] = yaml.safe_load(
        resources.files("allied.ingest").joinpath("data/entities.yaml").read_text("utf-8")
    )
    by_name: dict[str, Entity] = {}

    def add(entity: Entity, names: list[str]) -> None:
        for name in names:
            by_name.setdefault(name.lower(), entity)

    extra = {code: list(names) for code, names in data.get("countries", {}).items()}
    for country in pycountry.countries:
        code = country.alpha_2
        common = getattr(country, "common_name", None)
        entity = Entity("location", code, common or country.name)
        names = [country.name, *([common] if common else []), *extra.get(code, [])]
        official = getattr(country, "official_name", None)
        if official:
            names.append(official)
        add(entity, names)
    for actor in data.get("actors", []):
        aliases = tuple(actor.get("aliases", []))
        add(Entity(actor["kind"], actor["name"], actor["name"], aliases), [actor["name"], *aliases])
    for org in data.get("organisations", []):
        aliases = tuple(org.get("aliases", []))
        add(Entity("identity", org["name"], org["name"], aliases), [org["name"], *aliases])
    names = sorted(by_name, key=len, reverse=True)  # the longest name wins at one place
    originals = {n.lower(): n for n in _all_names(data)}
    acronyms = [originals[n] for n in names if n in originals and _is_acronym(originals[n])]
    words = [n for n in names if not (n in originals and _is_acronym(originals[n]))]
    return _alternation(words, re.IGNORECASE), _alternation(acronyms, 0), by_name


def _all_names(data: dict[str, Any]) -> list[str]:
    names = [n for names in data.get("countries", {}).values() for n in names]
    for entry in (*data.get("actors", []), *data.get("organisations", [])):
        names.extend([entry["name"], *entry.get("aliases", [])])
    return names


def _is_acronym(name: str) -> bool:
    letters = [c for c in name if c.isalpha()]
    return bool(letters) and all(c.isupper() for c in letters) and " " not in name.strip()


def _alternation(names: list[str], flags: int) -> re.Pattern[str]:
    if not names:
        return re.compile(r"(?!x)x")
    body = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w-]|\.\w)", flags)


def find_entities(text: str) -> list[Entity]:
    """Every entity ``text`` names, once each, in the order first named."""
    loose, strict, by_name = _catalogue()
    hits: list[tuple[int, Entity]] = []
    for pattern in (loose, strict):
        for match in pattern.finditer(text):
            entity = by_name.get(match.group(0).lower())
            if entity is not None:
                hits.append((match.start(), entity))
    seen: dict[tuple[str, str], Entity] = {}
    for _start, entity in sorted(hits, key=lambda hit: hit[0]):
        seen.setdefault((entity.kind, entity.key), entity)
    return list(seen.values())
