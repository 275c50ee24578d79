"""The command line, through the real click application, for every command and error path."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from allied.cli import main
from allied.stix.model import parse_object
from tests.conftest import indicator, malware, unsigned, write_bundle, write_lines

Cli = Callable[..., Result]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def failed(result: Result, message: str) -> Result:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("allied: error: "), result.stderr
    assert message in result.stderr, result.stderr
    return result


# -- init and identity --------------------------------------------------------------------


def test_init_creates_config_store_and_private_key(tmp_path: Path) -> None:
    result = ok(
        CliRunner().invoke(
            main, ["init", str(tmp_path / "n"), "--name", "KR NCSC", "--nation", "KOR"]
        )
    )
    assert "created node KR NCSC (KOR)" in result.output
    key = tmp_path / "n" / "keys" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "n" / "node.toml").is_file() and (tmp_path / "n" / "store.db").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "X", "--nation", "Korea"], "--nation 'Korea': a nation is an ISO 3166-1"),
        (["--name", " ", "--nation", "KOR"], "--name must not be empty"),
    ],
)
def test_init_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    failed(CliRunner().invoke(main, ["init", str(tmp_path / "n"), *args]), message)
    assert not (tmp_path / "n" / "node.toml").exists()


def test_init_refuses_a_non_empty_directory(node_dir: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(node_dir), "--name", "X", "--nation", "EST"])
    failed(result, "already exists and is not an empty directory")


def test_identity_text_json_and_public_key_file(cli: Cli, tmp_path: Path) -> None:
    text = ok(cli("identity")).output
    assert "nation:      EST" in text and "BEGIN PUBLIC KEY" in text
    info = json.loads(
        ok(cli("identity", "--json", "--public-key-out", str(tmp_path / "pub.pem"))).output
    )
    assert info["identity_id"].startswith("identity--") and info["nation"] == "EST"
    assert (tmp_path / "pub.pem").read_text() == info["public_key"]


def test_commands_need_a_node(tmp_path: Path) -> None:
    runner = CliRunner()
    failed(runner.invoke(main, ["list"], env={"ALLIED_NODE": ""}), "no node given")
    failed(runner.invoke(main, ["--node", str(tmp_path), "list"]), "is not an Allied node")


def test_allied_node_environment_variable(node_dir: Path) -> None:
    result = ok(
        CliRunner().invoke(main, ["identity", "--json"], env={"ALLIED_NODE": str(node_dir)})
    )
    assert json.loads(result.output)["nation"] == "EST"


# -- partners -------------------------------------------------------------------------------


def test_partner_add_generates_a_token_stored_only_as_hash(
    cli: Cli, node_dir: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "kr.token"
    result = ok(
        cli(
            "partner",
            "add",
            "kr-ncsc",
            "--nation",
            "KOR",
            "--clearance",
            "NATO=CONFIDENTIAL",
            "--community",
            "kor-usa-cyber-council",
            "--token-file",
            str(token_file),
        )
    )
    assert "added partner kr-ncsc (KOR)" in result.output
    token = token_file.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in result.output
    assert token.encode() not in (node_dir / "store.db").read_bytes()
    listed = json.loads(ok(cli("partner", "list", "--json")).output)
    assert listed == [
        {
            "name": "kr-ncsc",
            "nation": "KOR",
            "identity_id": listed[0]["identity_id"],
            "clearances": {"NATO": "CONFIDENTIAL"},
            "communities": ["kor-usa-cyber-council"],
            "categories": [],
            "has_key": False,
            "has_token": True,
            "revoked": False,
        }
    ]


def test_partner_add_reads_an_existing_token_and_key(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ok(CliRunner().invoke(main, ["init", str(other), "--name", "US", "--nation", "USA"]))
    pem = tmp_path / "us.pem"
    ok(CliRunner().invoke(main, ["--node", str(other), "identity", "--public-key-out", str(pem)]))
    token_file = tmp_path / "us.token"
    token_file.write_text("a" * 40 + "\n")
    ok(
        cli(
            "partner",
            "add",
            "us-cybercom",
            "--nation",
            "USA",
            "--key",
            str(pem),
            "--token-file",
            str(token_file),
        )
    )
    assert token_file.read_text() == "a" * 40 + "\n"
    assert json.loads(ok(cli("partner", "list", "--json")).output)[0]["has_key"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nation", "Korea"], "--nation 'Korea'"),
        (["--nation", "KOR", "--clearance", "NATO"], "--clearance 'NATO': expected POLICY=LEVEL"),
        (["--nation", "KOR", "--clearance", "EU=SECRET"], "--clearance: unknown policy 'EU'"),
        (
            ["--nation", "KOR", "--clearance", "NATO=TOP"],
            "--clearance: 'TOP' is not a level of policy NATO (UNCLASSIFIED < RESTRICTED",
        ),
        (["--nation", "KOR", "--community", "Bad Name"], "--community 'Bad Name'"),
        (
            ["--nation", "KOR", "--identity", "malware--00000001-0000-4000-8000-000000000000"],
            "--identity 'malware--00000001",
        ),
    ],
)
def test_partner_add_errors(cli: Cli, args: list[str], message: str) -> None:
    failed(cli("partner", "add", "kr", *args), message)
    assert json.loads(ok(cli("partner", "list", "--json")).output) == []


def test_partner_add_rejects_a_bad_key_and_short_token(cli: Cli, tmp_path: Path) -> None:
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    failed(
        cli("partner", "add", "kr", "--nation", "KOR", "--key", str(bad_key)),
        f"{bad_key}: not a PEM public key",
    )
    short = tmp_path / "short.token"
    short.write_text("abc")
    failed(
        cli("partner", "add", "kr", "--nation", "KOR", "--token-file", str(short)),
        "the token must be at least 24 characters",
    )


def test_duplicate_partner_is_a_conflict_and_writes_no_token(cli: Cli, tmp_path: Path) -> None:
    ok(cli("partner", "add", "kr", "--nation", "KOR"))
    token_file = tmp_path / "t"
    failed(
        cli("partner", "add", "kr", "--nation", "KOR", "--token-file", str(token_file)),
        "a partner named 'kr'",
    )
    assert not token_file.exists()


# -- labels ---------------------------------------------------------------------------------


def test_label_add_prints_a_valid_marking_definition_id(cli: Cli) -> None:
    ok(cli("partner", "add", "kr", "--nation", "KOR"))
    marking_id = ok(
        cli(
            "label",
            "add",
            "NATO CONFIDENTIAL REL KOR",
            "--tlp",
            "amber",
            "--policy",
            "NATO",
            "--classification",
            "CONFIDENTIAL",
            "--releasable-to",
            "KOR",
            "--releasable-to",
            "nato-ccdcoe",
            "--handling",
            "CYBER",
            "--recipient",
            "kr",
            "--blind-match",
            "USA",
        )
    ).output.strip()
    assert marking_id.startswith("marking-definition--")
    shown = json.loads(ok(cli("show", marking_id)).output)
    parse_object(shown)
    body = next(iter(shown["extensions"].values()))
    assert body["policy"] == "NATO" and body["classification"] == "CONFIDENTIAL"
    assert body["releasable_to"] == ["KOR", "nato-ccdcoe"] and body["handling"] == ["CYBER"]
    assert body["recipients"][0].startswith("identity--") and body["blind_match"] == ["USA"]
    listed = json.loads(ok(cli("label", "list", "--json")).output)
    assert listed == [
        {"name": "NATO CONFIDENTIAL REL KOR", "marking_id": marking_id, "tlp": "amber"}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tlp", "amber", "--policy", "NATO"], "--policy and --classification go together"),
        (
            ["--tlp", "amber", "--policy", "XX", "--classification", "A"],
            "--classification: unknown policy 'XX'",
        ),
        (
            ["--tlp", "amber", "--policy", "NATO", "--classification", "TOP SECRET"],
            "'TOP SECRET' is not a level of policy NATO",
        ),
        (
            [
                "--tlp",
                "green",
                "--policy",
                "NATO",
                "--classification",
                "RESTRICTED",
                "--releasable-to",
                "South Korea",
            ],
            "--releasable-to 'South Korea'",
        ),
        (["--tlp", "green", "--releasable-to", "KOR"], "belong to a classification"),
        (["--tlp", "red", "--recipient", "nobody"], "no partner named 'nobody'"),
    ],
)
def test_label_add_errors(cli: Cli, args: list[str], message: str) -> None:
    failed(cli("label", "add", "L", *args), message)
    assert json.loads(ok(cli("label", "list", "--json")).output) == []


def test_label_add_rejects_unknown_tlp_as_usage_error(cli: Cli) -> None:
    result = cli("label", "add", "L", "--tlp", "purple")
    assert result.exit_code == 2 and "'purple' is not one of" in result.stderr


def test_duplicate_label_name(cli: Cli) -> None:
    ok(cli("label", "add", "L", "--tlp", "green"))
    failed(cli("label", "add", "L", "--tlp", "amber"), "a label named 'L' already exists")


# -- import, list, show, export ---------------------------------------------------------------


def test_import_list_show_export(cli: Cli, tmp_path: Path) -> None:
    newer = indicator(1, modified="2026-05-01T00:00:00.000Z", name="newer")
    path = write_bundle(tmp_path / "in.json", [indicator(1), newer, malware(1)])
    out = ok(cli("import", str(path))).output
    assert f"{path}: 3 stored (2 indicator, 1 malware), 0 duplicates, 0 invalid (of 3 read)" in out
    rows = json.loads(ok(cli("list", "--type", "indicator", "--json")).output)
    assert [(r["id"], r["name"], r["versions"]) for r in rows] == [(newer["id"], "newer", 2)]
    assert newer["id"] in ok(cli("list")).output
    assert unsigned(json.loads(ok(cli("show", newer["id"])).output)) == newer
    versions = json.loads(ok(cli("show", "--versions", newer["id"])).output)
    assert [v["name"] for v in versions] == ["bad address 1", "newer"]
    exported = tmp_path / "out.json"
    ok(cli("export", "-o", str(exported)))
    objects = [unsigned(o) for o in json.loads(exported.read_text())["objects"]]
    assert newer in objects and malware(1) in objects and indicator(1) not in objects
    stdout_bundle = json.loads(ok(cli("export", "--type", "malware")).output)
    assert [unsigned(o) for o in stdout_bundle["objects"]] == [malware(1)]


def test_import_invalid_exits_1_listing_every_problem(cli: Cli, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl", [indicator(1), indicator(2, confidence=200), malware(1, name=5)]
    )
    result = failed(cli("import", str(path)), f"{path}: line 2, object 1, indicator--00000002")
    assert (
        "line 3, object 2, malware--00000001-0000-4000-8000-000000000001 at name: must be a "
        "string, not integer" in result.stderr
    )
    assert f"{path}: nothing stored" in result.stderr
    assert json.loads(ok(cli("list", "--type", "indicator", "--json")).output) == []


def test_import_skip_invalid_and_json_report(cli: Cli, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [indicator(1), indicator(2, confidence=200)])
    report = json.loads(ok(cli("import", "--skip-invalid", "--json", str(path))).output)
    assert report[0]["stored"] == 1 and report[0]["invalid"] == 1
    assert report[0]["problems"][0]["path"] == "confidence"


def test_import_of_several_files_continues_after_a_bad_one(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    good = write_bundle(tmp_path / "good.json", [indicator(1)])
    result = cli("import", str(bad), str(good))
    assert result.exit_code == 1 and f"{good}: 1 stored" in result.output
    assert f"allied: error: {bad}:1" in result.stderr


def test_import_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    failed(cli("import", str(tmp_path / "absent.json")), "cannot read")


def test_show_unknown_id(cli: Cli) -> None:
    failed(
        cli("show", "indicator--00000000-0000-4000-8000-000000000000"),
        "no object indicator--00000000-0000-4000-8000-000000000000 in this node",
    )


def test_export_for_unknown_partner(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    failed(cli("export", "--for", "nobody", "-o", str(out)), "no partner named 'nobody'")
    assert not out.exists()
    to_stdout = failed(cli("export", "--for", "nobody"), "no partner named 'nobody'")
    assert to_stdout.stdout == ""  # found in review: a bundle header used to come first


def test_export_output_appears_only_when_complete(cli: Cli, tmp_path: Path) -> None:
    ok(cli("import", str(write_bundle(tmp_path / "in.json", [indicator(1)]))))
    out = tmp_path / "o.json"
    ok(cli("export", "-o", str(out)))
    assert json.loads(out.read_text())["type"] == "bundle"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.json")] == []


# -- settings and help ------------------------------------------------------------------------


def test_settings_with_environment_override(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIED_DEFAULT_TLP", "green")
    assert json.loads(ok(cli("settings", "--json")).output)["default_tlp"] == "green"
    monkeypatch.setenv("ALLIED_DEFAULT_TLP", "purple")
    failed(cli("settings"), "ALLIED_DEFAULT_TLP = 'purple': must be empty or one of clear")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["identity"],
        ["partner", "add"],
        ["label", "add"],
        ["import"],
        ["list"],
        ["show"],
        ["export"],
        ["settings"],
        ["demo"],
        ["generate"],
        ["exercise"],
        ["exercise", "run"],
        ["exercise", "validate"],
        ["exercise", "schema"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output


def test_verbose_flag_is_accepted(cli: Cli) -> None:
    assert os.environ.get("ALLIED_NODE") is None
    failed(cli("--verbose", "show", "x"), "no object x in this node")
