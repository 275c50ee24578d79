"""The OPRF of blind matching: blinded evaluation gives exactly the owner's direct output,
blinded elements tell nothing of the value, bad elements and altered payloads are refused."""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import pytest

from allied.matching import oprf

VALUES = [f"198.51.100.{n}".encode() for n in range(40)] + [b"evil.example", b"", b"\x00" * 70]


def test_the_blind_path_gives_the_owners_direct_output() -> None:
    key = oprf.new_key()
    for value in VALUES:
        blinded, secret = oprf.blind(value)
        prf = oprf.finalize(value, oprf.unblind(secret, oprf.evaluate(key, blinded)))
        assert prf == oprf.output(key, value)
        assert len(prf) == 64 and oprf.tag_of(prf) == prf[:16]


def test_outputs_depend_on_the_key_and_the_value() -> None:
    one, two = oprf.new_key(), oprf.new_key()
    outputs = {oprf.output(one, value) for value in VALUES}
    assert len(outputs) == len(VALUES)
    assert not outputs & {oprf.output(two, value) for value in VALUES}


def test_a_blinded_element_tells_nothing_of_the_value() -> None:
    """Fresh blinding each time: the same value never looks the same twice, and the element
    sent is neither the value's group element nor a hash of the value."""
    value = b"evil.example"
    sent = {oprf.blind(value)[0] for _ in range(50)}
    assert len(sent) == 50
    assert oprf.hash_to_group(value) not in sent
    assert not any(
        value in element or hashlib.sha256(value).digest() == element for element in sent
    )


def test_group_elements_are_in_the_prime_order_subgroup() -> None:
    """r·(r⁻¹·H1(x)) is H1(x) itself: clamped scalars are multiples of 8, so an element with
    a small-order part would lose it and come back different."""
    for value in VALUES[:10]:
        element = oprf.hash_to_group(value)
        blinded, secret = oprf.blind(value)  # blinded = c·H1(x), secret ≡ c⁻¹ (mod L)
        assert sodium.crypto_scalarmult(secret, blinded) == element


@pytest.mark.parametrize("element", [b"\x00" * 32, (1).to_bytes(32, "little"), b"\x01" * 31])
def test_small_order_or_malformed_elements_are_refused(element: bytes) -> None:
    with pytest.raises(oprf.OPRFError):
        oprf.evaluate(oprf.new_key(), element)


def test_an_altered_answer_gives_no_match_and_opens_no_payload() -> None:
    key = oprf.new_key()
    value = b"203.0.113.9"
    sealed = oprf.seal(oprf.output(key, value), b'{"indicator": "indicator--1"}')
    blinded, secret = oprf.blind(value)
    answer = bytearray(oprf.evaluate(key, blinded))
    answer[5] ^= 1
    prf = oprf.finalize(value, oprf.unblind(secret, bytes(answer)))
    assert oprf.tag_of(prf) != oprf.tag_of(oprf.output(key, value))
    with pytest.raises(oprf.OPRFError, match="does not open"):
        oprf.open_sealed(prf, sealed)


def test_payloads_open_only_with_their_values_output() -> None:
    key = oprf.new_key()
    prf = oprf.output(key, b"a")
    sealed = oprf.seal(prf, b"payload")
    assert oprf.open_sealed(prf, sealed) == b"payload"
    with pytest.raises(oprf.OPRFError):
        oprf.open_sealed(oprf.output(key, b"b"), sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(oprf.OPRFError):
        oprf.open_sealed(prf, bytes(tampered))
    with pytest.raises(oprf.OPRFError, match="too short"):
        oprf.open_sealed(prf, b"short")
