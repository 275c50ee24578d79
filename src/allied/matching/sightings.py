"""What a match produces: STIX sightings, and the values seen as observed-data.

One sighting per indicator hit: how many rows, first and last seen, where (this node's
identity). The log values that matched travel as cyber observables in an observed-data the
sighting points at, under the same markings as the sighting: the release rules then decide
for both together, so a value is never shared further than the sighting that carries it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from allied.integrity.canonical import canonical
from allied.matching.matchset import Hit

#: STIX 2.1 section 2.9: the namespace of deterministic cyber-observable ids
_SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_MAX_COUNT = 999_999_999  # the sighting's count property's maximum
_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}


def _stamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def observable(field: str, value: str) -> dict[str, Any] | None:
    """The cyber observable of one matched log value (ports have none of their own)."""
    if field.endswith("_ip"):
        kind = "ipv6-addr" if ":" in value else "ipv4-addr"
        contributing: dict[str, Any] = {"value": value}
    elif field in ("domain", "url", "email"):
        kind = {"domain": "domain-name", "email": "email-addr"}.get(field, field)
        contributing = {"value": value}
    elif field in _HASH_NAMES:
        kind = "file"
        contributing = {"hashes": {_HASH_NAMES[field]: value}}
    else:
        return None
    identifier = uuid.uuid5(_SCO_NAMESPACE, canonical(contributing).decode())
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{identifier}", **contributing}


def sighting_objects(
    hit: Hit, *, identity: str, markings: Sequence[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """The sighting of one indicator hit, its observed-data and observables, all marked."""
    created = _stamp(now or datetime.now(UTC))
    marks = {"object_marking_refs": list(markings)} if markings else {}
    observables: list[dict[str, Any]] = []
    for field, value in sorted(hit.values):
        sco = observable(field, value)
        if sco is not None and sco["id"] not in {o["id"] for o in observables}:
            observables.append({**sco, **marks})
    first = _stamp(hit.first_seen) or created
    last = _stamp(hit.last_seen) or created
    objects: list[dict[str, Any]] = []
    sighting: dict[str, Any] = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": created,
        "modified": created,
        "created_by_ref": identity,
        "sighting_of_ref": hit.indicator,
        "count": min(hit.count, _MAX_COUNT),
        "first_seen": first,
        "last_seen": last,
        "where_sighted_refs": [identity],
        **marks,
    }
    if observables:
        observed = {
            "type": "observed-data",
            "spec_version": "2.1",
            "id": f"observed-data--{uuid.uuid4()}",
            "created": created,
            "modified": created,
            "created_by_ref": identity,
            "first_observed": first,
            "last_observed": last,
            "number_observed": min(hit.count, _MAX_COUNT),
            "object_refs": [o["id"] for o in observables],
            **marks,
        }
        sighting["observed_data_refs"] = [observed["id"]]
        objects += observables
        objects.append(observed)
    objects.append(sighting)
    return objects
