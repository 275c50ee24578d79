"""Scenario files: the shipped one is valid, and every kind of mistake is named with its line."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from allied.cli import main
from allied.config import DATABASE_ENV
from allied.errors import ConfigError
from allied.exercise import shipped_scenario
from allied.exercise.cluster import Cluster
from allied.exercise.scenario import ScenarioError, parse_scenario, schema

GOOD = textwrap.dedent(
    """\
    name: small drill
    partners:
      KOR: {nation: KOR, clearances: {NATO: SECRET}, communities: [kor-usa]}
      USA: {nation: USA, clearances: {NATO: SECRET}, communities: [kor-usa]}
    peers:
      - [KOR, USA]
    labels:
      kor-usa: {tlp: green}
    injects:
      - at: 1
        id: first
        kind: share
        by: KOR
        label: kor-usa
        indicators: {domain: 2}
      - at: 2
        kind: traffic
        by: USA
        of: first
        hits: 1
    """
)


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="drill.yaml")
    return [(p.line, p.path, p.message) for p in caught.value.problems]


def test_the_shipped_scenario_is_valid_and_has_every_kind_of_inject() -> None:
    scenario = parse_scenario(shipped_scenario().read_text(), source="three-nations.yaml")
    assert set(scenario.partners) == {"KOR", "USA", "NATO"}
    kinds = {i.kind for i in scenario.injects}
    assert kinds == {"share", "traffic", "blind", "outage", "tamper", "request"}
    assert [i.at for i in scenario.injects] == sorted(i.at for i in scenario.injects)
    assert scenario.partners["NATO"].nation == "NATO"
    assert scenario.labels["kor-usa-amber"].releasable_to == ("KOR", "USA")


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(schema())


def test_a_valid_small_scenario_gets_defaults() -> None:
    scenario = parse_scenario(GOOD)
    assert scenario.sync_interval == 1 and scenario.settle == 10
    [share, traffic] = scenario.injects
    assert share.id == "first" and traffic.id == "traffic-2"
    assert traffic.title.startswith("USA's sensors")
    assert scenario.sources_of("USA") == ["KOR"]


def test_shape_errors_name_their_lines_and_paths() -> None:
    text = GOOD.replace("USA: {nation: USA,", "USA: {nation: usa, colour: red,").replace(
        "kor-usa: {tlp: green}", "kor-usa: {tlp: purple}"
    )
    found = problems(text)
    assert (4, "partners.USA", "unknown field 'colour'") in found
    assert any(line == 4 and path == "partners.USA.nation" for line, path, _ in found)
    assert (
        8,
        "labels.kor-usa.tlp",
        "'purple' is not one of: clear, green, amber, amber+strict, red",
    ) in found


def test_an_inject_of_an_unknown_kind_or_missing_field_is_located() -> None:
    text = GOOD.replace("    kind: traffic\n", "    kind: trafic\n").replace(
        "    indicators: {domain: 2}\n", ""
    )
    found = problems(text)
    assert (10, "injects[0]", "'indicators' is missing") in found
    assert any(line == 16 and path == "injects[1].kind" for line, path, _ in found)


def test_names_that_are_not_defined_are_reported_with_their_lines() -> None:
    text = (
        GOOD.replace("  - [KOR, USA]", "  - [KOR, USA]\n  - [KOR, FRA]")
        .replace("label: kor-usa\n", "label: secret-label\n")
        .replace("of: first", "of: nothing")
    )
    found = problems(text)
    assert (7, "peers[1][1]", "'FRA' is not a partner of the scenario (KOR, USA)") in found
    assert (
        15,
        "injects[0].label",
        "'secret-label' is not a label of the scenario (kor-usa)",
    ) in found
    assert (20, "injects[1].of", "'nothing' is not the id of an earlier share inject") in found


def test_impossible_injects_are_refused() -> None:
    text = GOOD + (
        "  - at: 3\n    kind: tamper\n    link: [USA, NATO]\n    for: 5\n"
        "  - at: 4\n    kind: outage\n    node: USA\n    for: 10\n"
        "  - at: 5\n    kind: traffic\n    by: USA\n    of: first\n    hits: 5\n"
    )
    found = problems(text)
    messages = {(line, message) for line, _, message in found}
    assert (23, "'NATO' is not a partner of the scenario (KOR, USA)") in messages
    assert (23, "USA does not pull from NATO: no such peering") in messages
    assert (29, "USA is offline at 5 s") in messages
    assert (33, "5 hits, but first shares 2") in messages


def test_a_file_that_is_not_yaml_names_the_line() -> None:
    found = problems("name: x\npartners: [unclosed\n")
    assert len(found) == 1
    line, _, message = found[0]
    assert line == 3 and message.startswith("not YAML")


def test_exercise_validate_lists_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("hits: 1", "hits: -1").replace("at: 1", "at: soon"))
    result = CliRunner().invoke(main, ["exercise", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: line 10 at injects[0].at: 'soon' is not of type 'number'" in result.output
    assert f"{bad}: line 20 at injects[1].hits: -1 is less than the minimum of 0" in result.output
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = CliRunner().invoke(main, ["exercise", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid: 2 partners, 1 peerings, 2 injects" in result.output


def test_exercise_schema_prints_the_schema() -> None:
    result = CliRunner().invoke(main, ["exercise", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "Allied exercise scenario"


LABELS = """\
  kor-usa: {tlp: green, policy: EU, classification: X}
  open: {tlp: clear, releasable_to: [KOR]}
  wide:
    tlp: amber
    policy: NATO
    classification: RESTRICTED
    releasable_to: [KOR]
    configured:
      KOR: {releasable_to: ['not a nation!']}"""


def test_what_a_node_would_refuse_at_setup_is_found_first() -> None:
    text = (
        GOOD.replace("{NATO: SECRET}, communities: [kor-usa]}\n  USA", "{NATO: TOP}, "
                     "communities: [kor-usa]}\n  USA", 1)
        .replace("  kor-usa: {tlp: green}", LABELS)
        .replace("name: small drill\n", "name: small drill\nsettings: "
                 "{store_url: 'sqlite:////tmp/x.db', sync_timeout: soon}\n")
    )  # fmt: skip
    found = {(line, message) for line, _, message in problems(text)}
    levels = "UNCLASSIFIED, RESTRICTED, CONFIDENTIAL, SECRET"
    assert (4, f"'TOP' is not a level of NATO ({levels})") in found
    assert (9, "unknown policy 'EU' (known: NATO)") in found
    assert (10, "releasable_to and handling belong to a classification") in found
    assert any(line == 17 and "'not a nation!'" in message for line, message in found)
    assert (2, "store_url is not set by a scenario") in found
    assert any(line == 2 and "sync_timeout" in message for line, message in found)


def test_names_yaml_reads_as_booleans_or_numbers_must_be_quoted() -> None:
    text = GOOD.replace("  USA: {nation: USA,", "  NO: {nation: NOR,").replace(
        "[KOR, USA]", "[KOR, 'NO']"
    )
    assert problems(text) == [(4, "", "the name 'NO' is read as a bool: quote it (\"NO\")")]


def test_ids_are_unique_and_an_inject_of_a_later_share_is_refused() -> None:
    text = (
        GOOD.replace("  - at: 2\n    kind: traffic", "  - at: 0.5\n    kind: traffic")
        .replace("    id: first\n", "    id: traffic-2\n")
        .replace("of: first", "of: traffic-2")
    )
    found = {(line, message) for line, _, message in problems(text)}
    assert (16, "inject id 'traffic-2' is used twice") in found
    assert (19, "'traffic-2' is not the id of an earlier share inject") in found


def test_partners_alike_but_for_case_and_empty_shares_are_refused() -> None:
    text = (
        GOOD.replace("  USA: {nation: USA,", "  kor: {nation: USA,")
        .replace("[KOR, USA]", "[KOR, kor]")
        .replace("indicators: {domain: 2}", "indicators: {domain: 0}")
        .replace("by: USA", "by: kor")
        .replace("hits: 1", "hits: 0")
    )
    found = {(line, message) for line, _, message in problems(text)}
    assert (4, "kor and KOR differ only in case") in found
    assert (15, "shares no indicators") in found


def test_a_blind_match_needs_the_two_to_be_peers() -> None:
    blind = "  - {at: 3, kind: blind, by: USA, with: KOR, of: first, hits: 1}\n"
    [*_, parsed] = parse_scenario(GOOD + blind).injects
    assert (parsed.kind, parsed.get("with")) == ("blind", "KOR")
    assert parsed.title == "USA blind-matches its logs against KOR's first"
    found = problems(GOOD + blind.replace("with: KOR", "with: USA"))
    assert found == [(21, "injects[2]", "USA holds no token at USA: not peers")]


def test_a_drill_refuses_to_put_every_node_in_one_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_ENV, "postgresql://allied@127.0.0.1:1/allied")
    scenario = parse_scenario(shipped_scenario().read_text(), source="three-nations.yaml")
    cluster = Cluster(scenario, tmp_path, time.monotonic)
    with pytest.raises(ConfigError, match="ALLIED_DATABASE_URL is set"):
        cluster.build()
    assert not (tmp_path / "nodes").exists()
