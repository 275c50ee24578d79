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
from collections.abc import Sequence

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
    return hash_to_group_many([value])[0]


def hash_to_group_many(values: Sequence[bytes]) -> list[bytes]:
    """``H1`` of many values. Each Edwards point (libsodium's ``from_uniform``) becomes
    the Montgomery u = (1 + y) / (1 - y); the divisions share one modular inversion
    (Montgomery's trick), the costliest part of the step in Python."""
    ys = []
    for value in values:
        point = sodium.crypto_core_ed25519_from_uniform(hashlib.sha512(_H1 + value).digest()[:32])
        ys.append(int.from_bytes(point, "little") & ((1 << 255) - 1))
    # y = 1 (the identity) never comes out of from_uniform, so no denominator is zero
    denominators = [(1 - y) % P for y in ys]
    prefix, running = [], 1
    for d in denominators:
        prefix.append(running)
        running = running * d % P
    inverse = pow(running, -1, P)
    out = [b""] * len(ys)
    for n in range(len(ys) - 1, -1, -1):
        out[n] = ((1 + ys[n]) * inverse * prefix[n] % P).to_bytes(32, "little")
        inverse = inverse * denominators[n] % P
    return out


def _multiply(scalar: bytes, element: bytes) -> bytes:
    if len(element) != 32:
        raise OPRFError(f"a group element has 32 bytes, not {len(element)}")
    try:
        return sodium.crypto_scalarmult(scalar, element)
    except CryptoError:  # an element of small order (libsodium refuses the zero result)
        raise OPRFError("not an element of the group (small order)") from None


def blind(value: bytes) -> tuple[bytes, bytes]:
    """(the blinded element to send, the secret that unblinds the answer)."""
    elements, secret = blind_many([value])
    return elements[0], secret


def blind_many(values: Sequence[bytes]) -> tuple[list[bytes], bytes]:
    """The blinded elements of a batch of distinct values under one fresh ``r``, and the
    secret that unblinds their answers. One ``r`` per batch is the classic Diffie-Hellman
    private set intersection: telling whether two elements of a batch hide two guessed
    values is deciding a Diffie-Hellman tuple (docs/blind-matching.md)."""
    forward, backward = _blinding()
    return [_multiply(forward, point) for point in hash_to_group_many(values)], backward


def _blinding() -> tuple[bytes, bytes]:
    """Clamped scalars for a random ``r`` and for ``r⁻¹`` (mod L): ``r`` is drawn in clamped
    form, and drawn again until its inverse has one too (one time in two)."""
    while True:
        forward = 2**254 + 8 * secrets.randbelow(2**251)
        if forward % L == 0:  # pragma: no cover - one chance in 2^250
            continue
        backward = clamped(pow(forward % L, -1, L))
        if backward is not None:
            return forward.to_bytes(32, "little"), backward


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
