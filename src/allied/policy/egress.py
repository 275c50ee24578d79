"""Egress: the one component that turns "objects selected for partner P" into "objects P may
receive". Export uses it now; the TAXII API and federation sync must use it too.

On top of the per-object decision (:func:`allied.policy.release.decide`) it enforces the
reference rule: an object that refers, directly or through a chain of references, to an
object P may not receive is withheld as well, so a relationship, sighting or report never
reveals what it points at. References to identities and marking definitions are exempt, and
marking definitions travel with the objects that use them. A reference to an object this node
does not hold reveals nothing the referring object does not already say, so it does not
withhold.

The decision is pure, so it is memoised per (markings, provenance, partner): a node holds
millions of objects but few distinct label sets.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from allied.errors import NotFound
from allied.node import Node
from allied.policy.release import (
    Decision,
    Provenance,
    Recipient,
    ReleasePolicy,
    decide,
    resolve_labels,
)
from allied.store.store import IndexRow, Partner

_MARKING = "marking-definition"


def recipient(partner: Partner) -> Recipient:
    return Recipient(
        name=partner.name,
        identity_id=partner.identity_id,
        nation=partner.nation,
        clearances=dict(partner.clearances),
        communities=frozenset(partner.communities),
        categories=frozenset(partner.categories),
        revoked=partner.revoked,
    )


@dataclass(frozen=True)
class Explanation:
    """The decision for one object and partner, with every reason, references included."""

    object_id: str
    partner: str
    decision: Decision
    #: Reasons coming from referenced objects: ``denied: references X, which is withheld``.
    reference_reasons: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision.allowed and not self.reference_reasons

    @property
    def reasons(self) -> tuple[str, ...]:
        if self.decision.allowed and self.reference_reasons:
            return self.reference_reasons
        return self.decision.reasons + self.reference_reasons


class Egress:
    """Release decisions for one node, with its policy, labels and partners loaded once."""

    def __init__(self, node: Node) -> None:
        self._store = node.store
        config = node.config
        default_tlp = config.setting("default_tlp") or None
        self._policy = ReleasePolicy(
            levels=dict(config.policies),
            default_tlp=default_tlp,
            confined_communities=config.setting("confined_communities"),
        )
        self._labels = node.store.label_markings()
        self._partners = {p.name: p for p in node.store.partners()}
        self._own_communities = frozenset(config.communities)
        self._cache: dict[tuple[str, str | None, str], Decision] = {}

    def recipient(self, name: str) -> Recipient:
        partner = self._partners.get(name)
        if partner is None:
            raise NotFound(f"no partner named {name!r} (see 'allied partner list')")
        return recipient(partner)

    def provenance(self, received_from: str | None) -> Provenance:
        if received_from is None:
            return Provenance(True, self._own_communities)
        source = self._partners.get(received_from)
        communities = frozenset(source.communities) if source is not None else frozenset()
        return Provenance(False, communities, received_from)

    def decide(self, markings: str, received_from: str | None, partner: Recipient) -> Decision:
        """The decision for an object by its stored markings (JSON) and provenance."""
        key = (markings, received_from, partner.name)
        found = self._cache.get(key)
        if found is None:
            labels = resolve_labels(orjson.loads(markings), self._labels)
            found = decide(labels, self.provenance(received_from), partner, self._policy)
            self._cache[key] = found
        return found

    # -- one object ------------------------------------------------------------------------

    def explain(self, object_id: str, partner_name: str) -> Explanation:
        """The decision for ``object_id``, following its references to explain withholding."""
        partner = self.recipient(partner_name)
        index = self._store.index_row(object_id)
        if index is None:
            raise NotFound(f"no object {object_id} in this node")
        if index.type == _MARKING:
            own = Decision(
                True, ("allowed: marking definitions travel with the objects using them",)
            )
        else:
            own = self.decide(index.markings, index.received_from, partner)
        return Explanation(object_id, partner.name, own, self._reference_reasons(index, partner))

    def _reference_reasons(self, root: IndexRow, partner: Recipient) -> tuple[str, ...]:
        """Breadth-first through references; the first withheld object on each path counts."""
        reasons: list[str] = []
        seen = {root.id}
        queue: deque[tuple[IndexRow, str]] = deque([(root, "")])
        while queue:
            row, via = queue.popleft()
            for ref in orjson.loads(row.refs or "[]"):
                if ref in seen:
                    continue
                seen.add(ref)
                target = self._store.index_row(ref)
                if target is None or target.type == _MARKING:
                    continue
                chain = f"{via}{ref}"
                decision = self.decide(target.markings, target.received_from, partner)
                if not decision.allowed:
                    reasons.append(
                        f"denied: references {chain}, which is withheld ({decision.reasons[0]})"
                    )
                else:
                    queue.append((target, f"{chain}, which references "))
        return tuple(reasons)

    # -- many objects ----------------------------------------------------------------------

    def release(self, partner_name: str, type_: str | None = None) -> Iterator[str]:
        """The JSON of every object (latest version) ``partner_name`` may receive, with the
        marking definitions they use; optionally only objects of ``type_``.

        The decision depends only on an object's label set (markings and provenance), so it
        is taken once per label set. One pass over the store in import order follows:
        objects mostly refer to objects stored before them, so an object is usually final
        when it is read (released if its labels allow it and everything it refers to was
        released, withheld otherwise). The few that refer forward wait until the end, where
        withholding spreads backwards along their references (chains, and cycles, too).
        """
        partner = self.recipient(partner_name)
        sets = self._store.label_sets()
        allowed = {
            number: self.decide(marks, source, partner).allowed
            for number, (marks, source) in sets.items()
        }
        final: dict[str, bool] = {}
        waiting: dict[str, tuple[str, int, tuple[str, ...], str]] = {}
        used: set[int] = set()  # label sets of released objects
        markings: set[str] = set()
        for object_id, kind, label_set, refs, text in self._store.release_stream():
            if kind == _MARKING:
                markings.add(object_id)
                continue
            if label_set not in allowed:  # stored after this export began: decide it now
                sets = self._store.label_sets()
                marks, source = sets[label_set]
                allowed[label_set] = self.decide(marks, source, partner).allowed
            if not allowed[label_set]:
                final[object_id] = False
                continue
            if refs is None:
                final[object_id] = True
                used.add(label_set)
                if type_ is None or kind == type_:
                    yield text
                continue
            targets: tuple[str, ...] = tuple(orjson.loads(refs))
            verdict: bool | None = True
            for target in targets:
                known = final.get(target)
                if known is False:
                    verdict = False
                    break
                if known is None:
                    verdict = None
            if verdict is None:
                waiting[object_id] = (kind, label_set, targets, text)
                continue
            final[object_id] = verdict
            if verdict:
                used.add(label_set)
                if type_ is None or kind == type_:
                    yield text
        for object_id in self._settle(waiting, final):
            kind, label_set, _targets, text = waiting[object_id]
            used.add(label_set)
            if type_ is None or kind == type_:
                yield text
        used_ids = {marking for number in used for marking in orjson.loads(sets[number][0])}
        for marking_id in sorted(used_ids & markings):
            stored = self._store.latest(marking_id)
            if stored is not None and type_ in (None, _MARKING):
                yield stored.json

    @staticmethod
    def _settle(
        waiting: dict[str, tuple[str, int, tuple[str, ...], str]], final: dict[str, bool]
    ) -> list[str]:
        """Which waiting objects are released: those from which no reference path reaches a
        withheld object (an id the store does not hold withholds nothing)."""
        referrers: defaultdict[str, list[str]] = defaultdict(list)
        withheld: set[str] = set()
        for object_id, (_kind, _label_set, targets, _text) in waiting.items():
            for target in targets:
                if target in waiting:
                    referrers[target].append(object_id)
                elif final.get(target) is False:
                    withheld.add(object_id)
        queue = deque(withheld)
        while queue:
            for referrer in referrers.get(queue.popleft(), ()):
                if referrer not in withheld:
                    withheld.add(referrer)
                    queue.append(referrer)
        return [object_id for object_id in waiting if object_id not in withheld]
