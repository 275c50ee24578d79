"""Objects a partner posts over TAXII: the same validation, labels and integrity pipeline as
``allied import``, with an outcome per object instead of one for the whole file.

TAXII reports success and failure object by object (the status resource), so a bad object
in an envelope does not refuse the good ones. What is stored is still written in one
transaction with its ledger entries and signed tree head: the envelope's good objects land
together or not at all. The objects are recorded as received from the posting partner, so
the release rules treat them as that partner's, never as this node's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from allied.errors import AlliedError, Conflict
from allied.integrity.origin import Origin
from allied.integrity.signing import SignatureError, signer_of
from allied.node import Node
from allied.stix.model import StixObject, check
from allied.store.store import Writer

#: An envelope whose objects keep contradicting the store is not retried for ever (each
#: pass sets aside every object one check refuses, so an honest envelope needs few).
_MAX_CONFLICTS = 20


@dataclass(frozen=True)
class Outcome:
    id: str
    version: str
    message: str = ""


@dataclass
class PostResult:
    successes: list[Outcome] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    #: of the successes, the versions the store did not hold before
    stored: int = 0


def post_objects(
    node: Node,
    objects: Sequence[Any],
    *,
    partner: str,
    collection: str | None = None,
    record: Callable[[Writer, PostResult], None] | None = None,
    origin: Origin | None = None,
    sees: Callable[[], Callable[[str, str, int | None, int], bool]] | None = None,
    posted: bool = True,
) -> PostResult:
    """Validate, verify (or sign as publisher), store and, for a community collection, add
    to it every valid object of ``objects`` posted by ``partner``. ``record`` writes the
    outcome in the same transaction (one commit per envelope: a commit is most of a small
    envelope's cost).

    ``sees`` gives the partner's view (:meth:`allied.policy.egress.Visibility.sees`), as
    the store is inside the write transaction (a label set or closure committed since the
    request began would otherwise count as out of sight). An
    object whose id the node holds out of that view is kept as the partner's own copy
    (:meth:`allied.store.store.Writer.add_copies`) instead of meeting the stored versions:
    as a duplicate the partner could not read back, or as a conflict with their
    originator, it would tell the partner that the node holds that id (the id of a cyber
    observable derives from its value, so posting one would ask "do you hold this IP?").

    ``posted`` is False for what this node pulls from a peer node (:mod:`allied.federation`):
    the peer's originators sign what it serves, labels included, and it mints no label sets
    of its own.
    """
    admission = admit_objects(objects, origin or node.origin(), partner=partner, posted=posted)
    return store_objects(
        node, admission, partner=partner, collection=collection, record=record, sees=sees,
        posted=posted,
    )  # fmt: skip


@dataclass
class Admission:
    """The objects of an envelope or page that passed validation and the origin gate, and
    the outcome of those that did not."""

    admitted: list[StixObject]
    failures: list[Outcome]
    #: where each admitted object is in the input (when admitted by :func:`admit_objects`)
    positions: list[int] = field(default_factory=list)


def admit_objects(
    objects: Sequence[Any], origin: Origin, *, partner: str, posted: bool
) -> Admission:
    """Validation and the origin gate (verify, or sign as publisher), object by object:
    the part of :func:`post_objects` that reads nothing from the store, so that a sync can
    admit its next page while it stores this one."""
    admitted: list[StixObject] = []
    failures: list[Outcome] = []
    positions: list[int] = []
    for index, data in enumerate(objects):
        checked = check(data, index=index)
        if isinstance(checked, list):
            reasons = "; ".join(
                f"{problem.path}: {problem.reason}" if problem.path else problem.reason
                for problem in checked
            )
            failures.append(_outcome(data, index, reasons))
            continue
        try:
            admitted.append(origin.admit(checked, received_from=partner, posted=posted))
        except SignatureError as error:
            failures.append(_outcome(data, index, error.reason))
        except AlliedError as error:  # e.g. a number with no canonical form to sign
            failures.append(_outcome(data, index, error.message))
        else:
            positions.append(index)
    return Admission(admitted, failures, positions)


def store_objects(
    node: Node,
    admission: Admission,
    *,
    partner: str,
    collection: str | None = None,
    record: Callable[[Writer, PostResult], None] | None = None,
    sees: Callable[[], Callable[[str, str, int | None, int], bool]] | None = None,
    posted: bool = True,
) -> PostResult:
    """The rest of :func:`post_objects`: store what was admitted, in one transaction."""
    result = PostResult(failures=list(admission.failures))
    admitted = list(admission.admitted)
    if posted:
        admitted = _within_label_sets(node, admitted, partner, result)
    conflicts = 0
    while admitted:
        try:
            with node.write() as writer:
                hidden = writer.withheld((obj.id for obj in admitted), sees()) if sees else set()
                own = [] if posted else [obj for obj in admitted if _own(node, obj)]
                theirs = [obj for obj in admitted if obj not in own] if own else admitted
                stored = writer.add(theirs, received_from=partner, copies=hidden).stored
                if own:  # this node's own objects, pulled back after it lost them
                    stored += writer.add(own).stored
                if collection is not None:
                    keys = writer.collection_keys(admitted, hidden, partner)
                    writer.join_collection(collection, keys, partner)
                done = _with_successes(result, admitted)
                done.stored = stored
                if record is not None:
                    record(writer, done)
            return done
        except Conflict as error:
            # the objects it names are set aside and the rest stored in a new transaction;
            # each pass names every object that one check refuses, so passes are few
            conflicts += 1
            if not error.objects or conflicts > _MAX_CONFLICTS:
                message = (
                    error.message
                    if not error.objects
                    else "not stored: too many objects of this envelope contradict the store; "
                    "post them again"
                )
                result.failures.extend(_outcome(obj.data, None, message) for obj in admitted)
                admitted = []
                break
            refused = [obj for obj in admitted if obj.id in error.objects]
            admitted = [obj for obj in admitted if obj.id not in error.objects]
            result.failures.extend(
                _outcome(obj.data, None, error.objects[obj.id]) for obj in refused
            )
    if record is not None:
        with node.store.write() as writer:
            record(writer, result)
    return result


def _own(node: Node, obj: StixObject) -> bool:
    """An object this node created and signed (the signature was verified on admission):
    a peer serving it back, after this node lost its copy, serves this node's own object,
    to be released as the originator's, not as the peer's."""
    identity = node.config.identity_id
    return obj.created_by_ref == identity and signer_of(obj.data) == identity


def _within_label_sets(
    node: Node, admitted: list[StixObject], partner: str, result: PostResult
) -> list[StixObject]:
    """The objects whose list of markings the partner has used before, or may still add
    (``max_partner_label_sets``); the rest fail. Every distinct list is a label set each
    release decision and page query considers: a partner must not mint them by the
    thousand."""
    cap = int(node.config.setting("max_partner_label_sets"))
    used = {key[0] for key in node.store.label_sets().values() if key[1] == partner}
    kept: list[StixObject] = []
    for obj in admitted:
        marks = orjson.dumps(list(obj.marking_refs)).decode()
        if marks not in used and len(used) >= cap:
            result.failures.append(
                _outcome(
                    obj.data,
                    None,
                    f"a new list of markings: this partner has sent the {cap} distinct lists "
                    "the node takes from one partner (max_partner_label_sets)",
                )
            )
            continue
        used.add(marks)
        kept.append(obj)
    return kept


def _with_successes(result: PostResult, admitted: Sequence[StixObject]) -> PostResult:
    return PostResult([_outcome(obj.data, None, "") for obj in admitted], list(result.failures))


def _outcome(data: Any, index: int | None, message: str) -> Outcome:
    """TAXII names an object by id and version; an object without them is named by its
    place in the envelope."""
    fields = data if isinstance(data, Mapping) else {}
    object_id = fields.get("id")
    if not isinstance(object_id, str):
        object_id = f"objects[{index}]" if index is not None else ""
    version = fields.get("modified", fields.get("created", ""))
    return Outcome(object_id, version if isinstance(version, str) else "", message)
