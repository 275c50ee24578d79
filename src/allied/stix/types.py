"""The STIX 2.1 object types, written down once as data.

Every type of the specification (OASIS STIX 2.1, sections 4-7) with its properties, which are
required, what each must hold, closed vocabularies, and the cross-property rules the spec
states in prose. The validator walks these tables; nothing else in Allied knows property names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from allied.stix.checks import (
    Check,
    Issues,
    at_least_one,
    binary,
    boolean,
    dictionary,
    enum,
    hashes,
    hex_string,
    identifier,
    identifier_except,
    integer,
    ip_value,
    list_of,
    matching,
    nested,
    not_both,
    number,
    open_vocab,
    ordered,
    requires,
    string,
    timestamp,
)

# The tables below are laid out by hand, one type per block, to read like the spec.
# fmt: off
Rule = Callable[[dict[str, Any], str, Issues], None]
Kind = Literal["sdo", "sro", "sco", "meta"]


@dataclass(frozen=True)
class TypeSpec:
    name: str
    kind: Kind
    props: Mapping[str, Check]
    required: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    #: Predefined extensions (SCOs), by extension name.
    extensions: Mapping[str, Check] = field(default_factory=dict)


SDO_TYPES = (
    "attack-pattern", "campaign", "course-of-action", "grouping", "identity", "incident",
    "indicator", "infrastructure", "intrusion-set", "location", "malware", "malware-analysis",
    "note", "observed-data", "opinion", "report", "threat-actor", "tool", "vulnerability",
)
SCO_TYPES = (
    "artifact", "autonomous-system", "directory", "domain-name", "email-addr", "email-message",
    "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex", "network-traffic", "process",
    "software", "url", "user-account", "windows-registry-key", "x509-certificate",
)

EXTENSION_TYPES = (
    "new-sdo", "new-sco", "new-sro", "property-extension", "toplevel-property-extension",
)

_text = string()
_lang = matching(r"^[a-zA-Z]{2,8}(-[a-zA-Z0-9]{1,8})*\Z", "an RFC 5646 language tag")
_mime = matching(
    r"^(application|audio|font|image|message|model|multipart|text|video)/[a-zA-Z0-9.+_-]+\Z",
    "a MIME type (IANA media type)",
)
_cpe = matching(r"^cpe:2\.3:[aho*\-]:", "a CPE 2.3 name (cpe:2.3:...)")
_charset = matching(r"^[a-zA-Z0-9/\\.+_:-]{2,250}\Z", "a character set name")
_name = string(min_length=1)
_strings = list_of(string())
_vocabs = list_of(open_vocab())
_ts = timestamp()
_port = integer(0, 65535)
_count = integer(0)

external_reference = nested(
    {
        "source_name": _name,
        "description": _text,
        "url": _text,
        "hashes": hashes(),
        "external_id": _text,
    },
    required=("source_name",),
    rules=(at_least_one("description", "url", "external_id"),),
)
kill_chain_phase = nested(
    {"kill_chain_name": _name, "phase_name": _name},
    required=("kill_chain_name", "phase_name"),
)
granular_marking = nested(
    {
        "lang": _lang,
        "marking_ref": identifier("marking-definition"),
        "selectors": list_of(_name),
    },
    required=("selectors",),
    rules=(at_least_one("lang", "marking_ref"), not_both("lang", "marking_ref")),
)
_extension_instance = nested(
    {"extension_type": enum(*EXTENSION_TYPES)},
    open_=True,
)

# Common properties (STIX 2.1 section 3.2), per kind of object.
SDO_COMMON: dict[str, Check] = {
    "type": _name,
    "spec_version": enum("2.1"),
    "id": identifier(),
    "created_by_ref": identifier("identity"),
    "created": timestamp(millis=True),
    "modified": timestamp(millis=True),
    "revoked": boolean(),
    "labels": _strings,
    "confidence": integer(0, 100),
    "lang": _lang,
    "external_references": list_of(external_reference),
    "object_marking_refs": list_of(identifier("marking-definition")),
    "granular_markings": list_of(granular_marking),
    "extensions": dictionary(),
}
SDO_REQUIRED = ("type", "spec_version", "id", "created", "modified")

SCO_COMMON: dict[str, Check] = {
    "type": _name,
    "spec_version": enum("2.1"),
    "id": identifier(),
    "object_marking_refs": list_of(identifier("marking-definition")),
    "granular_markings": list_of(granular_marking),
    "defanged": boolean(),
    "extensions": dictionary(),
}
SCO_REQUIRED = ("type", "id")

_seen = (ordered("first_seen", "last_seen"),)


_VERSIONED = (ordered("created", "modified"),)


def _sdo(name: str, props: dict[str, Check], required: tuple[str, ...] = (),
         rules: tuple[Rule, ...] = (), kind: Kind = "sdo") -> TypeSpec:
    return TypeSpec(name, kind, {**SDO_COMMON, **props}, SDO_REQUIRED + required,
                    _VERSIONED + rules)


def _sco(name: str, props: dict[str, Check], required: tuple[str, ...] = (),
         rules: tuple[Rule, ...] = (), extensions: Mapping[str, Check] | None = None) -> TypeSpec:
    return TypeSpec(name, "sco", {**SCO_COMMON, **props}, SCO_REQUIRED + required, rules,
                    extensions or {})


_NOT_SDO_OR_SCO = ("relationship", "sighting", "marking-definition", "language-content",
                   "extension-definition", "bundle")
_sdo_or_sco = identifier_except(*_NOT_SDO_OR_SCO)
_any_sdo = identifier_except(*_NOT_SDO_OR_SCO, *SCO_TYPES)
_sdo_refs = list_of(identifier())
_software = identifier("software")

SDOS = [
    _sdo("attack-pattern", {"name": _name, "description": _text, "aliases": _strings,
                            "kill_chain_phases": list_of(kill_chain_phase)}, ("name",)),
    _sdo("campaign", {"name": _name, "description": _text, "aliases": _strings,
                      "first_seen": _ts, "last_seen": _ts, "objective": _text},
         ("name",), _seen),
    _sdo("course-of-action", {"name": _name, "description": _text, "action_type": open_vocab(),
                              "os_execution_envs": _strings, "action_bin": binary(),
                              "action_reference": external_reference}, ("name",),
         (not_both("action_bin", "action_reference"),)),
    _sdo("grouping", {"name": _text, "description": _text, "context": open_vocab(),
                      "object_refs": _sdo_refs}, ("context", "object_refs")),
    _sdo("identity", {"name": _name, "description": _text, "roles": _strings,
                      "identity_class": open_vocab(), "sectors": _vocabs,
                      "contact_information": _text}, ("name",)),
    _sdo("incident", {"name": _name, "description": _text,
                      "kill_chain_phases": list_of(kill_chain_phase)}, ("name",)),
    _sdo("indicator", {"name": _text, "description": _text, "indicator_types": _vocabs,
                       "pattern": _name, "pattern_type": open_vocab(), "pattern_version": _text,
                       "valid_from": _ts, "valid_until": _ts,
                       "kill_chain_phases": list_of(kill_chain_phase)},
         ("pattern", "pattern_type", "valid_from"),
         (ordered("valid_from", "valid_until", strict=True),)),
    _sdo("infrastructure", {"name": _name, "description": _text,
                            "infrastructure_types": _vocabs, "aliases": _strings,
                            "kill_chain_phases": list_of(kill_chain_phase),
                            "first_seen": _ts, "last_seen": _ts}, ("name",), _seen),
    _sdo("intrusion-set", {"name": _name, "description": _text, "aliases": _strings,
                           "first_seen": _ts, "last_seen": _ts, "goals": _strings,
                           "resource_level": open_vocab(), "primary_motivation": open_vocab(),
                           "secondary_motivations": _vocabs}, ("name",), _seen),
    _sdo("location", {"name": _text, "description": _text, "latitude": number(-90, 90),
                      "longitude": number(-180, 180), "precision": number(0),
                      "region": open_vocab(), "country": _name,
                      "administrative_area": _text, "city": _text, "street_address": _text,
                      "postal_code": _text}, (),
         (at_least_one("region", "country", "latitude"), requires("latitude", "longitude"),
          requires("longitude", "latitude"), requires("precision", "latitude"))),
    _sdo("malware", {"name": _name, "description": _text, "malware_types": _vocabs,
                     "is_family": boolean(), "aliases": _strings,
                     "kill_chain_phases": list_of(kill_chain_phase), "first_seen": _ts,
                     "last_seen": _ts, "operating_system_refs": list_of(_software),
                     "architecture_execution_envs": _vocabs,
                     "implementation_languages": _vocabs, "capabilities": _vocabs,
                     "sample_refs": list_of(identifier("file", "artifact"))},
         ("is_family",), _seen + (lambda o, p, i: _family_needs_name(o, p, i),)),
    _sdo("malware-analysis", {"product": _name, "version": _text, "host_vm_ref": _software,
                              "operating_system_ref": _software,
                              "installed_software_refs": list_of(_software),
                              "configuration_version": _text, "modules": _strings,
                              "analysis_engine_version": _text,
                              "analysis_definition_version": _text, "submitted": _ts,
                              "analysis_started": _ts, "analysis_ended": _ts,
                              "result_name": _text, "result": open_vocab(),
                              "analysis_sco_refs": list_of(identifier(*SCO_TYPES)),
                              "sample_ref": identifier("file", "network-traffic", "artifact")},
         ("product",), (at_least_one("result", "analysis_sco_refs"),)),
    _sdo("note", {"abstract": _text, "content": _name, "authors": _strings,
                  "object_refs": _sdo_refs}, ("content", "object_refs")),
    _sdo("observed-data", {"first_observed": _ts, "last_observed": _ts,
                           "number_observed": integer(1, 999_999_999),
                           "objects": dictionary(), "object_refs": _sdo_refs},
         ("first_observed", "last_observed", "number_observed"),
         (ordered("first_observed", "last_observed"), not_both("objects", "object_refs"),
          at_least_one("objects", "object_refs"))),
    _sdo("opinion", {"explanation": _text, "authors": _strings,
                     "opinion": enum("strongly-disagree", "disagree", "neutral", "agree",
                                     "strongly-agree"),
                     "object_refs": _sdo_refs}, ("opinion", "object_refs")),
    _sdo("report", {"name": _name, "description": _text, "report_types": _vocabs,
                    "published": _ts, "object_refs": _sdo_refs},
         ("name", "published", "object_refs")),
    _sdo("threat-actor", {"name": _name, "description": _text, "threat_actor_types": _vocabs,
                          "aliases": _strings, "first_seen": _ts, "last_seen": _ts,
                          "roles": _vocabs, "goals": _strings, "sophistication": open_vocab(),
                          "resource_level": open_vocab(), "primary_motivation": open_vocab(),
                          "secondary_motivations": _vocabs, "personal_motivations": _vocabs},
         ("name",), _seen),
    _sdo("tool", {"name": _name, "description": _text, "tool_types": _vocabs,
                  "aliases": _strings, "kill_chain_phases": list_of(kill_chain_phase),
                  "tool_version": _text}, ("name",)),
    _sdo("vulnerability", {"name": _name, "description": _text}, ("name",)),
    _sdo("relationship", {"relationship_type": _name, "description": _text,
                          "source_ref": _sdo_or_sco, "target_ref": _sdo_or_sco,
                          "start_time": _ts, "stop_time": _ts},
         ("relationship_type", "source_ref", "target_ref"),
         (ordered("start_time", "stop_time", strict=True),), kind="sro"),
    _sdo("sighting", {"description": _text, "first_seen": _ts, "last_seen": _ts,
                      "count": integer(0, 999_999_999), "sighting_of_ref": _any_sdo,
                      "observed_data_refs": list_of(identifier("observed-data")),
                      "where_sighted_refs": list_of(identifier("identity", "location")),
                      "summary": boolean()},
         ("sighting_of_ref",), _seen, kind="sro"),
]


def _family_needs_name(obj: dict[str, Any], path: str, issues: Issues) -> None:
    if obj.get("is_family") is True and "name" not in obj:
        issues.append(("name", "is required when is_family is true"))


_net_addr = identifier("ipv4-addr", "ipv6-addr", "mac-addr", "domain-name")
_mime_part = nested(
    {"body": _text, "body_raw_ref": identifier("artifact", "file"), "content_type": _text,
     "content_disposition": _text},
    rules=(not_both("body", "body_raw_ref"),),
)
_windows_registry_value = nested(
    {"name": _text, "data": _text,
     "data_type": enum("REG_NONE", "REG_SZ", "REG_EXPAND_SZ", "REG_BINARY", "REG_DWORD",
                       "REG_DWORD_BIG_ENDIAN", "REG_DWORD_LITTLE_ENDIAN", "REG_LINK",
                       "REG_MULTI_SZ", "REG_RESOURCE_LIST", "REG_FULL_RESOURCE_DESCRIPTION",
                       "REG_RESOURCE_REQUIREMENTS_LIST", "REG_QWORD", "REG_INVALID_TYPE")},
)
_pe_section = nested({"name": _name, "size": _count, "entropy": number(), "hashes": hashes()},
                     required=("name",))
_pe_optional_header = nested(
    {name: integer() for name in (
        "magic_hex", "major_linker_version", "minor_linker_version", "size_of_code",
        "size_of_initialized_data", "size_of_uninitialized_data", "address_of_entry_point",
        "base_of_code", "base_of_data", "image_base", "section_alignment", "file_alignment",
        "major_os_version", "minor_os_version", "major_image_version", "minor_image_version",
        "major_subsystem_version", "minor_subsystem_version", "win32_version_value_hex",
        "size_of_image", "size_of_headers", "checksum_hex", "subsystem_hex",
        "dll_characteristics_hex", "size_of_stack_reserve", "size_of_stack_commit",
        "size_of_heap_reserve", "size_of_heap_commit", "loader_flags_hex",
        "number_of_rva_and_sizes")}
    | {name: hex_string() for name in (
        "magic_hex", "win32_version_value_hex", "checksum_hex", "subsystem_hex",
        "dll_characteristics_hex", "loader_flags_hex")}
    | {"hashes": hashes()},
)

FILE_EXTENSIONS: dict[str, Check] = {
    "ntfs-ext": nested({"sid": _text, "alternate_data_streams": list_of(nested(
        {"name": _name, "hashes": hashes(), "size": _count}, required=("name",)))},
        rules=(at_least_one("sid", "alternate_data_streams"),)),
    "raster-image-ext": nested({"image_height": integer(), "image_width": integer(),
                                "bits_per_pixel": integer(), "exif_tags": dictionary()},
                               rules=(at_least_one("image_height", "image_width",
                                                   "bits_per_pixel", "exif_tags"),)),
    "pdf-ext": nested({"version": _text, "is_optimized": boolean(),
                       "document_info_dict": dictionary(string()), "pdfid0": _text,
                       "pdfid1": _text}),
    "archive-ext": nested({"contains_refs": list_of(identifier("file", "directory")),
                           "comment": _text}, required=("contains_refs",)),
    "windows-pebinary-ext": nested(
        {"pe_type": open_vocab(), "imphash": _text, "machine_hex": hex_string(),
         "number_of_sections": _count, "time_date_stamp": _ts,
         "pointer_to_symbol_table_hex": hex_string(), "number_of_symbols": _count,
         "size_of_optional_header": _count, "characteristics_hex": hex_string(),
         "file_header_hashes": hashes(), "optional_header": _pe_optional_header,
         "sections": list_of(_pe_section)}, required=("pe_type",)),
}
NETWORK_EXTENSIONS: dict[str, Check] = {
    "http-request-ext": nested({"request_method": _name, "request_value": _name,
                                "request_version": _text, "request_header": dictionary(),
                                "message_body_length": _count,
                                "message_body_data_ref": identifier("artifact")},
                               required=("request_method", "request_value")),
    "icmp-ext": nested({"icmp_type_hex": hex_string(), "icmp_code_hex": hex_string()},
                       required=("icmp_type_hex", "icmp_code_hex")),
    "socket-ext": nested(
        {"address_family": enum("AF_UNSPEC", "AF_INET", "AF_IPX", "AF_APPLETALK",
                                "AF_NETBIOS", "AF_INET6", "AF_IRDA", "AF_BTH"),
         "is_blocking": boolean(), "is_listening": boolean(), "options": dictionary(integer()),
         "socket_type": enum("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM",
                             "SOCK_SEQPACKET"),
         "socket_descriptor": _count, "socket_handle": integer()},
        required=("address_family",)),
    "tcp-ext": nested({"src_flags_hex": hex_string(), "dst_flags_hex": hex_string()},
                      rules=(at_least_one("src_flags_hex", "dst_flags_hex"),)),
}
PROCESS_EXTENSIONS: dict[str, Check] = {
    "windows-process-ext": nested(
        {"aslr_enabled": boolean(), "dep_enabled": boolean(), "priority": _text,
         "owner_sid": _text, "window_title": _text, "startup_info": dictionary(),
         "integrity_level": enum("low", "medium", "high", "system")}),
    "windows-service-ext": nested(
        {"service_name": _text, "descriptions": _strings, "display_name": _text,
         "group_name": _text,
         "start_type": enum("SERVICE_AUTO_START", "SERVICE_BOOT_START",
                            "SERVICE_DEMAND_START", "SERVICE_DISABLED",
                            "SERVICE_SYSTEM_ALERT"),
         "service_dll_refs": list_of(identifier("file")),
         "service_type": enum("SERVICE_KERNEL_DRIVER", "SERVICE_FILE_SYSTEM_DRIVER",
                              "SERVICE_WIN32_OWN_PROCESS", "SERVICE_WIN32_SHARE_PROCESS"),
         "service_status": enum("SERVICE_CONTINUE_PENDING", "SERVICE_PAUSE_PENDING",
                                "SERVICE_PAUSED", "SERVICE_RUNNING", "SERVICE_START_PENDING",
                                "SERVICE_STOP_PENDING", "SERVICE_STOPPED")}),
}
USER_ACCOUNT_EXTENSIONS: dict[str, Check] = {
    "unix-account-ext": nested({"gid": integer(), "groups": _strings, "home_dir": _text,
                                "shell": _text}),
}
_X509_V3 = nested({name: _text for name in (
    "basic_constraints", "name_constraints", "policy_constraints", "key_usage",
    "extended_key_usage", "subject_key_identifier", "authority_key_identifier",
    "subject_alternative_name", "issuer_alternative_name", "subject_directory_attributes",
    "crl_distribution_points", "inhibit_any_policy", "certificate_policies",
    "policy_mappings")} | {"private_key_usage_period_not_before": _ts,
                           "private_key_usage_period_not_after": _ts})


def _any_property_beyond_common(obj: dict[str, Any], path: str, issues: Issues) -> None:
    """process, windows-registry-key and x509-certificate: the spec asks for at least one
    property of their own (or, for process, one of its extensions)."""
    if not any(name not in SCO_COMMON or name == "extensions" for name in obj):
        issues.append((path, "needs at least one property beyond the common ones"))


_addr = {"value": _name}
_ipv4 = {"value": ip_value(4)}
_ipv6 = {"value": ip_value(6)}
SCOS = [
    _sco("artifact", {"mime_type": _mime, "payload_bin": binary(), "url": _text,
                      "hashes": hashes(),
                      "encryption_algorithm": enum("AES-256-GCM", "ChaCha20-Poly1305",
                                                   "mime-type-indicated"),
                      "decryption_key": _text}, (),
         (not_both("payload_bin", "url"), at_least_one("payload_bin", "url"),
          requires("url", "hashes"), requires("decryption_key", "encryption_algorithm"))),
    _sco("autonomous-system", {"number": _count, "name": _text, "rir": _text}, ("number",)),
    _sco("directory", {"path": _name, "path_enc": _charset, "ctime": _ts, "mtime": _ts,
                       "atime": _ts, "contains_refs": list_of(identifier("file", "directory"))},
         ("path",)),
    _sco("domain-name", {**_addr, "resolves_to_refs": list_of(identifier(
        "ipv4-addr", "ipv6-addr", "domain-name"))}, ("value",)),
    _sco("email-addr", {**_addr, "display_name": _text,
                        "belongs_to_ref": identifier("user-account")}, ("value",)),
    _sco("email-message", {"is_multipart": boolean(), "date": _ts, "content_type": _text,
                           "from_ref": identifier("email-addr"),
                           "sender_ref": identifier("email-addr"),
                           "to_refs": list_of(identifier("email-addr")),
                           "cc_refs": list_of(identifier("email-addr")),
                           "bcc_refs": list_of(identifier("email-addr")),
                           "message_id": _text, "subject": _text,
                           "received_lines": _strings,
                           "additional_header_fields": dictionary(), "body": _text,
                           "body_multipart": list_of(_mime_part),
                           "raw_email_ref": identifier("artifact")}, ("is_multipart",),
         (lambda o, p, i: _multipart_rule(o, p, i),)),
    _sco("file", {"hashes": hashes(), "size": _count, "name": _text, "name_enc": _charset,
                  "magic_number_hex": hex_string(), "mime_type": _mime, "ctime": _ts,
                  "mtime": _ts, "atime": _ts, "parent_directory_ref": identifier("directory"),
                  "contains_refs": list_of(identifier()), "content_ref": identifier("artifact")},
         (), (at_least_one("hashes", "name"),), FILE_EXTENSIONS),
    _sco("ipv4-addr", {**_ipv4, "resolves_to_refs": list_of(identifier("mac-addr")),
                       "belongs_to_refs": list_of(identifier("autonomous-system"))},
         ("value",)),
    _sco("ipv6-addr", {**_ipv6, "resolves_to_refs": list_of(identifier("mac-addr")),
                       "belongs_to_refs": list_of(identifier("autonomous-system"))},
         ("value",)),
    _sco("mac-addr", dict(_addr), ("value",)),
    _sco("mutex", {"name": _name}, ("name",)),
    _sco("network-traffic", {"start": _ts, "end": _ts, "is_active": boolean(),
                             "src_ref": _net_addr, "dst_ref": _net_addr, "src_port": _port,
                             "dst_port": _port, "protocols": list_of(_name),
                             "src_byte_count": _count, "dst_byte_count": _count,
                             "src_packets": _count, "dst_packets": _count,
                             "ipfix": dictionary(), "src_payload_ref": identifier("artifact"),
                             "dst_payload_ref": identifier("artifact"),
                             "encapsulates_refs": list_of(identifier("network-traffic")),
                             "encapsulated_by_ref": identifier("network-traffic")},
         ("protocols",), (at_least_one("src_ref", "dst_ref"), ordered("start", "end"),
                          lambda o, p, i: _active_has_no_end(o, p, i)), NETWORK_EXTENSIONS),
    _sco("process", {"is_hidden": boolean(), "pid": integer(), "created_time": _ts,
                     "cwd": _text, "command_line": _text,
                     "environment_variables": dictionary(string()),
                     "opened_connection_refs": list_of(identifier("network-traffic")),
                     "creator_user_ref": identifier("user-account"),
                     "image_ref": identifier("file"), "parent_ref": identifier("process"),
                     "child_refs": list_of(identifier("process"))}, (),
         (_any_property_beyond_common,), PROCESS_EXTENSIONS),
    _sco("software", {"name": _name, "cpe": _cpe, "swid": _text, "languages": _strings,
                      "vendor": _text, "version": _text}, ("name",)),
    _sco("url", dict(_addr), ("value",)),
    _sco("user-account", {"user_id": _text, "credential": _text, "account_login": _text,
                          "account_type": open_vocab(), "display_name": _text,
                          "is_service_account": boolean(), "is_privileged": boolean(),
                          "can_escalate_privs": boolean(), "is_disabled": boolean(),
                          "account_created": _ts, "account_expires": _ts,
                          "credential_last_changed": _ts, "account_first_login": _ts,
                          "account_last_login": _ts}, (), (), USER_ACCOUNT_EXTENSIONS),
    _sco("windows-registry-key", {"key": _text, "values": list_of(_windows_registry_value),
                                  "modified_time": _ts,
                                  "creator_user_ref": identifier("user-account"),
                                  "number_of_subkeys": _count}, (),
         (_any_property_beyond_common,)),
    _sco("x509-certificate", {"is_self_signed": boolean(), "hashes": hashes(),
                              "version": _text, "serial_number": _text,
                              "signature_algorithm": _text, "issuer": _text,
                              "validity_not_before": _ts, "validity_not_after": _ts,
                              "subject": _text, "subject_public_key_algorithm": _text,
                              "subject_public_key_modulus": _text,
                              "subject_public_key_exponent": integer(),
                              "x509_v3_extensions": _X509_V3}, (),
         (_any_property_beyond_common,)),
]


def _multipart_rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
    if obj.get("is_multipart") is True and "body" in obj:
        issues.append(("body", "must not be present when is_multipart is true"))
    if obj.get("is_multipart") is False and "body_multipart" in obj:
        issues.append(("body_multipart", "must not be present when is_multipart is false"))


def _active_has_no_end(obj: dict[str, Any], path: str, issues: Issues) -> None:
    if obj.get("is_active") is True and "end" in obj:
        issues.append(("end", "must not be present when is_active is true"))


_META_COMMON = {
    "type": _name,
    "spec_version": enum("2.1"),
    "id": identifier(),
    "created_by_ref": identifier("identity"),
    "created": timestamp(millis=True),
    "external_references": list_of(external_reference),
    "object_marking_refs": list_of(identifier("marking-definition")),
    "granular_markings": list_of(granular_marking),
    "extensions": dictionary(),
}


def _marking_definition_rule(obj: dict[str, Any], path: str, issues: Issues) -> None:
    """A marking is either the 2.0-style ``definition_type`` + ``definition`` or extensions."""
    if "definition_type" in obj or "definition" in obj:
        if "definition_type" not in obj or "definition" not in obj:
            issues.append((path, "definition_type and definition go together"))
    elif "extensions" not in obj:
        issues.append((path, "needs definition_type and definition, or extensions"))
    if obj.get("definition_type") == "tlp":
        tlp = obj.get("definition")
        colour = tlp.get("tlp") if isinstance(tlp, dict) else None
        if colour not in ("white", "green", "amber", "red"):
            issues.append(("definition.tlp", f"must be white, green, amber or red, not {colour!r}"))


META = [
    TypeSpec(
        "marking-definition",
        "meta",
        {**_META_COMMON, "name": _text, "definition_type": open_vocab(),
         "definition": dictionary()},
        ("type", "spec_version", "id", "created"),
        (_marking_definition_rule,),
    ),
    TypeSpec(
        "language-content",
        "meta",
        {**SDO_COMMON, "object_ref": identifier(), "object_modified": timestamp(millis=True),
         "contents": dictionary(dictionary())},
        SDO_REQUIRED + ("object_ref", "contents"),
        _VERSIONED,
    ),
    TypeSpec(
        "extension-definition",
        "meta",
        {**SDO_COMMON, "name": _name, "description": _text, "schema": _name,
         "version": _name, "extension_types": list_of(enum(*EXTENSION_TYPES)),
         "extension_properties": _strings},
        SDO_REQUIRED + ("created_by_ref", "name", "schema", "version", "extension_types"),
        _VERSIONED,
    ),
]

TYPES: dict[str, TypeSpec] = {spec.name: spec for spec in SDOS + SCOS + META}
EXTENSION_INSTANCE = _extension_instance
# fmt: on
