"""Origin signatures: Ed25519 over the RFC 8785 form of an object, carried in the object.

The signature sits in a STIX property extension (signer identity, key id, algorithm,
value), and covers everything else in the object, labels included: stripping or changing a
marking breaks it, which is the binding STANAG 4778 asks for. Any STIX tool can carry the
extension along untouched; only Allied nodes check it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from allied.errors import AlliedError
from allied.integrity.canonical import canonical
from allied.integrity.keys import key_id

SIGNATURE_EXTENSION_ID = "extension-definition--f5e0a468-464a-4bf9-8d8f-e5bd72f27f1b"
ALGORITHM = "Ed25519"


class SignatureError(AlliedError):
    """An origin signature that is missing, malformed, by an unknown key, or wrong."""

    http_status = 422

    def __init__(self, object_id: str, reason: str) -> None:
        super().__init__(f"{object_id}: {reason}")
        self.object_id = object_id
        self.reason = reason


def signed_bytes(data: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the object without its signature."""
    unsigned = dict(data)
    extensions = dict(unsigned.get("extensions") or {})
    extensions.pop(SIGNATURE_EXTENSION_ID, None)
    if extensions:
        unsigned["extensions"] = extensions
    else:
        unsigned.pop("extensions", None)
    return canonical(unsigned)


@dataclass(frozen=True)
class Signer:
    """A node's private key, ready to sign, and the identity it signs as.

    Signing runs on libsodium (PyNaCl), about twice as fast as OpenSSL through
    ``cryptography`` here; Ed25519 signatures are deterministic, so both give the same bytes.
    """

    identity: str
    key_id: str
    #: libsodium's 64-byte secret key (seed and public key); never printed
    secret: bytes = field(repr=False)

    @classmethod
    def of(cls, key: Ed25519PrivateKey, identity: str) -> Signer:
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        _public, secret = crypto_sign_seed_keypair(raw)
        return cls(identity, key_id(key.public_key()), secret)

    def sign(self, message: bytes) -> bytes:
        # libsodium's own call, without the objects PyNaCl's SigningKey wraps results in:
        # an import signs millions of objects
        return crypto_sign(message, self.secret)[:64]


@dataclass(frozen=True)
class TrustedKey:
    """A public key this node accepts signatures from, and the identity that owns it."""

    key_id: str
    owner: str
    key: VerifyKey

    @classmethod
    def of(cls, key: Ed25519PublicKey, owner: str) -> TrustedKey:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(key_id(key), owner, VerifyKey(raw))


def sign(data: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """A copy of ``data`` carrying ``signer``'s origin signature."""
    signature = {
        "extension_type": "property-extension",
        "signer": signer.identity,
        "key_id": signer.key_id,
        "algorithm": ALGORITHM,
        "signature": base64.b64encode(signer.sign(signed_bytes(data))).decode(),
    }
    signed = dict(data)
    signed["extensions"] = {**(data.get("extensions") or {}), SIGNATURE_EXTENSION_ID: signature}
    return signed


def signer_of(data: Mapping[str, Any]) -> str | None:
    """The identity an object's origin signature names, if it has one (unverified)."""
    extensions = data.get("extensions")
    body = extensions.get(SIGNATURE_EXTENSION_ID) if isinstance(extensions, Mapping) else None
    signer = body.get("signer") if isinstance(body, Mapping) else None
    return signer if isinstance(signer, str) else None


def has_signature(data: Mapping[str, Any]) -> bool:
    extensions = data.get("extensions")
    return isinstance(extensions, Mapping) and SIGNATURE_EXTENSION_ID in extensions


def verify(data: Mapping[str, Any], keys: Mapping[str, TrustedKey]) -> str:
    """Check the origin signature against trusted keys (by key id); returns the signer.

    Raises SignatureError for a missing or malformed signature, an unknown key, a key that
    belongs to another identity than the signer named, or a signature that does not match
    the object: never returns a verdict to be ignored.
    """
    object_id = str(data.get("id", "?"))
    extensions = data.get("extensions")
    body = extensions.get(SIGNATURE_EXTENSION_ID) if isinstance(extensions, Mapping) else None
    # 1. the signature must be there, and well formed
    if not isinstance(body, Mapping):
        raise SignatureError(object_id, "no origin signature")
    if body.get("algorithm") != ALGORITHM:
        raise SignatureError(object_id, f"unsupported algorithm {body.get('algorithm')!r}")
    signer, kid, encoded = body.get("signer"), body.get("key_id"), body.get("signature")
    if not isinstance(signer, str) or not isinstance(kid, str) or not isinstance(encoded, str):
        raise SignatureError(object_id, "signer, key_id and signature must be strings")
    try:
        value = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(object_id, "signature is not base64") from None
    # 2. the key must be one this node trusts, and belong to the signer named
    key = keys.get(kid)
    if key is None:
        raise SignatureError(object_id, f"signed with unknown key {kid} (by {signer})")
    if key.owner != signer:
        raise SignatureError(object_id, f"key {kid} belongs to {key.owner}, not to {signer}")
    # 3. the signature must cover exactly these bytes
    try:
        key.key.verify(signed_bytes(data), value)
    except (BadSignatureError, ValueError):
        raise SignatureError(object_id, f"signature by {signer} does not match") from None
    return signer


def sign_record(record: Mapping[str, Any], signer: Signer) -> str:
    """The node's signature over a record it keeps (a partner's entry in its directory)."""
    return f"{signer.key_id}:{base64.b64encode(signer.sign(canonical(record))).decode()}"


def record_signed(
    record: Mapping[str, Any], signature: str | None, keys: Mapping[str, TrustedKey]
) -> bool:
    """Whether ``signature`` (from :func:`sign_record`) is by one of ``keys`` over ``record``."""
    kid, _, encoded = (signature or "").partition(":")
    key = keys.get(kid)
    if key is None:
        return False
    try:
        key.key.verify(canonical(record), base64.b64decode(encoded, validate=True))
    except (BadSignatureError, ValueError, binascii.Error):
        return False
    return True
