"""Fuzzing: schemathesis generates requests from the server's own OpenAPI description, valid
ones and invalid ones, for every operation; no answer may be a 5xx or differ from what the
description says (status, media type, headers, body schema), and no operation may answer
without a valid token."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from allied.node import Node
from allied.taxii.app import create_app
from tests.taxii.conftest import Api, World
from tests.taxii.test_security import UNHELD

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    unsupported_method,
]


def test_no_server_error_and_no_schema_violation(node: Node, world: World) -> None:
    app = create_app(node)
    auth = {"Authorization": f"Bearer {world.tokens['usa']}"}
    document = httpx_get_json(app, "/openapi.json", auth)
    # Random text almost never names a collection or object: the fuzzer gets the real ones
    # (and ones the partner may not see, and ones that do not exist) to vary everything else.
    known = {
        "collection_id": [*world.collections.values(), "00000000-0000-4000-8000-000000000000"],
        "object_id": [*world.ids.values(), world.secret_label, UNHELD],
    }
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in known:
                    parameter["schema"] = {"type": "string", "enum": known[parameter["name"]]}
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        modes = [GenerationMode.POSITIVE]
        if operation.path_parameters or operation.query or operation.body:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=60,
                deadline=None,
                database=None,
                derandomize=True,  # the same requests on every run: CI is never flaky
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=auth, checks=CHECKS)

            try:
                run()
            except Exception as error:  # every failing operation is reported, not the first
                failures.append(f"{operation.label} ({mode.value}): {error}")
    assert operations == 16
    assert not failures, "\n\n".join(failures)


def httpx_get_json(app: object, path: str, headers: dict[str, str]) -> dict[str, Any]:
    api = Api.__new__(Api)
    api.app = app  # type: ignore[assignment]
    api.token = headers["Authorization"].removeprefix("Bearer ")
    document: dict[str, Any] = api.get(path).json()
    return document
