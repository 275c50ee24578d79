"""The pattern compiler: STIX patterns into keys a log row can be looked up by. One home.

A log row is matched by equality, never by evaluating patterns row by row: each supported
pattern becomes a set of *conjunctions* (its observation in disjunctive normal form), each a
tuple of *atoms* that one row must all satisfy; each atom tests one log field for one value
(``dst_ip = 198.51.100.7``) or one network (``dst_ip`` within ``10.0.0.0/8``). The engines
(:mod:`allied.matching.engine`) then turn every row into its keys and join them with the
keys of the conjunctions (:func:`keys_of`), which is a hash join whatever the number of
indicators.

Supported, per DESIGN.md: ``=`` and ``IN`` on ``ipv4-addr:value``, ``ipv6-addr:value``
(an address, or a CIDR block meaning every address in it; ``ISSUBSET`` too),
``domain-name:value``, ``url:value``, ``email-addr:value``, ``file:hashes.*``, and
``network-traffic`` addresses (``src_ref.value``, ``dst_ref.value``) and ports; ``AND`` and
``OR`` inside one observation, and ``OR`` between observations (a row matching any of
them is a hit). Everything else (``AND`` or ``FOLLOWEDBY`` between observations,
qualifiers, negation, ``LIKE``, ``MATCHES``, ranges, other properties) is *unsupported*,
returned with the reason, never silently dropped.

Values are normalised as the data demands, here and for log values alike
(:func:`normalise`): domains and e-mail addresses in lower case without a trailing dot,
hashes in lower case, IPv6 addresses in their compressed form.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from allied.errors import PatternError
from allied.stix.pattern import (
    BoolOp,
    Comparison,
    ComparisonExpr,
    Observation,
    ObservationExpr,
    ObservationOp,
    Qualified,
    parse_pattern,
)

#: The log fields a pattern can test, what each holds, and how its values are compared.
FIELDS = {
    "src_ip": "ip",
    "dst_ip": "ip",
    "src_port": "port",
    "dst_port": "port",
    "domain": "domain",
    "url": "url",
    "email": "email",
    "md5": "hash",
    "sha1": "hash",
    "sha256": "hash",
    "sha512": "hash",
}

_HASH_FIELDS = {"MD5": "md5", "SHA-1": "sha1", "SHA1": "sha1", "SHA-256": "sha256",
                "SHA256": "sha256", "SHA-512": "sha512", "SHA512": "sha512"}  # fmt: skip
#: Changes whenever what :func:`compile_pattern` or :func:`normalise` makes of a pattern
#: changes: compiled patterns cached under another version are compiled again.
COMPILER_VERSION = 2
#: conjunctions one pattern may expand to (an AND of long IN lists multiplies out)
MAX_CONJUNCTIONS = 4096


class Unsupported(Exception):
    """A pattern outside the subset; the message says which part."""


@dataclass(frozen=True, slots=True)
class Atom:
    """One test of one log field: equal to ``value``, or within the network ``value``
    (``a.b.c.d/n`` or an IPv6 block) when ``network`` is set."""

    field: str
    value: str
    network: bool = False

    def key(self) -> str:
        """The value a row's field must have, as :func:`row_key` writes it."""
        if not self.network:
            return self.value
        net = ipaddress.ip_network(self.value)
        return network_key(net.network_address, net.prefixlen)

    def signature(self) -> str:
        """Which of a row's keys this atom is looked up by: the field, with the prefix
        length for a network (``dst_ip/24``; ``dst_ip/v6:48``)."""
        if not self.network:
            return self.field
        net = ipaddress.ip_network(self.value)
        family = "" if net.version == 4 else "v6:"
        return f"{self.field}/{family}{net.prefixlen}"


Conjunction = tuple[Atom, ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A supported pattern: a row matches when it satisfies every atom of one conjunction."""

    conjunctions: tuple[Conjunction, ...]

    def signatures(self) -> set[tuple[str, ...]]:
        return {tuple(atom.signature() for atom in c) for c in self.conjunctions}


def compile_pattern(text: str) -> Compiled:
    """The conjunctions of ``text``; :class:`Unsupported` (or PatternError for an invalid
    pattern) says why it cannot be matched."""
    pattern = parse_pattern(text)
    root = pattern.root
    if isinstance(root, Observation) and isinstance(root.comparison, Comparison):
        # one comparison, the commonest pattern by far: its atoms are the conjunctions
        atoms = dict.fromkeys(_atoms(root.comparison))
        return Compiled(tuple((atom,) for atom in atoms))
    conjunctions: list[Conjunction] = []
    for observation in _observations(pattern.root):
        conjunctions += _dnf(observation.comparison)
        if len(conjunctions) > MAX_CONJUNCTIONS:
            raise Unsupported(f"expands to more than {MAX_CONJUNCTIONS} combinations")
    unique = tuple(dict.fromkeys(tuple(sorted(set(c), key=_order)) for c in conjunctions))
    return Compiled(tuple(c for c in unique if _satisfiable(c)))


def try_compile(text: str) -> Compiled | str:
    """The compiled pattern, or the reason it is not matched."""
    try:
        return compile_pattern(text)
    except Unsupported as error:
        return f"unsupported: {error}"
    except PatternError as error:
        return f"invalid pattern: {error}"


def _order(atom: Atom) -> tuple[str, str, bool]:
    return (atom.field, atom.value, atom.network)


def _observations(expr: ObservationExpr) -> Iterator[Observation]:
    if isinstance(expr, Observation):
        yield expr
    elif isinstance(expr, ObservationOp):
        if expr.op != "OR":
            raise Unsupported(f"{expr.op} between observations (only OR is matched row by row)")
        # a long OR chain is left-deep: walk its spine instead of recursing
        node: ObservationExpr = expr
        rights: list[ObservationExpr] = []
        while isinstance(node, ObservationOp) and node.op == "OR":
            rights.append(node.right)
            node = node.left
        yield from _observations(node)
        for right in reversed(rights):
            yield from _observations(right)
    elif isinstance(expr, Qualified):
        raise Unsupported(f"the qualifier {expr.qualifier}")
    else:  # pragma: no cover - the parser builds nothing else
        raise Unsupported(f"{type(expr).__name__}")


def _dnf(expr: ComparisonExpr) -> list[Conjunction]:
    """The comparison expression as an OR of ANDs of atoms."""
    if isinstance(expr, Comparison):
        return [(atom,) for atom in _atoms(expr)]
    # flatten the left-deep chain of one operator
    operands: list[ComparisonExpr] = []
    node: ComparisonExpr = expr
    while isinstance(node, BoolOp) and node.op == expr.op:
        operands.append(node.right)
        node = node.left
    operands.append(node)
    parts = [_dnf(operand) for operand in reversed(operands)]
    if expr.op == "OR":
        return [c for part in parts for c in part]
    total = 1
    for part in parts:
        total *= len(part)
        if total > MAX_CONJUNCTIONS:
            raise Unsupported(f"expands to more than {MAX_CONJUNCTIONS} combinations")
    return [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts)]


def _atoms(comparison: Comparison) -> list[Atom]:
    """The alternatives one comparison allows (an IN set gives several)."""
    if comparison.negated:
        raise Unsupported(f"negation ({comparison})")
    fields = _fields(comparison)
    op = comparison.op
    if op in ("=", "IN"):
        values = comparison.value if op == "IN" else (comparison.value,)
        assert isinstance(values, tuple)
    elif op == "ISSUBSET" and fields[0].endswith("_ip"):
        values = (comparison.value,)
    else:
        raise Unsupported(f"the operator {op} ({comparison})")
    atoms = []
    for value in values:
        for field in fields:
            atoms.append(_atom(field, value, comparison))
    return atoms


def _fields(comparison: Comparison) -> tuple[str, ...]:
    """The log fields a comparison's object path can be tested on."""
    path = comparison.object_path
    kind, steps = path.object_type, path.steps
    if kind in ("ipv4-addr", "ipv6-addr") and steps == ("value",):
        return ("src_ip", "dst_ip")  # either end of a connection
    if kind == "network-traffic":
        if steps in (("src_ref", "value"), ("dst_ref", "value")):
            return (f"{str(steps[0])[:3]}_ip",)
        if steps in (("src_port",), ("dst_port",)):
            return (str(steps[0]),)
    if kind in ("domain-name", "url", "email-addr") and steps == ("value",):
        return ({"domain-name": "domain", "email-addr": "email"}.get(kind, kind),)
    if kind == "file" and len(steps) == 2 and steps[0] == "hashes":
        algorithm = _HASH_FIELDS.get(str(steps[1]).upper())
        if algorithm is not None:
            return (algorithm,)
    raise Unsupported(f"the property {path} is not matched against logs")


def _atom(field: str, value: object, comparison: Comparison) -> Atom:
    kind = FIELDS[field]
    if kind == "port":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
            raise Unsupported(f"{value!r} is not a port number ({comparison})")
        return Atom(field, str(value))
    if not isinstance(value, str):
        raise Unsupported(f"{value!r} is not a string ({comparison})")
    if kind == "ip":
        if _DOTTED_QUAD.fullmatch(value):  # the commonest value: an address as it is
            return Atom(field, value)
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise Unsupported(f"{value!r} is not an IP address or network") from None
        if network.num_addresses == 1:
            return Atom(field, str(network.network_address))
        return Atom(field, str(network), network=True)
    normal = normalise(kind, value)
    if not normal:
        raise Unsupported(f"an empty value ({comparison})")
    return Atom(field, normal)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: an IPv4 address in the form ipaddress writes it (no leading zeros), so it is its own
#: normal form; anything else goes through ipaddress
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def _satisfiable(conjunction: Conjunction) -> bool:
    """One row has one value per field: two different values for one field never match."""
    seen: dict[str, str] = {}
    for atom in conjunction:
        if atom.network:
            continue
        if seen.setdefault(atom.field, atom.value) != atom.value:
            return False
    return True


def normalise(kind: str, value: str) -> str:
    """A value as it is compared: the same function for indicators and log values.

    What the data demands and nothing more, since every log row goes through it (in the
    engines' SQL, :func:`normalised_sql`): domains, e-mail addresses and hashes in lower
    case, domains without their trailing dot, IPv6 addresses in their compressed form.
    Values are not trimmed: log formats do not pad them."""
    if kind == "domain":
        return value.rstrip(".").lower()
    if kind in ("email", "hash"):
        return value.lower()
    if kind == "ip" and ":" in value:
        try:
            return str(ipaddress.IPv6Address(value.split("%", 1)[0]))
        except ValueError:
            return value
    return value


#: What differs between the engines' SQL dialects in :func:`normalised_sql`.
_DIALECTS = {
    "duckdb": {"ends": "ends_with({0}, {1})", "has": "contains({0}, {1})",
               "rtrim_dot": "rtrim({0}, '.')",
               "port": "CAST(TRY_CAST(trim({0}) AS UINTEGER) AS VARCHAR)"},
    "spark": {"ends": "endswith({0}, {1})", "has": "contains({0}, {1})",
              "rtrim_dot": "trim(TRAILING '.' FROM {0})",
              "port": "CAST(try_cast(trim({0}) AS INT) AS STRING)"},
}  # fmt: skip


def normalised_sql(field: str, dialect: str) -> str:
    """:func:`normalise` in an engine's SQL, for column ``r.<field>`` (IPv6 through the
    ``allied_v6`` function each engine registers as :func:`log_ip`).

    Every row of every log goes through this, so the costly string functions run behind
    cheap tests, only for the values that need them: a value already in normal form is
    passed on as it is. An empty value stays an empty string; no key is empty, so it never
    matches."""
    words = _DIALECTS[dialect]
    kind = FIELDS[field]
    raw = f"r.{field}"
    if kind == "domain":
        dotted = words["ends"].format(raw, "'.'")
        return (
            f"CASE WHEN {dotted} THEN lower({words['rtrim_dot'].format(raw)}) ELSE lower({raw}) END"
        )
    if kind == "email":
        return f"lower({raw})"
    if kind == "hash":  # hexadecimal: only its six letters can be in upper case
        upper = " OR ".join(words["has"].format(raw, f"'{letter}'") for letter in "ABCDEF")
        return f"CASE WHEN {upper} THEN lower({raw}) ELSE {raw} END"
    if kind == "ip":
        return (
            f"CASE WHEN {words['has'].format(raw, repr(':'))} THEN allied_v6({raw}) ELSE {raw} END"
        )
    if kind == "port":
        return words["port"].format(raw)
    return raw


def network_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address, length: int) -> str:
    """The network of ``length`` bits an address is in, as the number its first ``length``
    bits make (what a row's ``dst_ip/24`` key holds)."""
    width = 32 if address.version == 4 else 128
    return str(int(address) >> (width - length))


def log_ip(value: str | None) -> str | None:
    """An IP address from a log, as it is compared (what the engines' SQL calls for IPv6)."""
    return None if value is None else normalise("ip", value)


def log_ipv6_network(value: str | None, length: int) -> str | None:
    """The network key of an IPv6 address from a log, None if it is not one."""
    if value is None:
        return None
    try:
        address = ipaddress.IPv6Address(value.split("%", 1)[0])
    except ValueError:
        return None
    return network_key(address, length)


def signatures_of(compiled: Iterable[Compiled]) -> list[tuple[str, ...]]:
    """Every key a row must be looked up by, for these patterns, in a stable order."""
    found: set[tuple[str, ...]] = set()
    for pattern in compiled:
        found |= pattern.signatures()
    return sorted(found)
