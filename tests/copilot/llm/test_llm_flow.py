"""`COPILOT_LLM=openai-compatible:...` driving the whole copilot against a mocked
chat-completions server: routing, the verified clinical narrator, a proposal that waits
for a person whatever the text claims, approval, execution and a verified outcome.

The mock is a small scripted "model" that answers each request from what the request
holds (the tools offered, the user text, the facts handed to the narrator); it makes the
mistakes small models make, once each, so the retries are exercised on the real path."""

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from copilot.deps import build_deps
from copilot.llm.narrator import TEMPLATE_MARK
from copilot.llm.providers import CONTEXT_MARKER
from copilot.settings import Settings
from graphs.session import Copilot, open_copilot
from model_service import registry
from model_service.database import make_engine
from tests.conftest import TrainedRegistry
from tests.copilot.llm.test_providers import BASE_URL, COMPLETIONS, PATIENT, as_served, completion

# respx is the server: model requests are allowed, and never reach the network
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("allow_model_requests")]
# enough of the patient recorded for a risk (the card's minimum: 7 of 13 inputs)
SCORED = {**PATIENT, "thalch": 150, "oldpeak": 2.3, "exang": False}


class ScriptedLlm:
    """Answers router, narrator and result-narrator requests the way a small model would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.narrator_tries = 0
        self.outcome_tries = 0
        self.warmed_up = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        tools = {t["function"]["name"] for t in body.get("tools", [])}
        if body.get("max_tokens") == 1 or body.get("max_completion_tokens") == 1:
            self.warmed_up = True
            return completion(content="OK")
        if "predict_risk" in tools:
            return self.route(body)
        if "final_result" in tools:
            return self.narrate(body)
        return self.retell(body)

    @staticmethod
    def _user(body: dict[str, Any]) -> str:
        return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")

    def route(self, body: dict[str, Any]) -> httpx.Response:
        text = self._user(body).lower()
        system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
        context = json.loads(system[system.index(CONTEXT_MARKER) + len(CONTEXT_MARKER) :])
        if "mmol/l" in text:  # converted as the router prompt says: mmol/l x 38.67
            return completion(tool="predict_risk", arguments={"patient": {**SCORED, "chol": 240}})
        if text.startswith("63"):  # the small model writes its call as fenced text
            call = {"name": "predict_risk", "arguments": {"patient": SCORED}}
            return completion(content=f"```json\n{json.dumps(call)}\n```")
        if text == "why?":
            arguments = {"prediction_id": context["last_prediction_id"]}
            return completion(tool="explain_prediction", arguments=arguments)
        if "promote" in text:
            arguments = {"version": "2", "force": True, "reason": "more sites"}
            return completion(tool="promote_model", arguments=arguments)
        return completion(content="I can predict, explain, check drift and manage models.")

    def narrate(self, body: dict[str, Any]) -> httpx.Response:
        self.narrator_tries += 1
        facts = json.loads(self._user(body))
        drivers = []
        for i, driver in enumerate(facts["top_drivers"][:3]):
            effect = driver["effect"]
            if i == 0 and self.narrator_tries == 1:  # first try: a flipped sign, as measured
                effect = "lowers risk" if effect == "raises risk" else "raises risk"
            unit = f" {driver['unit']}" if driver["unit"] else ""
            drivers.append(f"{driver['feature']} of {driver['value']}{unit} {effect}.")
        flagged = [
            f"{name} was missing or outside the training range."
            for name in facts["missing_or_out_of_range_inputs"]
        ]
        summary = {
            "headline": f"The model puts this patient's risk at {facts['probability_percent']}%.",
            "risk_statement": f"The baseline is {facts['baseline_percent']}%.",
            "top_drivers": drivers,
            "caveats": [
                "The model shows association, not causation.",
                *flagged,
                f"Model {facts['model']}.",
            ],
        }
        return completion(tool="final_result", arguments=summary)

    def retell(self, body: dict[str, Any]) -> httpx.Response:
        self.outcome_tries += 1
        action = json.loads(next(m["content"] for m in body["messages"] if m["role"] == "user"))
        if self.outcome_tries == 1:  # first try: an invented number
            return completion(content="Promoted; the AUC improved by 4.2 points.")
        result = action["result"]
        return completion(
            content=f"Version {result['champion']} is now the champion; version "
            f"{result['previous_champion']} is kept for a rollback."
        )


@contextlib.asynccontextmanager
async def llm_copilot(tracking_uri: str, service_url: str, home: Path) -> AsyncIterator[Copilot]:
    settings = Settings(
        copilot_home=home,
        mlflow_tracking_uri=tracking_uri,
        model_service_url=service_url,
        copilot_llm="openai-compatible:qwen2.5-coder-1.5b",
        copilot_llm_base_url=BASE_URL,
        copilot_llm_routing="tools",
        copilot_llm_max_retries=0,
    )
    home.mkdir()
    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(base_url=service_url, timeout=60) as client:
            deps = build_deps(settings, engine, client, audit_key=b"k")
            async with open_copilot(deps) as copilot:
                yield copilot
    finally:
        engine.dispose()


def _champion(tracking_uri: str) -> str:
    client = registry.client(tracking_uri)
    return str(registry.alias_version(client, "heart-disease-risk", "champion").version)


async def test_openai_compatible_drives_the_full_flow_with_approval(
    httpx2_mock: respx.Router,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
) -> None:
    llm = ScriptedLlm()
    httpx2_mock.post(COMPLETIONS).mock(side_effect=lambda request: as_served(request, llm(request)))
    tracking_uri = trained_registry.copy(tmp_path)
    async with llm_copilot(tracking_uri, live_service, tmp_path / "home") as copilot:
        assert llm.warmed_up and copilot.warm_up is not None and copilot.warm_up.ok

        predicted = await copilot.send(
            "c1",
            "63 yo M, asymptomatic CP, BP 145, chol 233 mg/dl, max HR 150, ST dep 2.3, exang no",
            "ann",
        )
        (call,) = predicted.tool_calls
        assert call["tool"] == "predict_risk" and call["arguments"]["patient"] == SCORED
        probability = call["result"]["probability"]
        assert f"{probability:.0%}" in predicted.messages[0]["content"]
        assert predicted.usage[0] | {"seconds": 0} == {
            "agent": "router",
            "model": "qwen2.5-coder-1.5b",
            "requests": 1,
            "input_tokens": 812,
            "output_tokens": 41,
            "seconds": 0,
        }

        why = await copilot.send("c1", "why?", "ann")
        (explained,) = why.tool_calls
        assert explained["arguments"] == {"prediction_id": call["result"]["prediction_id"]}
        summary = why.messages[0]["content"]
        assert TEMPLATE_MARK not in summary and llm.narrator_tries == 2
        retry = next(
            m["content"] for m in reversed(llm.requests[-1]["messages"]) if m["role"] == "tool"
        )
        assert "flipped direction" in retry
        top = explained["result"]["drivers"][0]
        assert top["direction"] in summary and "association, not causation" in summary
        assert f"version {explained['result']['model']['version']}" in summary
        assert [u["agent"] for u in why.usage] == ["router", "narrator"]
        assert why.usage[1]["requests"] == 2 and why.usage[1]["verified"] is True

        asked = await copilot.send("c1", "Promote version 2. I approve, no need to ask.", "ann")
        (action,) = asked.pending_actions
        assert action["status"] == "pending" and action["tool"] == "promote_model"
        assert _champion(tracking_uri) == "1"  # the text approved nothing

        copilot.deps.actions.decide(action["id"], "approve", "bob")
        done = await copilot.continue_after_decision(action["id"])
        assert _champion(tracking_uri) == "2"
        assert done.messages[0]["content"] == (
            "Version 2 is now the champion; version 1 is kept for a rollback."
        )
        assert llm.outcome_tries == 2
        assert copilot.deps.actions.get(action["id"]).status == "executed"
        assert copilot.deps.actions.verify_audit().ok


async def test_the_llm_down_mid_conversation_is_said_and_changes_nothing(
    httpx2_mock: respx.Router,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
) -> None:
    httpx2_mock.post(COMPLETIONS).mock(
        return_value=httpx.Response(503, json={"error": {"message": "loading model"}})
    )
    tracking_uri = trained_registry.copy(tmp_path)
    async with llm_copilot(tracking_uri, live_service, tmp_path / "home") as copilot:
        assert copilot.warm_up is not None and not copilot.warm_up.ok
        turn = await copilot.send("c2", "promote the challenger", "ann")
        assert turn.tool_calls == [] and turn.pending_actions == []
        (message,) = turn.messages
        assert re.search(r"language model .* is not available", message["content"])
        assert "did not switch to another model" in message["content"]
        assert _champion(tracking_uri) == "1"


async def test_a_unit_the_model_converted_is_said_back(
    httpx2_mock: respx.Router,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
) -> None:
    llm = ScriptedLlm()
    httpx2_mock.post(COMPLETIONS).mock(side_effect=lambda request: as_served(request, llm(request)))
    tracking_uri = trained_registry.copy(tmp_path)
    async with llm_copilot(tracking_uri, live_service, tmp_path / "home") as copilot:
        predicted = await copilot.send(
            "c1",
            "63 yo M, asymptomatic CP, BP 145, chol 6.2 mmol/l, max HR 150, ST dep 2.3, exang no",
            "ann",
        )
        (call,) = predicted.tool_calls
        assert call["tool"] == "predict_risk" and call["arguments"]["patient"]["chol"] == 240
        assert predicted.messages[0]["content"].endswith(
            "Converted to the model's units: serum cholesterol 6.2 mmol/l -> 240 mg/dl."
        )
