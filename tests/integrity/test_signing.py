"""Origin signatures: what they cover, and every way a forged or altered object is caught."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from allied.integrity.keys import key_id
from allied.integrity.signing import (
    SIGNATURE_EXTENSION_ID,
    SignatureError,
    Signer,
    TrustedKey,
    sign,
    signed_bytes,
    verify,
)
from allied.stix.validate import validate
from tests.conftest import IDENTITY, TLP_RED, indicator

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PINNED = {key_id(KEY.public_key()): TrustedKey.of(KEY.public_key(), IDENTITY)}
SIGNER = Signer.of(KEY, IDENTITY)


def signed() -> dict[str, Any]:
    return sign(indicator(1), SIGNER)


def test_a_signed_object_is_valid_stix_and_verifies() -> None:
    obj = signed()
    assert validate(obj) == []
    assert verify(obj, PINNED) == IDENTITY
    body = obj["extensions"][SIGNATURE_EXTENSION_ID]
    assert body["algorithm"] == "Ed25519" and body["key_id"] == key_id(KEY.public_key())


def test_key_order_and_spacing_do_not_matter() -> None:
    respelled = json.loads(json.dumps(signed(), indent=2, sort_keys=True))
    assert verify(respelled, PINNED) == IDENTITY


def test_other_extensions_are_covered_and_kept() -> None:
    obj = sign(indicator(1, extensions={"x-note": {"a": 1}}), SIGNER)
    assert set(obj["extensions"]) == {"x-note", SIGNATURE_EXTENSION_ID}
    verify(obj, PINNED)
    obj["extensions"]["x-note"]["a"] = 2
    with pytest.raises(SignatureError, match="does not match"):
        verify(obj, PINNED)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda o: o.update(name="changed"), "signature by identity--f431f809"),
        (lambda o: o.pop("object_marking_refs"), "does not match"),  # label stripped
        (lambda o: o.update(object_marking_refs=[TLP_RED]), "does not match"),  # label changed
        (lambda o: o["extensions"].pop(SIGNATURE_EXTENSION_ID), "no origin signature"),
        (
            lambda o: o["extensions"][SIGNATURE_EXTENSION_ID].update(algorithm="RSA"),
            "unsupported algorithm 'RSA'",
        ),
        (
            lambda o: o["extensions"][SIGNATURE_EXTENSION_ID].update(signature="@@"),
            "signature is not base64",
        ),
        (
            lambda o: o["extensions"][SIGNATURE_EXTENSION_ID].update(key_id="0" * 16),
            "signed with unknown key 0000000000000000",
        ),
    ],
)
def test_tampering_is_caught_with_its_reason(tamper: Any, reason: str) -> None:
    obj = signed()
    tamper(obj)
    with pytest.raises(SignatureError) as excinfo:
        verify(obj, PINNED)
    assert reason in excinfo.value.reason
    assert excinfo.value.object_id == indicator(1)["id"]


def test_a_signature_from_another_key_is_refused() -> None:
    forged = sign(indicator(1), Signer.of(OTHER, IDENTITY))
    with pytest.raises(SignatureError, match="unknown key"):
        verify(forged, PINNED)
    swapped = signed()
    swapped["extensions"][SIGNATURE_EXTENSION_ID]["signature"] = forged["extensions"][
        SIGNATURE_EXTENSION_ID
    ]["signature"]
    with pytest.raises(SignatureError, match="does not match"):
        verify(swapped, PINNED)


def test_a_key_signs_only_for_its_owner() -> None:
    """A partner's key cannot vouch for an object claiming another originator."""
    other = "identity--00000000-0000-4000-8000-0000000000aa"
    claimed = sign(indicator(1), Signer.of(KEY, other))
    with pytest.raises(SignatureError, match=f"belongs to {IDENTITY}, not to {other}"):
        verify(claimed, PINNED)


def test_libsodium_and_openssl_give_the_same_signature() -> None:
    """Ed25519 is deterministic: the signature libsodium makes is the one OpenSSL makes."""
    message = signed_bytes(indicator(1))
    assert SIGNER.sign(message) == KEY.sign(message)


def test_a_signer_never_prints_its_secret() -> None:
    assert SIGNER.secret.hex() not in repr(SIGNER)
    assert "secret" not in repr(SIGNER)


def test_only_its_creator_signs_a_classification_label() -> None:
    """A node relaying a partner's label cannot put its own definition in its place (a
    wider releasable_to, say): the label must carry its creator's signature."""
    from allied.integrity.origin import Origin
    from allied.stix.labels import Label, label_marking
    from allied.stix.model import parse_object

    relay = "identity--00000000-0000-4000-8000-0000000000bb"
    keys = PINNED | {key_id(OTHER.public_key()): TrustedKey.of(OTHER.public_key(), relay)}
    gate = Origin(None, keys, {IDENTITY: "KOR", relay: "USA"}, identity="identity--self")
    label = Label(
        "marking-definition--00000000-0000-4000-8000-0000000000cc", "kor-usa", "amber",
        "NATO", "RESTRICTED", ("KOR", "USA", "NATO"),
    )  # fmt: skip
    marking = label_marking(label, created="2026-03-01T10:00:00.000Z", created_by_ref=IDENTITY)
    genuine = parse_object(sign(marking, SIGNER))
    assert gate.admit(genuine, received_from="USA") is genuine
    forged = parse_object(sign(marking, Signer.of(OTHER, relay)))
    with pytest.raises(SignatureError, match="only its creator signs a label"):
        gate.admit(forged, received_from="USA")
