"""The classification banner people read an object's labels by, in the usual form: policy and
level, ``REL TO`` the nations and communities it may go to, handling categories, then the TLP
colour, e.g. ``NATO RESTRICTED // REL TO KOR, USA`` on TLP:AMBER.

The console (and anything else that shows labels to people) writes a banner only through
:func:`banner`, so one object never reads differently in two places. A banner is shown, never
decided on: the release decision reads the labels themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from allied.stix.labels import Label, LabelSet


@dataclass(frozen=True)
class Banner:
    text: str
    #: the strictest TLP level on the object (``clear`` … ``red``); None when it has none
    tlp: str | None

    @property
    def tlp_text(self) -> str:
        return f"TLP:{self.tlp.upper()}" if self.tlp else "NO TLP"

    @property
    def css(self) -> str:
        """The colour class (``tlp-amber-strict``, ``tlp-none``): one spelling for pages."""
        return "tlp-" + (self.tlp.replace("+", "-") if self.tlp else "none")


def banner(labels: LabelSet) -> Banner:
    """One line for all of an object's labels; several classification labels are joined
    with ``|`` (each holds, so each is shown)."""
    parts = [_portion(label) for label in labels.labels]
    parts = [part for part in dict.fromkeys(parts) if part]
    if labels.unknown:
        parts.append(f"UNKNOWN MARKING ({len(labels.unknown)})")
    tlp = labels.tlp
    tail = f"TLP:{tlp.upper()}" if tlp else "NO TLP"
    return Banner(" | ".join([*parts, tail]) if parts else tail, tlp)


def _portion(label: Label) -> str:
    words = [f"{label.policy} {label.classification}"] if label.policy else []
    if label.releasable_to:
        words.append("REL TO " + ", ".join(label.releasable_to))
    if label.handling:
        words.append(" ".join(label.handling))
    if label.informative:
        words.append(" ".join(label.informative))
    if label.recipients:
        words.append(f"NAMED RECIPIENTS ONLY ({len(label.recipients)})")
    return " // ".join(word.upper() for word in words)
