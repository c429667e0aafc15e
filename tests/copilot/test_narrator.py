"""Narrating tool results: every number shown comes from the tool result, for the
templates (offline) and for the LLM's retelling (checked, retried, else the marked template)."""

from pathlib import Path

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from copilot import narration
from copilot.actions import ActionStore
from copilot.llm.narrator import TEMPLATE_MARK, build_result_narrator, retell
from copilot.llm.verifier import unsupported_numbers
from model_service.app import ServiceConfig
from model_service.cards import DatasetCard
from model_service.database import make_engine
from tests.conftest import TrainedRegistry
from tools.catalog import READ_ONLY
from tools.context import ToolContext

pytestmark = pytest.mark.anyio

REQUESTS = [
    ("predict_risk", {"patient": {"age": 63, "sex": "Male", "cp": "asymptomatic", "chol": 233}}),
    ("explain_prediction", {"patient": {"age": 48, "sex": "Female", "cp": "non-anginal"}}),
    (
        "what_if",
        {"patient": {"age": 63, "sex": "Male", "cp": "asymptomatic"}, "changes": {"chol": 180}},
    ),
    ("check_drift", {"site": "VA Long Beach"}),
    ("check_drift", {"site": "Hungary"}),
    ("list_runs", {"limit": 5}),
    ("compare_runs", {"last": 2}),
    ("model_info", {}),
    (
        "describe_data",
        {
            "where": [
                {"feature": "sex", "value": "Female"},
                {"feature": "age", "op": ">", "value": 60},
                {"feature": "site", "value": "Hungary"},
            ]
        },
    ),
    ("show_rows", {"row_ids": [1, 920]}),
    ("define_feature", {"feature": "st depression"}),
    ("model_performance", {"where": [{"feature": "sex", "value": "Female"}]}),
    ("model_performance", {}),
    ("model_mistakes", {"limit": 3}),
    ("feature_importance", {"top": 5}),
    ("feature_interactions", {"top": 3}),
    ("counterfactual", {"row_id": 2}),
    ("counterfactual", {"row_id": 1}),
    ("cohort_what_if", {"changes": [{"feature": "chol", "op": "add", "value": -20}]}),
]


async def test_every_number_in_every_template_comes_from_its_result(
    live_service: str, service_config: ServiceConfig, heart_card: DatasetCard
) -> None:
    async with httpx.AsyncClient(base_url=live_service, timeout=60) as client:
        ctx = ToolContext(client, service_config.tracking_uri, heart_card)
        for name, arguments in REQUESTS:
            tool = READ_ONLY[name]
            result = (await tool.run(ctx, tool.input_model.model_validate(arguments))).model_dump(
                mode="json"
            )
            text = narration.NARRATORS[name](result)
            assert unsupported_numbers(text, result) == [], (name, text)


async def test_every_number_in_the_outcome_of_an_action_comes_from_the_action(
    tmp_path: Path, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'copilot.db'}")
    store = ActionStore(engine, audit_key=b"k", ttl_seconds=900)
    ctx = ToolContext(
        httpx.AsyncClient(base_url="http://127.0.0.1:9"),
        trained_registry.copy(tmp_path),
        heart_card,
    )
    try:
        for tool, arguments in [
            ("promote_model", {"version": "2", "force": True, "reason": "more sites"}),
            ("rollback_model", {"reason": "worse on VA"}),
            ("promote_model", {"version": "1", "reason": "rejected one"}),
        ]:
            action = store.propose("c", tool, arguments, requested_by="ann via local:ann")
            decision = "reject" if arguments["reason"] == "rejected one" else "approve"
            store.decide(action.id, decision, "bob via local:bob", comment="not now")
            if decision == "approve":
                action = await store.execute(action.id, ctx)
            else:
                action = store.get(action.id)
            dumped = action.model_dump(mode="json")
            text = narration.action_outcome(dumped)
            assert unsupported_numbers(text, dumped) == [], text
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("AUC 0.909 against 0.960, a margin of 0.02.", []),
        ("It scores 91% against 96%.", []),  # fractions shown as percentages
        ("It scores 0.91 against 0.96.", []),  # rounded as shown
        ("10,000 rows, run 3f2a9c1b.", []),  # thousands; digits inside an id are no number
        ("run 111047e6 on Cleveland.", []),  # a run id's prefix that reads as 111047 x 10^6
        ("run 2e6 on Cleveland.", ["unsupported number: 2e6"]),  # no id starts so
        ("The AUC improved by 4.2 points.", ["unsupported number: 4.2"]),
        ("It scores 93%.", ["unsupported number: 93%"]),
        ("It scores 0.92.", ["unsupported number: 0.92"]),
    ],
)
def test_unsupported_numbers(text: str, problems: list[str]) -> None:
    result = {
        "auc": 0.909,
        "champion_auc": 0.960,
        "detail": "margin 0.02",
        "rows": 10000,
        "runs": [{"run_id": "3f2a9c1b00d4"}, {"run_id": "111047e6a9b2"}],
    }
    assert unsupported_numbers(text, result) == problems


def _scripted(*answers: str) -> tuple[FunctionModel, list[list[ModelMessage]]]:
    calls: list[list[ModelMessage]] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(messages)
        return ModelResponse(parts=[TextPart(answers[min(len(calls), len(answers)) - 1])])

    return FunctionModel(respond), calls


RESULT = {"champion": "2", "previous_champion": "1", "forced": True, "auc": 0.909}
TEMPLATE = "Done: version 2 is the champion."


async def test_retelling_retries_an_invented_number_then_keeps_the_fix() -> None:
    model, calls = _scripted("AUC rose by 4.2 points.", "Version 2 (AUC 0.91) replaced version 1.")
    told = await retell(build_result_narrator(model), RESULT, TEMPLATE)
    assert told == "Version 2 (AUC 0.91) replaced version 1." and len(calls) == 2
    feedback = str(calls[1][-1].parts[0].content)  # type: ignore[union-attr]
    assert "unsupported number: 4.2" in feedback


async def test_retelling_falls_back_to_the_marked_template() -> None:
    model, calls = _scripted("AUC rose by 4.2 points.")
    told = await retell(build_result_narrator(model), RESULT, TEMPLATE)
    assert told == f"{TEMPLATE} {TEMPLATE_MARK}" and len(calls) == 3
    assert await retell(None, RESULT, TEMPLATE) == TEMPLATE  # offline: the template as is
