"""Blind matching, both sides of the protocol on a real node: the same findings as a clear
match for the indicators offered, nothing offered to a partner the labels do not name, no
log value in the owner's transcript and no unmatched indicator value in the log owner's,
the caps, and tampered messages refused."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from sqlalchemy import select, update

from allied.errors import LimitExceeded, NotFound
from allied.ingest.stix_import import import_file
from allied.matching import blind, oprf
from allied.matching.blind import (
    Answer,
    BlindError,
    BlindRefused,
    Oracle,
    build_offer,
    match_values,
)
from allied.node import Node
from allied.stix.labels import TLP2_IDS
from allied.store import schema
from tests.conftest import indicator, write_bundle

SECRET_DOMAINS = [f"c2-{n}.secret.example" for n in range(30)]
SECRET_IPS = [f"203.0.113.{n}" for n in range(30)]
CLEAR_URL = "http://clear.example/payload.bin"
SHA = "ab" * 32


def _secret(node: Node) -> list[str]:
    """The markings of NATO SECRET REL NATO, which KOR may blind-match."""
    secret = node.add_label(
        "NATO SECRET REL NATO", tlp="amber", policy="NATO", classification="SECRET",
        releasable_to=["NATO"], blind_match=["KOR"],
    )  # fmt: skip
    return [TLP2_IDS["amber"], secret]


def _owner(node: Node, tmp_path: Path) -> dict[str, list[str]]:
    """NATO SECRET indicators KOR may blind-match but not receive, one it may receive, and
    patterns that need a whole row (not offered)."""
    node.add_partner("KOR", nation="KOR", clearances=["NATO=RESTRICTED"], communities=["c"])
    node.add_partner("USA", nation="USA", clearances=["NATO=RESTRICTED"], communities=["c"])
    marks = _secret(node)
    objects: list[dict[str, Any]] = []
    made: dict[str, list[str]] = {"secret": [], "clear": [], "row": []}
    for n, (domain, ip) in enumerate(zip(SECRET_DOMAINS, SECRET_IPS, strict=True)):
        pattern = f"[domain-name:value = '{domain}'] OR [ipv4-addr:value = '{ip}']"
        objects.append(indicator(100 + n, pattern=pattern, object_marking_refs=marks))
        made["secret"].append(objects[-1]["id"])
    objects.append(indicator(200, pattern=f"[file:hashes.'SHA-256' = '{SHA.upper()}']",
                             object_marking_refs=marks))  # fmt: skip
    made["secret"].append(objects[-1]["id"])
    objects.append(indicator(201, pattern=f"[url:value = '{CLEAR_URL}']",
                             object_marking_refs=[TLP2_IDS["clear"]]))  # fmt: skip
    made["clear"].append(objects[-1]["id"])
    for n, pattern in enumerate(
        [
            "[ipv4-addr:value = '198.51.100.0/24']",
            "[network-traffic:dst_ref.value = '192.0.2.1' AND network-traffic:dst_port = 443]",
        ]
    ):
        objects.append(indicator(300 + n, pattern=pattern, object_marking_refs=marks))
        made["row"].append(objects[-1]["id"])
    import_file(node, write_bundle(tmp_path / "owner.json", objects))
    return made


LOG_VALUES = {
    ("domain", SECRET_DOMAINS[3]), ("ip", SECRET_IPS[7]), ("ip", SECRET_IPS[3]),
    ("sha256", SHA), ("url", CLEAR_URL),
    ("domain", "harmless.example"), ("ip", "192.0.2.1"), ("ip", "198.51.100.9"),
    ("url", "http://elsewhere.example/"), ("email", "someone@corp.example"),
}  # fmt: skip


class Transcripts:
    """Everything each side receives from the other."""

    def __init__(self, node: Node, partner: str, **caps: int) -> None:
        self.oracle = Oracle(node, **caps)
        self.session = self.oracle.open(partner)
        self.key = self.oracle.key(self.session)
        self.partner = partner
        self.to_owner: list[bytes] = []
        self.to_log_owner: list[bytes] = []

    def evaluate(self, elements: list[bytes]) -> Answer:
        self.to_owner += elements
        answer = self.oracle.evaluate(self.partner, self.session, elements)
        self.to_log_owner += [*answer.elements, answer.signature]
        return answer


def _owner_key(node: Node) -> VerifyKey:
    return VerifyKey(node.signer.secret[32:])


def test_blind_matching_finds_what_a_clear_match_finds(node: Node, tmp_path: Path) -> None:
    made = _owner(node, tmp_path)
    talk = Transcripts(node, "KOR")
    offer = build_offer(node, "KOR", talk.key, talk.session)
    assert (offer.offered, offer.not_offered) == (32, 2)  # AND and a network need the row

    hits = match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate, batch=4)
    found = {(h.kind, h.value): sorted(e["id"] for e in h.indicators) for h in hits}
    assert found == {
        ("domain", SECRET_DOMAINS[3]): [made["secret"][3]],
        ("ip", SECRET_IPS[7]): [made["secret"][7]],
        ("ip", SECRET_IPS[3]): [made["secret"][3]],
        ("sha256", SHA): [made["secret"][30]],
        ("url", CLEAR_URL): [made["clear"][0]],
    }
    # what a hit reveals: the id of what KOR may not receive, the object it may receive
    by_value = {(h.kind, h.value): h.indicators for h in hits}
    assert by_value[("domain", SECRET_DOMAINS[3])] == [{"id": made["secret"][3]}]
    assert by_value[("url", CLEAR_URL)][0]["object"]["pattern"] == f"[url:value = '{CLEAR_URL}']"


def test_a_partner_the_labels_do_not_name_is_offered_nothing_secret(
    node: Node, tmp_path: Path
) -> None:
    _owner(node, tmp_path)
    talk = Transcripts(node, "USA")
    offer = build_offer(node, "USA", talk.key, talk.session)
    assert offer.offered == 1  # only the TLP:CLEAR one, which USA may receive anyway
    hits = match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate)
    assert {(h.kind, h.value) for h in hits} == {("url", CLEAR_URL)}
    with pytest.raises(Exception, match="no partner named"):
        build_offer(node, "EST", oprf.new_key(), "s")


def test_a_partner_offered_nothing_is_refused(node: Node, tmp_path: Path) -> None:
    node.add_partner("USA", nation="USA", clearances=["NATO=SECRET"], communities=["c"])
    marks = _secret(node)
    only = indicator(1, pattern="[domain-name:value = 'x.example']", object_marking_refs=marks)
    import_file(node, write_bundle(tmp_path / "one.json", [only]))
    with pytest.raises(BlindRefused, match="no indicator here may be blind-matched by USA"):
        build_offer(node, "USA", oprf.new_key(), "s")


def _traces(value: str) -> list[bytes]:
    """The forms a value could leak in: as text, and hashed."""
    raw = value.encode()
    return [raw, hashlib.sha256(raw).digest(), hashlib.sha512(raw).digest()[:32]]


def test_transcripts_hold_no_log_value_and_no_unmatched_indicator_value(
    node: Node, tmp_path: Path
) -> None:
    _owner(node, tmp_path)
    talk = Transcripts(node, "KOR")
    offer = build_offer(node, "KOR", talk.key, talk.session)
    match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate)
    owner_saw = b"".join(talk.to_owner)
    for _, value in LOG_VALUES:
        assert not any(trace in owner_saw for trace in _traces(value)), value
    log_owner_saw = b"".join([*talk.to_log_owner, *offer.tags, *offer.tags.values()])
    held = {value for _, value in LOG_VALUES}
    for value in [*SECRET_DOMAINS, *SECRET_IPS, SHA.lower(), "198.51.100.0", "192.0.2.1"]:
        if value not in held:
            assert not any(trace in log_owner_saw for trace in _traces(value)), value


def test_evaluations_are_capped_per_session_and_per_partner(node: Node, tmp_path: Path) -> None:
    _owner(node, tmp_path)
    talk = Transcripts(node, "KOR", session_cap=5, partner_cap=8)
    offer = build_offer(node, "KOR", talk.key, talk.session)
    with pytest.raises(LimitExceeded, match="would pass the cap of 5"):
        match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate, batch=10)
    assert talk.to_log_owner == []  # refused whole: nothing evaluated, nothing counted
    talk.evaluate([oprf.blind(b"x")[0] for _ in range(5)])
    second = talk.oracle.open("KOR")
    with pytest.raises(LimitExceeded, match="cap of 8 per partner"):
        talk.oracle.evaluate("KOR", second, [oprf.blind(b"y")[0] for _ in range(4)])
    with pytest.raises(NotFound, match="no blind-matching session"):
        talk.oracle.evaluate("USA", second, [oprf.blind(b"z")[0]])
    # every batch counted is in the owner's log: how many, never which
    with node.store.engine.connect() as conn:
        logged = conn.execute(select(schema.blind_log.c.partner, schema.blind_log.c.count)).all()
    assert [tuple(row) for row in logged] == [("KOR", 5)]
    secret = node.config.directory / "keys" / "blind.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    few = Oracle(node, sessions_cap=3)  # KOR has opened two sessions already
    few.open("KOR")
    with pytest.raises(LimitExceeded, match="3 blind-matching sessions opened lately"):
        few.open("KOR")


def test_tampered_offers_and_answers_are_refused(node: Node, tmp_path: Path) -> None:
    _owner(node, tmp_path)
    talk = Transcripts(node, "KOR")
    offer = build_offer(node, "KOR", talk.key, talk.session)

    def tampering(elements: list[bytes]) -> Answer:
        answer = talk.evaluate(elements)
        changed = bytearray(answer.elements[0])
        changed[3] ^= 1
        answer.elements[0] = bytes(changed)
        return answer

    with pytest.raises(BlindError, match="an answer does not carry the indicator owner's"):
        match_values(LOG_VALUES, offer, _owner_key(node), tampering)
    tag = next(iter(offer.tags))
    offer.tags[tag] = offer.tags[tag][:-1] + bytes([offer.tags[tag][-1] ^ 1])
    with pytest.raises(BlindError, match="the offer does not carry"):
        match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate)


def test_kinds_keep_fields_apart() -> None:
    assert blind.kind_of("src_ip") == blind.kind_of("dst_ip") == "ip"
    assert blind.kind_of("md5") != blind.kind_of("sha256")
    assert blind.distinct_values(
        [{"src_ip": "1.2.3.4", "dst_ip": "1.2.3.4", "dst_port": "443"}]
    ) == {("ip", "1.2.3.4")}


def test_old_sessions_count_against_the_partner_and_expire(node: Node, tmp_path: Path) -> None:
    """The partner's tally is every evaluation logged in the day, whatever session it was
    in; a session older than its lifetime takes no more."""
    _owner(node, tmp_path)
    oracle = Oracle(node, partner_cap=6)
    old, fresh = oracle.open("KOR"), oracle.open("KOR")
    oracle.evaluate("KOR", old, [oprf.blind(b"a")[0] for _ in range(4)])
    with node.store.write() as writer:  # the first session opened long ago
        writer.conn.execute(
            update(schema.blind_sessions)
            .where(schema.blind_sessions.c.id == old)
            .values(created="2026-01-01T00:00:00.000000Z")
        )
    with pytest.raises(NotFound, match="has expired"):
        oracle.evaluate("KOR", old, [oprf.blind(b"b")[0]])
    with pytest.raises(LimitExceeded, match="4 values evaluated lately"):
        oracle.evaluate("KOR", fresh, [oprf.blind(b"c")[0] for _ in range(3)])


def test_an_offer_for_another_node_or_out_of_date_is_refused(node: Node, tmp_path: Path) -> None:
    _owner(node, tmp_path)
    talk = Transcripts(node, "KOR")
    offer = build_offer(node, "KOR", talk.key, talk.session)
    with pytest.raises(BlindError, match="made for identity--"):
        match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate, identity="identity--x")
    offer.expires = "2026-01-01T00:00:00.000000Z"
    with pytest.raises(BlindError, match="does not carry"):  # the expiry is signed
        match_values(LOG_VALUES, offer, _owner_key(node), talk.evaluate)


def test_a_blind_secret_of_the_wrong_size_is_never_used(node: Node) -> None:
    secret = node.config.directory / "keys" / "blind.key"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)  # empty, as a crash between creating and writing it would leave it
    with pytest.raises(RuntimeError, match="holds 0 bytes, not 32"):
        Oracle(node)
