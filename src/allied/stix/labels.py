"""Labels: TLP 2.0 markings and the Allied classification label, as STIX marking-definitions.

TLP uses the five standard TLP 2.0 marking-definitions (OASIS cti-stix-common-objects,
extension-definition--60a3c5c5-...), so any STIX tool understands them; TLP 1.0 ids are
recognised on input and mapped. The classification label, modelled on STANAG 4774, is a
marking-definition carrying Allied's property extension. Reading a label back from a marking
lives here too, so the release decision never parses markings itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from allied.stix.checks import Check, Issues, enum, identifier, list_of, nested, string

TLP_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1_IDS = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
#: Every marking id that means a TLP level, TLP 1.0 ones mapped to their TLP 2.0 level.
TLP_BY_ID: dict[str, str] = {v: k for k, v in TLP2_IDS.items()} | {
    TLP1_IDS["white"]: "clear",
    TLP1_IDS["green"]: "green",
    TLP1_IDS["amber"]: "amber",
    TLP1_IDS["red"]: "red",
}
_TLP_RANK = {level: rank for rank, level in enumerate(TLP_LEVELS)}
_TLP2_CREATED = "2022-10-01T00:00:00.000Z"

LABEL_EXTENSION_ID = "extension-definition--8298785a-6317-4ec0-9d42-0e4ffc4a39ca"
ALLIED_IDENTITY_ID = "identity--2ede64a9-acfb-41ca-bbc2-7fda0900113d"
_ALLIED_CREATED = "2026-11-23T00:00:00.000Z"


def tlp_marking(level: str) -> dict[str, Any]:
    """The standard TLP 2.0 marking-definition for ``level``, exactly as OASIS publishes it."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_IDS[level],
        "created": _TLP2_CREATED,
        "name": f"TLP:{level.upper()}",
        "extensions": {
            TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": level}
        },
    }


def allied_identity() -> dict[str, Any]:
    """The identity that defines Allied's label extension (an extension needs a creator)."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": ALLIED_IDENTITY_ID,
        "created": _ALLIED_CREATED,
        "modified": _ALLIED_CREATED,
        "name": "Allied",
        "identity_class": "system",
        "description": "Defines the Allied classification label extension.",
        "object_marking_refs": [TLP2_IDS["clear"]],
    }


def label_extension_definition() -> dict[str, Any]:
    """The STIX extension-definition every Allied classification label refers to."""
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": LABEL_EXTENSION_ID,
        "created_by_ref": ALLIED_IDENTITY_ID,
        "created": _ALLIED_CREATED,
        "modified": _ALLIED_CREATED,
        "name": "Allied classification label",
        "description": (
            "Confidentiality metadata label after STANAG 4774 on a marking-definition: tlp, "
            "policy, classification (ordered levels of the policy), releasable_to (nations "
            "and communities), handling (restrictive categories a recipient must all hold), "
            "informative (shown, not enforced), alternatives (the same label under other "
            "policies), recipients (named partner identities), blind_match (nations and "
            "communities that may blind-match against the labelled object)."
        ),
        "schema": "Allied label extension, version 1 (see the Allied design document, Labels)",
        "version": "1.0",
        "extension_types": ["property-extension"],
        "object_marking_refs": [TLP2_IDS["clear"]],
    }


def builtin_objects() -> list[dict[str, Any]]:
    """Objects every node holds from the start: TLP markings and the label extension."""
    return [tlp_marking(level) for level in TLP_LEVELS] + [
        allied_identity(),
        label_extension_definition(),
    ]


@dataclass(frozen=True)
class Alternative:
    policy: str
    classification: str


@dataclass(frozen=True)
class Label:
    """What a classification label marking says; the release decision reads only this."""

    marking_id: str
    name: str
    tlp: str
    policy: str | None = None
    classification: str | None = None
    releasable_to: tuple[str, ...] = ()
    handling: tuple[str, ...] = ()
    informative: tuple[str, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    recipients: tuple[str, ...] = ()
    blind_match: tuple[str, ...] = field(default=())


def label_marking(label: Label, *, created: str, created_by_ref: str) -> dict[str, Any]:
    """The marking-definition that carries ``label``; empty optional fields are left out."""
    body: dict[str, Any] = {"extension_type": "property-extension", "tlp": label.tlp}
    if label.policy is not None:
        body["policy"] = label.policy
        body["classification"] = label.classification
    for key in ("releasable_to", "handling", "informative", "recipients", "blind_match"):
        values = getattr(label, key)
        if values:
            body[key] = list(values)
    if label.alternatives:
        body["alternatives"] = [
            {"policy": a.policy, "classification": a.classification} for a in label.alternatives
        ]
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": label.marking_id,
        "created": created,
        "created_by_ref": created_by_ref,
        "name": label.name,
        "extensions": {LABEL_EXTENSION_ID: body},
    }


def read_label(marking: Mapping[str, Any]) -> Label | None:
    """The Allied label a (validated) marking-definition carries, or None if it has none."""
    extensions = marking.get("extensions") or {}
    body = extensions.get(LABEL_EXTENSION_ID)
    if not isinstance(body, dict):
        return None
    return Label(
        marking_id=marking["id"],
        name=marking.get("name", ""),
        tlp=body["tlp"],
        policy=body.get("policy"),
        classification=body.get("classification"),
        releasable_to=tuple(body.get("releasable_to", ())),
        handling=tuple(body.get("handling", ())),
        informative=tuple(body.get("informative", ())),
        alternatives=tuple(
            Alternative(a["policy"], a["classification"]) for a in body.get("alternatives", ())
        ),
        recipients=tuple(body.get("recipients", ())),
        blind_match=tuple(body.get("blind_match", ())),
    )


def strictest_tlp(levels: Iterable[str | None]) -> str | None:
    """The most restrictive of several TLP levels; None if there is none."""
    known = [level for level in levels if level is not None]
    return max(known, key=_TLP_RANK.__getitem__) if known else None


@dataclass(frozen=True, slots=True)
class LabelSet:
    """An object's markings, resolved: TLP levels, classification labels, unknown ids."""

    tlp_levels: tuple[str, ...]
    labels: tuple[Label, ...]
    unknown: tuple[str, ...] = ()

    @property
    def tlp(self) -> str | None:
        return strictest_tlp([*self.tlp_levels, *(label.tlp for label in self.labels)])


def resolve_labels(marking_refs: Iterable[str], known: Mapping[str, Label]) -> LabelSet:
    """Sort an object's marking ids into TLP levels, Allied labels and unknown markings."""
    levels: list[str] = []
    labels: list[Label] = []
    unknown: list[str] = []
    for ref in dict.fromkeys(marking_refs):
        level = TLP_BY_ID.get(ref)
        if level is not None:
            levels.append(level)
        elif ref in known:
            labels.append(known[ref])
        else:
            unknown.append(ref)
    return LabelSet(tuple(levels), tuple(labels), tuple(unknown))


_TLP1_CREATED = "2017-01-20T00:00:00.000Z"


def tlp1_marking(colour: str) -> dict[str, Any]:
    """The TLP 1.0 marking-definition for ``colour`` as STIX 2.1 section 7.2.1.4 gives it."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP1_IDS[colour],
        "created": _TLP1_CREATED,
        "definition_type": "tlp",
        "name": f"TLP:{colour.upper()}",
        "definition": {"tlp": colour},
    }


#: Every standard TLP marking-definition (2.0 and 1.0), by id, exactly as the standard has it.
STANDARD_MARKINGS = {TLP2_IDS[level]: tlp_marking(level) for level in TLP_LEVELS} | {
    TLP1_IDS[colour]: tlp1_marking(colour) for colour in TLP1_IDS
}


def check_reserved_marking(obj: Mapping[str, Any], issues: Issues) -> None:
    """A marking-definition with a standard TLP id must say exactly what the standard says.

    Otherwise an object could carry the id of TLP:CLEAR while its definition says RED, and
    tools that read the id and tools that read the content would disagree.
    """
    ident = obj.get("id")
    standard = STANDARD_MARKINGS.get(ident) if type(ident) is str else None
    if standard is None:
        return
    for key in ("name", "definition_type", "definition", "extensions"):
        if obj.get(key) != standard.get(key):
            issues.append(
                (key, f"differs from the standard TLP marking {standard['name']} with this id")
            )


_name_list = list_of(string(min_length=1))


def _label_rule(body: dict[str, Any], path: str, issues: Issues) -> None:
    if ("policy" in body) != ("classification" in body):
        issues.append((path, "policy and classification go together"))
    if "policy" not in body:
        for key in ("releasable_to", "handling", "alternatives"):
            if key in body:
                issues.append((f"{path}.{key}", "needs a classification (policy)"))


#: Checks for the bodies of extensions Allied knows, by extension-definition id.
KNOWN_EXTENSIONS: dict[str, Check] = {
    TLP_EXTENSION_ID: nested(
        {"extension_type": enum("property-extension"), "tlp_2_0": enum(*TLP_LEVELS)},
        required=("extension_type", "tlp_2_0"),
    ),
    LABEL_EXTENSION_ID: nested(
        {
            "extension_type": enum("property-extension"),
            "tlp": enum(*TLP_LEVELS),
            "policy": string(min_length=1),
            "classification": string(min_length=1),
            "releasable_to": _name_list,
            "handling": _name_list,
            "informative": _name_list,
            "alternatives": list_of(
                nested(
                    {"policy": string(min_length=1), "classification": string(min_length=1)},
                    required=("policy", "classification"),
                )
            ),
            "recipients": list_of(identifier("identity")),
            "blind_match": _name_list,
        },
        required=("extension_type", "tlp"),
        rules=(_label_rule,),
    ),
}
