"""Property-based run over the agent API's OpenAPI document with a valid approver key: no
5xx, and every response keeps to the documented status codes, schemas and content types.
Half the generated cases use a real conversation and a real pending action, so turns,
event streams and decisions run for real (on SQLite, over a live model service)."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from copilot.api.app import create_api
from tests.conftest import TrainedRegistry
from tests.copilot.api.test_api import API_KEYS, PROMOTE, auth, settings_for
from tests.model_service.test_schemathesis import (
    CHECKS,  # the same checks as the model service's run
)

EXAMPLES = 25


@pytest.fixture(scope="module")
def agent_api(
    tmp_path_factory: pytest.TempPathFactory, trained_registry: TrainedRegistry, live_service: str
) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """The app schemathesis drives (it runs the lifespan), and real ids made by a second
    app on the same database (another replica)."""
    home = tmp_path_factory.mktemp("api-schemathesis")
    settings = settings_for(
        home,
        f"sqlite:///{home / 'copilot.db'}",
        trained_registry.copy(home),
        live_service,
    )
    assert settings.copilot_api_keys is not None
    assert settings.copilot_api_keys.get_secret_value() == API_KEYS
    with TestClient(create_api(settings)) as seeder:
        conversation = seeder.post("/v1/conversations", headers=auth("bob")).json()["id"]
        turn = seeder.post(
            f"/v1/conversations/{conversation}/messages",
            headers=auth("bob"),
            json={"content": PROMOTE},
        ).json()
    real = {"conversation_id": conversation, "action_id": turn["pending_actions"][0]["id"]}
    yield create_api(settings), real
    shutdown_lifespans()  # schemathesis keeps started lifespans until told


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_agent_api_honours_its_openapi_document(
    agent_api: tuple[FastAPI, dict[str, str]], mode: GenerationMode
) -> None:
    app, real = agent_api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "GET /health",
        "GET /ready",
        "POST /v1/conversations",
        "GET /v1/conversations",
        "GET /v1/conversations/{conversation_id}",
        "POST /v1/conversations/{conversation_id}/messages",
        "GET /v1/conversations/{conversation_id}/events",
        "GET /v1/actions",
        "GET /v1/actions/{action_id}",
        "POST /v1/actions/{action_id}/decision",
    }
    impossible = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (
            operation.body or operation.path_parameters or operation.query
        ):
            continue  # nothing to send that could violate the schema

        @given(case=operation.as_strategy(generation_mode=mode), use_real=st.booleans())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any, use_real: bool) -> None:
            parameters = case.path_parameters or {}
            if use_real and mode is GenerationMode.POSITIVE:
                for name in parameters.keys() & real.keys():
                    parameters[name] = real[name]
                if case.operation.label.endswith("/events") and parameters:
                    # a following stream of a real conversation never ends on its own
                    case.query = {**(case.query or {}), "follow": "false"}
            # the generated Authorization header would win over one passed to the call
            case.headers = {**(case.headers or {}), **auth("bob")}
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            check()
        except Unsatisfiable:
            impossible.append(operation.label)
    assert impossible == [], impossible


def test_the_document_describes_auth_and_errors(agent_api: tuple[FastAPI, Any]) -> None:
    app, _ = agent_api
    document = app.openapi()
    decision = document["paths"]["/v1/actions/{action_id}/decision"]["post"]
    assert decision["security"] == [{"api-key": []}]
    assert set(decision["responses"]) == {"200", "401", "403", "404", "409", "413", "422", "429"}
    events = document["paths"]["/v1/conversations/{conversation_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
