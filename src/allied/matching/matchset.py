"""What the engines look rows up by, and the exact verdict on the rows they find.

The work is split in two so that every engine gives the same answer:

1. An engine (DuckDB, Spark) scans the logs once and keeps only *candidate* rows: those with
   a field value (or an address in a network) that some atom names. It groups them by their
   field values, with a count and the first and last time seen. This is the big-data part:
   a hash lookup per field and row, in the engine's own code.
2. :meth:`MatchSet.hits` decides, in Python and in one place, which conjunctions each
   candidate group satisfies (all atoms of a conjunction in the same row), and sums the
   groups up per indicator. Candidates are a tiny share of the rows.

The engine's lookups must never miss a row this module would match: they use the keys
:meth:`MatchSet.lookups` lists, computed by the same normalisation (compile.normalise).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from allied.matching.compile import FIELDS, Atom, Compiled, network_key, normalise

#: the canonical log fields, in the order engines hand candidate groups over
COLUMNS = tuple(FIELDS)
#: up to this many first bytes of the IPv4 networks, a row's address is tested for them
#: before it is parsed (:meth:`Lookups.first_bytes`); beyond, every address is parsed
FIRST_BYTES = 16


@dataclass(frozen=True)
class Lookups:
    """The keys an engine filters rows with."""

    #: field -> normalised values an atom names
    values: Mapping[str, frozenset[str]]
    #: (field, IP version, prefix length) -> network keys (:func:`network_key`)
    networks: Mapping[tuple[str, int, int], frozenset[str]]

    @property
    def fields(self) -> frozenset[str]:
        """The fields some atom tests: the only ones an engine must read and normalise."""
        return frozenset(self.values) | {name for name, _, _ in self.networks}

    def needs_ipv6(self, field: str) -> bool:
        """Whether an IPv6 address in ``field`` could match: some key of it is one. If none
        is, an engine need not normalise the field's IPv6 values (a colon never leaves
        them, and no IPv4 key has one): a log's IPv6 traffic then costs no UDF calls."""
        return any(":" in key for key in self.values.get(field, ())) or any(
            name == field and version == 6 for name, version, _ in self.networks
        )

    def first_bytes(self, network: tuple[str, int, int]) -> list[int]:
        """The first bytes of the IPv4 networks ``network`` (field, 4, length) names, when
        there are few: an engine then tests a row's address as text (written ``b.`` and up
        to ``b/``) before it parses it, and most rows are never parsed. Empty when there are
        too many (or the networks are shorter than a byte): every address is parsed."""
        _name, version, length = network
        if version != 4 or length < 8:
            return []
        firsts = sorted({int(key) >> (length - 8) for key in self.networks[network]})
        return firsts if len(firsts) <= FIRST_BYTES else []


@dataclass
class Hit:
    """One indicator seen in the logs."""

    indicator: str
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    #: (field, value) of the log values that matched
    values: set[tuple[str, str]] = field(default_factory=set)

    def add(self, count: int, first: datetime | None, last: datetime | None) -> None:
        self.count += count
        if first is not None and (self.first_seen is None or first < self.first_seen):
            self.first_seen = first
        if last is not None and (self.last_seen is None or last > self.last_seen):
            self.last_seen = last


@dataclass(frozen=True)
class Group:
    """Candidate rows sharing their field values (normalised), as an engine counted them."""

    values: Mapping[str, str | None]
    count: int
    first: datetime | None
    last: datetime | None


class MatchSet:
    """The compiled indicators, indexed for lookups and for the verdict."""

    def __init__(self, compiled: Mapping[str, Compiled]) -> None:
        self._conjunctions: list[tuple[str, tuple[Atom, ...]]] = []
        #: (field, key) -> the atoms that key satisfies, as (conjunction, atom position)
        self._by_key: dict[tuple[str, str], list[tuple[int, int]]] = {}
        values: dict[str, set[str]] = {}
        networks: dict[tuple[str, int, int], set[str]] = {}
        for indicator, pattern in sorted(compiled.items()):
            for conjunction in pattern.conjunctions:
                number = len(self._conjunctions)
                self._conjunctions.append((indicator, conjunction))
                for position, atom in enumerate(conjunction):
                    if atom.network:
                        net = ipaddress.ip_network(atom.value)
                        slot = (atom.field, net.version, net.prefixlen)
                        networks.setdefault(slot, set()).add(atom.key())
                        where = f"{atom.field}/{net.version}/{net.prefixlen}"
                    else:
                        values.setdefault(atom.field, set()).add(atom.value)
                        where = atom.field
                    self._by_key.setdefault((where, atom.key()), []).append((number, position))
        self.lookups = Lookups(
            {name: frozenset(found) for name, found in values.items()},
            {slot: frozenset(found) for slot, found in networks.items()},
        )

    @property
    def empty(self) -> bool:
        return not self._conjunctions

    def satisfied(self, row: Mapping[str, str | None]) -> list[int]:
        """The conjunctions one row (its fields normalised) satisfies."""
        met: dict[int, set[int]] = {}
        for name, value in row.items():
            if value is None or value == "":
                continue
            for number, position in self._by_key.get((name, value), ()):
                met.setdefault(number, set()).add(position)
            if FIELDS[name] != "ip":
                continue
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                continue
            for slot_field, version, length in self.lookups.networks:
                if slot_field != name or version != address.version:
                    continue
                where = f"{name}/{version}/{length}"
                for number, position in self._by_key.get((where, network_key(address, length)), ()):
                    met.setdefault(number, set()).add(position)
        return [
            n for n, positions in met.items() if len(positions) == len(self._conjunctions[n][1])
        ]

    def hits(self, groups: Iterable[Group]) -> dict[str, Hit]:
        """Per indicator: rows that matched one of its conjunctions, first and last seen,
        and the values that matched. A row matching several conjunctions of one
        indicator counts once."""
        found: dict[str, Hit] = {}
        for group in groups:
            indicators: dict[str, set[tuple[str, str]]] = {}
            for number in self.satisfied(group.values):
                indicator, conjunction = self._conjunctions[number]
                seen = indicators.setdefault(indicator, set())
                for atom in conjunction:
                    value = group.values.get(atom.field)
                    if value is not None:
                        seen.add((atom.field, value))
            for indicator, values in indicators.items():
                hit = found.setdefault(indicator, Hit(indicator))
                hit.add(group.count, group.first, group.last)
                hit.values |= values
        return found


def normalise_row(row: Mapping[str, object]) -> dict[str, str | None]:
    """A row's canonical fields as text, normalised as indicators are (ports as integers'
    text): what an engine's SQL must produce too."""
    out: dict[str, str | None] = {}
    for name in COLUMNS:
        value = row.get(name)
        if value is None:
            out[name] = None
            continue
        kind = FIELDS[name]
        text = str(value)
        if kind == "port":
            text = text.strip()
            out[name] = str(int(text)) if text.isdigit() else None
        else:
            normal = normalise(kind, text)
            out[name] = normal or None
    return out
