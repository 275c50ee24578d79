"""The release decision: may this partner receive an object with these labels? One home.

A pure function of the object's labels, its provenance, the partner and the node's policy.
It implements DESIGN.md's three rules (and gives a partner back what it gave this node)
and fails closed: no TLP, an unknown policy, level or
marking, or a revoked partner is a denial. Every reason found is returned, machine-readable
(``denied: KOR not in releasable_to``), so ``allied explain`` can show all of them and tests
can assert them. Node configuration may only add denials (confined communities), never
remove one.

References (an object that points at a withheld object) are not decided here: they need the
object graph, which :mod:`allied.policy.egress` walks using this decision for each node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from allied.stix.labels import Label, LabelSet, resolve_labels

__all__ = [
    "BlindDecision",
    "Decision",
    "LabelSet",
    "Provenance",
    "Recipient",
    "ReleasePolicy",
    "decide",
    "decide_blind_match",
    "resolve_labels",
]


@dataclass(frozen=True, slots=True)
class Recipient:
    """A partner as the decision sees it."""

    name: str
    identity_id: str
    nation: str
    clearances: Mapping[str, str]
    communities: frozenset[str]
    categories: frozenset[str] = frozenset()
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the object came from: made (or imported) here, or received from another node."""

    originated_here: bool
    #: Communities of the originating node, as this node knows them.
    originator_communities: frozenset[str]
    received_from: str | None = None
    #: The originator's name, when it is not this node (for the reasons given).
    originator: str | None = None


@dataclass(frozen=True)
class ReleasePolicy:
    """The node's side of the decision: its label policies and stricter local rules."""

    levels: Mapping[str, tuple[str, ...]]
    default_tlp: str | None = None
    #: Objects labelled releasable to one of these communities never leave the community.
    confined_communities: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return "; ".join(self.reasons)


def decide(
    labels: LabelSet, provenance: Provenance, partner: Recipient, policy: ReleasePolicy
) -> Decision:
    """Rule 1 (classification), rule 2 (TLP), rule 3 (forwarding), fail closed."""
    denied: list[str] = []
    allowed: list[str] = []
    if partner.revoked:
        denied.append(f"denied: partner {partner.name} is revoked")
    elif provenance.received_from is not None and provenance.received_from == partner.name:
        # the partner holds it already: giving back what it gave reveals nothing
        return Decision(True, (f"allowed: received from {partner.name}, back to its source",))
    for ref in labels.unknown:
        denied.append(f"denied: unknown marking {ref}")
    for label in labels.labels:
        _classification(label, partner, policy, denied, allowed)
    _tlp(labels, provenance, partner, policy, denied, allowed)
    if denied:
        return Decision(False, tuple(denied))
    return Decision(True, tuple(allowed))


@dataclass(frozen=True, slots=True)
class BlindDecision:
    """May a partner blind-match its logs against an object, and what a hit tells it."""

    allowed: bool
    reasons: tuple[str, ...]
    #: on a hit: ``"object"`` (the partner may receive the object anyway) or ``"id"`` (its
    #: id and labels' names only; the partner already holds the value it matched)
    reveal: str = "id"

    def __str__(self) -> str:
        return "; ".join(self.reasons)


def decide_blind_match(
    labels: LabelSet, provenance: Provenance, partner: Recipient, policy: ReleasePolicy
) -> BlindDecision:
    """Blind matching tells the log owner, for its own values only, which hit the object:
    less than receiving it. So a partner that may receive the object may blind-match it,
    and a hit reveals the object; otherwise only where every label of the object names the
    partner's nation or one of its communities under ``blind_match`` (the originator's
    explicit word: DESIGN.md, "Blind matching"), and a hit reveals the id. ``blind_match``
    stands in only for ``releasable_to`` and the clearance: named recipients, handling
    categories, an unknown policy or level and the node's confined communities still deny.
    Fail closed: a revoked partner, an unknown marking or an object without such a label is
    refused."""
    release = decide(labels, provenance, partner, policy)
    if release.allowed:
        return BlindDecision(True, ("allowed: may receive the object", *release.reasons), "object")
    denied: list[str] = []
    allowed: list[str] = []
    if partner.revoked:
        denied.append(f"denied: partner {partner.name} is revoked")
    for ref in labels.unknown:
        denied.append(f"denied: unknown marking {ref}")
    if not labels.labels:
        denied.append("denied: no label of the object names anyone under blind_match")
    for label in labels.labels:
        # blind_match stands in for releasable_to and the clearance; every other
        # restriction of the label, and the node's own, still applies
        name = label.name or label.marking_id
        known = _named_and_known(label, partner, policy, denied)
        _audience(label.blind_match, "blind_match", name, partner, denied, allowed)
        if known is not None:
            _handling_and_confinement(label, partner, policy, denied)
    if denied:
        return BlindDecision(False, tuple(denied))
    return BlindDecision(True, tuple(allowed), "id")


def _classification(
    label: Label,
    partner: Recipient,
    policy: ReleasePolicy,
    denied: list[str],
    allowed: list[str],
) -> None:
    """Rule 1 for one label, plus named recipients and the node's confinement rules."""
    name = label.name or label.marking_id
    levels = _named_and_known(label, partner, policy, denied)
    if levels is None or label.policy is None:
        return
    _audience(label.releasable_to, "releasable_to", name, partner, denied, allowed)
    cleared = _cleared(label.policy, label.classification, partner, policy)
    if cleared is None:
        for alternative in label.alternatives:
            if alternative.policy == label.policy:
                continue  # an equivalent under the same policy cannot lower the level
            cleared = _cleared(alternative.policy, alternative.classification, partner, policy)
            if cleared is not None:
                cleared += f" (alternative label {alternative.policy} {alternative.classification})"
                break
    if cleared is not None:
        allowed.append(cleared)
    else:
        held = partner.clearances.get(label.policy)
        if held is None:
            denied.append(f"denied: no clearance under policy {label.policy}")
        elif held not in levels:
            denied.append(f"denied: clearance {label.policy} {held} is not a level of the policy")
        else:
            denied.append(
                f"denied: classification {label.policy} {label.classification} above "
                f"clearance {held}"
            )
    _handling_and_confinement(label, partner, policy, denied)


def _named_and_known(
    label: Label, partner: Recipient, policy: ReleasePolicy, denied: list[str]
) -> tuple[str, ...] | None:
    """Named recipients, and a policy and level this node knows: the levels of the label's
    policy, None where there is nothing more to decide (no policy, or an unknown one)."""
    name = label.name or label.marking_id
    if label.recipients and partner.identity_id not in label.recipients:
        denied.append(f"denied: {partner.name} is not a named recipient of {name}")
    if label.policy is None:
        return None
    levels = policy.levels.get(label.policy)
    if levels is None:
        denied.append(f"denied: unknown policy {label.policy} in {name}")
        return None
    if label.classification not in levels:
        denied.append(f"denied: unknown level {label.classification} of policy {label.policy}")
        return None
    return levels


def _handling_and_confinement(
    label: Label, partner: Recipient, policy: ReleasePolicy, denied: list[str]
) -> None:
    """Handling categories the partner must all hold, and the node's confined communities
    (a stricter local rule)."""
    name = label.name or label.marking_id
    missing = sorted(set(label.handling) - partner.categories)
    for category in missing:
        denied.append(f"denied: lacks handling category {category} required by {name}")
    for community in sorted(set(label.releasable_to) & policy.confined_communities):
        if community not in partner.communities:
            denied.append(
                f"denied: objects releasable to {community} stay inside it (node configuration)"
            )


def _audience(
    listed: tuple[str, ...],
    field_name: str,
    name: str,
    partner: Recipient,
    denied: list[str],
    allowed: list[str],
) -> None:
    """Whether a label's list of nations and communities (``releasable_to``,
    ``blind_match``) names the partner's nation or one of its communities."""
    audience = set(listed)
    if partner.nation in audience:
        allowed.append(f"allowed: {partner.nation} in {field_name} of {name}")
    elif audience & partner.communities:
        community = sorted(audience & partner.communities)[0]
        allowed.append(f"allowed: community {community} in {field_name} of {name}")
    else:
        targets = ", ".join(listed) or "nobody"
        denied.append(f"denied: {partner.nation} not in {field_name} ({targets}) of {name}")


def _cleared(
    policy_name: str, level: str | None, partner: Recipient, policy: ReleasePolicy
) -> str | None:
    """A reason if the partner's clearance under ``policy_name`` covers ``level``."""
    levels = policy.levels.get(policy_name)
    held = partner.clearances.get(policy_name)
    if levels is None or level not in levels or held not in levels:
        return None
    if levels.index(held) < levels.index(level):
        return None
    return f"allowed: clearance {policy_name} {held} covers {level}"


def _tlp(
    labels: LabelSet,
    provenance: Provenance,
    partner: Recipient,
    policy: ReleasePolicy,
    denied: list[str],
    allowed: list[str],
) -> None:
    """Rules 2 and 3: who may receive each TLP level, and that only originators share
    AMBER and RED."""
    tlp = labels.tlp
    if tlp is None:
        if policy.default_tlp is None:
            denied.append("denied: no TLP marking: the object stays inside this node")
            return
        tlp = policy.default_tlp
        allowed.append(f"allowed: no TLP marking, node default TLP:{tlp.upper()} applies")
    shown = f"TLP:{tlp.upper()}"
    if tlp == "clear":
        allowed.append("allowed: TLP:CLEAR")
    elif tlp == "green":
        shared = sorted(partner.communities & provenance.originator_communities)
        originator = "the originator"
        if provenance.originator is not None:
            originator += f" {provenance.originator}"
        if shared:
            allowed.append(f"allowed: TLP:GREEN, shares community {shared[0]} with {originator}")
        else:
            denied.append(f"denied: TLP:GREEN and no community shared with {originator}")
    elif not provenance.originated_here:
        source = provenance.received_from or "another node"
        denied.append(f"denied: {shown} received from {source} is never forwarded")
    elif tlp == "red":
        named = [label for label in labels.labels if label.recipients]
        if not named:
            denied.append("denied: TLP:RED without named recipients")
        elif all(partner.identity_id in label.recipients for label in named):
            allowed.append(f"allowed: TLP:RED, {partner.name} is a named recipient")
    else:
        allowed.append(f"allowed: {shown}, {partner.name} is a direct peer of this node")
