"""Scenario files: the shipped one is valid, and every kind of mistake is named with its line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from allied.cli import main
from allied.exercise import shipped_scenario
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
    assert {i.kind for i in scenario.injects} == {"share", "traffic", "outage", "tamper", "request"}
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
