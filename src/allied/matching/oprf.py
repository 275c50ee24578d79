"""The oblivious pseudo-random function of blind matching: 2HashDH over Curve25519.

``F_k(x) = H2(x, k·H1(x))``, with ``k`` the indicator owner's key. The log owner obtains
``F_k(x)`` for its own values without the owner seeing them, and without ever learning ``k``:

1. blind (log owner): ``B = r·H1(x)`` for a fresh random ``r``;
2. evaluate (indicator owner): ``E = k·B``;
3. unblind (log owner): ``U = r⁻¹·E = k·H1(x)``, then ``F = H2(x, U)``.

``B`` is a uniformly random element of the group whatever ``x`` is, so the owner learns
nothing of the value but that one was asked about; without ``k``, ``F`` of a value not asked
about is a random string (the one-more Diffie-Hellman assumption), so the log owner learns
nothing of indicator values it does not hold itself. DESIGN.md, "Blind matching"; the
protocol around this is in docs/blind-matching.md.

The group is the prime-order subgroup of Curve25519 (order ``L``), used through X25519,
libsodium's fastest scalar multiplication (via PyNaCl): ``H1`` maps into that subgroup
(Elligator 2 through libsodium's ``from_uniform``, then to the Montgomery u-coordinate).
X25519 only multiplies by *clamped* scalars (``2^254 + 8t``); on the subgroup a clamped
scalar acts as its residue mod ``L``, so ``r`` is drawn among the residues for which both
``r`` and ``r⁻¹`` have a clamped representative (about one in four). The owner's key is a
clamped scalar too: its multiple of 8 clears any small-order part of whatever point a client
sends, and X25519 refuses points of small order outright.
"""

from __future__ import annotations

import hashlib
import secrets

import nacl.bindings as sodium
from nacl.exceptions import CryptoError

from allied.errors import AlliedError

#: the field's prime and the order of the prime-order subgroup
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_INVERSE_8 = pow(8, -1, L)
_H1 = b"allied-blind-v1-h1:"
_H2 = b"allied-blind-v1-h2:"
TAG_BYTES = 16


class OPRFError(AlliedError):
    """An element that is not one of the group (a tampered or malicious message)."""


def clamped(residue: int) -> bytes | None:
    """The clamped X25519 scalar congruent to ``residue`` mod L, if one exists."""
    t = (residue - 2**254) * _INVERSE_8 % L
    if t >= 2**251:
        return None
    return (2**254 + 8 * t).to_bytes(32, "little")


def new_key() -> bytes:
    """An owner's key: a random clamped scalar (32 bytes)."""
    while True:
        key = clamped(secrets.randbelow(L - 1) + 1)
        if key is not None:
            return key


def hash_to_group(value: bytes) -> bytes:
    """``H1``: the value as an element of the subgroup, a u-coordinate (32 bytes)."""
    uniform = hashlib.sha512(_H1 + value).digest()[:32]
    point = sodium.crypto_core_ed25519_from_uniform(uniform)
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    # the Edwards y as the Montgomery u = (1 + y) / (1 - y); y = 1 (the identity) never
    # comes out of from_uniform
    return ((1 + y) * pow(1 - y, -1, P) % P).to_bytes(32, "little")


def _multiply(scalar: bytes, element: bytes) -> bytes:
    if len(element) != 32:
        raise OPRFError(f"a group element has 32 bytes, not {len(element)}")
    try:
        return sodium.crypto_scalarmult(scalar, element)
    except CryptoError:  # an element of small order (libsodium refuses the zero result)
        raise OPRFError("not an element of the group (small order)") from None


def blind(value: bytes) -> tuple[bytes, bytes]:
    """(the blinded element to send, the secret that unblinds the answer)."""
    while True:
        residue = secrets.randbelow(L - 1) + 1
        forward, backward = clamped(residue), clamped(pow(residue, -1, L))
        if forward is not None and backward is not None:
            return _multiply(forward, hash_to_group(value)), backward


def evaluate(key: bytes, blinded: bytes) -> bytes:
    """The owner's step: ``k·B``. Refuses an element of small order."""
    return _multiply(key, blinded)


def unblind(secret: bytes, evaluated: bytes) -> bytes:
    """The log owner's step: ``r⁻¹·E``, which is ``k·H1(x)``."""
    return _multiply(secret, evaluated)


def finalize(value: bytes, element: bytes) -> bytes:
    """``H2``: 64 bytes; the first :data:`TAG_BYTES` are the tag a value is looked up by,
    the last 32 the key of its payload (never derivable from the tag)."""
    return hashlib.sha512(_H2 + len(value).to_bytes(4, "big") + value + element).digest()


def output(key: bytes, value: bytes) -> bytes:
    """``F_k(value)`` computed directly: what the owner publishes for its own values."""
    return finalize(value, _multiply(key, hash_to_group(value)))


def tag_of(prf: bytes) -> bytes:
    return prf[:TAG_BYTES]


def seal(prf: bytes, payload: bytes) -> bytes:
    """The payload, readable only with the PRF output of its value (XChaCha20-Poly1305)."""
    nonce = secrets.token_bytes(24)
    box = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(payload, None, nonce, prf[32:])
    return nonce + box


def open_sealed(prf: bytes, sealed: bytes) -> bytes:
    """The payload of ``sealed``; :class:`OPRFError` if it was not sealed for this value or
    was altered."""
    if len(sealed) < 24 + 16:
        raise OPRFError("a sealed payload is too short")
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[24:], None, sealed[:24], prf[32:]
        )
    except CryptoError:
        raise OPRFError("the payload does not open with this value's key (altered?)") from None
