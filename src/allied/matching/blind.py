"""Blind matching: a partner's log values against indicators it may not receive.

The plain core of the protocol (docs/blind-matching.md), both sides, without transport:

- The indicator owner, per session and partner, makes an :class:`Offer`: for each value of
  each live indicator the partner may blind-match (the release component decides, with
  :meth:`allied.policy.egress.Egress.decide_blind`), a tag and a sealed payload derived from
  the OPRF output ``F_k(value)`` under a fresh session key ``k``. The :class:`Oracle`
  evaluates the blinded elements the partner sends, up to a cap per session and per partner,
  logs every batch, and signs every answer with the node's key.
- The log owner (:func:`match_values`) blinds each distinct value of its logs, has it
  evaluated, checks the owner's signature, unblinds, and looks the tag up; a hit opens the
  payload: which indicators, and what their labels let it learn of them.

Only values an indicator tests on their own are offered (a pattern whose conjunctions are
one value each: an address, a domain, a URL, an e-mail address, a hash); networks, ports and
``AND`` need the row, which the owner never sees, and are counted as not offered.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from allied.config import KEY_DIR
from allied.errors import AlliedError
from allied.matching import oprf
from allied.matching.compile import FIELDS
from allied.matching.index import PatternIndex
from allied.node import Node
from allied.policy.egress import Egress

log = logging.getLogger(__name__)

SECRET_FILE = "blind.key"
#: evaluations one session may ask for, and one partner over a day (all its sessions): far
#: below the 2^32 IPv4 addresses; the caps bound the rate of a dictionary walk
DEFAULT_SESSION_CAP = 2_000_000
DEFAULT_PARTNER_CAP = 10_000_000
#: how long a session may be used: its offer reflects the indicators and labels of the
#: moment it was made
SESSION_LIFETIME = timedelta(hours=1)
#: sessions one partner may open over a day: each costs the owner one evaluation per
#: indicator value it may blind-match
DEFAULT_SESSIONS_CAP = 100


class BlindError(AlliedError):
    """A refused or failed step of blind matching; the message says which and why."""


class BlindRefused(BlindError):
    """Nothing this node holds may be blind-matched by the partner asking."""

    http_status = 403


#: blinded elements one request may carry
MAX_BATCH = 10_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bytes(text: object, where: str, size: int | None = None) -> bytes:
    """Base64 text from a message, checked: the error says where in the message."""
    if not isinstance(text, str):
        raise BlindError(f"{where}: expected base64 text")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise BlindError(f"{where}: not base64") from None
    if size is not None and len(data) != size:
        raise BlindError(f"{where}: expected {size} bytes, got {len(data)}")
    return data


def _list(document: object, key: str) -> list[Any]:
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, list):
        raise BlindError(f"$.{key}: expected a list")
    return value


def _stamp(offset: timedelta) -> str:
    """Now plus ``offset``, in the store's form of a time (it sorts as text)."""
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def elements_to_wire(elements: Sequence[bytes]) -> dict[str, Any]:
    """An evaluation request: the blinded elements, in base64."""
    return {"elements": [_b64(element) for element in elements]}


def elements_from_wire(document: object) -> list[bytes]:
    """The blinded elements of an evaluation request (``{"elements": [base64, ...]}``)."""
    items = _list(document, "elements")
    if not items or len(items) > MAX_BATCH:
        raise BlindError(f"$.elements: send 1 to {MAX_BATCH} elements, not {len(items)}")
    return [_bytes(item, f"$.elements[{n}]", 32) for n, item in enumerate(items)]


def kind_of(field_name: str) -> str:
    """What a value is compared as: an address on either side of a connection is one kind,
    each hash algorithm its own."""
    kind = FIELDS[field_name]
    return field_name if kind == "hash" else kind


def prf_input(kind: str, value: str) -> bytes:
    return kind.encode() + b"\x00" + value.encode()


# -- the indicator owner -------------------------------------------------------------------


@dataclass
class Offer:
    """What the owner publishes for one session: tag -> sealed payload."""

    session: str
    tags: dict[bytes, bytes]
    #: indicators offered, and those the partner may blind-match but whose pattern needs
    #: more than one value (networks, ports, AND)
    offered: int = 0
    not_offered: int = 0
    #: the identity of the partner it was made for, and until when it may be used
    partner: str = ""
    expires: str = ""
    signature: bytes = b""

    def digest(self) -> bytes:
        """What the signature binds: what the offer is, for whom, until when, and every tag
        with its payload, so that no offer can be replayed to another partner or later."""
        head = orjson.dumps(
            ["allied-blind-offer-v1", self.session, self.partner, self.expires,
             self.offered, self.not_offered]
        )  # fmt: skip
        hashed = hashlib.sha256(head)
        for tag in sorted(self.tags):
            hashed.update(tag + hashlib.sha256(self.tags[tag]).digest())
        return hashed.digest()

    def to_wire(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "partner": self.partner,
            "expires": self.expires,
            "offered": self.offered,
            "not_offered": self.not_offered,
            "tags": [[_b64(tag), _b64(sealed)] for tag, sealed in sorted(self.tags.items())],
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_wire(cls, document: object) -> Offer:
        if not isinstance(document, dict) or not isinstance(document.get("session"), str):
            raise BlindError("$.session: expected the session id")
        tags: dict[bytes, bytes] = {}
        for n, pair in enumerate(_list(document, "tags")):
            if not isinstance(pair, list) or len(pair) != 2:
                raise BlindError(f"$.tags[{n}]: expected [tag, payload]")
            tags[_bytes(pair[0], f"$.tags[{n}][0]", oprf.TAG_BYTES)] = _bytes(
                pair[1], f"$.tags[{n}][1]"
            )
        return cls(
            document["session"], tags, int(document.get("offered", 0)),
            int(document.get("not_offered", 0)), str(document.get("partner", "")),
            str(document.get("expires", "")),
            _bytes(document.get("signature"), "$.signature", 64),
        )  # fmt: skip


def build_offer(node: Node, partner_name: str, key: bytes, session: str) -> Offer:
    """The offer for ``partner_name``; refuses an unknown or revoked partner."""
    egress = Egress(node)
    partner = egress.recipient(partner_name)
    if partner.revoked:
        raise BlindError(f"partner {partner_name} is revoked")
    released = {
        orjson.loads(text)["id"]: text for text in egress.release(partner_name, "indicator")
    }
    rows = {row.id: row for row in node.store.release_index() if row.type == "indicator"}
    index = PatternIndex.load(node.store, node.config.directory)
    try:
        atoms = index.con.execute(
            "SELECT id, conj, pos, field, value, network FROM live WHERE state = 'ok' "
            "ORDER BY pk, conj, pos"
        ).fetchall()
    finally:
        index.close()
    values_of: dict[str, set[tuple[str, str]]] = {}
    single: dict[str, bool] = {}
    for indicator, _conj, pos, field_name, value, network in atoms:
        alone = pos == 0 and not network and FIELDS[field_name] != "port"
        single[indicator] = single.get(indicator, True) and alone
        values_of.setdefault(indicator, set()).add((kind_of(field_name), str(value)))
    payloads: dict[tuple[str, str], list[dict[str, Any]]] = {}
    expires = _stamp(SESSION_LIFETIME)
    offer = Offer(session, {}, partner=partner.identity_id, expires=expires)
    for indicator, values in values_of.items():
        row = rows.get(indicator)
        if row is None:
            continue
        if indicator in released:
            entry: dict[str, Any] = {"id": indicator, "object": orjson.loads(released[indicator])}
        elif egress.decide_blind(row.markings, row.received_from, row.signer, partner).allowed:
            entry = {"id": indicator}
        else:
            continue
        if not single[indicator]:
            offer.not_offered += 1
            continue
        offer.offered += 1
        for value in values:
            payloads.setdefault(value, []).append(entry)
    if not offer.offered and not offer.not_offered:
        raise BlindRefused(
            f"no indicator here may be blind-matched by {partner_name}: their labels do not "
            "name it under blind_match, and it may not receive them"
        )
    for (kind, value), entries in payloads.items():
        prf = oprf.output(key, prf_input(kind, value))
        offer.tags[oprf.tag_of(prf)] = oprf.seal(prf, orjson.dumps(entries))
    offer.signature = node.signer.sign(offer.digest())
    return offer


def new_session() -> str:
    return secrets.token_hex(16)


class Oracle:
    """Evaluates blinded elements for partners, within caps; every batch is counted and
    logged in the store (so every serving process counts one tally) and every answer is
    signed with the node's key.

    A session's key is derived from the node's blind-matching secret (``keys/blind.key``,
    owner-only, made on first use) and the session id: nothing secret is stored with the
    session, and every serving process finds the same key. Outputs of one session say
    nothing of another's."""

    def __init__(
        self,
        node: Node,
        *,
        session_cap: int = DEFAULT_SESSION_CAP,
        partner_cap: int = DEFAULT_PARTNER_CAP,
        sessions_cap: int = DEFAULT_SESSIONS_CAP,
        window: timedelta = timedelta(days=1),
    ) -> None:
        self._node = node
        self._secret = _secret(node.config.directory / KEY_DIR / SECRET_FILE)
        self._session_cap = session_cap
        self._partner_cap = partner_cap
        self._sessions_cap = sessions_cap
        self._window = window

    def open(self, partner: str, session: str | None = None) -> str:
        """Record a new session for ``partner`` (``session``: an id drawn with
        :func:`new_session`, when the offer was made first); its id."""
        session = session or new_session()
        self._node.store.open_blind_session(
            session, partner, self._session_cap, most=self._sessions_cap, since=self._since()
        )
        log.info("blind matching: session %s opened for %s", session, partner)
        return session

    def _since(self) -> str:
        return _stamp(-self._window)

    def key(self, session: str) -> bytes:
        for counter in range(1000):  # about one residue in two has a clamped form
            digest = hmac.new(self._secret, f"{session}:{counter}".encode(), "sha512").digest()
            key = oprf.clamped(int.from_bytes(digest, "little") % oprf.L)
            if key is not None:
                return key
        raise BlindError("no session key could be derived")  # pragma: no cover - 2^-1000

    def evaluate(self, partner: str, session: str, elements: Sequence[bytes]) -> Answer:
        """The answer to one batch, or :class:`LimitExceeded` for the whole batch."""
        lifetime = _stamp(-SESSION_LIFETIME)
        total = self._node.store.count_blind_evaluations(
            session, partner, len(elements), partner_cap=self._partner_cap,
            since=self._since(), opened_after=lifetime,
        )  # fmt: skip
        key = self.key(session)
        answer = Answer(session, [oprf.evaluate(key, element) for element in elements])
        answer.signature = self._node.signer.sign(answer.digest(elements))
        log.info(
            "blind matching: %d values evaluated for %s (session %s, %d in all)",
            len(elements), partner, session, total,
        )  # fmt: skip
        return answer


def _secret(path: Path) -> bytes:
    """The node's blind-matching secret: exactly 32 random bytes, owner-only. Made whole in
    a temporary file and linked into place, so that no process ever reads a half-written
    (or empty) one; a file of any other size or mode is refused, never used."""
    if not path.exists():
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".blind-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(name, path)
        finally:
            os.unlink(name)
    # a fault of this node, not of the partner asking: logged, and a 500 for the partner
    if path.stat().st_mode & 0o077:
        raise RuntimeError(f"{path} is readable by others: chmod 600 it")
    secret = path.read_bytes()
    if len(secret) != 32:
        raise RuntimeError(f"{path} holds {len(secret)} bytes, not 32: remove it for a new one")
    return secret


@dataclass
class Answer:
    session: str
    elements: list[bytes]
    signature: bytes = b""

    def digest(self, asked: Sequence[bytes]) -> bytes:
        """What the signature binds: the session, the elements asked and those answered."""
        hashed = hashlib.sha256(orjson.dumps(["allied-blind-answer-v1", self.session]))
        for element in (*asked, *self.elements):
            hashed.update(element)
        return hashed.digest()

    def to_wire(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "elements": [_b64(element) for element in self.elements],
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_wire(cls, document: object) -> Answer:
        if not isinstance(document, dict) or not isinstance(document.get("session"), str):
            raise BlindError("$.session: expected the session id")
        elements = [
            _bytes(item, f"$.elements[{n}]", 32)
            for n, item in enumerate(_list(document, "elements"))
        ]
        return cls(
            document["session"], elements, _bytes(document.get("signature"), "$.signature", 64)
        )


# -- the log owner ---------------------------------------------------------------------------


@dataclass
class BlindHit:
    kind: str
    value: str
    #: the payload's entries: each an indicator id, and the indicator where it may be received
    indicators: list[dict[str, Any]]


def match_values(
    values: Iterable[tuple[str, str]],
    offer: Offer,
    owner_key: VerifyKey,
    evaluate: Callable[[list[bytes]], Answer],
    *,
    batch: int = 10_000,
    workers: int = 2,
    identity: str | None = None,
) -> list[BlindHit]:
    """The values (kind, value) that hit an offered indicator. ``evaluate`` sends a batch of
    blinded elements to the owner's oracle. The offer and every answer must carry the
    owner's signature; a tampered one is refused, never half-used, and so is an offer made
    for another ``identity`` than this node's, or expired.

    ``workers`` batches are in flight at once: libsodium lets go of the interpreter while it
    multiplies, so one batch is blinded or unblinded here while another is evaluated there,
    and every core works."""
    _verify(owner_key, offer.signature, offer.digest(), "the offer")
    if identity is not None and offer.partner != identity:
        raise BlindError(f"the offer was made for {offer.partner}, not for this node")
    if offer.expires <= _stamp(timedelta()):
        raise BlindError(f"the offer expired at {offer.expires}")
    pending = sorted(set(values))
    chunks = [pending[start : start + batch] for start in range(0, len(pending), batch)]

    def one(chunk: list[tuple[str, str]]) -> list[BlindHit]:
        inputs = [prf_input(kind, value) for kind, value in chunk]
        asked, secret = oprf.blind_many(inputs)
        answer = evaluate(asked)
        _verify(owner_key, answer.signature, answer.digest(asked), "an answer")
        if answer.session != offer.session or len(answer.elements) != len(asked):
            raise BlindError("an answer does not belong to this session or this batch")
        found = []
        for (kind, value), data, element in zip(chunk, inputs, answer.elements, strict=True):
            prf = oprf.finalize(data, oprf.unblind(secret, element))
            sealed = offer.tags.get(oprf.tag_of(prf))
            if sealed is not None:
                entries = orjson.loads(oprf.open_sealed(prf, sealed))
                found.append(BlindHit(kind, value, list(entries)))
        return found

    if workers <= 1 or len(chunks) <= 1:
        return [hit for chunk in chunks for hit in one(chunk)]
    with ThreadPoolExecutor(workers, thread_name_prefix="allied-blind") as pool:
        return [hit for found in pool.map(one, chunks) for hit in found]


def _verify(key: VerifyKey, signature: bytes, digest: bytes, what: str) -> None:
    try:
        key.verify(digest, signature)
    except BadSignatureError:
        raise BlindError(f"{what} does not carry the indicator owner's signature") from None


def distinct_values(rows: Iterable[Mapping[str, str | None]]) -> set[tuple[str, str]]:
    """(kind, value) of normalised log rows, for the fields blind matching compares."""
    found: set[tuple[str, str]] = set()
    for row in rows:
        for name, value in row.items():
            if value and name in FIELDS and FIELDS[name] != "port":
                found.add((kind_of(name), value))
    return found
