"""Indicator values as people write them: refanging, detection, normalisation, patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allied.ingest.observables import Observable, kind_of, observe, refang
from allied.matching.compile import Compiled, try_compile
from allied.stix.pattern import parse_pattern


@pytest.mark.parametrize(
    ("written", "kind", "value"),
    [
        ("hxxps://mod-update[.]example[.]net/login.php", "url", "https://mod-update.example.net/login.php"),
        ("hXXp://203.0.113[.]9:8080/x?a=1", "url", "http://203.0.113.9:8080/x?a=1"),
        ("http[:]//evil(.)example(.)com/", "url", "http://evil.example.com/"),
        ("fxp://files[.]example[.]org/a", "url", "ftp://files.example.org/a"),
        ("http://[2001:db8::1]/x", "url", "http://[2001:db8::1]/x"),
        ("198.51.100[.]23", "ipv4", "198.51.100.23"),
        ("198[.]51[.]100[.]23", "ipv4", "198.51.100.23"),
        (" 192.0.2.1 ", "ipv4", "192.0.2.1"),
        ("10.1.2.3/24", "ipv4", "10.1.2.0/24"),
        ("192.0.2.7/32", "ipv4", "192.0.2.7"),
        ("2001:DB8:0:0::1", "ipv6", "2001:db8::1"),
        ("2001:db8::/32", "ipv6", "2001:db8::/32"),
        ("Evil.Example.ORG.", "domain", "evil.example.org"),
        ("secure-mail[dot]gov-update[dot]org", "domain", "secure-mail.gov-update.org"),
        ("münchen.de", "domain", "xn--mnchen-3ya.de"),
        ("ß.de", "domain", "xn--zca.de"),  # IDNA 2008, as browsers resolve it (not ss.de)
        ("fe80::1%eth0", "ipv6", "fe80::1"),  # a zone id names a local link, not the address
        ("10.0.0.0/8", "ipv4", "10.0.0.0/8"),
        ("admin[at]evil[.]ru", "email", "admin@evil.ru"),
        ("Recruitment@MOD-Careers.com", "email", "recruitment@mod-careers.com"),
        ("44D88612FEA8A8F36DE82E1278ABB02F", "md5", "44d88612fea8a8f36de82e1278abb02f"),
        ("3395856CE81F2B7382DEE72602F798B642F14140", "sha1",
         "3395856ce81f2b7382dee72602f798b642f14140"),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256",
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("a" * 128, "sha512", "a" * 128),
    ],
)  # fmt: skip
def test_values_are_recognised_refanged_and_normalised(written: str, kind: str, value: str) -> None:
    assert observe(written) == Observable(kind, value)
    assert observe(written, kind) == Observable(kind, value)


@pytest.mark.parametrize(
    "written",
    ["", "   ", "not an indicator", "1.2.3", "999.1.1.1", "evil", "a b.com", "-bad.example.com",
     "http://", "http://exa mple.com/", "abc@", "@example.com", "g" * 32, "a" * 31,
     "example.123", "1.2.3.4/99", "1.2.3.4/0", "0.0.0.0/7", "::/0", "2001:db8::/31",
     "²²²²²²²²²²"],
)  # fmt: skip
def test_what_is_no_indicator_says_why(written: str) -> None:
    result = observe(written)
    assert isinstance(result, str) and result


def test_a_given_kind_is_checked_not_guessed() -> None:
    assert isinstance(observe("example.com", "ipv4"), str)
    assert "not a well-formed md5" in str(observe("e3b0c442", "md5"))
    assert observe("203.0.113.5", "ipv4") == Observable("ipv4", "203.0.113.5")
    assert isinstance(observe("2001:db8::1", "ipv4"), str)


def test_type_names_of_indicator_lists() -> None:
    assert kind_of("ip-dst") == kind_of("IP") == "ipv4"
    assert kind_of(" SHA-256 ") == "sha256"
    assert kind_of("hostname") == "domain"
    assert kind_of("email-src") == "email"
    assert kind_of("yara") is None


def test_refang_leaves_ordinary_text_alone() -> None:
    text = "Patch (see the vendor's notes) [1] and call at 10:00."
    assert refang(text) == text
    assert refang("evil[.]com and hxxps[:]//x[.]org") == "evil.com and https://x.org"


def test_patterns_are_valid_and_what_the_matcher_compiles() -> None:
    network = observe("10.20.0.0/16")
    assert isinstance(network, Observable)
    assert network.pattern == "[ipv4-addr:value ISSUBSET '10.20.0.0/16']"
    quoted = observe("http://evil.example.com/it's\\here")
    assert isinstance(quoted, Observable)
    assert quoted.pattern == "[url:value = 'http://evil.example.com/it\\'s\\\\here']"
    for written in ("198.51.100.23", "evil.example.org", "a@evil.ru", "a" * 64, "2001:db8::1",
                    "10.20.0.0/16", "https://x.example/a"):  # fmt: skip
        found = observe(written)
        assert isinstance(found, Observable)
        parse_pattern(found.pattern)
        compiled = try_compile(found.pattern)  # the matching engines take every one
        assert isinstance(compiled, Compiled) and compiled.conjunctions, found.pattern


@given(st.ip_addresses())
def test_every_ip_address_round_trips(address: object) -> None:
    found = observe(str(address))
    assert isinstance(found, Observable)
    assert found.kind == ("ipv4" if ":" not in str(address) else "ipv6")
    assert found.value == str(address)
