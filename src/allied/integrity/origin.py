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
from allied.stix.labels import LABEL_EXTENSION_ID, STANDARD_MARKINGS, builtin_objects
from allied.stix.model import StixObject

#: Objects every node holds unsigned, exactly as they are: TLP 2.0 and 1.0 markings, built-ins.
_STANDARD: dict[str, dict[str, Any]] = STANDARD_MARKINGS | {
    data["id"]: data for data in builtin_objects()
}


def is_standard_id(object_id: str) -> bool:
    """The id of an object every node holds unsigned: a TLP marking or a built-in."""
    return object_id in _STANDARD


def is_standard(data: Mapping[str, Any]) -> bool:
    """The object is a standard one, exactly."""
    known = _STANDARD.get(str(data.get("id")))
    return known is not None and dict(data) == known


class Origin:
    """Signs and verifies origin signatures for one node."""

    def __init__(
        self,
        signer: Signer | None,
        keys: Mapping[str, TrustedKey],
        partners: Mapping[str, str] | None = None,
        *,
        identity: str | None = None,
    ) -> None:
        #: None for a gate that only verifies (:meth:`verifier`)
        self.signer = signer
        self.identity = signer.identity if signer is not None else identity
        self.keys = dict(keys)
        #: partner identity id -> partner name
        self.partners = dict(partners or {})

    def verifier(self) -> Origin:
        """The same gate without the node's private key: all that admitting what peers
        signed needs, and safe to hand to a worker process."""
        return Origin(None, self.keys, self.partners, identity=self.identity)

    def _key(self) -> Signer:
        if self.signer is None:
            raise RuntimeError("this gate only verifies: it holds no key to sign with")
        return self.signer

    def admit(
        self, obj: StixObject, *, received_from: str | None = None, posted: bool = False
    ) -> StixObject:
        """The object as it is to be stored (signed if this node publishes it first), or
        SignatureError saying why it is refused.

        ``posted``: ``received_from`` posted it over TAXII. A partner without a node of its
        own (a plain TAXII client) cannot sign, so an unsigned object it posts is signed by
        this node as its publisher; the store records who posted it, and only that partner
        publishes new versions of it."""
        data = obj.data
        if obj.id in _STANDARD:
            if dict(data) != _STANDARD[obj.id]:
                raise SignatureError(obj.id, "differs from the standard object of that id")
            return obj
        if has_signature(data):
            signer = verify(data, self.keys)
            if _is_label(obj) and obj.created_by_ref is not None and signer != obj.created_by_ref:
                # a label decides who receives what: only the node that defined it vouches
                # for it, never one relaying it (which could widen it on the way)
                raise SignatureError(
                    obj.id,
                    f"a classification label created by {obj.created_by_ref} but signed by "
                    f"{signer}: only its creator signs a label",
                )
            if received_from is None and signer != self.identity:
                partner = self.partners.get(signer, signer)
                raise SignatureError(
                    obj.id,
                    f"signed by {signer} (partner {partner}): import it with --from {partner}, "
                    "so that it is never forwarded beyond what its originator allows",
                )
            return obj
        if received_from is not None and not posted:
            raise SignatureError(obj.id, f"no origin signature (received from {received_from})")
        creator = obj.created_by_ref
        if posted:
            self._check_posted(obj, received_from)
        elif creator is not None and creator in self.partners:
            owner = self.partners[creator]
            raise SignatureError(
                obj.id,
                f"created by partner {owner} but not signed: import the copy it signed, "
                f"with --from {owner}",
            )
        signed = sign(data, self._key())
        # the signature adds no reference, marking or version: only the data and text change
        return replace(obj, data=MappingProxyType(signed), json=orjson.dumps(signed).decode())

    def _check_posted(self, obj: StixObject, poster: str | None) -> None:
        """What a partner may publish unsigned through this node: its own objects and third
        parties' (a plain TAXII client relaying open sources), never this node's or another
        partner's (the node's signature would vouch for them), and never a classification
        label (labels decide who receives what: they come from the operator, or signed by
        the partner node that defined them). The message names nobody: a partner must not
        learn from it who else is enrolled."""
        creator = obj.created_by_ref
        if creator is not None and (
            creator == self.identity
            or (creator in self.partners and self.partners[creator] != poster)
        ):
            raise SignatureError(
                obj.id,
                f"created_by_ref {creator}: a partner posts unsigned only objects it created "
                "or that third parties created, not those of this node or its partners",
            )
        if _is_label(obj):
            raise SignatureError(
                obj.id,
                "an unsigned classification label: labels come from this node's operator or "
                "signed by the partner node that defined them",
            )


def _is_label(obj: StixObject) -> bool:
    """A marking definition carrying an Allied classification label."""
    extensions = obj.data.get("extensions")
    return (
        obj.type == "marking-definition"
        and isinstance(extensions, Mapping)
        and LABEL_EXTENSION_ID in extensions
    )
