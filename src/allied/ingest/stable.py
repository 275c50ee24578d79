"""Objects an importer writes in this node's name, with ids that follow from what they say.

A CSV row or a report's text has no STIX id of its own; giving each object a random one
would make every re-import add everything again. Ids are instead UUIDv5 of this node's
identity and the object's defining content (an indicator's pattern, a report's text), and
:func:`settle` gives an object the version already stored when nothing else changed, so a
re-import is all duplicates. When a row's description or confidence did change, the object
becomes a new version of the same id (``modified`` later than the stored one), as STIX
versioning intends.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from allied.integrity.signing import SIGNATURE_EXTENSION_ID
from allied.store.store import Store, stix_stamp

#: namespace of the ids importers derive (fixed: the same input gives the same id everywhere)
_NAMESPACE = uuid.UUID("547d5b0d-641e-5192-9466-5e7738dfdb4f")  # uuid5(URL, allied.invalid/import)
_VERSION_PROPERTIES = ("created", "modified")


def stable_id(kind: str, creator: str, *key: str) -> str:
    """The id of the ``kind`` object ``creator`` writes for ``key`` (UUIDv5)."""
    name = "\x1f".join((kind, creator, *key))
    return f"{kind}--{uuid.uuid5(_NAMESPACE, name)}"


def settle(
    store: Store, objects: Sequence[dict[str, Any]], defaulted: Collection[str] = ()
) -> set[int]:
    """Give each of ``objects`` (built with ``created`` and ``modified`` set to now) the
    version it must have: the stored one if its content is unchanged, else a later one.
    Properties in ``defaulted`` were not given by the input but filled in with the time of
    import (an indicator's ``valid_from``): a stored object keeps its own. Returns the
    positions in ``objects`` of those whose stored version is unchanged (what the store would
    take as duplicates); by position, as two objects may share an id (a CSV value listed
    twice, with different comments), and only the unchanged one is a duplicate."""
    stored = store.latest_json_of({obj["id"] for obj in objects})
    unchanged: set[int] = set()
    for position, obj in enumerate(objects):
        text = stored.get(obj["id"])
        if text is None:
            continue
        held = orjson.loads(text)
        for name in defaulted:
            if obj.get(name) == obj["created"] and name in held:
                obj[name] = held[name]
        if _content(held) == _content(obj):
            obj["created"], obj["modified"] = held["created"], held["modified"]
            unchanged.add(position)
            continue
        obj["created"] = held.get("created", obj["created"])
        if obj["modified"] <= held["modified"]:
            obj["modified"] = _later(held["modified"])
    return unchanged


def _content(data: dict[str, Any]) -> dict[str, Any]:
    content = {k: v for k, v in data.items() if k not in _VERSION_PROPERTIES}
    extensions = {
        k: v for k, v in content.get("extensions", {}).items() if k != SIGNATURE_EXTENSION_ID
    }
    content.pop("extensions", None)
    if extensions:
        content["extensions"] = extensions
    return content


def _later(stamp: str) -> str:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    return stix_stamp(moment)
