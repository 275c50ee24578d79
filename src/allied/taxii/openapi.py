"""The OpenAPI 3.0 description of the node's HTTP API (TAXII 2.1 and the ledger endpoints),
written out rather than generated, so that it says exactly what the server does: media
types, every status an endpoint answers with, and the shape of every body. The fuzzing tests
(schemathesis) hold the server to it."""

from __future__ import annotations

from typing import Any

from allied.taxii.protocol import MEDIA_TYPE

_STRING = {"type": "string"}
_FLAG = {"type": "boolean"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "bad parameters or body",
        401: "no valid partner token",
        403: "not allowed for this partner",
        404: "does not exist, or is not shared with this partner",
        406: "the client does not accept TAXII 2.1",
        413: "request body or envelope too large",
        415: "the body is not TAXII 2.1 JSON",
        422: "the body is not a TAXII envelope",
    }
    return {
        str(status): {"description": texts[status], "content": _content(_ref("Error"))}
        for status in statuses
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or _STRING,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STRING}


_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z"
_STIX_ID = r"[a-z0-9][a-z0-9-]+--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_TYPE_NAME = r"[a-z0-9][a-z0-9-]+"
_VERSION = f"(last|first|all|{_TIME})"
_SPEC = r"[0-9]\.[0-9]"


def _listed(item: str) -> dict[str, str]:
    return {"type": "string", "pattern": f"^{item}(,{item})*$"}


_ADDED_AFTER = _query(
    "added_after",
    "only objects added after this time (RFC 3339, UTC)",
    {"type": "string", "pattern": f"^{_TIME}$"},
)
_LIMIT = _query("limit", "at most this many per page", {"type": "integer", "minimum": 1})
_NEXT = _query("next", "the next page, as the previous one said")
_MATCH_ID = _query("match[id]", "comma-separated STIX ids", _listed(_STIX_ID))
_MATCH_TYPE = _query("match[type]", "comma-separated STIX types", _listed(_TYPE_NAME))
_MATCH_VERSION = _query(
    "match[version]", "last, first, all or timestamps, comma-separated", _listed(_VERSION)
)
_MATCH_SPEC = _query("match[spec_version]", "comma-separated STIX spec versions", _listed(_SPEC))
_PAGE = [_ADDED_AFTER, _LIMIT, _NEXT]
_DATE_HEADERS = {
    "X-TAXII-Date-Added-First": {"schema": _STRING, "description": "first date_added"},
    "X-TAXII-Date-Added-Last": {"schema": _STRING, "description": "last date_added"},
}
_READ_ERRORS = (400, 401, 403, 404, 406)


def _get(summary: str, schema: str, params: list[dict[str, Any]], *, headers: bool = False):  # type: ignore[no-untyped-def]
    ok: dict[str, Any] = {"description": "OK", "content": _content(_ref(schema))}
    if headers:
        ok["headers"] = _DATE_HEADERS
    return {
        "summary": summary,
        "parameters": params,
        "responses": {"200": ok, **_errors(*_READ_ERRORS)},
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": _STRING,
            "description": _STRING,
            "error_id": _STRING,
            "error_code": _STRING,
            "http_status": _STRING,
            "external_details": _STRING,
            "details": {"type": "object"},
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": _STRING,
            "description": _STRING,
            "contact": _STRING,
            "default": _STRING,
            "api_roots": {"type": "array", "items": _STRING},
        },
    },
    "ApiRoot": {
        "type": "object",
        "required": ["title", "versions", "max_content_length"],
        "properties": {
            "title": _STRING,
            "description": _STRING,
            "versions": {"type": "array", "items": _STRING},
            "max_content_length": {"type": "integer"},
        },
    },
    "Collection": {
        "type": "object",
        "required": ["id", "title", "can_read", "can_write"],
        "properties": {
            "id": _STRING,
            "title": _STRING,
            "description": _STRING,
            "alias": _STRING,
            "can_read": _FLAG,
            "can_write": _FLAG,
            "media_types": {"type": "array", "items": _STRING},
        },
    },
    "Collections": {
        "type": "object",
        "properties": {"collections": {"type": "array", "items": _ref("Collection")}},
    },
    "Envelope": {
        "type": "object",
        "properties": {
            "more": _FLAG,
            "next": _STRING,
            "objects": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Manifest": {
        "type": "object",
        "properties": {
            "more": _FLAG,
            "next": _STRING,
            "objects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "date_added", "version"],
                    "properties": {
                        "id": _STRING,
                        "date_added": _STRING,
                        "version": _STRING,
                        "media_type": _STRING,
                    },
                },
            },
        },
    },
    "Versions": {
        "type": "object",
        "properties": {
            "more": _FLAG,
            "next": _STRING,
            "versions": {"type": "array", "items": _STRING},
        },
    },
    "StatusDetail": {
        "type": "object",
        "required": ["id", "version"],
        "properties": {"id": _STRING, "version": _STRING, "message": _STRING},
    },
    "Status": {
        "type": "object",
        "required": [
            "id",
            "status",
            "total_count",
            "success_count",
            "failure_count",
            "pending_count",
        ],
        "properties": {
            "id": _STRING,
            "status": {"type": "string", "enum": ["complete", "pending"]},
            "request_timestamp": _STRING,
            "total_count": {"type": "integer"},
            "success_count": {"type": "integer"},
            "successes": {"type": "array", "items": _ref("StatusDetail")},
            "failure_count": {"type": "integer"},
            "failures": {"type": "array", "items": _ref("StatusDetail")},
            "pending_count": {"type": "integer"},
            "pendings": {"type": "array", "items": _ref("StatusDetail")},
        },
    },
    "TreeHead": {
        "type": "object",
        "required": ["tree_size", "root_hash", "timestamp", "signer", "key_id", "signature"],
        "properties": {
            "tree_size": {"type": "integer"},
            "root_hash": _STRING,
            "timestamp": _STRING,
            "signer": _STRING,
            "key_id": _STRING,
            "signature": _STRING,
        },
    },
    "InclusionProof": {
        "type": "object",
        "required": ["id", "leaf_index", "leaf_hash", "tree_size", "root_hash", "proof"],
        "properties": {
            "id": _STRING,
            "version": _STRING,
            "leaf_index": {"type": "integer"},
            "leaf_hash": _STRING,
            "tree_size": {"type": "integer"},
            "root_hash": _STRING,
            "proof": {"type": "array", "items": _STRING},
            "tree_head": _ref("TreeHead"),
        },
    },
    "Withdrawn": {
        "type": "object",
        "required": ["withdrawn"],
        "properties": {
            "withdrawn": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "withdrawn"],
                    "properties": {"id": _STRING, "withdrawn": _STRING},
                },
            }
        },
    },
    "ConsistencyProof": {
        "type": "object",
        "required": ["old_size", "old_root_hash", "tree_size", "root_hash", "proof"],
        "properties": {
            "old_size": {"type": "integer"},
            "old_root_hash": _STRING,
            "tree_size": {"type": "integer"},
            "root_hash": _STRING,
            "proof": {"type": "array", "items": _STRING},
            "tree_head": _ref("TreeHead"),
        },
    },
}


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    collection = "/api/collections/{collection_id}"
    cid, oid = _path("collection_id"), _path("object_id")
    post = {
        "summary": "Add objects (an envelope) to a collection",
        "parameters": [cid],
        "requestBody": {
            "required": True,
            "content": _content(
                {
                    "type": "object",
                    "required": ["objects"],
                    "properties": {"objects": {"type": "array", "items": {"type": "object"}}},
                    "additionalProperties": False,
                }
            ),
        },
        "responses": {
            "202": {"description": "Accepted", "content": _content(_ref("Status"))},
            **_errors(400, 401, 403, 404, 406, 413, 415, 422),
        },
    }
    delete = {
        "summary": "Take versions this partner posted out of a community collection",
        "parameters": [cid, oid, _MATCH_VERSION, _MATCH_SPEC],
        "responses": {"200": {"description": "Deleted"}, **_errors(*_READ_ERRORS)},
    }
    paths: dict[str, Any] = {
        "/taxii2/": {"get": _get("Server discovery", "Discovery", [])},
        "/api/": {"get": _get("API root", "ApiRoot", [])},
        "/api/collections/": {"get": _get("Collections", "Collections", [])},
        f"{collection}/": {"get": _get("One collection", "Collection", [cid])},
        f"{collection}/objects/": {
            "get": _get(
                "Objects",
                "Envelope",
                [cid, *_PAGE, _MATCH_ID, _MATCH_TYPE, _MATCH_VERSION, _MATCH_SPEC],
                headers=True,
            ),
            "post": post,
        },
        f"{collection}/objects/{{object_id}}/": {
            "get": _get(
                "One object",
                "Envelope",
                [cid, oid, *_PAGE, _MATCH_VERSION, _MATCH_SPEC],
                headers=True,
            ),
            "delete": delete,
        },
        f"{collection}/objects/{{object_id}}/versions/": {
            "get": _get(
                "Versions of an object", "Versions", [cid, oid, *_PAGE, _MATCH_SPEC], headers=True
            ),
        },
        f"{collection}/manifest/": {
            "get": _get(
                "Manifest",
                "Manifest",
                [cid, *_PAGE, _MATCH_ID, _MATCH_TYPE, _MATCH_VERSION, _MATCH_SPEC],
                headers=True,
            )
        },
        "/api/status/{status_id}/": {
            "get": _get("Status of a POST", "Status", [_path("status_id")])
        },
        "/ledger/head": {"get": _get("Latest signed tree head", "TreeHead", [])},
        "/ledger/inclusion/{object_id}": {
            "get": _get(
                "Inclusion proof of an object version",
                "InclusionProof",
                [oid, _query("version", "the version (default: latest)")],
            )
        },
        "/ledger/consistency": {
            "get": _get(
                "Consistency proof between two tree sizes",
                "ConsistencyProof",
                [
                    {
                        "name": "first",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    _query(
                        "second",
                        "the larger tree size (default: latest)",
                        {"type": "integer", "minimum": 0},
                    ),
                ],
            )
        },
        "/ledger/peers": {
            "get": _get(
                "The latest tree head this node verified of one of its peers (gossip)",
                "TreeHead",
                [
                    {
                        "name": "signer",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^identity--[0-9a-f-]{36}$"},
                    }
                ],
            )
        },
        "/federation/withdrawn": {
            "get": _get(
                "Objects the partner may no longer receive (for peers that hold them)",
                "Withdrawn",
                [_ADDED_AFTER],
            )
        },
    }
    # discovery may be anonymous; everything else needs a partner token
    paths["/taxii2/"]["get"]["security"] = [{"bearer": []}, {}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Allied node API (TAXII 2.1 and ledger)", "version": "2.1"},
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
