"""`allied match` end to end: live indicators of the store, sightings stored signed and in the
ledger, shared with the indicator's originator only under the label chosen."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stix2validator
from click.testing import Result

from allied.ingest.stix_import import import_file
from allied.integrity.origin import Origin
from allied.node import Node
from allied.policy.egress import Egress
from allied.stix.labels import TLP2_IDS
from tests.conftest import indicator, peer_key, signed_as, write_bundle
from tests.federation.conftest import ALLIED

Cli = Callable[..., Result]
GREEN = [TLP2_IDS["green"]]


def _world(node_dir: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """KOR's indicators (signed by KOR, received from it), one revoked, one expired, one not
    matchable; a log that hits two of them."""
    pem, key = peer_key(tmp_path, "kor")
    with Node.open(node_dir) as node:
        kor = node.add_partner("KOR", nation="KOR", communities=["council"], key_file=pem)
        node.add_partner("USA", nation="USA", communities=["council"])
        made = {
            "ip": indicator(1, pattern="[ipv4-addr:value = '10.0.0.0/8']"),
            "domain": indicator(2, pattern="[domain-name:value = 'evil.example']"),
            "revoked": indicator(3, pattern="[domain-name:value = 'good.example']", revoked=True),
            "expired": indicator(
                4,
                pattern="[domain-name:value = 'good.example']",
                valid_until="2026-03-02T00:00:00Z",
            ),
            "like": indicator(5, pattern="[domain-name:value LIKE '%.bad']"),
        }
        made = {
            name: {**data, "created_by_ref": kor.identity_id, "object_marking_refs": GREEN}
            for name, data in made.items()
        }
        signed = dict(zip(made, signed_as(list(made.values()), key, kor.identity_id), strict=True))
        import_file(node, write_bundle(tmp_path / "kor.json", signed.values()), received_from="KOR")
    (tmp_path / "log.csv").write_text(
        "ts,src_ip,dst_ip,domain\n"
        "2026-03-01T10:00:00Z,10.1.2.3,8.8.8.8,evil.example\n"
        "2026-03-01T11:00:00Z,192.168.1.1,10.9.9.9,good.example\n"
        "2026-03-01T12:00:00Z,1.1.1.1,1.1.1.2,EVIL.example.\n"
        "bad,row,with,too,many\n"
    )
    return signed


def test_match_stores_a_signed_sighting_per_hit(cli: Cli, node_dir: Path, tmp_path: Path) -> None:
    made = _world(node_dir, tmp_path)
    out = tmp_path / "sightings.json"
    result = cli("match", str(tmp_path / "log.csv"), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == 3 and report["malformed"] == 1
    assert report["problems"][0]["line"] == 5
    assert {h["indicator"]: h["count"] for h in report["hits"]} == {
        made["ip"]["id"]: 2,
        made["domain"]["id"]: 2,
    }
    assert [u["indicator"] for u in report["unsupported"]] == [made["like"]["id"]]
    bundle = json.loads(out.read_text())
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    assert {s["sighting_of_ref"] for s in sightings} == {made["ip"]["id"], made["domain"]["id"]}
    ip = next(s for s in sightings if s["sighting_of_ref"] == made["ip"]["id"])
    assert (ip["first_seen"], ip["last_seen"]) == (
        "2026-03-01T10:00:00.000Z",
        "2026-03-01T11:00:00.000Z",
    )
    values = {o.get("value") for o in bundle["objects"] if o["type"] == "ipv4-addr"}
    assert values == {"10.1.2.3", "10.9.9.9"}
    assert stix2validator.validate_string(out.read_text()).is_valid
    assert cli("verify").exit_code == 0
    with Node.open(node_dir) as node:  # unmarked: nothing of it leaves the node
        released = {json.loads(t)["id"] for t in Egress(node).release("KOR")}
        assert not released & {s["id"] for s in sightings}


def test_a_second_run_keeps_the_stored_observables(
    cli: Cli, node_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(node_dir, tmp_path)
    signed: list[str] = []
    admit = Origin.admit

    def counted(self: Origin, obj: Any) -> Any:
        signed.append(obj.id)
        return admit(self, obj)

    monkeypatch.setattr(Origin, "admit", counted)
    runs = []
    for n in (1, 2):
        signed.clear()
        out = tmp_path / f"run{n}.json"
        result = cli("match", str(tmp_path / "log.csv"), "-o", str(out), "--json")
        assert result.exit_code == 0, result.output
        objects = json.loads(out.read_text())["objects"]
        runs.append((json.loads(result.output)["stored"], objects, list(signed)))
    (first, before, signed_first), (second, after, signed_second) = runs
    observables = [o for o in before if o["type"] not in ("sighting", "observed-data")]
    assert observables and first == len(before) == len(signed_first)
    # new sightings and observed-data, signed and stored; the observables as they were
    assert second == len(signed_second) == len(after) - len(observables)
    assert not set(signed_second) & {o["id"] for o in observables}
    kept = {o["id"]: o for o in after if o["type"] not in ("sighting", "observed-data")}
    assert kept == {o["id"]: o for o in observables}  # as stored, signature and all
    assert cli("verify").exit_code == 0


def test_shared_sightings_reach_the_originator_under_the_label(
    cli: Cli, node_dir: Path, tmp_path: Path
) -> None:
    made = _world(node_dir, tmp_path)
    label = cli("label", "add", "for KOR", "--tlp", "amber", "--recipient", "KOR")
    assert label.exit_code == 0, label.output
    out = tmp_path / "shared.json"
    result = cli(
        "match", str(tmp_path / "log.csv"), "--share", "--label", "for KOR", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    objects = json.loads(out.read_text())["objects"]
    ids = {o["id"] for o in objects}
    with Node.open(node_dir) as node:
        egress = Egress(node)
        assert ids <= {json.loads(t)["id"] for t in egress.release("KOR")}
        assert not ids & {json.loads(t)["id"] for t in egress.release("USA")}
    assert made["ip"]["id"] in {o.get("sighting_of_ref") for o in objects}


def test_match_errors(cli: Cli, node_dir: Path, tmp_path: Path) -> None:
    _world(node_dir, tmp_path)
    missing = cli("match", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    alone = cli("match", str(tmp_path / "log.csv"), "--share")
    assert alone.exit_code == 2 and "--share and --label go together" in alone.stderr
    mapped = cli("match", str(tmp_path / "log.csv"), "--map", "src_ip=source")
    assert mapped.exit_code == 1 and "no column 'source'" in mapped.stderr
    wrong = cli("match", str(tmp_path / "log.csv"), "--map", "nonsense")
    assert wrong.exit_code == 2 and "expected FIELD=COLUMN" in wrong.stderr


@pytest.mark.slow
def test_both_engines_give_the_same_sightings(node_dir: Path, tmp_path: Path) -> None:
    """`allied match --engine spark` as a process, beside the default engine."""
    made = _world(node_dir, tmp_path)
    reports = {}
    for engine in ("duckdb", "spark"):
        done = subprocess.run(
            [ALLIED, "--node", str(node_dir), "match", str(tmp_path / "log.csv"), "--engine",
             engine, "--spark-master", "local[1]", "--json"],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "ALLIED_NODE": ""},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        reports[engine] = json.loads(done.stdout)
    assert reports["duckdb"]["hits"] == reports["spark"]["hits"]
    assert {h["indicator"] for h in reports["spark"]["hits"]} == {
        made["ip"]["id"],
        made["domain"]["id"],
    }
    assert reports["spark"]["malformed"] == 1 and reports["spark"]["rows"] == 3
