"""The ``allied`` command line: parses arguments, calls the core, prints.

Every failure Allied anticipates is an AlliedError: it is printed as one line on stderr
(with every detail for validation failures, and more with ``--verbose``) and the command
exits 1. Usage errors exit 2, as click does.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import orjson

from allied import __version__
from allied import config as config_
from allied.config import DATABASE_ENV, SETTINGS
from allied.demo import run_demo, write_jsonl
from allied.errors import AlliedError, ConfigError, NotFound, ValidationError
from allied.ingest import importers
from allied.ingest.importers import FORMATS, Options
from allied.ingest.stix_import import ImportReport
from allied.integrity import proofs
from allied.node import Node, init_node, migrate_store
from allied.policy.egress import Egress
from allied.stix.labels import TLP_LEVELS
from allied.store.database import shown as shown_url
from allied.synthetic import Mix
from allied.web.accounts import ROLES, Accounts, check_name

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Obj:
    def __init__(self, node_dir: Path | None, verbose: bool) -> None:
        self.node_dir = node_dir
        self.verbose = verbose

    def directory(self) -> Path:
        if self.node_dir is None:
            raise ConfigError("no node given: use --node DIR or set ALLIED_NODE")
        return self.node_dir

    def node(self) -> Node:
        return Node.open(self.directory())


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


class _Commands(click.Group):
    """Turns every AlliedError into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AlliedError as error:
            _print_error(error, always_details=error.lists_problems)
            ctx.exit(1)


@click.group(cls=_Commands, context_settings=_CONTEXT)
@click.option(
    "--node",
    "node_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="ALLIED_NODE",
    help="Node directory (or ALLIED_NODE).",
)
@click.option("--verbose", "-v", is_flag=True, help="Print details of errors.")
@click.version_option(__version__, prog_name="allied")
@click.pass_context
def main(ctx: click.Context, node_dir: Path | None, verbose: bool) -> None:
    """Allied: a node for sharing STIX 2.1 threat intelligence between partner nations."""
    ctx.obj = _Obj(node_dir, verbose)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of this node's organisation.")
@click.option("--nation", required=True, help="ISO 3166-1 alpha-3 code, or NATO.")
@click.option("--org", default="", help="Longer description of the organisation.")
@click.option("--community", multiple=True, help="A community this node belongs to. Repeatable.")
@click.option(
    "--database",
    metavar="URL",
    help="Keep the store in this PostgreSQL database (postgresql://USER@HOST:PORT/NAME, empty "
    "and of this node alone) instead of the SQLite file store.db; default: "
    f"{DATABASE_ENV} if set. No password here: use ~/.pgpass, PGPASSWORD or {DATABASE_ENV}.",
)
def init(
    directory: Path,
    name: str,
    nation: str,
    org: str,
    community: tuple[str, ...],
    database: str | None,
) -> None:
    """Create a node in DIRECTORY: configuration, store and key pair."""
    cfg = init_node(
        directory, name=name, nation=nation, org=org, communities=community, database=database
    )
    click.echo(f"created node {name} ({nation}) in {directory}")
    click.echo(f"identity {cfg.identity_id}")
    url = database if database is not None else os.environ.get(DATABASE_ENV)
    url = url or cfg.database_url
    click.echo(f"store {shown_url(url)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--public-key-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the public key (PEM) to this file.",
)
@click.pass_obj
def identity(obj: _Obj, as_json: bool, public_key_out: Path | None) -> None:
    """This node's identity id, nation and public key: what a partner needs to enrol it."""
    with obj.node() as node:
        info = node.identity()
    if public_key_out is not None:
        public_key_out.write_text(info["public_key"])
    if as_json:
        _emit_json(info)
        return
    click.echo(f"name:        {info['name']}")
    click.echo(f"nation:      {info['nation']}")
    if info["org"]:
        click.echo(f"org:         {info['org']}")
    click.echo(f"identity:    {info['identity_id']}")
    click.echo(info["public_key"].rstrip())


@main.group()
def partner() -> None:
    """Partners this node knows: nation, clearances, communities, key, API token."""


@partner.command("add")
@click.argument("name")
@click.option("--nation", required=True, help="ISO 3166-1 alpha-3 code, or NATO.")
@click.option("--clearance", multiple=True, metavar="POLICY=LEVEL", help="Repeatable.")
@click.option("--community", multiple=True, help="Repeatable.")
@click.option("--category", multiple=True, help="Handling category the partner holds. Repeatable.")
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The partner's Ed25519 public key (PEM), as 'allied identity' writes it.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="API token: read from FILE if it exists, else generated into it (0600).",
)
@click.option("--identity", "identity_id", help="The partner's STIX identity id.")
@click.pass_obj
def partner_add(
    obj: _Obj,
    name: str,
    nation: str,
    clearance: tuple[str, ...],
    community: tuple[str, ...],
    category: tuple[str, ...],
    key_file: Path | None,
    token_file: Path | None,
    identity_id: str | None,
) -> None:
    """Enrol partner NAME."""
    with obj.node() as node:
        added = node.add_partner(
            name,
            nation=nation,
            clearances=clearance,
            communities=community,
            categories=category,
            key_file=key_file,
            token_file=token_file,
            identity_id=identity_id,
        )
    click.echo(f"added partner {added.name} ({added.nation}) {added.identity_id}")


@partner.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def partner_list(obj: _Obj, as_json: bool) -> None:
    """List partners (token hashes are never shown)."""
    with obj.node() as node:
        partners = node.store.partners()
    rows = [
        {
            "name": p.name,
            "nation": p.nation,
            "identity_id": p.identity_id,
            "clearances": p.clearances,
            "communities": list(p.communities),
            "categories": list(p.categories),
            "has_key": p.public_key is not None,
            "has_token": p.token_hash is not None,
            "revoked": p.revoked,
        }
        for p in partners
    ]
    if as_json:
        _emit_json(rows)
        return
    for p in partners:
        clear = ",".join(f"{k}={v}" for k, v in p.clearances.items()) or "-"
        comms = ",".join(p.communities) or "-"
        revoked = "  (revoked)" if p.revoked else ""
        click.echo(f"{p.name:<20} {p.nation:<5} {clear:<24} {comms}{revoked}")


@main.group()
def label() -> None:
    """Labels: a TLP level plus an optional classification, as STIX marking-definitions."""


@label.command("add")
@click.argument("name")
@click.option("--tlp", required=True, type=click.Choice(TLP_LEVELS))
@click.option("--policy", help="Classification policy (see [policies] in node.toml).")
@click.option("--classification", help="A level of that policy.")
@click.option("--releasable-to", multiple=True, help="Nation or community. Repeatable.")
@click.option("--handling", multiple=True, help="Restrictive category. Repeatable.")
@click.option("--recipient", multiple=True, help="Partner name. Repeatable.")
@click.option("--blind-match", multiple=True, help="Nation or community. Repeatable.")
@click.option("--informative", multiple=True, help="Marking shown, not enforced. Repeatable.")
@click.pass_obj
def label_add(
    obj: _Obj,
    name: str,
    tlp: str,
    policy: str | None,
    classification: str | None,
    releasable_to: tuple[str, ...],
    handling: tuple[str, ...],
    recipient: tuple[str, ...],
    blind_match: tuple[str, ...],
    informative: tuple[str, ...],
) -> None:
    """Create label NAME; prints the id of the marking-definition it created."""
    with obj.node() as node:
        marking_id = node.add_label(
            name,
            tlp=tlp,
            policy=policy,
            classification=classification,
            releasable_to=releasable_to,
            handling=handling,
            recipients=recipient,
            blind_match=blind_match,
            informative=informative,
        )
    click.echo(marking_id)


@label.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def label_list(obj: _Obj, as_json: bool) -> None:
    """List the labels this node can apply."""
    with obj.node() as node:
        rows = [{"name": n, "marking_id": m, "tlp": t} for n, m, t in node.store.labels()]
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:<30} {row['tlp']:<13} {row['marking_id']}")


@main.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format", "format_", type=click.Choice(FORMATS), default="stix", show_default=True,
    help="stix: STIX 2.1 bundles or JSON lines. misp: MISP event JSON files or feed "
    "directories (manifest.json). csv: indicator lists, one per row. text: written reports "
    "(plain text, Markdown or HTML) with the indicators and entities found in them.",
)  # fmt: skip
@click.option("--skip-invalid", is_flag=True, help="Store the valid objects, report the rest.")
@click.option("--label", "label_name", help="Label given to objects that carry no marking.")
@click.option(
    "--from",
    "from_partner",
    metavar="PARTNER",
    help="The partner these objects came from: they are then never forwarded beyond what "
    "their labels allow a recipient (AMBER and RED are not passed on).",
)
@click.option("--dry-run", is_flag=True, help="Convert and check everything; store nothing.")
@click.option("--columns", metavar="FIELD,...",
              help="csv: the field of each column in order (type, value, first_seen, "
              "last_seen, confidence, description; empty skips a column).")  # fmt: skip
@click.option("--tag-label", "tag_labels", multiple=True, metavar="TAG=LABEL",
              help="misp: give objects tagged TAG (e.g. nato:classification=\"NS\") this "
              "node's label LABEL. Repeatable.")  # fmt: skip
@click.option("--sharing-group", "sharing_groups", multiple=True, metavar="NAME=LABEL",
              help="misp: give events shared with sharing group NAME this node's label "
              "LABEL (otherwise they stay inside this node). Repeatable.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def import_(
    obj: _Obj,
    sources: tuple[Path, ...],
    format_: str,
    skip_invalid: bool,
    label_name: str | None,
    from_partner: str | None,
    dry_run: bool,
    columns: str | None,
    tag_labels: tuple[str, ...],
    sharing_groups: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import SOURCES; each file (or MISP event) lands whole or not at all."""
    if columns is not None and format_ != "csv":
        raise click.UsageError("--columns is for --format csv")
    if from_partner is not None and format_ != "stix":
        raise click.UsageError(
            "--from is for STIX objects a partner signed; converted objects are this node's"
        )
    if (tag_labels or sharing_groups) and format_ != "misp":
        raise click.UsageError("--tag-label and --sharing-group are for --format misp")
    options = Options(
        skip_invalid=skip_invalid,
        label=label_name,
        received_from=from_partner,
        dry_run=dry_run,
        columns=None if columns is None else columns.split(","),
        tag_labels=_pairs("--tag-label", tag_labels),
        sharing_groups=_pairs("--sharing-group", sharing_groups),
    )
    failed = 0
    reports = []
    with obj.node() as node:
        if from_partner is not None:  # an unknown partner or label is an error before any work
            node.partner(from_partner)
        for name in {label_name, *options.tag_labels.values(), *options.sharing_groups.values()}:
            if name is not None:
                node.store.label(name)
        for source in sources:
            try:
                paths = importers.sources(format_, source)
            except AlliedError as error:
                failed += 1
                _print_error(error)
                continue
            for path in paths:
                try:
                    report = importers.run(node, format_, path, options)
                except AlliedError as error:
                    failed += 1
                    _print_error(error, always_details=isinstance(error, ValidationError))
                    click.echo(f"{path}: nothing stored", err=True)
                    continue
                reports.append(report)
                if not as_json:
                    _print_import(report)
    if as_json:
        _emit_json([r.as_dict() for r in reports])
    if failed:
        sys.exit(1)


def _pairs(option: str, items: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.UsageError(f"{option} {item!r}: expected NAME=LABEL")
        pairs[key.strip()] = value.strip()
    return pairs


def _print_import(report: ImportReport) -> None:
    made = ", ".join(f"{n} {kind}" for kind, n in sorted(report.created.items()))
    verb = "would be stored (dry run: nothing stored)" if report.dry_run else "stored"
    click.echo(
        f"{report.source}: {report.stored} {verb}{f' ({made})' if made else ''}, "
        f"{report.duplicates} duplicates, {report.invalid} invalid (of {report.read} read)"
    )
    for note in report.notes:
        click.echo(f"  note: {note}")
    for skipped in report.skipped:
        click.echo(f"  skipped {skipped}", err=True)
    for problem in report.problems:
        click.echo(f"  skipped {problem}", err=True)
    if report.invalid > len(report.problems):
        click.echo(f"  ... and {report.invalid - len(report.problems)} more", err=True)


@main.command("match")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format", "format_", type=click.Choice(["csv", "jsonl", "parquet", "zeek", "eve"]),
    default="csv", show_default=True,
    help="Log format: CSV, JSON lines, Parquet, Zeek TSV (conn, dns, http, ssl, files) or "
    "Suricata EVE JSON; gzip is read as it is.",
)  # fmt: skip
@click.option(
    "--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
    help="Matching engine: DuckDB in this process, or Apache Spark.",
)  # fmt: skip
@click.option(
    "--spark-master", default="local[*]", show_default=True, metavar="URL",
    help="Spark master for --engine spark (local mode by default).",
)  # fmt: skip
@click.option(
    "--map", "mappings", multiple=True, metavar="FIELD=COLUMN",
    help="Read FIELD (ts, src_ip, dst_ip, src_port, dst_port, domain, url, email, md5, sha1, "
    "sha256, sha512) from COLUMN (a JSON path such as $.dns.rrname for JSON lines).",
)  # fmt: skip
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the sightings as a STIX bundle here.")  # fmt: skip
@click.option("--share", is_flag=True, help="Mark the sightings with --label so they may leave.")
@click.option("--label", "label_name", help="The label sightings are shared under (--share).")
@click.option("--blind-with", "blind_with", metavar="PEER",
              help="Match against the indicators PEER lets this node blind-match, without "
                   "either side seeing the other's values (docs/blind-matching.md).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def match(
    obj: _Obj,
    logs: tuple[Path, ...],
    format_: str,
    engine: str,
    spark_master: str,
    mappings: tuple[str, ...],
    output: Path | None,
    share: bool,
    label_name: str | None,
    blind_with: str | None,
    as_json: bool,
) -> None:
    """Match LOGS against this node's live indicators; store a signed sighting per hit.

    Without --share the sightings carry no marking and stay inside this node."""
    # imported here: DuckDB takes a while to load, and every other command would pay for it
    from allied.matching.duck import DuckDBEngine
    from allied.matching.run import Engine, blind_match_logs, match_logs

    if share != (label_name is not None):
        raise click.UsageError("--share and --label go together: share under which label?")
    mapping = {}
    for item in mappings:
        name, sep, column = item.partition("=")
        if not sep or not name or not column:
            raise click.UsageError(f"--map {item!r}: expected FIELD=COLUMN")
        mapping[name.strip()] = column.strip()
    if blind_with is not None and engine != "duckdb":
        raise click.UsageError("--blind-with reads the logs with the DuckDB engine")
    chosen: Engine
    if engine == "spark":
        from allied.matching.spark import SparkEngine

        try:
            chosen = SparkEngine(spark_master)
        except ImportError:
            raise click.UsageError(
                "--engine spark needs PySpark: pip install 'allied[spark]' (and Java 17+)"
            ) from None
    else:
        chosen = DuckDBEngine(progress=sys.stderr.isatty() and not as_json)
    try:
        with obj.node() as node:
            if blind_with is not None:
                assert isinstance(chosen, DuckDBEngine)
                report = blind_match_logs(
                    node, chosen, logs, format_, blind_with, mapping=mapping, label=label_name
                )
            else:
                report = match_logs(node, chosen, logs, format_, mapping=mapping, label=label_name)
    finally:
        chosen.close()
    if output is not None:
        bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": report.objects}
        output.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    if as_json:
        _emit_json(report.as_dict())
        return
    rate = f"{report.rows / report.seconds:,.0f} rows/s" if report.seconds else "-"
    click.echo(
        f"{report.rows:,} rows read in {report.seconds:.1f} s ({rate}); "
        f"{len(report.hits)} of {report.indicators} indicators hit; "
        f"{report.stored} objects stored"
    )
    for hit in report.hits[:20]:
        click.echo(f"  {hit.indicator}: {hit.count:,} rows")
    if report.malformed:
        click.echo(f"{report.malformed} malformed lines skipped:", err=True)
        for path, line, reason in report.problems:
            click.echo(f"  {path}:{line}: {reason}", err=True)
    if report.unsupported:
        click.echo(f"{len(report.unsupported)} indicators not matched:", err=True)
        for indicator, _pattern, reason in report.unsupported[:20]:
            click.echo(f"  {indicator}: {reason}", err=True)


@main.command("list")
@click.option("--type", "type_", help="Only objects of this STIX type.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(obj: _Obj, type_: str | None, limit: int | None, as_json: bool) -> None:
    """List the latest version of each object, newest first."""
    with obj.node() as node:
        rows = node.store.summaries(type_, limit)
    if as_json:
        _emit_json([r.__dict__ for r in rows])
        return
    for row in rows:
        name = (row.name or "")[:40]
        versions = f" ({row.versions} versions)" if row.versions > 1 else ""
        click.echo(f"{row.id}  {row.tlp or '-':<12} {name}{versions}")


@main.command()
@click.argument("object_id")
@click.option("--versions", is_flag=True, help="Every stored version, oldest first.")
@click.pass_obj
def show(obj: _Obj, object_id: str, versions: bool) -> None:
    """Print object OBJECT_ID (its latest version) as JSON."""
    with obj.node() as node:
        found = node.store.versions(object_id)
    if not found:
        raise NotFound(f"no object {object_id} in this node")
    chosen = found if versions else found[-1:]
    if versions:
        _emit_json([v.data for v in chosen])
    else:
        _emit_json(chosen[0].data)


@main.command()
@click.option("--for", "for_partner", metavar="PARTNER", help="Only what that partner may receive.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the bundle here (atomically) instead of standard output.",
)
@click.option("--type", "type_", help="Only objects of this STIX type.")
@click.pass_obj
def export(obj: _Obj, for_partner: str | None, output: Path | None, type_: str | None) -> None:
    """Export the latest version of every object as a STIX 2.1 bundle.

    With --for, only what that partner may receive (and the marking definitions it uses);
    without it, everything: the operator's own copy, never to be handed to a partner.
    """
    with obj.node() as node:
        if for_partner is not None:
            egress = Egress(node)
            egress.recipient(for_partner)  # an unknown partner fails before any output
            texts = egress.release(for_partner, type_)
        else:
            texts = node.store.latest_json(type_)
        with _output(output) as out:
            out.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [')
            first = True
            iterator = iter(texts)
            while batch := list(itertools.islice(iterator, 1000)):
                if for_partner is not None:  # journaled before it is written out
                    node.store.journal(for_partner, [_key(t) for t in batch], "export")
                for text in batch:
                    out.write("\n" if first else ",\n")
                    out.write(text)
                    first = False
            out.write("\n]}\n")


def _key(text: str) -> tuple[str, str]:
    """(id, version) of an object's JSON, as the release journal names it."""
    data = orjson.loads(text)
    return str(data["id"]), str(data.get("modified") or data.get("created") or "")


@main.command()
@click.argument("object_id")
@click.option("--for", "for_partner", metavar="PARTNER", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def explain(obj: _Obj, object_id: str, for_partner: str, as_json: bool) -> None:
    """Whether PARTNER may receive OBJECT_ID, with every reason."""
    with obj.node() as node:
        result = Egress(node).explain(object_id, for_partner)
    verdict = "allowed" if result.allowed else "denied"
    if as_json:
        _emit_json({"id": result.object_id, "partner": result.partner, "decision": verdict,
                    "reasons": list(result.reasons)})  # fmt: skip
        return
    click.echo(f"{result.object_id} for {result.partner}: {verdict}")
    for reason in result.reasons:
        click.echo(f"  {reason}")


@main.group()
def ledger() -> None:
    """The node's Merkle ledger of every accepted object version."""


@ledger.command("head")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def ledger_head(obj: _Obj, as_json: bool) -> None:
    """The latest signed tree head."""
    with obj.node() as node:
        head = proofs.latest_head(node.store)
    if as_json:
        _emit_json(head.as_dict())
        return
    body = head.as_dict()
    click.echo(f"tree size {head.size}, root {body['root_hash']}")
    click.echo(f"signed {head.timestamp} by {head.signer} (key {head.key_id})")


@ledger.command("prove")
@click.argument("object_id")
@click.option("--version", "version", help="That version (a modified timestamp), not the latest.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def ledger_prove(obj: _Obj, object_id: str, version: str | None, as_json: bool) -> None:
    """Inclusion proof of OBJECT_ID in the latest signed tree head (checked before printing)."""
    with obj.node() as node:
        proof = proofs.inclusion(node.store, object_id, version)
    if as_json:
        _emit_json(proof)
        return
    click.echo(
        f"{proof['id']} (version {proof['version'] or 'only'}) is entry {proof['leaf_index']} "
        f"of the ledger of {proof['tree_size']} entries, root {proof['root_hash']}"
    )
    for step in proof["proof"]:
        click.echo(f"  {step}")


@ledger.command("consistency")
@click.argument("old_size", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def ledger_consistency(obj: _Obj, old_size: int, as_json: bool) -> None:
    """Consistency proof from the tree of OLD_SIZE entries to the latest signed tree head."""
    with obj.node() as node:
        proof = proofs.consistency(node.store, old_size)
    if as_json:
        _emit_json(proof)
        return
    click.echo(
        f"the ledger of {proof['old_size']} entries (root {proof['old_root_hash']}) is a prefix "
        f"of the ledger of {proof['tree_size']} entries (root {proof['root_hash']})"
    )
    for step in proof["proof"]:
        click.echo(f"  {step}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--tls-cert", type=click.Path(path_type=Path), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(path_type=Path), help="Its private key (PEM).")
@click.option(
    "--client-ca",
    type=click.Path(path_type=Path),
    help="Require client certificates signed by this CA (mutual TLS).",
)
@click.option(
    "--sync-interval",
    type=click.FloatRange(min=0.1),
    help="Also sync from the node's peers every S seconds.",
)
@click.pass_obj
def serve(
    obj: _Obj,
    host: str,
    port: int,
    workers: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    sync_interval: float | None,
) -> None:
    """Serve the TAXII 2.1 API, the ledger endpoints and the analyst console until
    interrupted.

    Discovery is at /taxii2/, the API root at /api/, ledger proofs under /ledger/. Every
    API request needs a partner's token (Authorization: Bearer TOKEN), except discovery when
    anonymous_discovery is set. The console is at /ui/, for accounts made with 'allied user
    add'.
    """
    from allied.taxii.server import Tls
    from allied.taxii.server import serve as run_server

    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if client_ca is not None and tls_cert is None:
        raise ConfigError("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)")
    with obj.node() as node:
        directory = node.config.directory
    tls = Tls(tls_cert, tls_key, client_ca) if tls_cert and tls_key else None
    run_server(
        directory, host=host, port=port, workers=workers, tls=tls, sync_interval=sync_interval
    )


@main.command()
@click.option("--to", "to_partner", metavar="PARTNER", help="Only what went to this partner.")
@click.option("--object", "object_id", metavar="ID", help="Only versions of this object.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def releases(
    obj: _Obj, to_partner: str | None, object_id: str | None, limit: int, as_json: bool
) -> None:
    """Who received which object version, when and how (TAXII, which peers sync through,
    and export --for): the release journal, newest first."""
    with obj.node() as node:
        rows = node.store.releases(partner=to_partner, object_id=object_id, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        version = row["version"] or "-"
        click.echo(f"{row['released']}  {row['partner']:<16} {row['id']}  {version}  {row['via']}")


@main.group()
def peer() -> None:
    """Peer nodes this node pulls from (allied sync)."""


@peer.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--partner", "partner_name", required=True, help="The enrolled partner it is.")
@click.option(
    "--token-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The token the peer gave this node (copied into the node, 0600).",
)
@click.option("--collection", help="A TAXII collection id; default: the peer's own collection.")
@click.option(
    "--push-to",
    metavar="COLLECTION",
    help="Also post to this collection of the peer what the partner may receive.",
)
@click.pass_obj
def peer_add(
    obj: _Obj,
    name: str,
    url: str,
    partner_name: str,
    token_file: Path,
    collection: str | None,
    push_to: str | None,
) -> None:
    """Add peer NAME: the node of partner --partner, whose API is at URL."""
    from allied.federation.peers import add_peer

    with obj.node() as node:
        added = add_peer(
            node, name, url, partner=partner_name, token_file=token_file,
            collection=collection, push_to=push_to,
        )  # fmt: skip
    click.echo(f"added peer {added.name} at {added.url} (partner {added.partner})")


@peer.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def peer_list(obj: _Obj, as_json: bool) -> None:
    """List peers (tokens are never shown)."""
    from allied.federation.peers import peers

    with obj.node() as node:
        found = peers(node)
    if as_json:
        _emit_json([{"name": p.name, "url": p.url, "partner": p.partner,
                     "collection": p.collection, "created": p.created} for p in found])  # fmt: skip
        return
    for p in found:
        click.echo(f"{p.name:<20} {p.url:<40} partner {p.partner}")


@peer.command("remove")
@click.argument("name")
@click.pass_obj
def peer_remove(obj: _Obj, name: str) -> None:
    """Remove peer NAME and its token; what it sent stays."""
    from allied.federation.peers import remove_peer

    with obj.node() as node:
        remove_peer(node, name)
    click.echo(f"removed peer {name}")


@peer.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def peer_status(obj: _Obj, as_json: bool) -> None:
    """Where each peer stands: last success, lag, errors, refused objects, and whether its
    ledger was flagged (then exit status 3)."""
    from allied.federation.status import status

    with obj.node() as node:
        rows = status(node)
    if as_json:
        _emit_json(rows)
    else:
        for row in rows:
            lag = "never" if row["lag_seconds"] is None else f"{row['lag_seconds']:.0f} s ago"
            click.echo(
                f"{row['name']:<20} {row['state']:<8} last success {lag}, "
                f"{row['received']} received, {row['rejected']} refused"
            )
            if row["flagged"]:
                click.echo(f"allied: FLAGGED peer {row['name']}: {row['flagged']}", err=True)
            elif row["last_error"]:
                click.echo(f"  last error: {row['last_error']}")
    if any(row["flagged"] for row in rows):
        raise SystemExit(3)


@peer.command("accept")
@click.argument("name")
@click.pass_obj
def peer_accept(obj: _Obj, name: str) -> None:
    """Resume syncing from flagged peer NAME, taking its ledger as it is now."""
    from allied.federation.peers import accept

    with obj.node() as node:
        accept(node, name)
    click.echo(f"peer {name}: flag cleared; its next head is taken as it is")


@main.command()
@click.option("--once", is_flag=True, help="One pass over every peer, then exit.")
@click.option("--peer", "peer_names", multiple=True, help="Only this peer. Repeatable.")
@click.option("--full", is_flag=True, help="Pull from the beginning, not from the cursor.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    help="Seconds between passes without --once (default: the sync_interval setting).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (--once).")
@click.pass_obj
def sync(
    obj: _Obj,
    once: bool,
    peer_names: tuple[str, ...],
    full: bool,
    interval: float | None,
    as_json: bool,
) -> None:
    """Pull what is new from peers: their ledgers checked, every object verified. Exit
    status 1 if a peer failed, 3 if one is flagged (--once)."""
    from allied.federation.sync import FAILED, FLAGGED, sync_all, sync_forever, sync_peer

    with obj.node() as node:
        if not once:
            import logging
            import threading

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
            pause = interval or float(node.config.setting("sync_interval"))
            stop = threading.Event()
            try:
                sync_forever(node, pause, stop)
            except KeyboardInterrupt:
                stop.set()
            return
        if peer_names:
            results = [sync_peer(node, name, force=True, full=full) for name in peer_names]
        else:
            results = sync_all(node, force=True, full=full)
    if as_json:
        _emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            line = (
                f"{r.peer}: {r.status}, {r.received} new, {r.rejected} refused, "
                f"{r.withdrawn} withdrawn, {r.pushed} pushed, {r.pages} pages"
            )
            click.echo(line + (f": {r.message}" if r.message else ""))
    if any(r.status == FLAGGED for r in results):
        raise SystemExit(3)
    if any(r.status == FAILED for r in results):
        raise SystemExit(1)


@main.command("migrate-store")
@click.option(
    "--to", "url", required=True, metavar="URL",
    help="The empty PostgreSQL database to move the store to (postgresql://USER@HOST:PORT/NAME; "
    "no password here: use ~/.pgpass or PGPASSWORD).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def migrate_store_(obj: _Obj, url: str, as_json: bool) -> None:
    """Copy the node's store into another database, verify it, and move the node there.

    Stop the node's serve and sync processes first. Every row is copied as it is and compared
    before the copy commits; then the node is verified on its new store, and only then does its
    configuration point there. The old store is kept as it was."""
    copied = migrate_store(obj.directory(), url)
    if as_json:
        _emit_json({"database": shown_url(url), **copied.as_dict()})
        return
    click.echo(
        f"copied {copied.object_versions} object versions and "
        f"{sum(copied.rows.values())} rows in all to {shown_url(url)}"
    )
    click.echo(f"ledger of {copied.ledger_size} entries, root {copied.ledger_root}: the same")
    click.echo("verified; the node now keeps its store there (the old one is kept as it was)")


@main.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify_(obj: _Obj, as_json: bool) -> None:
    """Re-check every signature, recompute the ledger, check store and ledger agree."""
    with obj.node() as node:
        result = node.verify()
    if as_json:
        _emit_json(
            {
                "ok": result.ok,
                "objects": result.objects,
                "posted_copies": result.copies,
                "signatures": result.signatures,
                "ledger_size": result.ledger_size,
                "root_hash": base64.b64encode(result.root).decode(),
                "tree_heads": result.heads,
                "problems": result.problems,
            }
        )
    else:
        for problem in result.problems:
            click.echo(f"allied: verify: {problem}", err=True)
        click.echo(
            f"{result.objects} object versions"
            + (f", {result.copies} partners' copies" if result.copies else "")
            + f", {result.signatures} signatures, ledger of "
            f"{result.ledger_size} entries, {result.heads} signed tree heads: "
            + ("all verified" if result.ok else f"{len(result.problems)} problems")
        )
    if not result.ok:
        raise SystemExit(1)


@main.group()
def user() -> None:
    """Console accounts of the node's own people (partners use API tokens instead)."""


def _password(password_file: Path | None) -> str:
    """From the file (its first line), or asked twice on the terminal: never an argument,
    which would stay in the shell's history and the process list."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ConfigError(
                f"--password-file {password_file}: cannot read ({error.strerror or error})"
            ) from None
        if not lines:
            raise ConfigError(f"--password-file {password_file}: the file is empty")
        return lines[0]
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


_PASSWORD_FILE = click.option(
    "--password-file", type=click.Path(path_type=Path, dir_okay=False),
    help="Read the password from this file's first line instead of asking for it.",
)  # fmt: skip


@user.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(ROLES), required=True,
    help="viewer reads; analyst also creates objects; admin also sees accounts.",
)  # fmt: skip
@_PASSWORD_FILE
@click.pass_obj
def user_add(obj: _Obj, name: str, role: str, password_file: Path | None) -> None:
    """Add console account NAME."""
    check_name(name)
    password = _password(password_file)
    with obj.node() as node:
        Accounts(node.store).add(name, role, password)
    click.echo(f"added account {name} ({role}); log in at /ui/ of 'allied serve'")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def user_list(obj: _Obj, as_json: bool) -> None:
    """List console accounts (password hashes are never shown)."""
    with obj.node() as node:
        found = Accounts(node.store).all()
    if as_json:
        _emit_json([account.__dict__ for account in found])
        return
    for account in found:
        click.echo(f"{account.name:<24} {account.role:<8} created {account.created}")


@user.command("remove")
@click.argument("name")
@click.pass_obj
def user_remove(obj: _Obj, name: str) -> None:
    """Remove console account NAME; its sessions end at once."""
    with obj.node() as node:
        Accounts(node.store).remove(name)
    click.echo(f"removed account {name}")


@user.command("password")
@click.argument("name")
@_PASSWORD_FILE
@click.pass_obj
def user_password(obj: _Obj, name: str, password_file: Path | None) -> None:
    """Set a new password for NAME; its sessions end at once."""
    with obj.node() as node:
        accounts = Accounts(node.store)
        accounts.get(name)
        accounts.set_password(name, _password(password_file))
    click.echo(f"new password set for {name}; its sessions were ended")


@user.command("unlock")
@click.argument("name")
@click.option(
    "--client", metavar="ADDRESS",
    help="Also forget every failed login from this client address (a shared one).",
)  # fmt: skip
@click.pass_obj
def user_unlock(obj: _Obj, name: str, client: str | None) -> None:
    """Forget NAME's failed logins, so that it may log in again at once."""
    with obj.node() as node:
        forgotten = Accounts(node.store).unlock(name, client)
    click.echo(f"{name}: {forgotten} failed logins forgotten")


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_obj
def user_role(obj: _Obj, name: str, role: str) -> None:
    """Give NAME another role (it applies from its next page)."""
    with obj.node() as node:
        Accounts(node.store).set_role(name, role)
    click.echo(f"{name} is now {role}")


@main.group()
def key() -> None:
    """The node's signing key."""


@key.command("rotate")
@click.pass_obj
def key_rotate(obj: _Obj) -> None:
    """A new signing key; the old public key stays trusted for what it signed."""
    with obj.node() as node:
        new = node.rotate_key()
    click.echo(f"new signing key {new}; the previous key is retired, kept for verifying")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def settings(obj: _Obj, as_json: bool) -> None:
    """The node's effective settings (node.toml, overridden by ALLIED_* variables)."""
    # the file and the environment only: settings show even when the store is unreachable
    values = {
        key: sorted(value) if isinstance(value, frozenset) else value
        for key, value in config_.load(obj.directory()).settings.items()
    }
    values["database"] = shown_url(str(values["database"])) if values["database"] else ""
    if as_json:
        _emit_json(values)
        return
    for setting in SETTINGS:
        click.echo(f"{setting.name} = {values[setting.name]!r}")
        click.echo(f"    {setting.help}")


@main.command()
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, file_okay=False),
    help="New folder for the nodes and the report (default: a new temporary folder).",
)  # fmt: skip
def demo(output: Path | None) -> None:
    """Run the shipped three-nation drill on real nodes and summarise it.

    Exits non-zero if the drill failed (a leak, a missed detection or tampering, a node that
    did not recover)."""
    outcome = run_demo(click.echo, _display(), output)
    if not outcome.score["passed"]:
        sys.exit(1)


@main.group()
def exercise() -> None:
    """Joint exercises: scripted multinational drills on real nodes, scored."""


@exercise.command("validate")
@click.argument("scenario", type=click.Path(path_type=Path, dir_okay=False))
def exercise_validate(scenario: Path) -> None:
    """Check a scenario file; every problem is listed with its line."""
    from allied.exercise import load_scenario

    loaded = load_scenario(scenario)
    click.echo(
        f"{scenario}: valid: {len(loaded.partners)} partners, {len(loaded.peers)} peerings, "
        f"{len(loaded.injects)} injects over {loaded.last_moment:.0f} s"
    )


@exercise.command("schema")
def exercise_schema() -> None:
    """Print the JSON Schema scenario files follow."""
    from allied.exercise.scenario import schema

    _emit_json(schema())


@exercise.command("run")
@click.argument("scenario", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, file_okay=False),
    help="New folder for the nodes and the report (default: a new temporary folder).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print score.json at the end.")
def exercise_run(scenario: Path, output: Path | None, as_json: bool) -> None:
    """Run a drill: one real node per partner on 127.0.0.1, the injects in time order, then
    the score and report (report.html, report.md, score.json) in the output folder.

    Exits non-zero if the drill failed."""
    from allied.demo import summary
    from allied.exercise import load_scenario, run_exercise

    loaded = load_scenario(scenario)
    root = output or Path(tempfile.mkdtemp(prefix="allied-exercise-"))
    if not as_json:
        click.echo(f"running the drill {loaded.name!r} in {root}")
    outcome = run_exercise(loaded, root, _display(quiet=as_json))
    if as_json:
        _emit_json(outcome.score)
    else:
        for line in summary(outcome):
            click.echo(line)
    if not outcome.score["passed"]:
        sys.exit(1)


def _display(*, quiet: bool = False) -> Any:
    """A live table on a terminal, lines on stderr otherwise."""
    from allied.exercise.live import Lines, LiveTable

    if quiet:
        return Lines(lambda _line: None)
    if sys.stderr.isatty():
        return LiveTable()
    return Lines(lambda line: click.echo(line, err=True))


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--indicators", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def generate(output: Path, indicators: int, seed: int) -> None:
    """Write seeded synthetic STIX 2.1 intelligence as JSON lines (for tests and drills)."""
    count = write_jsonl(output, seed, Mix.for_indicators(indicators))
    click.echo(f"wrote {count} objects to {output}")


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """Standard output, or a file that appears only when complete."""
    if path is None:
        yield sys.stdout
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _print_error(error: AlliedError, *, always_details: bool = False) -> None:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(_Obj) if ctx is not None else None
    verbose = state.verbose if state is not None else False
    click.echo(f"allied: error: {error.message}", err=True)
    if always_details or verbose:
        for line in error.details():
            click.echo(f"  {line}", err=True)
