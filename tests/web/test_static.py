"""The console's files: vendored scripts are the registry's bytes as recorded, and templates
use nothing the Content-Security-Policy would block (inline script, style or handlers)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import allied.web

WEB = Path(allied.web.__file__).parent
STATIC = WEB / "static"
TEMPLATES = WEB / "templates"


def test_vendored_files_match_their_recorded_checksums() -> None:
    readme = (STATIC / "vendor" / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)`.*?\| `([0-9a-f]{64})` \|", readme, re.M)
    assert {name for name, _ in rows} == {p.name for p in (STATIC / "vendor").iterdir()} - {
        "README.md"
    }
    for name, digest in rows:
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name


def test_templates_reference_only_files_that_exist() -> None:
    for template in TEMPLATES.glob("*.html"):
        for path in re.findall(r"/ui/static/([\w./-]+)", template.read_text()):
            assert (STATIC / path).is_file(), f"{template.name}: {path}"


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"<style\b|\sstyle=", text), template.name
        assert not re.search(r"\son[a-z]+=|\shx-on", text), template.name
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, (
            template.name
        )


def test_the_graph_script_never_writes_markup() -> None:
    script = (STATIC / "graph.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
