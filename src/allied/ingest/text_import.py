"""A written report (an advisory, a news article, an exercise write-up) as a STIX ``report``
with what it mentions: indicators, vulnerabilities, ATT&CK techniques, countries, threat
actors and intrusion sets, and organisations, each referred to by the report.

Indicators are found by ``ioc-finder`` (a maintained extractor that reads defanged forms)
and then go through the same normalisation as every other importer
(:mod:`allied.ingest.observables`); entities by name from ISO 3166 and a documented list
(:mod:`allied.ingest.entities`). Everything written carries the report's label, and its id
follows from the report's text, so importing the same text again changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ioc_finder import find_iocs

from allied.errors import InputFormatError
from allied.ingest.entities import Entity, find_entities
from allied.ingest.observables import Observable, observe
from allied.ingest.stable import settle, stable_id
from allied.ingest.stix_import import ImportReport, apply_label, label_markings
from allied.node import Node
from allied.stix.reader import Item
from allied.store.store import stix_now

#: ioc-finder's result keys, by the kind of observable they hold
_IOC_KINDS = {
    "urls": "url",
    "domains": "domain",
    "ipv4s": "ipv4",
    "ipv6s": "ipv6",
    "email_addresses": "email",
    "md5s": "md5",
    "sha1s": "sha1",
    "sha256s": "sha256",
    "sha512s": "sha512",
}
_IOC_TYPES = [*_IOC_KINDS, "cves", "attack_techniques"]
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_MAX_BYTES = 20 * 1024 * 1024
_MAX_DESCRIPTION = 1_000_000


class _Text(HTMLParser):
    """An HTML page's visible text, block elements on their own lines, and its title."""

    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
         "section", "article", "header", "footer", "blockquote", "ul", "ol", "dd", "dt"}
    )  # fmt: skip
    _HIDDEN = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.heading = ""
        self._hidden = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._HIDDEN and tag != "head":
            self._hidden += 1
        if tag == "body" and "head" in self._in:  # a head left open ends where the body starts
            self._in = self._in[: self._in.index("head")]
        self._in.append(tag)
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and tag != "head" and self._hidden:
            self._hidden -= 1
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title += data
            return
        if self._hidden or "head" in self._in:  # the page head is no text, its title aside
            return
        if "h1" in self._in:
            self.heading += data
        self.parts.append(data)


def read_text(node: Node, path: Path, report: ImportReport, label: str | None) -> Iterator[Item]:
    """The report ``path`` holds and the objects it mentions, as STIX items under ``label``."""
    title, text = _read(path)
    identity = node.config.identity_id
    markings = label_markings(node, label)
    # the report's objects are its own: keyed by its text and label, they carry that label
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    key = "\x1e".join((digest, *markings))
    stamp = stix_now()
    found = find_iocs(
        text,
        parse_domain_from_url=False,
        parse_domain_from_email_address=False,
        parse_from_url_path=False,
        parse_domain_name_from_xmpp_address=False,
        parse_urls_without_scheme=False,
        included_ioc_types=_IOC_TYPES,
    )
    objects: list[dict[str, Any]] = []
    for observable in _observables(found, report):
        objects.append(_indicator(observable, identity, key, stamp, title))
    for cve in sorted({c.upper() for c in found.get("cves", [])}):
        objects.append(_vulnerability(cve, identity, key, stamp))
    techniques = found.get("attack_techniques", {})
    assert isinstance(techniques, dict)
    for technique in sorted({t for ids in techniques.values() for t in ids}):
        objects.append(_technique(technique, identity, key, stamp))
    for entity in find_entities(text):
        objects.append(_entity(entity, identity, key, stamp))
    refs = [obj["id"] for obj in objects]
    if not refs:
        report.notes.append("nothing found in the text: the report refers to its author only")
        refs = [identity]
    description = text[:_MAX_DESCRIPTION]
    if len(text) > _MAX_DESCRIPTION:
        report.notes.append(
            f"the report's text is cut to its first {_MAX_DESCRIPTION:,} characters "
            "(everything in it was searched)"
        )
    objects.append(
        {
            "type": "report",
            "spec_version": "2.1",
            "id": stable_id("report", identity, key),
            "created": stamp,
            "modified": stamp,
            "created_by_ref": identity,
            "name": title,
            "description": description,
            "report_types": ["threat-report"],
            "published": stamp,
            "object_refs": refs,
            "external_references": [
                {"source_name": "allied-import", "description": f"imported from {path.name}",
                 "hashes": {"SHA-256": digest}}
            ],
        }
    )  # fmt: skip
    labelled = [apply_label(obj, markings) for obj in objects]
    held = settle(node.store, labelled, defaulted=("valid_from", "published"))
    for index, data in enumerate(labelled):
        yield Item(index, None, data, held=index in held)


def _read(path: Path) -> tuple[str, str]:
    """(title, text) of the report: HTML's visible text, Markdown and plain text as written."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror}", source=str(path)) from None
    if len(raw) > _MAX_BYTES:
        raise InputFormatError(f"larger than {_MAX_BYTES // 2**20} MiB", source=str(path))
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        at = raw[: error.start].count(b"\n") + 1
        raise InputFormatError("not UTF-8 text", source=str(path), line=at) from None
    if "\x00" in content:
        raise InputFormatError("not text (holds NUL characters)", source=str(path))
    head = content.lstrip()[:200].lower()
    if path.suffix.lower() in _HTML_SUFFIXES or head.startswith(("<!doctype html", "<html")):
        parser = _Text()
        parser.feed(content)
        parser.close()
        text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))
        text = re.sub(r"\n\s*\n\s*", "\n\n", text).strip()
        title = (parser.title or parser.heading).strip()
    else:
        text = content.replace("\r\n", "\n").strip()
        title = ""
        for row in text.splitlines():
            if row.strip():
                title = row.strip().lstrip("#").strip().strip("*_ ")
                break
    if not text:
        raise InputFormatError("holds no text", source=str(path))
    title = " ".join(title.split())[:300] or path.stem
    return title, text


def _observables(found: Mapping[str, Any], report: ImportReport) -> list[Observable]:
    seen: dict[str, Observable] = {}
    for key, kind in _IOC_KINDS.items():
        values = found.get(key, [])
        assert isinstance(values, list)
        for value in values:
            result = observe(value, kind)
            if isinstance(result, str):
                report.skipped.append(f"{kind} {value!r}: {result}")
                continue
            seen.setdefault(result.pattern, result)
    return list(seen.values())


def _base(kind: str, identity: str, key: str, stamp: str, *parts: str) -> dict[str, Any]:
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": stable_id(kind, identity, key, *parts),
        "created": stamp,
        "modified": stamp,
        "created_by_ref": identity,
    }


def _indicator(
    observable: Observable, identity: str, key: str, stamp: str, title: str
) -> dict[str, Any]:
    pattern = observable.pattern
    return _base("indicator", identity, key, stamp, pattern) | {
        "name": observable.name,
        "description": f"Found in the report {title!r}.",
        "pattern": pattern,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": stamp,
    }


def _vulnerability(cve: str, identity: str, key: str, stamp: str) -> dict[str, Any]:
    return _base("vulnerability", identity, key, stamp, cve) | {
        "name": cve,
        "external_references": [{"source_name": "cve", "external_id": cve}],
    }


def _technique(technique: str, identity: str, key: str, stamp: str) -> dict[str, Any]:
    url = "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"
    return _base("attack-pattern", identity, key, stamp, technique) | {
        "name": technique,
        "external_references": [
            {"source_name": "mitre-attack", "external_id": technique, "url": url}
        ],
    }


def _entity(entity: Entity, identity: str, key: str, stamp: str) -> dict[str, Any]:
    data = _base(entity.kind, identity, key, stamp, entity.key) | {"name": entity.name}
    if entity.kind == "location":
        data["country"] = entity.key
    elif entity.kind == "identity":
        data["identity_class"] = "organization"
    if entity.aliases and entity.kind in ("intrusion-set", "threat-actor"):
        data["aliases"] = list(entity.aliases)
    if entity.aliases and entity.kind == "identity":
        data["description"] = f"Also known as {', '.join(entity.aliases)}."
    return data
