"""The drill's report: ``score.json`` for machines, ``report.md`` and a self-contained
``report.html`` for the exercise control team, with a timeline and a share-latency plot.

The HTML carries its images inline (data URIs) and its style in the page, so it opens from
a mail attachment or an air-gapped share with nothing to fetch. Every text that comes from
the scenario is escaped: a scenario is input, like any other.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from allied.exercise.runner import Record

_KIND_COLOURS = {
    "share": "#1f77b4",
    "traffic": "#2ca02c",
    "blind": "#17becf",
    "request": "#9467bd",
    "outage": "#d62728",
    "tamper": "#ff7f0e",
}


def write_report(record: Record, score: dict[str, Any]) -> dict[str, Path]:
    root = record.root
    paths = {
        "score": root / "score.json",
        "timeline": root / "timeline.png",
        "latency": root / "latency.png",
        "markdown": root / "report.md",
        "html": root / "report.html",
    }
    paths["score"].write_text(json.dumps(score, indent=2) + "\n", encoding="utf-8")
    _timeline(record, paths["timeline"])
    _latency_plot(score, paths["latency"])
    paths["markdown"].write_text(_markdown(record, score), encoding="utf-8")
    paths["html"].write_text(_html(record, score, paths), encoding="utf-8")
    return paths


# -- plots --------------------------------------------------------------------------------


def _timeline(record: Record, path: Path) -> None:
    partners = list(record.scenario.partners)
    rows = {name: i for i, name in enumerate(partners)}
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
    )
    for name, windows in record.outages.items():
        for down, up in windows:
            top.barh(rows[name], up - down, left=down, height=0.6, color="#d62728", alpha=0.25)
    for event in record.events:  # tampering windows, on the puller's row
        if event.inject.kind == "tamper" and event.phase == "start" and event.started is not None:
            puller = event.inject.get("link")[0]
            end = event.started + float(event.inject.get("for"))
            top.barh(rows[puller], end - event.started, left=event.started, height=0.3,
                     color="#ff7f0e", alpha=0.3)  # fmt: skip
    for event in record.events:
        inject = event.inject
        who = inject.get("by") or inject.get("node") or (inject.get("link") or [None])[0]
        if who not in rows or event.started is None:
            continue
        colour = _KIND_COLOURS[inject.kind]
        marker = "o" if event.phase == "run" else ("|" if event.phase == "end" else "D")
        top.plot(event.started, rows[who], marker, color=colour, markersize=9)
        if event.finished is not None and event.phase == "run":
            top.hlines(rows[who], event.started, event.finished, colors=colour, linewidth=3)
    top.set_yticks(range(len(partners)), partners)
    top.set_ylim(-0.7, len(partners) - 0.3)
    top.set_title("Injects (outages shaded red, tampering orange)")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in _KIND_COLOURS.items()
    ]
    top.legend(handles=handles, loc="upper right", fontsize="small", ncols=6)
    for name in partners:
        points = [(s.at, s.objects[name]) for s in record.samples if name in s.objects]
        if points:
            xs, ys = zip(*points, strict=True)
            bottom.plot(xs, ys, label=name)
    bottom.set_ylabel("object versions held")
    bottom.set_xlabel("seconds since the start of the drill")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _latency_plot(score: dict[str, Any], path: Path) -> None:
    samples = score["share_latency"]["samples"]
    figure, axes = plt.subplots(figsize=(10, 4))
    hops = list(samples)
    if hops:
        axes.boxplot([samples[h] for h in hops], tick_labels=hops, showfliers=True)
        axes.set_ylabel("seconds")
    else:
        axes.text(0.5, 0.5, "nothing was shared", ha="center", va="center")
    axes.set_title("Time to share, per hop (sender to receiver)")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# -- text ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _sections(
    record: Record, score: dict[str, Any]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables, as (title, header, rows): one source for Markdown and HTML."""
    sections: list[tuple[str, list[str], list[list[str]]]] = []
    latency = score["share_latency"]
    sections.append(
        (
            "Time to share per hop",
            ["hop", "objects", "median (s)", "95th percentile (s)", "held up by an outage"],
            [
                [
                    hop,
                    str(s["count"]),
                    _num(s["median_s"]),
                    _num(s["p95_s"]),
                    str(s["outage_delayed"]),
                ]
                for hop, s in latency["hops"].items()
            ],
        )
    )
    partners = []
    for name in record.scenario.partners:
        found = score["detections"]["by_partner"].get(name, {"expected": 0, "found": 0})
        leaks = sum(1 for leak in score["leaks"]["items"] if leak["node"] == name)
        integrity = score["integrity"][name]
        partners.append(
            [
                name,
                record.scenario.partners[name].nation,
                str(score["objects"][name]),
                f"{found['found']} / {found['expected']}",
                str(leaks),
                "ok" if integrity["ok"] else "; ".join(integrity["problems"][:2]),
            ]
        )
    sections.append(
        (
            "Partners",
            [
                "partner",
                "nation",
                "object versions",
                "detections (found / expected)",
                "leaks found there",
                "allied verify",
            ],
            partners,
        )
    )
    sections.append(
        (
            "Injects",
            ["planned (s)", "started (s)", "took (s)", "inject", "outcome"],
            [
                [
                    _num(e.at),
                    _num(e.started),
                    _num((e.finished or 0) - (e.started or 0)) if e.started is not None else "-",
                    e.title,
                    e.error or _outcome(e.outcome),
                ]
                for e in record.events
            ],
        )
    )
    sections.append(
        (
            "Delivery of shared indicators",
            [
                "inject",
                "by",
                "indicators",
                "held by",
                "expected to reach",
                "withheld from",
                "verdict",
            ],
            [
                [
                    d["inject"],
                    d["by"],
                    str(d["indicators"]),
                    ", ".join(f"{k} {v}" for k, v in d["held_by"].items()),
                    ", ".join(d["reach"]) or "-",
                    ", ".join(d["withheld_from"]) or "-",
                    _verdict(d["ok"]),
                ]
                for d in score["delivery"]["injects"]
            ],
        )
    )
    if score["leaks"]["items"]:
        sections.append(
            (
                "Leaks",
                ["node", "object", "from", "why it should not be there"],
                [
                    [leak["node"], leak["object"], leak["from"], "; ".join(leak["reasons"])]
                    for leak in score["leaks"]["items"][:50]
                ],
            )
        )
    tampering = score["tampering"]
    sections.append(
        (
            "Tampering",
            [
                "tampered objects",
                "refused by the puller",
                "accepted",
                "never applied",
                "accepted (puller, source, object)",
            ],
            [
                [
                    str(tampering["tampered"]),
                    str(tampering["detected"]),
                    str(tampering["accepted"]),
                    str(tampering["not_applied"]),
                    "; ".join(
                        f"{u['puller']}, {u['source']}, {u['object']}"
                        for u in tampering["accepted_objects"][:10]
                    )
                    or "-",
                ]
            ],
        )
    )
    sections.append(
        (
            "Requests for objects",
            ["by", "at", "objects asked", "granted", "answers", "expected", "verdict"],
            [
                [
                    r["by"],
                    r["from"],
                    str(r["asked"]),
                    str(r["granted"]),
                    ", ".join(f"HTTP {code}: {n}" for code, n in r["answers"].items()),
                    r["expected"],
                    _verdict(r["ok"]),
                ]
                for r in score["requests"]
            ],
        )
    )
    sections.append(
        (
            "Outages",
            ["node", "offline from (s)", "back at (s)", "recovery (s)", "objects caught up"],
            [
                [
                    o["node"],
                    _num(o["down_s"]),
                    _num(o["up_s"]),
                    _num(o["recovery_s"]),
                    str(o["caught_up_objects"]),
                ]
                for o in score["outages"]
            ],
        )
    )
    return sections


def _summary(score: dict[str, Any]) -> list[tuple[str, str]]:
    tampering = score["tampering"]
    overall = score["share_latency"]["overall"]
    return [
        ("Verdict", "passed" if score["passed"] else "FAILED"),
        (
            "Leaks",
            f"{score['leaks']['count']} "
            f"(of {score['leaks']['checked']} hops between nodes checked)",
        ),
        (
            "Detections",
            ", ".join(
                f"{who} {d['found']}/{d['expected']}"
                for who, d in score["detections"]["by_partner"].items()
            )
            or "-",
        ),
        (
            "Tampering",
            f"{tampering['detected']} of {tampering['tampered']} tampered objects refused, "
            f"{tampering['accepted']} accepted",
        ),
        (
            "Time to share",
            f"median {_num(overall['median_s'])} s, 95th percentile {_num(overall['p95_s'])} s",
        ),
        (
            "Recovery",
            ", ".join(f"{o['node']} {_num(o['recovery_s'])} s" for o in score["outages"]) or "-",
        ),
        (
            "Requests",
            ", ".join(
                f"{r['by']} at {r['from']}: {r['granted']} of {r['asked']} granted "
                f"({r['expected']} expected)"
                for r in score["requests"]
            )
            or "-",
        ),
    ]


def _markdown(record: Record, score: dict[str, Any]) -> str:
    """Markdown whose text from the scenario cannot become markup: HTML, links or images
    in a title are shown as written."""
    name = _md(record.scenario.name)
    lines = [f"# Exercise report: {name}", ""]
    if record.scenario.description:
        lines += [_md(record.scenario.description.strip()), ""]
    lines += [
        f"Started {score['started_at']}, ran {score['duration_s']} s. Nodes kept in `nodes/`.",
        "",
    ]
    for key, value in _summary(score):
        lines.append(f"- **{key}:** {_md(value)}")
    lines += ["", "![timeline](timeline.png)", "", "![time to share](latency.png)", ""]
    for title, header, rows in _sections(record, score):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text for Markdown: entities for HTML, and no links, images or code (the brackets,
    backticks and table bars escaped)."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"([\\`\[\]!|])", r"\\\1", escaped).replace("\n", " ")


def _html(record: Record, score: dict[str, Any], paths: dict[str, Path]) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Exercise report: {e(record.scenario.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Exercise report: {e(record.scenario.name)}</h1>",
    ]
    if record.scenario.description:
        parts.append(f"<p>{e(record.scenario.description.strip())}</p>")
    verdict = "passed" if score["passed"] else "failed"
    parts.append(f'<p class="verdict {verdict}">Drill {verdict}</p><dl>')
    for key, value in _summary(score):
        parts.append(f"<dt>{e(key)}</dt><dd>{e(value)}</dd>")
    parts.append("</dl>")
    for key, alt in (("timeline", "timeline of the injects"), ("latency", "time to share per hop")):
        data = base64.b64encode(paths[key].read_bytes()).decode()
        parts.append(f'<img id="{key}" alt="{alt}" src="data:image/png;base64,{data}">')
    for title, header, rows in _sections(record, score):
        parts.append(f"<h2>{e(title)}</h2><table><thead><tr>")
        parts += [f"<th>{e(h)}</th>" for h in header]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _outcome(outcome: dict[str, Any]) -> str:
    shown = {k: v for k, v in outcome.items() if k not in ("rows_per_hit", "granted")}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 1em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
.verdict { font-size: 1.3em; font-weight: bold; padding: 0.3em 0.6em; display: inline-block; }
.passed { background: #d9f2d9; } .failed { background: #f8d0d0; }
"""
