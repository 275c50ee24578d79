"""Tests for the STIX 2.1 pattern parser.

``stix2-patterns`` is the reference for which patterns are valid: the differential tests pin
every verdict to it, except the deliberate differences listed in the module docstring, which
have a test of their own so that a change on either side is noticed.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from allied.errors import PatternError
from allied.stix.pattern import (
    STAR,
    Binary,
    BoolOp,
    Comparison,
    ComparisonExpr,
    Constant,
    Hex,
    ObjectPath,
    Observation,
    ObservationExpr,
    ObservationOp,
    Pattern,
    Qualified,
    Qualifier,
    Repeats,
    StartStop,
    Timestamp,
    Within,
    parse_pattern,
)


def accepts(text: str) -> bool:
    try:
        parse_pattern(text)
    except PatternError:
        return False
    return True


def stix2_accepts(text: str) -> bool:
    return bool(run_validator(text, stix_version="2.1") == [])


def comparison_of(text: str) -> ComparisonExpr:
    root = parse_pattern(text).root
    assert isinstance(root, Observation)
    return root.comparison


def single(text: str) -> Comparison:
    comparison = comparison_of(text)
    assert isinstance(comparison, Comparison)
    return comparison


def cmp(path: str, op: Any, value: Any = None, negated: bool = False) -> Comparison:
    """Build a Comparison from ``type:step.step`` (plain names only) to keep expectations short."""
    object_type, _, rest = path.partition(":")
    return Comparison(ObjectPath(object_type, tuple(rest.split("."))), op, negated, value)


# --- STIX 2.1 specification, section 9 ------------------------------------------------------

SPEC_EXAMPLES = [
    r"[ipv4-addr:value = '198.51.100.1/32' OR ipv4-addr:value = '203.0.113.33/32' OR "
    r"ipv6-addr:value = '2001:0db8:dead:beef:dead:beef:dead:0001/128']",
    r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
    r"[email-message:from_ref.value MATCHES '.+\\@example\\.com$' AND "
    r"email-message:body_multipart[*].body_raw_ref.name MATCHES '^Final Report.+\\.exe$']",
    r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f'"
    r" AND file:mime_type = 'application/x-pdf']",
    r"[file:hashes.'SHA-256' = 'bf07a7fbb825fc0aae7bf4a1177b2b31fcf8a3feeaf7092761e18c859ee52a9c'"
    r" OR file:hashes.MD5 = 'cead3f77f6cda6ec00f57d76c9a6879f'] AND [file:hashes.'SHA-256' = "
    r"'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
    r"([file:hashes.MD5 = '79054025255fb1a26e4bc422aef54eb4'] FOLLOWEDBY "
    r"[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo\\bar']) WITHIN 300 SECONDS",
    r"[user-account:account_type = 'unix' AND user-account:user_id = '1007' AND "
    r"user-account:account_login = 'Peter'] AND [user-account:account_type = 'unix' AND "
    r"user-account:user_id = '1008' AND user-account:account_login = 'Paul']",
    r"[artifact:mime_type = 'application/vnd.tcpdump.pcap' AND "
    r"artifact:payload_bin MATCHES '\\xd4\\xc3\\xb2\\xa1\\x02\\x00\\x04\\x00']",
    r"[file:name = 'foo.dll' AND file:parent_directory_ref.path = 'C:\\Windows\\System32']",
    r"[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]",
    r"[file:mime_type = 'image/bmp' AND file:magic_number_hex = h'ffd8']",
    r"[network-traffic:dst_ref.type = 'ipv4-addr' AND "
    r"network-traffic:dst_ref.value = '203.0.113.33/32']",
    r"[network-traffic:dst_ref.type = 'domain-name' AND "
    r"network-traffic:dst_ref.value = 'example.com'] REPEATS 5 TIMES WITHIN 1800 SECONDS",
    r"[domain-name:value = 'www.5z8.info' AND "
    r"domain-name:resolves_to_refs[*].value = '198.51.100.1/32']",
    r"[url:value = 'http://example.com/foo' OR url:value = 'http://example.com/bar']",
    r"[x509-certificate:issuer = 'CN=WEBMAIL' AND "
    r"x509-certificate:serial_number = '4c:0b:1d:19:74:86:a7:66:b4:1a:bf:40:27:21:76:28']",
    r"[windows-registry-key:key = 'HKEY_CURRENT_USER\\Software\\CryptoLocker\\Files' OR "
    r"windows-registry-key:key = "
    r"'HKEY_CURRENT_USER\\Software\\Microsoft\\CurrentVersion\\Run\\CryptoLocker_0388']",
    r"[(file:name = 'pdf.exe' OR file:size = '371712') AND "
    r"file:created = t'2014-01-13T07:03:17Z']",
    r"[email-message:sender_ref.value = 'jdoe@example.com' AND "
    r"email-message:subject = 'Conference Info']",
    r"[x-usb-device:usbdrive.serial_number = '575833314133343231313937']",
    r"[process:command_line MATCHES '^.+>-add GlobalSign.cer -c -s -r localMachine Root$'] "
    r"FOLLOWEDBY [process:command_line MATCHES "
    r"'^.+>-add GlobalSign.cer -c -s -r localMachineTrustedPublisher$'] WITHIN 300 SECONDS",
    r"[network-traffic:dst_ref.value ISSUBSET '2001:0db8:dead:beef:0000:0000:0000:0000/64']",
    r"([file:name = 'foo.dll'] AND [windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo\\bar'])"
    r" OR [process:name = 'fooproc' OR process:name = 'procfoo']",
    r"[file:hashes.MD5 = 'cead3f77f6cda6ec00f57d76c9a69faa']",
    r"[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
    r"[directory:path LIKE 'C:\\\\Windows\\\\%\\\\foo']",
    r"[network-traffic:dst_port IN (443, 6443, 8443)]",
    r"[network-traffic:extensions.'http-request-ext'.request_header.Host = 'example.com']",
    r"[artifact:payload_bin = b'dGhpcyBpcyBhIHRlc3Q=']",
    r"[file:hashes.MD5 = '79054025255fb1a26e4bc422aef54eb4'] "
    r"START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
    r"[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo' AND "
    r"EXISTS windows-registry-key:values[*].data]",
]


@pytest.mark.parametrize("text", SPEC_EXAMPLES)
def test_spec_examples_parse_round_trip_and_agree_with_stix2(text: str) -> None:
    ast = parse_pattern(text)
    assert parse_pattern(str(ast)) == ast
    assert stix2_accepts(text)
    assert stix2_accepts(str(ast))


def test_simple_equality_ast() -> None:
    ast = parse_pattern("[ipv4-addr:value = '198.51.100.1']")
    assert ast == Pattern(Observation(cmp("ipv4-addr:value", "=", "198.51.100.1")))
    assert str(ast) == "[ipv4-addr:value = '198.51.100.1']"


def test_hash_path_keeps_quoted_key() -> None:
    comparison = single(f"[file:hashes.'SHA-256' = '{'ab' * 32}']")
    assert comparison.object_path == ObjectPath("file", ("hashes", "SHA-256"))
    assert str(comparison.object_path) == "file:hashes.'SHA-256'"


def test_extensions_path_and_list_indexes() -> None:
    text = "[network-traffic:extensions.'http-request-ext'.request_header.Host = 'x']"
    path = single(text).object_path
    assert path.steps == ("extensions", "http-request-ext", "request_header", "Host")
    assert str(path) == "network-traffic:extensions.'http-request-ext'.request_header.Host"
    steps = single("[email-message:body_multipart[*].body_raw_ref.x[+2][-1] = 1]").object_path.steps
    assert steps == ("body_multipart", STAR, "body_raw_ref", "x", 2, -1)


def test_star_index_is_not_a_key_named_star() -> None:
    star, key = single("[file:x[*] = 1]").object_path, single("[file:x.'*' = 1]").object_path
    assert star != key
    assert (str(star), str(key)) == ("file:x[*]", "file:x.'*'")


def test_quoted_and_plain_names_are_the_same_property() -> None:
    assert parse_pattern("[file:'name' = 'a']") == parse_pattern("[file:name = 'a']")
    assert str(parse_pattern("[file:x.'AND' = 1]")) == "[file:x.'AND' = 1]"


def test_comparison_precedence_and_left_associativity() -> None:
    ast = parse_pattern("[a:x = 1 OR a:y = 2 AND a:z = 3 OR a:w = 4]")
    x, y, z, w = cmp("a:x", "=", 1), cmp("a:y", "=", 2), cmp("a:z", "=", 3), cmp("a:w", "=", 4)
    assert ast.root == Observation(BoolOp("OR", BoolOp("OR", x, BoolOp("AND", y, z)), w))
    ast = parse_pattern("[(a:x = 1 OR a:y = 2) AND a:z = 3]")
    assert ast.root == Observation(BoolOp("AND", BoolOp("OR", x, y), z))
    assert str(ast) == "[(a:x = 1 OR a:y = 2) AND a:z = 3]"


def test_observation_precedence_and_qualifier_binding() -> None:
    a, b, c, d = (Observation(cmp(f"a:{n}", "=", 1)) for n in "wxyz")
    ast = parse_pattern(
        "[a:w = 1] FOLLOWEDBY [a:x = 1] OR [a:y = 1] AND [a:z = 1] WITHIN 5 SECONDS"
    )
    inner = ObservationOp("AND", c, Qualified(d, Within(5.0)))
    assert ast.root == ObservationOp("FOLLOWEDBY", a, ObservationOp("OR", b, inner))
    ast = parse_pattern("([a:w = 1] FOLLOWEDBY [a:x = 1]) WITHIN 300 SECONDS")
    assert ast.root == Qualified(ObservationOp("FOLLOWEDBY", a, b), Within(300.0))
    ast = parse_pattern("[a:w = 1] REPEATS 5 TIMES WITHIN 1800.5 SECONDS")
    assert ast.root == Qualified(Qualified(a, Repeats(5)), Within(1800.5))
    ast = parse_pattern("[a:w = 1] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00.5Z'")
    assert ast.root == Qualified(a, StartStop("2016-06-01T00:00:00Z", "2016-07-01T00:00:00.5Z"))


def test_operators_and_negation() -> None:
    comparison = comparison_of
    assert comparison("[a:x == 1]") == cmp("a:x", "=", 1)
    assert comparison("[a:x NOT <> 1]") == cmp("a:x", "!=", 1, negated=True)
    assert comparison("[a:x NOT LIKE 'a%']") == cmp("a:x", "LIKE", "a%", negated=True)
    assert comparison("[a:x MATCHES '^a$']") == cmp("a:x", "MATCHES", "^a$")
    assert comparison("[a:x ISSUBSET '10.0.0.0/8']") == cmp("a:x", "ISSUBSET", "10.0.0.0/8")
    assert comparison("[a:x NOT ISSUPERSET '10.0.0.0/8']") == cmp(
        "a:x", "ISSUPERSET", "10.0.0.0/8", negated=True
    )
    assert comparison("[EXISTS a:x]") == cmp("a:x", "EXISTS")
    assert comparison("[NOT EXISTS a:x]") == cmp("a:x", "EXISTS", negated=True)
    for op in ("<", "<=", ">", ">="):
        assert comparison(f"[a:x {op} -2.5]") == cmp("a:x", op, -2.5)


def test_typed_constants() -> None:
    text = (
        "[a:x IN ('it\\'s \\\\ here', -3, +4, .5, -0.25, true, false, "
        "t'2016-02-29T23:59:60.123Z', b'YWJj', h'ffD8', h'')]"
    )
    value = single(text).value
    assert isinstance(value, tuple)
    expected: tuple[Constant, ...] = (
        "it's \\ here", -3, 4, 0.5, -0.25, True, False,
        Timestamp("2016-02-29T23:59:60.123Z"), Binary("YWJj"), Hex("ffD8"), Hex(""),
    )  # fmt: skip
    assert value == expected
    assert [type(v) for v in value] == [type(v) for v in expected]
    assert single("[a:x IN ()]").value == ()
    different: list[object] = [Timestamp("x"), Hex("x"), Binary("x"), "x"]
    assert all(a != b for n, a in enumerate(different) for b in different[n + 1 :])


def test_ast_is_frozen_slotted_and_hashable() -> None:
    ast = parse_pattern("[a:x = 1 OR a:y = 2] AND [a:z IN (1, 2)] WITHIN 5 SECONDS")
    assert hash(ast) == hash(parse_pattern(str(ast)))
    assert len({ast, parse_pattern(str(ast))}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ast.root = ast.root  # type: ignore[misc]
    assert not hasattr(ast.root, "__dict__")
    assert not hasattr(Timestamp("2016-01-01T00:00:00Z"), "__dict__")
    chains = {parse_pattern(f"[a:x = 1 OR a:x = {i} OR a:y = 3]") for i in range(50)}
    assert len({hash(c) for c in chains}) == 50
    leaf = cmp("a:x", "=", 1)
    assert BoolOp("AND", leaf, leaf) != ObservationOp("AND", leaf, leaf)  # type: ignore[arg-type]


def test_long_or_list_compares_hashes_and_prints_without_recursion() -> None:
    text = "[" + " OR ".join(f"ipv4-addr:value = '10.0.{i // 256}.{i % 256}'" for i in range(3000))
    ast = parse_pattern(text + "]")
    again = parse_pattern(str(ast))
    assert again == ast and hash(again) == hash(ast)
    assert parse_pattern(text + " OR ipv4-addr:value = 'x']") != ast
    root = ast.root
    assert isinstance(root, Observation) and root != BoolOp("OR", root.comparison, root.comparison)


def test_error_carries_pattern_and_position() -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern("[file:size EQUALS 5]")
    error = caught.value
    assert (error.reason, error.position, error.pattern) == (
        "unknown operator 'EQUALS'",
        11,
        "[file:size EQUALS 5]",
    )
    assert str(error) == "unknown operator 'EQUALS' at position 11"


INVALID = [
    ("[ipv4-addr:value = '198.51.100.1'", "expected ']', found the end", 33),
    ("[file:name = 'abc]", "unterminated string", 13),
    ("[file:size EQUALS 5]", "unknown operator 'EQUALS'", 11),
    (r"[file:name = 'C:\temp']", r"invalid escape '\t' (only \' and \\ are allowed)", 16),
    ("[file:created = t'2016-13-01T00:00:00Z']", "invalid timestamp: expected "
     "t'YYYY-MM-DDThh:mm:ss[.s]Z'", 16),
    ("[file:created = t'2016-01-01T00:00:00']", "invalid timestamp: expected "
     "t'YYYY-MM-DDThh:mm:ss[.s]Z'", 16),
    ("[file:created = t'2016-01-01 00:00:00Z']", "invalid timestamp: expected "
     "t'YYYY-MM-DDThh:mm:ss[.s]Z'", 16),
    ("[file:magic_number_hex = h'abc']", "invalid hex constant: expected an even number of hex "
     "digits", 25),
    ("[artifact:payload_bin = b'====']", "invalid binary constant: expected base64", 24),
    ("file:size = 1280", "expected '[' or '(', found 'file'", 0),
    ("", "expected '[' or '(', found the end", 0),
    ("[file:size = ]", "expected a constant, found ']'", 13),
    ("[file:size = 1] within 2 seconds", "expected AND, OR, FOLLOWEDBY, a qualifier or the end, "
     "found 'within'", 16),
    ("[file:size = 1] WITHIN 5 HOURS", "expected 'SECONDS', found 'HOURS'", 25),
    ("[file:size = 1] WITHIN -5 SECONDS", "expected a number of seconds, found '-5'", 23),
    ("[file:size = 1] REPEATS 1.5 TIMES", "expected a whole number of times, found '1.5'", 24),
    ("[file:name = 'a'] START t'2016-01-01T00:00:00Z'", "expected 'STOP', found the end", 47),
    ("[file:name LIKE 5]", "expected a string after LIKE, found '5'", 16),
    ("[file:size > true]", "expected an orderable constant after >, found 'true'", 13),
    ("[file:name NOT EXISTS]", "expected a comparison operator, EXISTS goes first, found "
     "'EXISTS'", 15),
    ("[NOT file:name = 'a']", "expected an object path such as file:name, found 'NOT'", 1),
    ("[file.size = 1280]", "expected ':' after the object type, found '.'", 5),
    ("[file:x.y-z = 1]", "expected a property name (quote keywords and names with hyphens), "
     "found 'y-z'", 8),
    ("[file:LAST = 1]", "expected a property name (quote keywords and names with hyphens), "
     "found 'LAST'", 6),
    ("[file:x[1.5] = 1]", "expected a list index (an integer or *), found '1.5'", 8),
    ("[file:name IN ('a',)]", "expected a constant, found ')'", 19),
    ("[file:size = 01]", "expected ']', found '1'", 14),
    ("[file:name = 'a']]", "expected AND, OR, FOLLOWEDBY, a qualifier or the end, found ']'",
     17),
    ("[file:name = 'a'] AND", "expected '[' or '(', found the end", 21),
    ('[file:name = "a"]', "strings take single quotes", 13),
    ("[file:name = 'a' AND ipv4-addr:value = '1.2.3.4']",
     "AND joins comparisons of different object types (file and ipv4-addr)", 17),
    ("[file:name = 'a'] WITHIN 1 SECONDS WITHIN 2 SECONDS", "duplicate WITHIN qualifier", 35),
    ("[file:hashes.'SHA-256' = 'f00']", "'f00' is not a valid SHA-256 hash", 25),
    ("/* note */ [file:name = 'a']", "no comment may precede the first '['", 0),
    ("(" * 101 + "[file:name = 'a']" + ")" * 101, "nested more than 100 deep", 100),
    ("[file:size = " + "9" * 5000 + "]", "integer longer than 4300 digits", 13),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason", "position"), INVALID, ids=lambda v: repr(v)[:40])
def test_invalid_patterns_report_reason_and_position(text: str, reason: str, position: int) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(text)
    assert (caught.value.reason, caught.value.position) == (reason, position)


# --- Differential corpus against stix2-patterns -----------------------------------------------

VALID_CORPUS = [
    "[file:size = 1280]",
    "[file:size != 1280]",
    "[file:size <= 1024 AND file:size > 0]",
    "[file:name = 'my_file_name']",
    "[file:extended_properties.'ntfs-ext'.sid = '234']",
    "[user-account:value = 'Peter'] AND [user-account:value != 'Paul'] WITHIN 5 SECONDS",
    "[file:file_system_properties.file_name LIKE 'name%']",
    "[file:file_name IN ('test.txt', 'test2.exe', 'README')]",
    "[network-connection:extended_properties[0].source_payload MATCHES 'dGVzdHRlc3R0ZXN0']",
    "[x_whatever:detected == t'2018-03-22T12:11:14.1Z']",
    "[foo:bar=1] REPEATS 9 TIMES",
    "( [(network-traffic:dst_port IN(443,6443,8443) AND network-traffic:src_packets != 0) ])",
    "([a:x = 'k']) WITHIN 5 SECONDS WITHIN 6 SECONDS",
    "([a:x = 'k'] REPEATS 2 TIMES) REPEATS 2 TIMES",
    "[file:hashes[*] = '8665c8d477534008b3058b72e2dae8ae']",
    "[file:hashes.md5 = 'D41D8CD98F00B204E9800998ECF8427E']",
    "[file:hashes.sha_1 = 'not checked: unknown algorithm']",
    "[a:x = 1]AND[a:y = 2]",
    "[a:x = 'a'AND a:y = 'b']",
    "[a:x <> 1]",
    "[a:x = true] OR [a:y = false]",
    "[a:x IN ()]",
    "[a:x IN (1, 'a', true, t'2020-01-01T00:00:00Z', h'00', b'YQ==')]",
    "[NOT EXISTS a:x.y[*]]",
    "[a:x = 1 AND NOT EXISTS a:y]",
    "[a:x = 00.5]",
    "[a:x = -.5]",
    "[a:x = +0]",
    "[a:x = -0]",
    r"[a:x = 'a\'b\\c']",
    "[t:b = 1]",
    "[X_Y:x = 1]",
    "[x-:x = 1]",
    "[a:'x y'.'' = 1]",
    "[a : x . y [ * ] = 1]",
    "[a:x /* inner */ = 1] // trailing",
    "[a:x = 1] /* after */",
    "[a:x = 1]\n\tFOLLOWEDBY\n[a:y = 2]",
    "[a:x\u00a0=\u30001]",
    "[a:x = 1] WITHIN 0 SECONDS",
    "[a:x = 1] WITHIN .5 SECONDS",
    "[a:x = 1] REPEATS +2 TIMES",
    "[a:x = 1] REPEATS 5TIMES",
    "[a:x = 1] START t'2020-01-01T00:00:00Z' STOP t'2019-01-01T00:00:00Z' WITHIN 5 SECONDS",
    "[a:x = h'AbCd' OR a:x = b'YWJjYQ==' OR a:x = b'YWI=']",
    "[a:x = t'2020-02-30T23:59:60.999Z']",
    "[(a:x = 1 OR b:y = 2) AND (b:z = 3 OR c:w = 4)]",
    "[a:x = 1 AND (a:y = 2 OR b:z = 3)]",
    "[a:x = 'é ☃ 中']",
    "[a:x = 9999999999999999999999999999999999]",
    "[a:x MATCHES '^a' AND a:y ISSUPERSET '10.0.0.0/8']",
    "[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']",
]

INVALID_CORPUS = [
    "[file:size = ]",
    "[file:hashes.MD5 = cead3f77f6cda6ec00f57d76c9a6879f]",
    "[file.size = 1280]",
    "[file:name MATCHES /.*\\.dll/]",
    "[win-registry-key:key = 'x'] WITHIN ]",
    "[win-registry-key:key = 'x'] WITHIN 5 HOURS]",
    "[network-traffic:dst_ref.value ISSUBSET ]",
    "[file:hashes.MD5 =? 'cead3f77f6cda6ec00f57d76c9a6879f']",
    "[x_whatever:detected == t'2457-73-22T32:81:84.1Z']",
    "[foo:bar=1] within 2 seconds",
    "[file:hashes.'SHA-256' = 'f00']",
    "[win-registry-key:key = 'x'] REPEATS 2 TIMES REPEATS 3 TIMES",
    "[a:x = 1] START t'2016-06-01T01:30:00Z' STOP t'2016-06-01T02:20:00Z' "
    "START t'2016-06-01T01:30:00Z' STOP t'2016-06-01T02:20:00Z'",
    "[a:x = 1] AND [a:x = 2] WITHIN 1 SECONDS WITHIN 2 SECONDS",
    "/* c */ [a:x = 1]",
    "( // c\n[a:x = 1])",
    "()",
    "[]",
    "[a:x]",
    "[a:x = 1 AND]",
    "[a:x IN (1,)]",
    "[a:x IN 1]",
    "[a:x IN ((1))]",
    "[a:x NOT NOT = 1]",
    "[NOT a:x = 1]",
    "[a:x NOT EXISTS]",
    "[EXISTS a]",
    "[EXISTS (a:x)]",
    "[a:x = 'a''b']",
    "[a:x = True]",
    "[a:x > true]",
    "[a:x LIKE 5]",
    "[a:x = 01]",
    "[a:x = 1.]",
    "[a:x = 1e5]",
    "[a:x = - 1]",
    "[a:LAST = 1]",
    "[a:x.AND = 1]",
    "[a:x.y-z = 1]",
    "[a:1x = 1]",
    "[true:x = 1]",
    "[a:x.y[1.5] = 1]",
    "[a:x.y[a] = 1]",
    "[a:x = b'']",
    "[a:x = b'Y']",
    "[a:x = b'YQ=']",
    "[a:x = b'YW=j']",
    "[a:x = h'0']",
    "[a:x = t'2020-01-01T00:00:61Z']",
    "[a:x = t'2020-01-01T00:00:00+00:00']",
    "[a:x = t'2020-01-01T00:00:00.Z']",
    "[a:x = 1] WITHIN -5 SECONDS",
    "[a:x = 1] REPEATS 1.5 TIMES",
    "[a:x = 1] START '2020' STOP t'2020-01-01T00:00:00Z'",
    r"[a:x = 'a\nb']",
    "[a:x = 'abc\\']",
    "[a:x = 1] /* unterminated",
    "[a:x = 1] AND ()",
    "[a:x\x1c= 1]",
    "[a:x\u200b= 1]",
    "[file:hashes.MD5 = 5]",
    "[file:hashes.MD5 = h'd41d8cd98f00b204e9800998ecf8427e']",
    "[x:hashes.foo.'SHA\\'1' = 'zz']",
    "[file:'hashes'.MD5 != 'zz']",
    "[file:hashes.MD5 > 'zz']",
]


@pytest.mark.parametrize(
    ("text", "valid"),
    [(t, True) for t in VALID_CORPUS] + [(t, False) for t in INVALID_CORPUS],
    ids=lambda v: repr(v)[:50],
)
def test_verdict_agrees_with_stix2_patterns(text: str, valid: bool) -> None:
    assert (accepts(text), stix2_accepts(text)) == (valid, valid)


def stix2_outcome(text: str) -> str:
    try:
        return "valid" if stix2_accepts(text) else "invalid"
    except Exception:  # the reference implementation crashes on a few inputs
        return "crash"


# (pattern, our reason or None when we accept, what stix2-patterns does)
DIVERGENT = [
    ("[file:name = 'a' AND ipv4-addr:value = '1.2.3.4']",
     "AND joins comparisons of different object types (file and ipv4-addr)", "valid"),
    ("[(a:x = 1 OR b:y = 2) AND (c:z = 3 OR d:w = 4)]",
     "AND joins comparisons of different object types (a / b and c / d)", "valid"),
    ("[a:x = 1 AND EXISTS b:y]", "AND joins comparisons of different object types (a and b)",
     "valid"),
    ("[file:hashes.MD5 IN ('d41d8cd98f00b204e9800998ecf8427e')]", None, "invalid"),
    ("[file:hashes.MD5 IN ('d41d8cd98f00b204e9800998ecf8427e', 'zz')]",
     "'zz' is not a valid MD5 hash", "invalid"),
    ("[file:hashes.MD5 LIKE 'd41d%']", None, "invalid"),
    ("[file:hashes.'SHA-256' MATCHES '^aec0']", None, "invalid"),
    ("[file:hashes.MD6 = 'd41d8cd98f00b204e9800998ecf8427ezz']",
     "'d41d8cd98f00b204e9800998ecf8427ezz' is not a valid MD6 hash", "valid"),
    ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e\n']",
     "'d41d8cd98f00b204e9800998ecf8427e\n' is not a valid MD5 hash", "valid"),
    ("", "expected '[' or '(', found the end", "crash"),
    ("[file:x[-1] = 1]", None, "crash"),
    ("[file:hashes[0] = 'zz']", None, "crash"),
    ("(" * 101 + "[a:x = 1]" + ")" * 101, "nested more than 100 deep", "valid"),
    ("[a:x = " + "9" * 5000 + "]", "integer longer than 4300 digits", "valid"),
    ("[a:x = " + "9" * 400 + ".5]", "number out of floating-point range", "valid"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason", "theirs"), DIVERGENT, ids=lambda v: repr(v)[:40])
def test_deliberate_differences_from_stix2_patterns(
    text: str, reason: str | None, theirs: str
) -> None:
    try:
        parse_pattern(text)
        ours = None
    except PatternError as error:
        ours = error.reason
    assert (ours, stix2_outcome(text)) == (reason, theirs)


# --- Property tests ---------------------------------------------------------------------------

TYPES = ["file", "ipv4-addr", "network-traffic", "x-acme-widget", "t"]
KEYS = ["name", "value", "x_1", "_y", "SHA-256", "http-request-ext", "two words", "AND", "true",
        "*", "it's", "back\\slash", "", "résumé"]  # fmt: skip

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac: f"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z",
    st.integers(0, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23),
    st.integers(0, 59), st.integers(0, 60), st.sampled_from(["", ".0", ".5", ".123456789"]),
)  # fmt: skip
orderable: st.SearchStrategy[Constant] = st.one_of(
    texts,
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    timestamps.map(Timestamp),
    st.binary(max_size=6).map(lambda b: Hex(b.hex())),
    st.binary(min_size=1, max_size=9).map(lambda b: Binary(base64.b64encode(b).decode())),
)
primitive: st.SearchStrategy[Constant] = st.one_of(orderable, st.booleans())


def paths(object_type: str) -> st.SearchStrategy[ObjectPath]:
    step = st.one_of(st.sampled_from(KEYS), st.integers(0, 99), st.just(STAR))
    return st.builds(
        lambda first, rest: ObjectPath(object_type, (first, *rest)),
        st.sampled_from(KEYS),
        st.lists(step, max_size=3),
    )


def comparisons(object_type: str) -> st.SearchStrategy[Comparison]:
    path, neg = paths(object_type), st.booleans()
    return st.one_of(
        st.builds(Comparison, path, st.sampled_from(["=", "!="]), neg, primitive),
        st.builds(Comparison, path, st.sampled_from(["<", "<=", ">", ">="]), neg, orderable),
        st.builds(Comparison, path, st.just("IN"), neg, st.lists(primitive, max_size=3).map(tuple)),
        st.builds(
            Comparison, path, st.sampled_from(["LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"]), neg,
            texts,
        ),
        st.builds(Comparison, path, st.just("EXISTS"), neg),
    )  # fmt: skip


def comparison_exprs(object_type: str) -> st.SearchStrategy[ComparisonExpr]:
    # One object type per observation, so every AND is satisfiable.
    return st.recursive(
        comparisons(object_type),
        lambda kids: st.builds(BoolOp, st.sampled_from(["AND", "OR"]), kids, kids),
        max_leaves=5,
    )


qualifiers: st.SearchStrategy[Qualifier] = st.one_of(
    st.builds(Within, st.floats(0, 1e9)),
    st.builds(Repeats, st.integers(0, 1000)),
    st.builds(StartStop, timestamps, timestamps),
)
observations = st.sampled_from(TYPES).flatmap(comparison_exprs).map(Observation)
observation_exprs: st.SearchStrategy[ObservationExpr] = st.recursive(
    observations,
    lambda kids: st.one_of(
        st.builds(ObservationOp, st.sampled_from(["AND", "OR", "FOLLOWEDBY"]), kids, kids),
        st.builds(Qualified, kids, qualifiers),
    ),
    max_leaves=4,
)
patterns = st.builds(Pattern, observation_exprs)
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(patterns)
def test_printed_ast_round_trips_and_is_valid_for_stix2(ast: Pattern) -> None:
    text = str(ast)
    assert parse_pattern(text) == ast
    assert stix2_accepts(text), text


class Renderer:
    """Writes an AST with randomly chosen spacing, comments, spellings and redundant parentheses,
    to exercise the parser on more than the canonical text ``__str__`` produces."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw
        self.started = False  # the validator refuses comments before the first '['

    def gap(self, needed: bool = False) -> str:
        spaces = [" ", "  ", "\n", "\t", "\u00a0"]
        if self.started:
            spaces += [" /* c */ ", "// c\n"]
        return str(self.draw(st.sampled_from(spaces if needed else ["", *spaces])))

    def flip(self) -> bool:
        return bool(self.draw(st.booleans()))

    def key(self, key: str) -> str:
        plain = str(ObjectPath("t", (key,)))[2:]
        quoted = "'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return quoted if plain.startswith("'") or self.flip() else plain

    def path(self, path: ObjectPath) -> str:
        out = [path.object_type, self.gap(), ":", self.gap()]
        for n, step in enumerate(path.steps):
            g = self.gap()
            if isinstance(step, str):
                out += [self.key(step)] if n == 0 else [g, ".", self.gap(), self.key(step)]
            else:
                index = "*" if step is STAR else ("+" if self.flip() else "") + str(step)
                out += [g, "[", self.gap(), index, self.gap(), "]"]
        return "".join(out)

    def constant(self, value: Constant) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return ("+" if value >= 0 and self.flip() else "") + str(value)
        if isinstance(value, float):
            text = format(Decimal(repr(value)), "f")
            return text if "." in text else text + ".0"
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return str(value)

    def comparison(self, node: ComparisonExpr, parent: int = 0) -> str:
        if isinstance(node, BoolOp):
            own = 1 if node.op == "OR" else 2
            left, right = self.comparison(node.left, own), self.comparison(node.right, own + 1)
            text = f"{left}{self.gap(True)}{node.op}{self.gap(True)}{right}"
            wrap = own < parent or self.flip()
        else:
            neg = f"NOT{self.gap(True)}" if node.negated else ""
            if node.op == "EXISTS":
                text = f"{neg}EXISTS{self.gap(True)}{self.path(node.object_path)}"
            else:
                op = {"=": ["=", "=="], "!=": ["!=", "<>"]}.get(node.op, [node.op])
                value = node.value
                shown = (
                    "(" + ",".join(self.gap() + self.constant(v) for v in value) + self.gap() + ")"
                    if isinstance(value, tuple)
                    else self.constant(value)  # type: ignore[arg-type]
                )
                spell = self.draw(st.sampled_from(op))
                text = f"{self.path(node.object_path)}{self.gap(True)}{neg}{spell} {shown}"
            wrap = self.draw(st.integers(0, 4)) == 0
        return f"({self.gap()}{text}{self.gap()})" if wrap else text

    def observation(self, node: ObservationExpr, parent: int = 0) -> str:
        if isinstance(node, ObservationOp):
            own = {"FOLLOWEDBY": 1, "OR": 2, "AND": 3}[node.op]
            left, right = self.observation(node.left, own), self.observation(node.right, own + 1)
            text = f"{left}{self.gap(True)}{node.op}{self.gap(True)}{right}"
            return f"({text})" if own < parent or self.flip() else text
        if isinstance(node, Qualified):
            inner = self.observation(node.expr, 9)
            if not isinstance(node.expr, Observation) and not inner.startswith("("):
                inner = f"({inner})"  # a repeated qualifier kind is only allowed on (...)
            words = str(node.qualifier).split(" ")
            return inner + "".join(self.gap(True) + w for w in words)
        self.started = True
        text = f"[{self.gap()}{self.comparison(node.comparison)}{self.gap()}]"
        return f"({text})" if self.draw(st.integers(0, 4)) == 0 else text


@SLOW
@given(patterns, st.data())
def test_varied_spellings_parse_to_the_same_ast(ast: Pattern, data: st.DataObject) -> None:
    text = Renderer(data.draw).observation(ast.root)
    assert parse_pattern(text) == ast, text
    assert stix2_accepts(text), text


MUTATIONS = list("[]():.,*'\"=<>!+-/ \\tbh059aZ_") + ["AND", "NOT", "''", "t'", "/*", "\n"]


def explained(text: str, ours: str | None, theirs: str) -> bool:
    """The only disagreements allowed are the deliberate ones tested above."""
    return theirs == "crash" or (
        theirs == "valid" and ours is not None and ours.startswith("AND joins")
    )


@SLOW
@given(patterns, st.data())
def test_mutated_patterns_get_the_same_verdict_as_stix2(ast: Pattern, data: st.DataObject) -> None:
    text = str(ast)
    at = data.draw(st.integers(0, len(text)))
    insert = data.draw(st.sampled_from(MUTATIONS))
    mutated = data.draw(
        st.sampled_from([text[:at] + insert + text[at:], text[:at] + text[at + 1 :]])
    )
    try:
        parse_pattern(mutated)
        ours = None
    except PatternError as error:
        ours = error.reason
    theirs = stix2_outcome(mutated)
    assume(not explained(mutated, ours, theirs))
    assert (ours is None) == (theirs == "valid"), (mutated, ours, theirs)
