"""The gate between a valid object and the store: sign what this node publishes first, verify
what others signed.

An object imported by the node's own operator without a signature is published here first,
so the node signs it as its publisher. An object that carries a signature keeps it, and the
signature must verify against a key this node trusts (its own, current or rotated, or a
partner's pinned key) held by the identity it names. An object received from a partner must
be signed: a missing signature there is a rejection, never a silent re-signing.

The built-in objects every node holds (the TLP markings, the Allied identity and extension
definitions) are the same everywhere and carry no signature; they pass only if they are
exactly the built-in or standard ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson

from allied.integrity.signing import (
    SignatureError,
    Signer,
    TrustedKey,
    has_signature,
    sign,
    verify,
)
from allied.stix.labels import TLP_BY_ID, builtin_objects
from allied.stix.model import StixObject

_BUILTIN: dict[str, dict[str, Any]] = {data["id"]: data for data in builtin_objects()}


def is_builtin(data: Mapping[str, Any]) -> bool:
    """The object is one of the built-ins, unaltered."""
    known = _BUILTIN.get(str(data.get("id")))
    return known is not None and dict(data) == known


def is_standard_id(object_id: str) -> bool:
    """The id of an object every node holds unsigned: a TLP marking or a built-in."""
    return object_id in TLP_BY_ID or object_id in _BUILTIN


class Origin:
    """Signs and verifies origin signatures for one node."""

    def __init__(self, signer: Signer, keys: Mapping[str, TrustedKey]) -> None:
        self.signer = signer
        self.keys = keys

    def admit(self, obj: StixObject, *, received_from: str | None = None) -> StixObject:
        """The object as it is to be stored (signed if this node publishes it first), or
        SignatureError saying why it is refused."""
        data = obj.data
        if obj.id in TLP_BY_ID:  # validation has checked it is the standard one, unaltered
            return obj
        if obj.id in _BUILTIN:
            if not is_builtin(data):
                raise SignatureError(obj.id, "differs from the built-in object of that id")
            return obj
        if has_signature(data):
            verify(data, self.keys)
            return obj
        if received_from is not None:
            raise SignatureError(obj.id, f"no origin signature (received from {received_from})")
        signed = sign(data, self.signer)
        # the signature adds no reference, marking or version: only the data and text change
        return replace(obj, data=MappingProxyType(signed), json=orjson.dumps(signed).decode())
