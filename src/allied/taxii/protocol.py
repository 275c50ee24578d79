"""TAXII 2.1 wire details: media types, errors, timestamps, filters and ``next`` tokens.

Everything a client can send is checked here and turned into a :class:`TaxiiError` with the
status the specification gives it, or into the store's terms (:class:`Selection`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from allied.stix.checks import TIMESTAMP, timestamp_key
from allied.store.pages import ALL, FIRST, LAST, Selection

MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
SPEC_VERSION = "2.1"

_FILTERS = {"added_after", "limit", "next"}
_MATCH = re.compile(r"^match\[([a-z_]+)\]\Z")
_MATCH_FIELDS = {"id", "type", "version", "spec_version"}
_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{1,249}\Z")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,249}--[0-9a-fA-F-]{36}\Z")
_ADDED = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z\Z")


class TaxiiError(Exception):
    """An error answered with a TAXII error message (TAXII 2.1 section 3.6.1)."""

    def __init__(self, status: int, title: str, description: str = "") -> None:
        super().__init__(f"{status} {title}: {description}")
        self.status = status
        self.title = title
        self.description = description

    def document(self, error_id: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {"title": self.title, "http_status": str(self.status)}
        if self.description:
            body["description"] = self.description
        if error_id is not None:
            body["error_id"] = error_id
        return body


def not_found(what: str = "the resource") -> TaxiiError:
    return TaxiiError(404, "Not Found", f"{what} does not exist or is not shared with you")


def bad_request(description: str) -> TaxiiError:
    return TaxiiError(400, "Bad Request", description)


def added_after(value: str) -> str:
    """A TAXII timestamp in the store's ``date_added`` form (microseconds, UTC): stored times
    have microsecond precision, so finer digits are cut, which keeps "strictly after" exact."""
    found = _ADDED.match(value)
    if found is None:
        raise bad_request(
            f"added_after {value!r}: expected a UTC timestamp such as 2026-03-01T10:00:00.000Z"
        )
    try:
        datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise bad_request(f"added_after {value!r}: not a valid date and time") from None
    fraction = (found.group(2) or "")[:6].ljust(6, "0")
    return f"{found.group(1)}.{fraction}Z"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Filters:
    """The query parameters of a TAXII request, checked."""

    ids: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    versions: tuple[str, ...] = (LAST,)
    #: False when ``match[spec_version]`` asks for no version this node holds
    spec_matches: bool = True
    added_after: str | None = None
    limit: int | None = None
    next: str | None = None


def parse_filters(
    params: list[tuple[str, str]], *, allowed: frozenset[str], default_version: str = LAST
) -> Filters:
    """Check the query of a request that accepts the filters in ``allowed`` (``added_after``,
    ``limit``, ``next`` and ``match[FIELD]`` names). A parameter given twice, an unknown
    one or a bad value is a 400 that names it."""
    seen: dict[str, str] = {}
    for name, value in params:
        if name in seen:
            raise bad_request(f"{name} is given more than once; give one comma-separated list")
        if name not in allowed:
            match = _MATCH.match(name)
            if match is not None and match.group(1) not in _MATCH_FIELDS:
                raise bad_request(
                    f"{name}: this server filters on match[id], match[type], match[version] "
                    "and match[spec_version]"
                )
            raise bad_request(f"{name}: not a parameter of this endpoint")
        seen[name] = value
    ids = _list(seen, "match[id]")
    if ids is not None:
        for value in ids:
            if _ID.match(value) is None:
                raise bad_request(f"match[id] {value!r}: expected a STIX identifier TYPE--UUID")
    types = _list(seen, "match[type]")
    if types is not None:
        for value in types:
            if _TYPE.match(value) is None:
                raise bad_request(f"match[type] {value!r}: not a STIX type name")
    versions: tuple[str, ...] = (default_version,)
    chosen = _list(seen, "match[version]")
    if chosen is not None:
        keys = []
        for value in chosen:
            if value in (LAST, FIRST, ALL):
                keys.append(value)
            elif TIMESTAMP.match(value):
                keys.append(timestamp_key(value))
            else:
                raise bad_request(
                    f"match[version] {value!r}: expected last, first, all or a timestamp"
                )
        versions = tuple(keys)
    spec = _list(seen, "match[spec_version]")
    limit = None
    if "limit" in seen:
        text = seen["limit"]
        if re.fullmatch(r"[0-9]{1,30}", text) is None or int(text) < 1:
            raise bad_request(f"limit {text[:40]!r}: expected a positive whole number")
        limit = int(text)
    return Filters(
        ids=ids,
        types=types,
        versions=versions,
        spec_matches=spec is None or SPEC_VERSION in spec,
        added_after=added_after(seen["added_after"]) if "added_after" in seen else None,
        limit=limit,
        next=seen.get("next"),
    )


def _list(seen: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    if name not in seen:
        return None
    values = tuple(dict.fromkeys(v.strip() for v in seen[name].split(",")))
    if not all(values):
        raise bad_request(f"{name} {seen[name]!r}: an empty value in the list")
    return values


class Cursors:
    """``next`` tokens: the position of a page's last row, sealed (XSalsa20-Poly1305) with a
    key derived from the node's signing key, so that every worker of the node accepts them
    and no client can read the positions (gaps between them would count withheld objects)
    or forge one."""

    def __init__(self, secret: bytes) -> None:
        key = hashlib.blake2b(secret, digest_size=32, person=b"allied-cursor").digest()
        self._box = SecretBox(key)

    def seal(self, partner: str, scope: str, after: tuple[str, int]) -> str:
        plain = orjson.dumps([partner, scope, after[0], after[1]])
        return base64.urlsafe_b64encode(self._box.encrypt(plain)).decode().rstrip("=")

    def open(self, token: str, partner: str, scope: str) -> tuple[str, int]:
        """The (date added, position) in ``token``, if this node issued it to ``partner``
        for ``scope``."""
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            who, where, added, position = orjson.loads(self._box.decrypt(sealed))
        except (ValueError, TypeError, CryptoError, orjson.JSONDecodeError):
            raise bad_request("next: not a token this server issued") from None
        if who != partner or where != scope:
            raise bad_request("next: the token belongs to another request")
        if not isinstance(added, str) or not isinstance(position, int):
            raise bad_request("next: not a token this server issued")
        return added, position


def selection(
    filters: Filters,
    *,
    collection: str | None,
    limit: int,
    after: tuple[str, int] | None,
    ids: tuple[str, ...] | None = None,
) -> Selection:
    return Selection(
        collection=collection,
        ids=ids if ids is not None else filters.ids,
        types=filters.types,
        versions=filters.versions,
        added_after=filters.added_after,
        after=after,
        limit=limit,
    )
