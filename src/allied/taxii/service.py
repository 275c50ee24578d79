"""The TAXII 2.1 service of a node, as plain functions of (partner, request data): the HTTP
layer (:mod:`allied.taxii.app`) only moves bytes in and out.

Every answer about objects is read through :mod:`allied.store.pages` with the partner's
:class:`allied.policy.egress.Visibility`, so what a partner may not receive is never read,
counted or paged: the same 404, the same empty page, as for an object the node does not
hold. Collections are the node's own (every object it holds) and one per community of the
node; a partner reads its communities' collections and the node's own, and writes where the
configuration allows.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from allied.ingest.envelope import Outcome, PostResult, post_objects
from allied.integrity import proofs
from allied.integrity.origin import Origin
from allied.node import Node, hash_token
from allied.policy.egress import Egress, Visibility
from allied.stix.checks import TIMESTAMP, timestamp_key
from allied.store import schema
from allied.store.pages import ALL, LAST, Entry, Page, Selection, page, withdrawn
from allied.store.store import GROWN_SQL, Partner, Writer
from allied.taxii.protocol import (
    MEDIA_TYPE,
    STIX_MEDIA_TYPE,
    Cursors,
    Filters,
    TaxiiError,
    bad_request,
    not_found,
    now,
    parse_filters,
    selection,
)

_NAMESPACE = uuid.UUID("6b0f1f6e-4f55-4d2b-9a59-2d1f3c6a7c41")
OBJECT_FILTERS = frozenset(
    {"added_after", "limit", "next", "match[id]", "match[type]", "match[version]",
     "match[spec_version]"}
)  # fmt: skip
ONE_OBJECT_FILTERS = frozenset(
    {"added_after", "limit", "next", "match[version]", "match[spec_version]"}
)
VERSION_FILTERS = frozenset({"added_after", "limit", "next", "match[spec_version]"})
DELETE_FILTERS = frozenset({"match[version]", "match[spec_version]"})


def own_collection_id(identity_id: str) -> str:
    """The id of the collection of everything a node shares: derived from the node's
    identity, so a peer finds it without being told."""
    return str(uuid.uuid5(_NAMESPACE, f"{identity_id}/own"))


def community_collection_id(identity_id: str, community: str) -> str:
    """The id of a node's collection for ``community``, derived like the own one."""
    return str(uuid.uuid5(_NAMESPACE, f"{identity_id}/community/{community}"))


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    #: the community it belongs to; None for the node's own collection
    community: str | None


@dataclass(frozen=True)
class Answer:
    """A response body (already JSON) and its extra headers."""

    body: bytes
    headers: dict[str, str]
    status: int = 200


_REQUEST_STATE: ContextVar[_State | None] = ContextVar("allied_taxii_state", default=None)


@dataclass
class _State:
    """What requests share until the store changes: the signed partner directory, token
    verifiers and release decisions."""

    generation: Any
    partners: dict[str, Partner]
    egress: Egress
    visibility: dict[str, Visibility]
    #: the signing and verifying gate for posted objects (keys are those of the directory)
    origin: Origin
    #: the service it belongs to: a request's state is never another node's
    owner: Any = None


class TaxiiService:
    def __init__(self, node: Node) -> None:
        self.node = node
        config = node.config
        self.max_page_size = int(config.setting("max_page_size"))
        self.max_content_length = int(config.setting("max_content_length"))
        self.max_envelope_objects = int(config.setting("max_envelope_objects"))
        self.anonymous_discovery = bool(config.setting("anonymous_discovery"))
        self._own_writable = bool(config.setting("own_collection_writable"))
        self._read_only = frozenset(config.setting("read_only_communities"))
        self.cursors = Cursors(node.signer.secret)
        identity = config.identity_id
        own = Collection(
            own_collection_id(identity),
            config.name,
            f"Everything {config.name} shares with you",
            None,
        )
        self.collections = [own] + [
            Collection(
                community_collection_id(identity, name),
                name,
                f"Objects posted to the {name} community at {config.name}",
                name,
            )
            for name in config.communities
        ]
        self._by_id = {c.id: c for c in self.collections}
        self._lock = threading.Lock()
        self._state: _State | None = None

    # -- who is asking ---------------------------------------------------------------------

    def _generation(self) -> Any:
        """Changes whenever what releases depend on changes: a new label set, closure or
        marking definition (the tables only grow), and a partner enrolled or revoked (its
        signed row rewritten). Objects written under known label sets and closures change
        no decision, so a stream of posts does not rebuild them."""
        store = self.node.store
        grown = tuple(store.raw_sql_rows(GROWN_SQL, ()))
        rows = tuple(store.raw_sql_rows("SELECT name, revoked, signature FROM partners", ()))
        return (grown, rows)

    def _current(self) -> _State:
        generation = self._generation()
        state = self._state
        if state is None or state.generation != generation:
            with self._lock:
                state = self._state
                if state is None or state.generation != generation:
                    egress = Egress(self.node)
                    partners = {p.name: p for p in self.node.partners()}
                    state = _State(generation, partners, egress, {}, self.node.origin(), owner=self)
                    self._state = state
        return state

    def _request_state(self) -> _State:
        """The state the current request authenticated with (or the current one)."""
        state = _REQUEST_STATE.get()
        return state if state is not None and state.owner is self else self._current()

    def authenticate(self, token: str) -> Partner | None:
        """The partner whose token this is. Every enrolled token is compared, in constant
        time, so the time taken says nothing about which (or whether one) matched. The rest
        of the request uses the directory and decisions read here (a write meanwhile can
        only withhold more: its new closures are not among those allowed)."""
        digest = hash_token(token)
        found = []
        state = self._current()
        _REQUEST_STATE.set(state)
        for partner in state.partners.values():
            if partner.token_hash is not None and hmac.compare_digest(
                partner.token_hash.encode(), digest.encode()
            ):
                found.append(partner)
        # a token shared by two entries identifies nobody
        return found[0] if len(found) == 1 else None

    def _visibility(self, partner: Partner) -> Visibility:
        state = self._request_state()
        seen = state.visibility.get(partner.name)
        if seen is None:
            seen = state.visibility[partner.name] = state.egress.visibility(partner.name)
        return seen

    # -- discovery and collections ---------------------------------------------------------

    def discovery(self, base_url: str) -> dict[str, Any]:
        root = f"{base_url}api/"
        return {
            "title": f"Allied node {self.node.config.name}",
            "description": "TAXII 2.1 API of an Allied node: STIX 2.1 intelligence shared "
            "under each object's labels",
            "default": root,
            "api_roots": [root],
        }

    def api_root(self) -> dict[str, Any]:
        return {
            "title": self.node.config.name,
            "description": f"Collections of {self.node.config.name} ({self.node.config.nation})",
            "versions": [MEDIA_TYPE],
            "max_content_length": self.max_content_length,
        }

    def can_read(self, partner: Partner, collection: Collection) -> bool:
        return collection.community is None or collection.community in partner.communities

    def can_write(self, partner: Partner, collection: Collection) -> bool:
        if collection.community is None:
            return self._own_writable
        return self.can_read(partner, collection) and collection.community not in self._read_only

    def list_collections(self, partner: Partner) -> dict[str, Any]:
        shown = [self._describe(partner, c) for c in self.collections if self.can_read(partner, c)]
        return {"collections": shown} if shown else {}

    def collection(self, partner: Partner, collection_id: str) -> dict[str, Any]:
        return self._describe(partner, self._readable(partner, collection_id))

    def _describe(self, partner: Partner, collection: Collection) -> dict[str, Any]:
        return {
            "id": collection.id,
            "title": collection.title,
            "description": collection.description,
            "can_read": True,
            "can_write": self.can_write(partner, collection),
            "media_types": [STIX_MEDIA_TYPE],
        }

    def _readable(self, partner: Partner, collection_id: str) -> Collection:
        """The collection, if the partner may read it; any other is as if it did not exist."""
        found = self._by_id.get(collection_id)
        if found is None or not self.can_read(partner, found):
            raise not_found(f"collection {collection_id}")
        return found

    def _writable(self, partner: Partner, collection_id: str) -> Collection:
        found = self._readable(partner, collection_id)
        if not self.can_write(partner, found):
            raise TaxiiError(
                403, "Forbidden", f"collection {found.title} is read-only for {partner.name}"
            )
        return found

    # -- objects -----------------------------------------------------------------------------

    def _page(
        self,
        partner: Partner,
        collection: Collection,
        filters: Filters,
        scope: str,
        *,
        ids: tuple[str, ...] | None = None,
        with_json: bool = True,
    ) -> tuple[Page, str | None]:
        """A page and the ``next`` token that continues it (None on the last page)."""
        scope = f"{collection.id}/{scope}"
        after = (
            self.cursors.open(filters.next, partner.name, scope)
            if filters.next is not None
            else None
        )
        limit = min(filters.limit or self.max_page_size, self.max_page_size)
        if not filters.spec_matches:
            return Page([], False), None
        found = self._rows(
            partner,
            selection(filters, collection=_scope(collection), limit=limit, after=after, ids=ids),
            with_json=with_json,
        )
        token = None
        if found.more and found.entries:
            last = found.entries[-1]
            token = self.cursors.seal(partner.name, scope, (last.date_added, last.position))
        if with_json:  # what leaves with its content is journaled before it leaves
            self.node.store.journal(
                partner.name,
                [(entry.id, entry.version) for entry in found.entries],
                f"taxii {collection.title}",
            )
        return found, token

    def _rows(self, partner: Partner, chosen: Selection, *, with_json: bool = False) -> Page:
        """A page of what ``partner`` may see among the rows ``chosen`` picks."""
        seen = self._visibility(partner)
        return page(
            self.node.store,
            seen.closures,
            seen.markings,
            chosen,
            with_json=with_json,
            own_sets=seen.own_sets,
            copies_of=partner.name,
        )

    def _exists(self, partner: Partner, collection: Collection, object_id: str) -> bool:
        """The partner may see some version of ``object_id`` in ``collection``."""
        chosen = Selection(_scope(collection), ids=(object_id,), versions=(ALL,), limit=1)
        return bool(self._rows(partner, chosen).entries)

    def inclusion(self, partner: Partner, object_id: str, version: str | None) -> dict[str, Any]:
        """The ledger's inclusion proof of this version (the latest by default) of
        ``object_id``, if the partner may see it (a proof for a withheld one would say that
        it exists); of its own copy, if that is what it sees."""
        if version is not None and TIMESTAMP.match(version) is None:
            raise bad_request(
                f"version {version!r}: expected a timestamp such as 2026-03-01T10:00:00.000Z"
            )
        versions = (timestamp_key(version),) if version else (LAST,)
        chosen = Selection(ids=(object_id,), versions=versions, limit=1)
        found = self._rows(partner, chosen).entries
        if not found:
            raise not_found(f"object {object_id}")
        copy_of = partner.name if found[0].pk < 0 else None
        return proofs.inclusion(self.node.store, object_id, version, copy_of=copy_of)

    def get_objects(
        self, partner: Partner, collection_id: str, params: list[tuple[str, str]]
    ) -> Answer:
        collection = self._readable(partner, collection_id)
        filters = parse_filters(params, allowed=OBJECT_FILTERS)
        found, token = self._page(partner, collection, filters, "objects")
        return _envelope(found, token)

    def get_object(
        self,
        partner: Partner,
        collection_id: str,
        object_id: str,
        params: list[tuple[str, str]],
    ) -> Answer:
        collection = self._readable(partner, collection_id)
        filters = parse_filters(params, allowed=ONE_OBJECT_FILTERS)
        found, token = self._page(
            partner, collection, filters, f"object/{object_id}", ids=(object_id,)
        )
        if not found.entries and not self._exists(partner, collection, object_id):
            raise not_found(f"object {object_id}")
        return _envelope(found, token)

    def get_versions(
        self,
        partner: Partner,
        collection_id: str,
        object_id: str,
        params: list[tuple[str, str]],
    ) -> Answer:
        collection = self._readable(partner, collection_id)
        filters = parse_filters(params, allowed=VERSION_FILTERS, default_version=ALL)
        found, token = self._page(
            partner, collection, filters, f"versions/{object_id}", ids=(object_id,),
            with_json=False,
        )  # fmt: skip
        if not found.entries and not self._exists(partner, collection, object_id):
            raise not_found(f"object {object_id}")
        body: dict[str, Any] = {"more": found.more}
        if token is not None:
            body["next"] = token
        if found.entries:
            body["versions"] = [entry.version for entry in found.entries]
        return Answer(orjson.dumps(body), _date_headers(found.entries))

    def get_manifest(
        self, partner: Partner, collection_id: str, params: list[tuple[str, str]]
    ) -> Answer:
        collection = self._readable(partner, collection_id)
        filters = parse_filters(params, allowed=OBJECT_FILTERS)
        found, token = self._page(partner, collection, filters, "manifest", with_json=False)
        body: dict[str, Any] = {"more": found.more}
        if token is not None:
            body["next"] = token
        if found.entries:
            body["objects"] = [
                {
                    "id": entry.id,
                    "date_added": entry.date_added,
                    "version": entry.version,
                    "media_type": STIX_MEDIA_TYPE,
                }
                for entry in found.entries
            ]
        return Answer(orjson.dumps(body), _date_headers(found.entries))

    def delete_object(
        self,
        partner: Partner,
        collection_id: str,
        object_id: str,
        params: list[tuple[str, str]],
    ) -> Answer:
        """Takes versions the partner posted out of a community collection; they stay in the
        node's store and ledger, which are append-only. The node's own collection holds
        everything the node holds, so nothing is deleted from it."""
        collection = self._readable(partner, collection_id)
        filters = parse_filters(params, allowed=DELETE_FILTERS, default_version=ALL)
        if not self._exists(partner, collection, object_id):
            raise not_found(f"object {object_id}")
        if collection.community is None:
            raise TaxiiError(
                403,
                "Forbidden",
                "the node's own collection holds everything the node holds; its ledger is "
                "append-only, so nothing is deleted from it",
            )
        self._writable(partner, collection_id)
        entries: list[Entry] = []
        after = None
        while True:
            chosen = selection(
                filters,
                collection=collection.id,
                limit=self.max_page_size,
                after=after,
                ids=(object_id,),
            )
            found = self._rows(partner, chosen)
            entries.extend(found.entries)
            if not found.more or not found.entries:
                break
            after = (found.entries[-1].date_added, found.entries[-1].position)
        if any(entry.posted_by != partner.name for entry in entries):
            raise TaxiiError(
                403, "Forbidden", f"{object_id}: a partner deletes only the versions it posted"
            )
        if filters.spec_matches and entries:
            with self.node.store.write() as writer:
                writer.remove_from_collection(collection.id, [e.pk for e in entries])
        return Answer(b"", {}, 200)

    def post_objects(
        self, partner: Partner, collection_id: str, envelope: Any, *, requested: str
    ) -> Answer:
        collection = self._writable(partner, collection_id)
        objects = envelope.get("objects") if isinstance(envelope, dict) else None
        if not isinstance(envelope, dict) or not isinstance(objects, list):
            raise TaxiiError(
                422,
                "Unprocessable Entity",
                "expected a TAXII envelope: a JSON object with a list of STIX objects in 'objects'",
            )
        unknown = sorted(set(envelope) - {"objects", "more", "next"})
        if unknown:
            raise TaxiiError(
                422, "Unprocessable Entity", f"envelope: unknown property {unknown[0]!r}"
            )
        if len(objects) > self.max_envelope_objects:
            raise TaxiiError(
                413,
                "Payload Too Large",
                f"the envelope holds {len(objects)} objects; this server takes at most "
                f"{self.max_envelope_objects} per request",
            )
        status_id = str(uuid.uuid4())
        document = b""
        state = self._request_state()

        def current_view() -> Callable[[str, str, int | None, int], bool]:
            """The partner's view as the store is now, inside the write transaction: the
            request's, unless a label set, closure or partner changed since it began."""
            if self._generation() == state.generation:
                return self._visibility(partner).sees
            return Egress(self.node).visibility(partner.name).sees

        def record(writer: Writer, result: PostResult) -> None:
            nonlocal document
            document = orjson.dumps(
                {
                    "id": status_id,
                    "status": "complete",
                    "request_timestamp": requested,
                    "total_count": len(objects),
                    "success_count": len(result.successes),
                    "successes": [_detail(o) for o in result.successes],
                    "failure_count": len(result.failures),
                    "failures": [_detail(o) for o in result.failures],
                    "pending_count": 0,
                    "pendings": [],
                }
            )
            writer.save_status(status_id, partner.name, document.decode())

        post_objects(
            self.node,
            objects,
            partner=partner.name,
            collection=_scope(collection),
            record=record,
            origin=state.origin,
            sees=current_view,
        )
        return Answer(document, {}, 202)

    def withdrawn(self, partner: Partner, params: list[tuple[str, str]]) -> Answer:
        """The objects ``partner`` may no longer receive since ``added_after``: what a peer
        node that holds them stops serving (see :func:`allied.store.pages.withdrawn`)."""
        filters = parse_filters(params, allowed=frozenset({"added_after"}))
        seen = self._visibility(partner)
        found = withdrawn(self.node.store, seen.closures, seen.own_sets, filters.added_after)
        body = {"withdrawn": [{"id": i, "withdrawn": when} for i, when in found]}
        headers = {"X-TAXII-Date-Added-Last": found[-1][1]} if found else {}
        return Answer(orjson.dumps(body), headers)

    def peer_head(self, partner: Partner, params: list[tuple[str, str]]) -> Answer:
        """The latest tree head this node verified of its peer ``signer`` (ledger gossip:
        partners compare the heads a node showed each of them). Any partner may ask about
        any identity it names (never its own): the answer says that this node syncs from
        that node, and how large its ledger was (docs/federation.md)."""
        signer = dict(params).get("signer", "")
        if set(dict(params)) - {"signer"} or not signer.startswith("identity--"):
            raise bad_request("give signer=IDENTITY (a STIX identity id), and nothing else")
        if signer == partner.identity_id:
            raise not_found(f"a tree head of {signer}")
        table, known = schema.peers, schema.partners
        with self.node.store.engine.connect() as conn:
            head = conn.execute(
                select(table.c.head)
                .select_from(table.join(known, known.c.name == table.c.partner))
                .where(known.c.identity_id == signer, table.c.head.is_not(None))
                .order_by(table.c.last_success.desc())
            ).first()
        if head is None:
            raise not_found(f"a tree head of {signer}")
        return Answer(str(head[0]).encode(), {})

    def get_status(self, partner: Partner, status_id: str) -> Answer:
        table = schema.taxii_status
        with self.node.store.engine.connect() as conn:
            text = conn.execute(
                select(table.c.json).where(table.c.id == status_id, table.c.partner == partner.name)
            ).scalar()
        if text is None:
            raise not_found(f"status {status_id}")
        return Answer(text.encode(), {})


def _scope(collection: Collection) -> str | None:
    """What the store calls the collection: the node's own is every object it holds."""
    return collection.id if collection.community is not None else None


def _detail(outcome: Outcome) -> dict[str, str]:
    detail = {"id": outcome.id, "version": outcome.version}
    if outcome.message:
        detail["message"] = outcome.message
    return detail


def _date_headers(entries: Sequence[Entry]) -> dict[str, str]:
    if not entries:
        return {}
    return {
        "X-TAXII-Date-Added-First": entries[0].date_added,
        "X-TAXII-Date-Added-Last": entries[-1].date_added,
    }


def _envelope(found: Page, token: str | None) -> Answer:
    """The envelope, written around the stored JSON of each object without parsing it."""
    head = b'{"more":true' if found.more else b'{"more":false'
    if token is not None:
        head += b',"next":' + orjson.dumps(token)
    if found.entries:
        body = head + b',"objects":[' + ",".join(e.json or "" for e in found.entries).encode()
        body += b"]}"
    else:
        body = head + b"}"
    return Answer(body, _date_headers(found.entries))


__all__ = [
    "Answer",
    "Collection",
    "TaxiiService",
    "community_collection_id",
    "now",
    "own_collection_id",
]
