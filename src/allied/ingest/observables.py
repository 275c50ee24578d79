"""Indicator values as people write them: defanged, with stray spaces, case and trailing dots,
turned into the one STIX pattern that means them.

CSV lists and written reports hand us bare values (``hxxps://evil[.]example/x``,
``198.51.100[.]7``, an MD5); this is the one place that decides what kind of value a string
is, how it is normalised (the matching engines compare normalised values, see
``allied.matching.compile.normalise``) and how it is quoted into a pattern. Refanging only
undoes the usual defanging marks: a value that is still not well formed afterwards is refused
rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import idna

from allied.matching.compile import normalise
from allied.stix.pattern import check_pattern, string_literal

#: Kinds of value, each with the STIX object path its pattern compares.
PATHS = {
    "ipv4": "ipv4-addr:value",
    "ipv6": "ipv6-addr:value",
    "domain": "domain-name:value",
    "url": "url:value",
    "email": "email-addr:value",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'",
}

#: Type names found in indicator lists (MISP, vendors' exports), by the kind they mean.
TYPE_NAMES = {
    **{name: "ipv4" for name in ("ipv4", "ip", "ip-dst", "ip-src", "ipv4-addr", "ip address")},
    **{name: "ipv6" for name in ("ipv6", "ipv6-addr")},
    **{name: "domain" for name in ("domain", "domain-name", "hostname", "fqdn", "host")},
    **{name: "url" for name in ("url", "uri", "link")},
    **{name: "email" for name in ("email", "e-mail", "email-addr", "email-src", "email-dst")},
    **{name: name for name in ("md5", "sha1", "sha256", "sha512")},
    "sha-1": "sha1",
    "sha-256": "sha256",
    "sha-512": "sha512",
}

_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX = re.compile(r"[0-9a-fA-F]+")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TLD = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_LOCAL_PART = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}")

# the defanging marks in use: [.] (.) {.} [dot] (dot), hxxp / hXXp / hxxps, [:] [://],
# [at] (at) [@]; undone in this order so that a bracketed dot inside a URL is undone too
_DEFANGS = (
    (re.compile(r"\s*[\[({]\s*(?:\.|dot)\s*[\])}]\s*", re.IGNORECASE), "."),
    (re.compile(r"\s*[\[({]\s*(?:@|at)\s*[\])}]\s*", re.IGNORECASE), "@"),
    (re.compile(r"[\[({]\s*:\s*[\])}]"), ":"),
    (re.compile(r"[\[({]://[\])}]"), "://"),
    (re.compile(r"\bh(?:xx|XX|xX|Xx)p(s?)(?=(?:\[?:|://))", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bfxp(?=(?:\[?:|://))", re.IGNORECASE), "ftp"),
)


@dataclass(frozen=True)
class Observable:
    kind: str
    value: str

    @property
    def pattern(self) -> str:
        """The STIX pattern matching this value (checked against the pattern grammar)."""
        # a network is matched as a set of addresses: STIX's ISSUBSET, never equality
        operator = "ISSUBSET" if "/" in self.value and self.kind in ("ipv4", "ipv6") else "="
        pattern = f"[{PATHS[self.kind]} {operator} {string_literal(self.value)}]"
        check_pattern(pattern)
        return pattern

    @property
    def name(self) -> str:
        return f"{self.kind.upper() if self.kind in _HASH_NAMES else self.kind}: {self.value}"


_HASH_NAMES = frozenset({"md5", "sha1", "sha256", "sha512"})


def refang(text: str) -> str:
    """``text`` with the usual defanging marks undone (``hxxp``, ``[.]``, ``[at]``, ``[:]``)."""
    for pattern, replacement in _DEFANGS:
        text = pattern.sub(replacement, text)
    return text


def kind_of(type_name: str) -> str | None:
    """The kind a type name of an indicator list means (``ip-dst``, ``SHA-256``, ``hostname``),
    or None for a name that is not known."""
    return TYPE_NAMES.get(type_name.strip().lower())


def observe(value: str, kind: str | None = None) -> Observable | str:
    """The observable ``value`` (refanged) is, of ``kind`` or of whatever kind it is
    recognisably; otherwise the reason it is not one."""
    text = refang(value.strip()).strip()
    if not text:
        return "empty value"
    kinds = (kind,) if kind is not None else _detection_order(text)
    for candidate in kinds:
        try:
            found = _READERS[candidate](text)
        except _NotAnIndicator as refusal:
            return str(refusal)
        if found is not None:
            return Observable(candidate, found)
    if kind is not None:
        return f"{value.strip()!r} is not a well-formed {kind} value"
    return f"{value.strip()!r} is not an IP address, domain, URL, e-mail address or hash"


def _detection_order(text: str) -> tuple[str, ...]:
    if _SCHEME.match(text):
        return ("url",)
    if "@" in text:
        return ("email",)
    if _HEX.fullmatch(text) and len(text) in _HASH_LENGTHS:
        return (_HASH_LENGTHS[len(text)],)
    if ":" in text:
        return ("ipv6",)
    if "/" in text:
        return ("ipv4", "ipv6")
    return ("ipv4", "domain")


class _NotAnIndicator(ValueError):
    """Well formed, but nothing to match on (a network of a sizeable part of the Internet)."""


#: the widest networks taken as indicators: wider ones would match a good part of any log
_WIDEST = {4: 8, 6: 32}


def _ip(text: str, version: int) -> str | None:
    text = text.split("%", 1)[0] if version == 6 else text  # a zone id names a local link
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)  # host bits cleared
            if network.version != version:
                return None
            if network.prefixlen < _WIDEST[version]:
                raise _NotAnIndicator(
                    f"{text!r} is a network of more than a /{_WIDEST[version]}: no indicator"
                )
            if network.prefixlen == network.max_prefixlen:
                return str(network.network_address)
            return str(network)
        address = ipaddress.ip_address(text)
    except _NotAnIndicator:
        raise
    except ValueError:
        return None
    return str(address) if address.version == version else None


def _domain(text: str) -> str | None:
    name = text.rstrip(".").lower()
    try:  # IDNA 2008 with UTS 46, as browsers resolve names (ß stays ß, not ss)
        name = (
            idna.encode(name, uts46=True, transitional=False).decode()
            if not name.isascii()
            else name
        )
    except (idna.IDNAError, UnicodeError):
        return None
    parts = name.split(".")
    if len(name) > 253 or len(parts) < 2 or not _TLD.fullmatch(parts[-1]):
        return None
    if not all(_LABEL.fullmatch(part) for part in parts):
        return None
    return normalise("domain", name)


def _url(text: str) -> str | None:
    match = _SCHEME.match(text)
    if match is None or any(c.isspace() for c in text):
        return None
    rest = text[match.end() :]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        if _ip(host[1:].split("]", 1)[0], 6) is None:
            return None
    else:
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if _ip(bare, 4) is None and _domain(bare) is None:
            return None
    return match.group(0).lower() + rest


def _email(text: str) -> str | None:
    local, sep, domain = text.rpartition("@")
    if not sep or not _LOCAL_PART.fullmatch(local):
        return None
    host = _domain(domain)
    return None if host is None else normalise("email", f"{local}@{host}")


_Reader = Callable[[str], str | None]


def _hash(length: int) -> _Reader:
    def read(text: str) -> str | None:
        if len(text) == length and _HEX.fullmatch(text):
            return text.lower()
        return None

    return read


_READERS: dict[str, _Reader] = {
    "ipv4": lambda text: _ip(text, 4),
    "ipv6": lambda text: _ip(text, 6),
    "domain": _domain,
    "url": _url,
    "email": _email,
    "md5": _hash(32),
    "sha1": _hash(40),
    "sha256": _hash(64),
    "sha512": _hash(128),
}
