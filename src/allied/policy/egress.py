"""Egress: the one component that turns "objects selected for partner P" into "objects P may
receive". Export uses it now; the TAXII API and federation sync must use it too.

On top of the per-object decision (:func:`allied.policy.release.decide`) it enforces the
reference rule: an object that refers, directly or through a chain of references, to an
object P may not receive is withheld as well, so a relationship, sighting or report never
reveals what it points at. References to identities and marking definitions are exempt, and
marking definitions travel with the objects that use them. A reference to an object this node
does not hold reveals nothing the referring object does not already say, so it does not
withhold.

The decision is pure, so it is memoised per (label set, partner): a node holds
millions of objects but few distinct label sets. The reference rule is applied through the
label closures the store keeps (:mod:`allied.store.closure`) when exporting many objects, and
by following references when explaining one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import orjson

from allied.config import NodeConfig
from allied.errors import NotFound
from allied.integrity.origin import is_standard_id
from allied.node import Node
from allied.policy.release import (
    BlindDecision,
    Decision,
    Provenance,
    Recipient,
    ReleasePolicy,
    decide,
    decide_blind_match,
    resolve_labels,
)
from allied.store.store import IndexRow, Partner, SetKey

_MARKING = "marking-definition"


def release_policy(config: NodeConfig) -> ReleasePolicy:
    """The node's side of the release decision, from its configuration."""
    return ReleasePolicy(
        levels=dict(config.policies),
        default_tlp=config.setting("default_tlp") or None,
        confined_communities=config.setting("confined_communities"),
    )


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


@dataclass(frozen=True)
class Visibility:
    """What one partner may see, in the store's terms (see :meth:`Egress.visibility`)."""

    #: closure numbers whose every label set the partner may receive
    closures: frozenset[int]
    #: marking definitions that may travel with the objects the partner receives
    markings: frozenset[str]
    #: label sets of what the partner itself sent: released to it whatever they refer to,
    #: since the text is its own (so it cannot learn, from its own objects vanishing, that
    #: this node came to hold something they point at)
    own_sets: frozenset[int] = frozenset()

    def sees(self, type_: str, object_id: str, closure: int | None, label_set: int) -> bool:
        """Whether the partner may see a stored row that is its object's latest version
        (and so, by the version rule, whether it may see the object at all): the same test
        :func:`allied.store.pages._sees_object` writes in SQL."""
        if type_ == "marking-definition":  # those it sent itself come back to it too
            return object_id in self.markings or label_set in self.own_sets
        return closure in self.closures or label_set in self.own_sets


class Egress:
    """Release decisions for one node, with its policy, labels and partners loaded once."""

    def __init__(self, node: Node) -> None:
        self._store = node.store
        config = node.config
        self._policy = release_policy(config)
        self._labels = node.store.label_markings()
        self._partners = {p.name: p for p in node.partners()}  # only entries the node signed
        self._by_identity = {p.identity_id: p for p in self._partners.values()}
        self._identity = node.config.identity_id
        self._own_communities = frozenset(config.communities)
        self._cache: dict[tuple[str, str | None, str | None, str], Decision] = {}

    def recipient(self, name: str) -> Recipient:
        partner = self._partners.get(name)
        if partner is None:
            raise NotFound(f"no partner named {name!r} (see 'allied partner list')")
        return recipient(partner)

    def provenance(self, received_from: str | None, signer: str | None = None) -> Provenance:
        """Where an object came from and whose communities TLP:GREEN is judged on: those
        of its originator, the partner whose signature it carries. What this node signed
        for a partner that posted it unsigned is that partner's; an originator this node
        does not know shares no community with anyone (fail closed)."""
        if received_from is None:
            return Provenance(True, self._own_communities)
        if signer is None or signer == self._identity:
            originator = self._partners.get(received_from)
        else:
            originator = self._by_identity.get(signer)
        if originator is None:
            return Provenance(False, frozenset(), received_from, signer or received_from)
        communities = frozenset(originator.communities)
        return Provenance(False, communities, received_from, originator.name)

    def decide(
        self, markings: str, received_from: str | None, signer: str | None, partner: Recipient
    ) -> Decision:
        """The decision for an object by its label set: stored markings (JSON), the partner
        it came from and the identity that signed it."""
        key = (markings, received_from, signer, partner.name)
        found = self._cache.get(key)
        if found is None:
            labels = resolve_labels(orjson.loads(markings), self._labels)
            provenance = self.provenance(received_from, signer)
            found = decide(labels, provenance, partner, self._policy)
            self._cache[key] = found
        return found

    def decide_blind(
        self, markings: str, received_from: str | None, signer: str | None, partner: Recipient
    ) -> BlindDecision:
        """Whether ``partner`` may blind-match an object with this label set, and what a hit
        reveals (:func:`allied.policy.release.decide_blind_match`, the one home of that rule)."""
        labels = resolve_labels(orjson.loads(markings), self._labels)
        provenance = self.provenance(received_from, signer)
        return decide_blind_match(labels, provenance, partner, self._policy)

    # -- one object ------------------------------------------------------------------------

    def explain(self, object_id: str, partner_name: str) -> Explanation:
        """The decision for ``object_id``, following its references to explain withholding."""
        partner = self.recipient(partner_name)
        index = self._store.index_row(object_id)
        if index is None:
            raise NotFound(f"no object {object_id} in this node")
        withdrawn = self._store.withdrawn_by(object_id)
        if withdrawn is not None:
            reason = (
                f"denied: withdrawn by peer {withdrawn} (its label was tightened at the source)"
            )
            return Explanation(object_id, partner.name, Decision(False, (reason,)))
        if index.type == _MARKING:
            own = Decision(
                True, ("allowed: marking definitions travel with the objects using them",)
            )
        else:
            own = self.decide(index.markings, index.received_from, index.signer, partner)
        if own.allowed and index.received_from == partner.name:
            return Explanation(object_id, partner.name, own)  # its own text, whatever it cites
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
                decision = self.decide(
                    target.markings, target.received_from, target.signer, partner
                )
                if not decision.allowed:
                    reasons.append(
                        f"denied: references {chain}, which is withheld ({decision.reasons[0]})"
                    )
                else:
                    queue.append((target, f"{chain}, which references "))
        return tuple(reasons)

    # -- many objects ----------------------------------------------------------------------

    def visibility(self, partner_name: str) -> Visibility:
        """What ``partner_name`` may see of the store, as the store can filter on it: the
        allowed closures, and the marking definitions that may travel with them.

        The decision depends only on label sets, so it is taken once per label set; a
        closure (an object's own label set and those of everything it reaches through
        references, kept by the store at write time) is allowed when all its label sets
        are. A marking definition is visible when it is part of a label set the partner
        may receive by its labels: it says no more than the objects it marks.
        """
        partner = self.recipient(partner_name)
        sets = self._store.label_sets()
        allowed_sets = {
            number for number, key in sets.items() if self.decide(*key, partner).allowed
        }
        closures = frozenset(
            number
            for number, members in self._store.label_closures().items()
            if members <= allowed_sets
        )
        own = frozenset(n for n in allowed_sets if sets[n][1] == partner.name)
        return Visibility(closures, self._companions(allowed_sets, sets, partner.name), own)

    @staticmethod
    def _companions(
        numbers: Iterable[int], sets: Mapping[int, SetKey], partner: str
    ) -> frozenset[str]:
        """The marking definitions that travel with objects of these label sets. A partner
        gets back what it gave, but a classification label is released on its own terms:
        citing a label's id in what it sent must not reveal the label's definition (the
        standard TLP markings are public)."""
        return frozenset(
            marking
            for number in numbers
            for marking in orjson.loads(sets[number][0])
            if sets[number][1] != partner or is_standard_id(marking)
        )

    def release(self, partner_name: str, type_: str | None = None) -> Iterator[str]:
        """The JSON of every object (latest version) ``partner_name`` may receive, with the
        marking definitions they use; optionally only objects of ``type_``.

        The store hands out only rows with an allowed closure (see :meth:`visibility`): the
        reference rule costs the export nothing per object.
        """
        seen = self.visibility(partner_name)
        allowed, own = seen.closures, seen.own_sets
        used: set[int] = set()  # label sets of released objects
        remember = used.add
        if type_ == _MARKING:  # those used by every released object
            for label_set, _text in self._store.release_stream(allowed, own_sets=own):
                remember(label_set)
        else:
            for label_set, text in self._store.release_stream(allowed, type_, own_sets=own):
                remember(label_set)
                yield text
            if type_ is not None:
                return
        sets = self._store.label_sets()
        for marking_id in sorted(self._companions(used, sets, partner_name)):
            stored = self._store.latest(marking_id)
            if stored is not None:
                yield stored.json
