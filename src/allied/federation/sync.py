"""Pulling from peers: verify the peer's ledger, then store what it serves, page by page.

Each page is applied in one transaction together with the peer's cursor, so a sync
interrupted anywhere (a dropped connection, a killed process) resumes where the last
committed page ended and applies nothing twice: object versions are stored once, whoever
serves them again. What a peer serves goes through the same validation and signature
checks as an import (the originator's pinned key, whoever relays it), and is recorded as
received from the peer's partner, so the release rules never forward it beyond what its
labels allow. An object that fails is refused alone and kept as evidence
(``peer_rejections``); a peer whose ledger contradicts a head it signed before is flagged
and not synced from again until an operator accepts it.

A peer that fails (unreachable, slow, erroring) is retried later with exponential back-off,
and peers are synced in parallel, so one never holds up the others.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from allied.allocation import rare_collections
from allied.errors import AlliedError
from allied.federation import peers as peer_table
from allied.federation import workers
from allied.federation.gossip import HistoryError, check_extends, check_head
from allied.federation.peers import Peer
from allied.federation.remote import Page, Remote, RemoteError
from allied.ingest.envelope import Admission, Outcome, PostResult, admit_objects, store_objects
from allied.integrity.keys import parse_public_key
from allied.integrity.ledger import TreeHead, verify_head
from allied.integrity.origin import Origin, is_standard_id
from allied.integrity.signing import SignatureError, TrustedKey
from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.checks import TIMESTAMP
from allied.stix.model import StixObject, version_key
from allied.store import schema
from allied.store.pages import ALL, Selection, page
from allied.store.store import Writer, now
from allied.taxii.service import own_collection_id

log = logging.getLogger("allied.sync")
_P = schema.peers
#: pages stored per transaction: each commit signs a tree head and syncs the disk
_PAGES_PER_COMMIT = 4
#: pages fetched and admitted ahead of the one being stored
_PAGES_AHEAD = 8
#: pages waiting at the admission worker before this process admits one itself
_WORKER_BACKLOG = 2
#: label definitions asked for by id per group of pages (see _missing_labels)
_LABEL_LOOKUPS = 50
#: how far ahead of this node's clock a peer's time may be
_SKEW = timedelta(minutes=5)
OK, FAILED, FLAGGED, SKIPPED = "ok", "failed", "flagged", "skipped"


class Interrupted(AlliedError):
    """The operator stopped the sync (Ctrl-C): the pages fetched and verified so far are
    stored, and the next sync goes on from there. Not the peer's failure: no back-off."""


@dataclass
class SyncResult:
    peer: str
    status: str
    #: object versions stored that this node did not hold
    received: int = 0
    #: object versions the peer served that were refused
    rejected: int = 0
    pages: int = 0
    #: objects the peer withdrew, no longer released from here
    withdrawn: int = 0
    #: object versions posted to the peer (peers this node pushes to)
    pushed: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "status": self.status,
            "received": self.received,
            "rejected": self.rejected,
            "withdrawn": self.withdrawn,
            "pushed": self.pushed,
            "pages": self.pages,
            "message": self.message,
        }


def sync_all(
    node: Node, *, force: bool = False, full: bool = False, stop: threading.Event | None = None
) -> list[SyncResult]:
    """Sync every peer, in parallel; see :func:`sync_peer`. Ctrl-C (KeyboardInterrupt, in
    the calling thread) sets ``stop``: each pull stores what it has verified and ends at its
    next page, instead of the interrupt waiting for every pull to finish."""
    names = [p.name for p in peer_table.peers(node)]
    if not names:
        return []
    stop = stop or threading.Event()
    with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="sync") as pool:
        try:
            return list(
                pool.map(lambda n: sync_peer(node, n, force=force, full=full, stop=stop), names)
            )
        except KeyboardInterrupt:
            stop.set()  # the pulls under way end at their next page; leaving waits for them
            pool.shutdown(wait=False, cancel_futures=True)  # the peers not begun never are
            raise


def sync_peer(
    node: Node,
    name: str,
    *,
    force: bool = False,
    full: bool = False,
    stop: threading.Event | None = None,
) -> SyncResult:
    """Pull everything new from peer ``name``. A peer backing off after failures is left
    alone unless ``force``; ``full`` pulls from the beginning (what is held already is not
    stored again), for objects the peer may release now that it withheld before. ``stop``
    set: the pull ends at its next page (:class:`Interrupted`)."""
    if stop is not None and stop.is_set():  # the peer is not even contacted
        return SyncResult(name, FAILED, message="interrupted before it began")
    peer = peer_table.peer(node, name)
    if peer.flagged:
        return SyncResult(name, FLAGGED, message=peer.flagged)
    started = now()
    if not force and peer.next_attempt is not None and started < peer.next_attempt:
        return SyncResult(name, SKIPPED, message=f"backing off until {peer.next_attempt}")
    _update(node, name, last_attempt=started)
    result = SyncResult(name, OK)
    try:
        partner = node.partner(peer.partner)
        if partner.revoked or partner.public_key is None:
            raise AlliedError(f"peer {name}: partner {peer.partner} is revoked or has no key")
        key = TrustedKey.of(
            parse_public_key(partner.public_key, source=f"partner {partner.name}"),
            partner.identity_id,
        )
        timeout = float(node.config.setting("sync_timeout"))
        with Remote(name, peer.url, peer_table.token(node, name), timeout=timeout) as remote:
            head = remote.head()
            check_head(partner, key, head, peer.tree_head, remote)
            _check_views(node, peer, head, remote)
            # kept before anything is pulled: whatever fails later, the next sync checks
            # the peer's history against this head
            _update(node, name, head=orjson.dumps(head.as_dict()).decode())
            url = remote.collection_url(peer.collection or own_collection_id(partner.identity_id))
            _pull(node, peer, remote, url, result, full=full, stop=stop)
            _check_stop(stop)
            _withdraw(node, peer, remote.withdrawn(peer.withdrawn_cursor), result)
            _collect_views(node, peer, remote)
            if peer.push_to is not None:
                _push(node, peer, remote, result)
    except (HistoryError, SignatureError) as error:
        message = error.message
        log.error("peer %s flagged: %s", name, message)
        _update(node, name, flagged=message, last_error=message)
        result.status, result.message = FLAGGED, message
        return result
    except Interrupted as error:
        log.warning("peer %s: %s", name, error.message)
        _update(node, name, last_error=error.message)
        result.status, result.message = FAILED, error.message
        return result
    except Exception as error:
        message = error.message if isinstance(error, AlliedError) else f"internal error: {error!r}"
        if not isinstance(error, AlliedError):
            log.exception("peer %s: sync failed", name)
        failures = peer.failures + 1
        retry = _backoff(node, failures)
        log.warning("peer %s: %s (attempt %d; next at %s)", name, message, failures, retry)
        _update(node, name, failures=failures, next_attempt=retry, last_error=message)
        result.status, result.message = FAILED, message
        return result
    _update(
        node,
        name,
        last_success=now(),
        failures=0,
        next_attempt=None,
        last_error=None,
    )
    log.info(
        "peer %s: %d new object versions, %d refused, %d pages",
        name, result.received, result.rejected, result.pages,
    )  # fmt: skip
    return result


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Interrupted("interrupted: what was verified so far is stored")


def _pull(
    node: Node,
    peer: Peer,
    remote: Remote,
    url: str,
    result: SyncResult,
    *,
    full: bool,
    stop: threading.Event | None = None,
) -> None:
    """Every page since the peer's cursor (or from where the last pull stopped midway)."""
    limit = int(node.config.setting("sync_page_size"))
    origin = node.origin()
    cursor = None if full else peer.cursor
    resume = None if full else peer.resume
    try:
        _apply_pages(
            node, peer, remote, url, cursor, resume, limit, origin, result, full=full,
            interrupt=stop,
        )  # fmt: skip
    except RemoteError as error:
        if resume is None or error.status != 400 or result.pages:
            raise
        # the peer no longer honours the token (its key changed): from the cursor, then,
        # over pages applied before. The token is kept until a page of this pull replaces
        # it: were it cleared and this pull to fail first, the next would pull from the
        # cursor as if nothing came after it, and take what it holds for replays
        log.info("peer %s: resume token refused, pulling from the cursor", peer.name)
        _apply_pages(
            node, peer, remote, url, cursor, None, limit, origin, result, full=full,
            overlapping=True, interrupt=stop,
        )  # fmt: skip


def _apply_pages(
    node: Node,
    peer: Peer,
    remote: Remote,
    url: str,
    cursor: str | None,
    resume: str | None,
    limit: int,
    origin: Origin,
    result: SyncResult,
    *,
    full: bool,
    overlapping: bool = False,
    interrupt: threading.Event | None = None,
) -> None:
    """``overlapping``: pulling from the cursor again, over pages applied before, so that
    versions served again are no replay. ``interrupt`` set: no page is fetched after it,
    those before are stored, and :class:`Interrupted` is raised."""
    exact = not full and not overlapping
    budget = int(node.config.setting("sync_max_pages"))
    latest = cursor  # when the last page with objects ended
    asked: set[str] = set()  # label definitions asked for by id in this pull

    def apply(group: list[tuple[Page, Future[Admission] | workers.Admitting]]) -> None:
        """Pages stored in one transaction, with the cursor after the last of them."""
        nonlocal latest
        last = group[-1][0]
        for fetched, _ in group:
            if fetched.objects and fetched.last_added is not None:
                latest = _checked_time(peer, fetched.last_added, latest)
        if full:  # a pull from the beginning that stops is not resumed: it overlaps
            last = Page(last.objects, last.last_added, last.more, None)
        admitted: list[StixObject] = []
        failures: list[Outcome] = []
        objects: list[Any] = []
        for fetched, admission in group:
            try:
                done = admission.result()
            except BrokenProcessPool:  # the worker died: this page is admitted here
                workers.forget_broken()
                done = admit_objects(fetched.objects, origin, partner=peer.partner, posted=False)
            admitted += done.admitted
            failures += done.failures
            objects += fetched.objects
        labels = _missing_labels(node, peer, remote, url, admitted, origin, asked)
        merged = Page(objects, latest, last.more, last.next)
        whole = Admission(labels.admitted + admitted, labels.failures + failures)
        stored = _apply(node, peer, merged, whole, exact=exact, advance=full)
        result.pages += len(group)
        result.received += stored.stored
        result.rejected += len(stored.failures)

    # Pages are fetched and admitted (validated, signatures checked) ahead, by a thread of
    # their own, while those before are stored: admission in a thread, or in a worker
    # process once one is ready if the pull is long (allied.federation.workers)
    ahead: queue.Queue[
        tuple[Page, Future[Admission] | workers.Admitting] | BaseException | None
    ] = queue.Queue(_PAGES_AHEAD)
    stop = threading.Event()
    verifier = origin.verifier()

    def hand(
        item: tuple[Page, Future[Admission] | workers.Admitting] | BaseException | None,
    ) -> bool:
        """Queue ``item`` for the storing thread, unless it stopped (then False)."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(admitter: ThreadPoolExecutor) -> None:
        worker: Future[bool] | None = None
        sent: list[workers.Admitting] = []  # pages the worker has not admitted yet
        kept: list[Future[Admission]] = []  # the last page admitted here
        try:
            pages = remote.pages(url, added_after=cursor, resume=resume, limit=limit)
            for count, fetched in enumerate(pages, start=1):
                _check_stop(interrupt)  # this page is fetched again by the next sync
                if worker is None and fetched.more:
                    worker = workers.start()
                admission: Future[Admission] | workers.Admitting | None = None
                ready = worker is not None and worker.done() and worker.exception() is None
                # the worker takes the pages, and this process those it can while the
                # worker has a backlog: both cores then admit
                backlog = sum(not pending.done() for pending in sent)
                if ready and (backlog < _WORKER_BACKLOG or not all(p.done() for p in kept)):
                    admitting = workers.admit(fetched.objects, verifier, peer.partner)
                    if admitting is not None:
                        sent[:] = [pending for pending in sent if not pending.done()]
                        sent.append(admitting)
                        admission = admitting
                if admission is None:
                    local = admitter.submit(
                        admit_objects, fetched.objects, origin, partner=peer.partner,
                        posted=False,
                    )  # fmt: skip
                    kept[:] = [local]
                    admission = local
                if not hand((fetched, admission)):
                    return
                if count >= budget and fetched.more:  # the rest next time, from the resume token
                    log.info("peer %s: %d pages this time, the rest at the next sync",
                             peer.name, count)  # fmt: skip
                    break
        except BaseException as error:  # handed to the storing thread, which raises it
            hand(error)
            return
        hand(None)

    with rare_collections(), ThreadPoolExecutor(1, thread_name_prefix="admit") as admitter:
        producer = threading.Thread(
            target=produce, args=(admitter,), name=f"pull-{peer.name}", daemon=True
        )
        producer.start()
        try:
            waiting: list[tuple[Page, Future[Admission] | workers.Admitting]] = []
            while True:
                item = ahead.get()
                if isinstance(item, BaseException):
                    if waiting and isinstance(item, Exception):
                        # the pages before the fault were fetched and verified, in order:
                        # store them, or a peer that always drops at one page never moves on
                        apply(waiting)
                    raise item
                if item is None:
                    break
                waiting.append(item)
                if len(waiting) == _PAGES_PER_COMMIT:
                    apply(waiting)
                    waiting = []
            if waiting:
                apply(waiting)
        finally:
            stop.set()
            producer.join()


def _missing_labels(
    node: Node,
    peer: Peer,
    remote: Remote,
    url: str,
    admitted: list[StixObject],
    origin: Origin,
    asked: set[str],
) -> Admission:
    """The label definitions of a page's objects that this node lacks, admitted, to be
    stored before the objects (which are then stored knowing their labels). A peer serves a
    label's definition once, when it is added; one that becomes releasable to this node
    only later (when the first object it marks is) lies before the cursor, and an object
    whose label this node does not know is never passed on (fail closed). So each is asked
    for by id; the peer gives it if its release rules let it travel with the objects.

    Each id is asked once per sync (``asked``), at most ``_LABEL_LOOKUPS`` per group of
    pages, and a failed lookup costs only the label: the objects are stored all the same,
    and stay inside this node until their label arrives."""
    wanted = {ref for obj in admitted for ref in obj.marking_refs if not is_standard_id(ref)}
    wanted -= {obj.id for obj in admitted} | asked
    missing = sorted(ref for ref in wanted if node.store.latest(ref) is None)[:_LABEL_LOOKUPS]
    asked.update(missing)
    markings = []
    for ref in missing:
        try:
            versions = remote.object_versions(url, ref)
        except RemoteError as error:
            log.warning("peer %s: label %s not fetched: %s", peer.name, ref, error.message)
            continue
        markings += [
            obj
            for obj in versions
            if isinstance(obj, dict)
            and obj.get("type") == "marking-definition"
            and obj.get("id") == ref
        ]
    if not markings:
        return Admission([], [])
    log.info("peer %s: %d label definitions asked for by id", peer.name, len(markings))
    return admit_objects(markings, origin, partner=peer.partner, posted=False)


def _checked_time(peer: Peer, stamp: str, before: str | None) -> str:
    """A time the peer gives for a cursor: a timestamp, not going back, not in the future
    (a cursor pushed ahead would skip what is added until then, silently)."""
    if TIMESTAMP.match(stamp) is None:
        raise RemoteError(f"peer {peer.name}: {stamp!r} is not a timestamp")
    if before is not None and stamp < before:
        raise RemoteError(f"peer {peer.name}: time {stamp} goes back before {before}")
    limit = (datetime.now(UTC) + _SKEW).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if stamp > limit:
        raise RemoteError(f"peer {peer.name}: time {stamp} is in the future")
    return stamp


def _apply(
    node: Node, peer: Peer, page: Page, admission: Admission, *, exact: bool, advance: bool = False
) -> PostResult:
    """One page, stored with the cursor that follows it, in one transaction. ``exact``: the
    page follows what was applied before without overlap (see :func:`_replays`).
    ``advance``: a pull from the beginning, which is not resumed, moves the cursor with
    each page past it (all added up to the page's end is then held), so that a later pull
    from the cursor does not serve again, as replays, what this one stored."""

    def record(writer: Writer, outcome: PostResult) -> None:
        values: dict[str, Any] = {
            "received": _P.c.received + outcome.stored,
            "rejected": _P.c.rejected + len(outcome.failures),
            "resume": page.next,
        }
        if page.last_added is not None and (not page.more or advance):
            values["cursor"] = max(page.last_added, peer.cursor or "")
        writer.conn.execute(update(_P).where(_P.c.name == peer.name).values(**values))
        if outcome.successes:  # served again: releasable to this node again
            served = sorted({success.id for success in outcome.successes})
            gone = schema.withdrawals
            writer.conn.execute(
                delete(gone).where(gone.c.peer == peer.name, gone.c.object_id.in_(served))
            )
        if outcome.failures:
            at = now()
            writer.conn.execute(
                insert(schema.peer_rejections),
                [
                    {
                        "peer": peer.name,
                        "object_id": failure.id,
                        "version": failure.version,
                        "reason": failure.message,
                        "at": at,
                    }
                    for failure in outcome.failures
                ],
            )
            for failure in outcome.failures:
                log.warning("peer %s served %s, refused: %s", peer.name, failure.id,
                            failure.message)  # fmt: skip

    replays = _replays(node, peer, page.objects) if exact else set()
    if replays:
        admission = Admission(
            [obj for obj in admission.admitted if (obj.id, obj.version) not in replays],
            admission.failures
            + [
                Outcome(object_id, version, "served again: this peer sent this version before")
                for object_id, version in sorted(replays)
            ],
        )
    if not admission.admitted:
        refused = PostResult(failures=admission.failures)
        with node.store.write() as writer:
            record(writer, refused)
        return refused
    return store_objects(node, admission, partner=peer.partner, record=record, posted=False)


def _replays(node: Node, peer: Peer, objects: list[Any]) -> set[tuple[str, str]]:
    """(id, version key) of the versions on the page this node already received from the
    peer. An honest peer serves each version once, in the order it added them; one served
    again after the cursor was added to the peer's collection again: a relay or a peer
    replaying old versions (in place of newer ones it keeps back, say)."""
    keys = {key for key in map(_key, objects) if key is not None}
    if not keys:
        return set()
    held = node.store.received_versions(sorted({i for i, _ in keys}), peer.partner)
    return keys & held


def _key(obj: Any) -> tuple[str, str] | None:
    """(id, version key) as the store keeps them, of an object that has them."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return None
    stamp = obj.get("modified") or obj.get("created")
    if stamp is not None and (not isinstance(stamp, str) or TIMESTAMP.match(stamp) is None):
        return None  # not valid: refused when it is admitted
    return obj["id"], version_key(obj)


def _withdraw(node: Node, peer: Peer, notices: list[tuple[str, str]], result: SyncResult) -> None:
    """Stop releasing what the peer withdrew: only objects whose latest version this node
    received from it (a peer cannot silence what others sent). The peer serving a version
    again lifts it."""
    if not notices:
        return
    last = peer.withdrawn_cursor
    for _, when in notices:
        last = _checked_time(peer, when, last)
    ids = sorted({object_id for object_id, _ in notices})
    mine = node.store.latest_received_from(ids, peer.partner)
    gone = schema.withdrawals
    with node.store.write() as writer:
        held = set(
            writer.conn.execute(select(gone.c.object_id).where(gone.c.object_id.in_(ids))).scalars()
        )
        fresh = sorted(mine - held)
        if fresh:
            stamp = writer.date_added()
            writer.conn.execute(
                insert(gone),
                [{"object_id": i, "peer": peer.name, "withdrawn": stamp} for i in fresh],
            )
        writer.conn.execute(update(_P).where(_P.c.name == peer.name).values(withdrawn_cursor=last))
    result.withdrawn += len(fresh)
    for object_id in fresh:
        log.info("peer %s withdrew %s: no longer released to anyone", peer.name, object_id)


def _push(node: Node, peer: Peer, remote: Remote, result: SyncResult) -> None:
    """Post to the peer's ``push_to`` collection every object version this node may give
    the peer's partner, added since the last push, in the order added: the same egress
    path as the partner's own TAXII pages, journaled before each envelope leaves."""
    assert peer.push_to is not None
    url = remote.collection_url(peer.push_to)
    seen = Egress(node).visibility(peer.partner)
    after = None
    if peer.push_added is not None and peer.push_position is not None:
        after = (peer.push_added, peer.push_position)
    limit = int(node.config.setting("sync_page_size"))
    while True:
        chosen = Selection(versions=(ALL,), after=after, limit=limit)
        found = page(node.store, seen.closures, seen.markings, chosen, own_sets=seen.own_sets)
        if not found.entries:
            return
        node.store.journal(
            peer.partner,
            [(e.id, e.version) for e in found.entries],
            f"push {peer.name}",
        )
        body = b'{"objects":[' + ",".join(e.json or "" for e in found.entries).encode() + b"]}"
        status = remote.post(url, body)
        refused = int(status.get("failure_count") or 0)
        if refused:
            log.warning("peer %s refused %d pushed objects: %s", peer.name, refused,
                        status.get("failures", [])[:3])  # fmt: skip
        last = found.entries[-1]
        after = (last.date_added, last.position)
        _update(node, peer.name, push_added=last.date_added, push_position=last.position,
                pushed=_P.c.pushed + len(found.entries))  # fmt: skip
        result.pushed += len(found.entries)
        if not found.more:
            return


def _check_views(node: Node, peer: Peer, head: TreeHead, remote: Remote) -> None:
    """The heads other peers were shown of this one must be one history with ``head``."""
    views = schema.peer_views
    with node.store.engine.connect() as conn:
        rows = conn.execute(select(views.c.via, views.c.head).where(views.c.peer == peer.name))
        seen = [(via, TreeHead.from_dict(orjson.loads(text), source=via)) for via, text in rows]
    for via, view in seen:
        check_extends(f"one shown to {via}, one to this node", view, head, remote)
    if seen:
        with node.store.write() as writer:
            writer.conn.execute(delete(views).where(views.c.peer == peer.name))


def _collect_views(node: Node, via: Peer, remote: Remote) -> None:
    """Ask ``via`` which heads it holds of this node's other peers, for :func:`_check_views`
    at their next sync; two heads of one size with different roots need no proof."""
    for other in peer_table.peers(node):
        if other.name == via.name or other.flagged:
            continue
        try:
            partner = node.partner(other.partner)
            if partner.public_key is None:
                continue
            key = TrustedKey.of(
                parse_public_key(partner.public_key, source=f"partner {partner.name}"),
                partner.identity_id,
            )
            view = remote.peer_head(partner.identity_id)
            if view is None:
                continue
            if view.signer != partner.identity_id:
                raise SignatureError(f"peer {via.name}", f"a head of {other.name} signed by "
                                     f"{view.signer}")  # fmt: skip
            verify_head(view, {key.key_id: key}, source=f"peer {via.name}: head of {other.name}")
        except AlliedError as error:  # what via serves about others is no fault of theirs
            log.warning("peer %s: no usable head of %s: %s", via.name, other.name, error.message)
            continue
        mine = other.tree_head
        if mine is not None and mine.size == view.size and mine.root != view.root:
            message = (
                f"peer {other.name} signed two different heads of {view.size} entries (one "
                f"shown to {via.name}, one to this node): it shows partners different histories"
            )
            log.error("peer %s flagged: %s", other.name, message)
            _update(node, other.name, flagged=message, last_error=message)
            continue
        with node.store.write() as writer:
            views = schema.peer_views
            writer.conn.execute(
                delete(views).where(views.c.peer == other.name, views.c.via == via.name)
            )
            writer.conn.execute(
                insert(views).values(
                    peer=other.name,
                    via=via.name,
                    head=orjson.dumps(view.as_dict()).decode(),
                    seen=now(),
                )
            )


def _backoff(node: Node, failures: int) -> str:
    """When to try a failing peer again: doubling from ``sync_backoff`` seconds up to
    ``sync_backoff_max``, with jitter so that peers failing together do not retry in step."""
    base = float(node.config.setting("sync_backoff"))
    ceiling = float(node.config.setting("sync_backoff_max"))
    delay = min(ceiling, base * 2 ** min(failures - 1, 30)) * random.uniform(0.8, 1.2)
    return (datetime.now(UTC) + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _update(node: Node, name: str, **values: Any) -> None:
    with node.store.write() as writer:
        writer.conn.execute(update(_P).where(_P.c.name == name).values(**values))


def sync_forever(node: Node, interval: float, stop: threading.Event) -> None:
    """Sync every peer each ``interval`` seconds until ``stop`` is set; peers backing off
    are tried when their time comes. A failure never ends the loop."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            sync_all(node, stop=stop)
        except Exception:  # a bug must not stop a node from syncing; it is logged with trace
            log.exception("sync round failed")
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
