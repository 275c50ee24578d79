"""Generated injects: the same every time, and a log holds exactly the rows planted in it."""

from __future__ import annotations

import csv
from pathlib import Path

from allied.exercise.material import indicators, traffic

COUNTS = {"domain": 3, "ipv4": 3, "url": 2, "sha256": 2}


def test_indicators_are_a_function_of_the_inject() -> None:
    made = indicators("kor-c2", COUNTS)
    assert made == indicators("kor-c2", COUNTS)
    assert made != indicators("kor-wiper", COUNTS)
    assert [i.kind for i in made] == ["domain"] * 3 + ["ipv4"] * 3 + ["url"] * 2 + ["sha256"] * 2
    assert len({i.id for i in made}) == len({i.value for i in made}) == 10
    url = next(i for i in made if i.kind == "url")
    assert url.pattern == f"[url:value = '{url.value}']"


def test_a_csv_log_holds_each_planted_value_as_often_as_said(tmp_path: Path) -> None:
    made = indicators("x", COUNTS)
    hits = made[::2]
    [path], expected = traffic(tmp_path, "csv", seed="x", rows=2000, hits=hits)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2000 + sum(expected.values())
    for item in made:
        column = {"domain": "domain", "ipv4": "dst_ip", "url": "url", "sha256": "sha256"}[item.kind]
        found = sum(1 for row in rows if row[column] == item.value)
        assert found == expected.get(item.id, 0), item


def test_a_zeek_log_puts_each_value_in_its_own_log(tmp_path: Path) -> None:
    made = indicators("y", COUNTS)
    files, expected = traffic(tmp_path, "zeek", seed="y", rows=300, hits=made)
    assert [f.name for f in files] == ["conn.log", "dns.log", "http.log", "files.log"]
    texts = {f.name: f.read_text() for f in files}
    for text in texts.values():
        assert "#fields\t" in text and "#path\t" in text
    where = {"domain": "dns.log", "ipv4": "conn.log", "url": "http.log", "sha256": "files.log"}
    for item in made:
        value = item.value.split("/", 3)[-1] if item.kind == "url" else item.value
        assert texts[where[item.kind]].count(value) == expected[item.id], item
