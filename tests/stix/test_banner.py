"""The classification banner people read labels by: one line, in the usual order."""

from __future__ import annotations

from allied.stix.banner import banner
from allied.stix.labels import TLP2_IDS, Label, LabelSet, resolve_labels

NATO_RESTRICTED = Label(
    "marking-definition--00000000-0000-4000-8000-00000000000a",
    "NATO RESTRICTED REL KOR USA",
    "amber",
    policy="NATO",
    classification="RESTRICTED",
    releasable_to=("KOR", "USA"),
)


def test_policy_level_and_releasability_then_the_tlp() -> None:
    shown = banner(LabelSet(("green",), (NATO_RESTRICTED,)))
    assert shown.text == "NATO RESTRICTED // REL TO KOR, USA | TLP:AMBER"  # the strictest TLP
    assert shown.tlp == "amber" and shown.css == "tlp-amber"


def test_handling_informative_and_named_recipients_are_shown() -> None:
    label = Label(
        "marking-definition--00000000-0000-4000-8000-00000000000b", "x", "red",
        policy="KOR", classification="secret", releasable_to=("KOR",),
        handling=("cyber",), informative=("exercise",), recipients=("identity--a", "identity--b"),
    )  # fmt: skip
    assert banner(LabelSet((), (label,))).text == (
        "KOR SECRET // REL TO KOR // CYBER // EXERCISE // NAMED RECIPIENTS ONLY (2) | TLP:RED"
    )


def test_tlp_only_no_tlp_and_unknown_markings() -> None:
    strict = banner(resolve_labels([TLP2_IDS["amber+strict"]], {}))
    assert (strict.text, strict.css, strict.tlp_text) == (
        "TLP:AMBER+STRICT",
        "tlp-amber-strict",
        "TLP:AMBER+STRICT",
    )
    assert banner(LabelSet((), ())).text == "NO TLP"
    assert banner(LabelSet((), ())).css == "tlp-none"
    unknown = banner(
        resolve_labels(["marking-definition--00000000-0000-4000-8000-0000000000ff"], {})
    )
    assert unknown.text == "UNKNOWN MARKING (1) | NO TLP"


def test_two_labels_are_both_shown_once_each() -> None:
    other = Label(
        "marking-definition--00000000-0000-4000-8000-00000000000c", "KOR", "amber",
        policy="KOR", classification="RESTRICTED", releasable_to=("KOR",),
    )  # fmt: skip
    shown = banner(LabelSet(("amber",), (NATO_RESTRICTED, other, NATO_RESTRICTED)))
    assert shown.text == (
        "NATO RESTRICTED // REL TO KOR, USA | KOR RESTRICTED // REL TO KOR | TLP:AMBER"
    )
