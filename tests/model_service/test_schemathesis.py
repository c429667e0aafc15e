"""Property-based run over the model service's OpenAPI document: no 5xx, no response
that violates the documented schema, status code or content type."""

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_service_honours_its_openapi_document(
    service: TestClient, mode: GenerationMode
) -> None:
    # `service` keeps the lifespan (model, prediction log) running for this app object.
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/predict",
        "POST /v1/predict/batch",
        "POST /v1/explain",
        "POST /v1/drift",
        "GET /v1/model",
        "GET /ready",
        "GET /health",
        "GET /metrics",
    }
    impossible = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.body or operation.path_parameters):
            continue  # nothing to send that could violate the schema
        examples = 10 if operation.label == "POST /v1/drift" else 40

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # e.g. any string is a valid report id: no negative case exists
            impossible.append(operation.label)
    assert all(label.startswith("GET") for label in impossible), impossible
