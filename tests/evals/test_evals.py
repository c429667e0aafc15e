"""The eval suites: datasets that load, graders that catch real failures of the agent under
test (agents built on FunctionModel, not mocks of the graders), and a subset end to end."""

import contextlib
import dataclasses
import functools
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from rich.console import Console
from typer.testing import CliRunner

from copilot import narration
from copilot.cli.main import app
from copilot.deps import Deps
from copilot.facts import Memory
from copilot.llm.offline.focus import question_focus
from copilot.llm.offline.intents import understand
from copilot.llm.router import build_router
from copilot.settings import Settings
from evals.cases import ANY, TOOLS, Expect, Say
from evals.datasets import REPORT_ONLY, SUITES, SuiteError, load_suite
from evals.environment import Agent as AgentUnderTest
from evals.metrics import SuiteResult, gates, pass_hat_k
from evals.report import EvalRun, load_run, regressions, write_reports
from evals.runner import run_evals
from graphs.session import Copilot
from tests.conftest import TrainedRegistry
from tools import lifecycle
from tools.lifecycle import PromoteInput
from tools.predictions import (
    ExplainInput,
    PredictRiskInput,
    explain_prediction,
    predict_risk,
)

pytestmark = pytest.mark.anyio

SUBSET = {
    "routing": ["predict-cleveland-shorthand", "explain-why", "decline-weather", "retrain-default"],
    "compositional": ["predict-and-explain"],
    "approvals": ["approve-promote", "reject-promote", "expire-retrain", "edit-promote-to-force"],
    "adversarial": [
        "instructions-in-a-patients-note",
        "approve-then-change-arguments",
        "double-approval",
        "approved-arguments-tampered-in-the-database",
    ],
    "clinical": [
        "rank-cholesterol",
        "top-three-cleveland",
        "what-if-cholesterol",
        "canary-flipped-direction",
        "canary-faithful-va-gaps",
    ],
    "cohorts": [
        "women-over-60-at-hungary",
        "accuracy-on-women",
        "counterfactual-after-a-prediction",
    ],
}


async def _run(
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    suites: dict[str, list[str]],
    agent: Any = None,
    repeat: int = 1,
) -> EvalRun:
    settings = Settings(copilot_home=tmp_path / "home", copilot_llm="offline")
    extra = {} if agent is None else {"agent_factory": agent}
    return await run_evals(
        settings,
        list(suites),
        repeat=repeat,
        console=Console(file=io.StringIO()),
        template=trained_registry.root / "mlflow.db",
        cases={name for names in suites.values() for name in names},
        **extra,
    )


# Each suite parsed and validated once per module run (the large ones take about a second).
_suite = functools.cache(load_suite)


def _gate(run: EvalRun, suite: str, metric: str) -> Any:
    return next(g for g in run.gates if g.suite == suite and g.metric == metric)


def test_the_suites_load_and_cover_every_tool() -> None:
    datasets = {name: _suite(name) for name in SUITES}
    routing = datasets["routing"]
    assert len(routing.cases) >= 120
    routed = {
        s.tool for case in routing.cases for s in (case.metadata or Expect()).steps if s is not None
    }
    assert routed == {*TOOLS, None}  # every tool, and requests to decline or ask about
    assert sum((c.metadata or Expect()).category == "decline" for c in routing.cases) >= 10
    for name, dataset in datasets.items():
        for case in dataset.cases:
            assert case.name, name
            assert case.inputs.steps or case.inputs.canary is not None
    clinical = datasets["clinical"].cases
    kinds = {
        s.answer.kind for c in clinical for s in (c.metadata or Expect()).steps if s and s.answer
    }
    assert kinds == {"top", "rank", "direction", "compare", "what_if", "probability"}
    corruptions = {c.inputs.canary.corruption for c in clinical if c.inputs.canary is not None}
    assert len(corruptions - {"none"}) == 6  # the verifier's six canary kinds
    categories = {(c.metadata or Expect()).category for c in datasets["compositional"].cases}
    assert {"simple", "compositional"} <= categories
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")


@pytest.mark.parametrize(
    "suite",
    ["paraphrases", "paraphrases-heldout", "paraphrases-heldout-2", "paraphrases-heldout-3"],
)
def test_the_paraphrase_suites_are_measured_not_gated(suite: str) -> None:
    paraphrases = _suite(suite)
    assert suite in SUITES and suite in REPORT_ONLY
    assert len(paraphrases.cases) >= 100
    routed = {
        s.tool
        for case in paraphrases.cases
        for s in (case.metadata or Expect()).steps
        if s is not None and s.tool != ANY
    }
    assert routed <= {*TOOLS, None}
    if suite == "paraphrases":  # the held-out one stays as written, before newer tools
        assert routed == {*TOOLS, None}
    categories = {(c.metadata or Expect()).category for c in paraphrases.cases}
    assert {"follow-up", "relative-what-if", "lifecycle", "decline", "clarify"} <= categories
    nothing_right = SuiteResult(
        suite=suite,
        digest="0",
        cases=1,
        repeat=1,
        runs=1,
        passed_runs=0,
        pass_rate=0.0,
        accuracy=0.0,
        tool_accuracy=0.0,
        argument_accuracy=0.0,
        trajectory_match=0.0,
        unconfirmed_state_changes=0,
        faithfulness=None,
        exact_answers=None,
        canaries=None,
        latency_p50_ms=None,
        latency_p95_ms=None,
        pass_hat_k={},
        categories={},
        failures=[],
        seconds=0.0,
    )
    for provider in ("offline", "openai:gpt-4.1-mini"):
        found = gates([nothing_right], provider)
        assert [(g.metric, g.passed) for g in found] == [("unconfirmed_state_changes", True)]
    unsafe = nothing_right.model_copy(update={"unconfirmed_state_changes": 1})
    assert [g.passed for g in gates([unsafe], "offline") if g.enforced] == [False]


def _requests(suite: str) -> set[str]:
    return {
        " ".join(step.say.lower().split())
        for case in _suite(suite).cases
        for step in case.inputs.steps
        if isinstance(step, Say)
    }


def test_the_held_out_suite_shares_no_request_with_the_development_one() -> None:
    requests = _requests
    held_out = _suite("paraphrases-heldout")
    assert not requests("paraphrases") & requests("paraphrases-heldout")
    assert not {c.name for c in _suite("paraphrases").cases} & {c.name for c in held_out.cases}
    categories = {(c.metadata or Expect()).category for c in held_out.cases}
    assert categories == {
        *("simple", "units", "typos", "explain", "what-if", "follow-up", "relative-what-if"),
        *("drift", "runs", "model-question", "lifecycle", "polite", "odd-words", "decline"),
        *("clarify", "out-of-schema"),
    }


def _blind_suite(name: str) -> tuple[list[str], list[Any]]:
    """A later held-out suite's checks shared by all of them (no request or case name shared
    with another suite, every tool and none, arguments asserted where fixed, monitored cases
    ask the history); its categories in case order, and its cases."""
    held_out = _suite(name)
    others = [other for other in SUITES if other != name]
    shared = {other: _requests(other) & _requests(name) for other in others}
    assert {other: found for other, found in shared.items() if found} == {}
    names = {c.name for other in others for c in _suite(other).cases}
    assert not names & {c.name for c in held_out.cases}
    steps = [s for c in held_out.cases for s in (c.metadata or Expect()).steps if s is not None]
    assert {s.tool for s in steps} == {*TOOLS, None, ANY}  # every tool, and none at all
    assert sum(s.arguments != {} for s in steps) >= 80  # arguments asserted where fixed
    monitored = [c for c in held_out.cases if c.inputs.setup.monitored]
    assert monitored and all(
        any(s and s.tool == "monitoring_history" for s in (c.metadata or Expect()).steps)
        for c in monitored
    )
    return [(c.metadata or Expect()).category for c in held_out.cases], list(held_out.cases)


def test_the_second_held_out_suite_shares_no_request_or_name_with_any_other_suite() -> None:
    categories, _ = _blind_suite("paraphrases-heldout-2")
    assert set(categories) == {
        *("simple", "units", "typos", "explain", "what-if", "relative-what-if"),
        *("counterfactual", "follow-up", "answer-question", "cohort-data", "cohort-model"),
        *("cohort-what-if", "monitoring-history", "drift", "runs", "model-question"),
        *("lifecycle", "approvals", "polite", "odd-words", "decline", "clarify", "out-of-schema"),
    }


def test_the_third_held_out_suite_shares_no_request_or_name_with_any_other_suite() -> None:
    categories, cases = _blind_suite("paraphrases-heldout-3")
    assert set(categories) == {
        *("simple", "units", "typos", "explain", "what-if", "relative-what-if"),
        *("counterfactual", "follow-up", "answer-question", "cohort-data", "feature-definition"),
        *("cohort-model", "cohort-what-if", "monitoring-history", "drift", "runs"),
        *("model-question", "lifecycle", "approvals", "polite", "decline", "clarify"),
        "out-of-schema",
    }
    assert all(4 <= categories.count(c) <= 8 for c in set(categories))
    assert sum(len(c.inputs.steps) > 1 for c in cases) >= 30  # follow-ups over turns


def test_pass_hat_k_is_all_k_trials_succeeding() -> None:
    assert pass_hat_k([2, 1, 0], 2, 1) == pytest.approx(0.5)
    assert pass_hat_k([2, 1, 0], 2, 2) == pytest.approx(1 / 3)
    assert pass_hat_k([4, 3], 4, 4) == pytest.approx(0.5)  # C(3,4) = 0: one of two always


def test_unknown_suites_and_bad_baselines_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "nope"])
    assert result.exit_code == 2 and "unknown suite 'nope'" in result.output
    (tmp_path / "old.json").write_text("{}")
    result = runner.invoke(app, ["eval", "--baseline", str(tmp_path / "old.json")])
    assert result.exit_code == 2 and "not an eval report" in result.output


async def test_a_subset_passes_end_to_end_and_reports(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    run = await _run(tmp_path, trained_registry, SUBSET)
    failures = [f"{s.suite}/{f.case}: {f.reasons}" for s in run.suites for f in s.failures]
    assert run.passed, failures
    by_suite = {s.suite: s for s in run.suites}
    assert by_suite["routing"].accuracy == 1.0 and by_suite["clinical"].exact_answers == 1.0
    assert by_suite["clinical"].canaries == 1.0
    assert all(s.unconfirmed_state_changes == 0 for s in run.suites)
    assert all(s.pass_rate == 1.0 for s in run.suites), failures
    assert by_suite["approvals"].latency_p50_ms is not None
    path, html = write_reports(run, tmp_path / "report", regressions(run, run))
    assert path == tmp_path / "report" / "report.json"
    assert json.loads(path.read_text())["regressions"] == []
    assert load_run(path).suites == run.suites
    assert "copilot eval: passed" in html.read_text()


@contextlib.asynccontextmanager
async def _misrouting(deps: Deps) -> AsyncIterator[AgentUnderTest]:
    """The real graph, with a router model that sends every request to model_info."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.graph import build_graph

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("model_info", {})])

    agents = dataclasses.replace(deps.agents, router=build_router(FunctionModel(respond)))
    yield Copilot(dataclasses.replace(deps, agents=agents), build_graph(InMemorySaver()))


async def test_a_misrouting_agent_fails_the_routing_gate(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    cases = {"routing": ["predict-question", "model-live", "list-recent", "drift-since"]}
    run = await _run(tmp_path, trained_registry, cases, _misrouting)
    gate = _gate(run, "routing", "accuracy")
    assert not run.passed and not gate.passed and gate.value == pytest.approx(0.25)
    reasons = " ".join(r for f in run.suites[0].failures for r in f.reasons)
    assert "model_info instead of predict_risk" in reasons
    baseline = await _run(tmp_path / "good", trained_registry, cases)
    worse = regressions(run, baseline)
    assert {(r.suite, r.metric) for r in worse} >= {("routing", "accuracy")}


@dataclass
class _Turn:
    messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    pending_actions: list[dict[str, Any]] = field(default_factory=list)


def _calls(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """The tool calls of a PydanticAI run, with their results, as the copilot reports them."""
    calls: dict[str, dict[str, Any]] = {}
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                calls[part.tool_call_id] = {
                    "tool": part.tool_name,
                    "arguments": part.args_as_dict(),
                }
            elif isinstance(part, ToolReturnPart):
                calls[part.tool_call_id]["result"] = part.model_response_object()
    return list(calls.values())


class _FunctionAgent:
    """An LLM agent on a FunctionModel with the copilot's tools as function tools; what
    it does wrong is in `respond`."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.memory = Memory()
        self.agent: Agent[None, str] = Agent(FunctionModel(self.respond))
        ctx = deps.tools

        @self.agent.tool_plain(name="predict_risk")
        async def predict(patient: dict[str, Any]) -> dict[str, Any]:
            result = await predict_risk(ctx, PredictRiskInput(patient=patient))
            self.memory = Memory(patient=patient, prediction_id=result.prediction_id)
            return result.model_dump(mode="json")

        @self.agent.tool_plain(name="explain_prediction")
        async def explain(prediction_id: str) -> dict[str, Any]:
            explained = await explain_prediction(ctx, ExplainInput(prediction_id=prediction_id))
            return explained.model_dump(mode="json")

        @self.agent.tool_plain(name="promote_model")
        async def promote(reason: str) -> dict[str, Any]:
            # the registry change of promote_model, without waiting for the service to follow
            arguments = PromoteInput(force=True, reason=reason)
            done = await anyio.to_thread.run_sync(lifecycle._promote, ctx, arguments)
            return done.model_dump(mode="json")

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise NotImplementedError

    @staticmethod
    def question(messages: list[ModelMessage]) -> str:
        first = messages[0]
        assert isinstance(first, ModelRequest)
        return str(first.parts[-1].content)

    async def send(self, conversation_id: str, text: str, user: str) -> _Turn:
        result = await self.agent.run(text)
        return _Turn(
            [{"role": "assistant", "content": result.output}], _calls(result.all_messages())
        )

    async def continue_after_decision(self, action_id: str) -> _Turn:
        return _Turn([], [])


class _Reckless(_FunctionAgent):
    """Promotes when asked, straight through the tool: no pending action, no approval."""

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if isinstance(messages[-1].parts[0], ToolReturnPart):
            return ModelResponse(parts=[TextPart("Done: promoted.")])
        return ModelResponse(parts=[ToolCallPart("promote_model", {"reason": "asked to"})])


class _OffByOne(_FunctionAgent):
    """Routes as the offline provider does, but states every rank one too low."""

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1].parts[0]
        card = self.deps.tools.card
        if isinstance(last, ToolReturnPart):
            result = last.model_response_object()
            if last.tool_name == "predict_risk":
                return ModelResponse(parts=[TextPart(narration.predict_risk(result))])
            focus = question_focus(self.question(messages), card)
            assert focus is not None and focus.kind == "rank"
            driver = next(d for d in result["drivers"] if d["feature"] == focus.features[0])
            wrong = {**result, "drivers": [{**driver, "rank": driver["rank"] + 1}]}
            return ModelResponse(parts=[TextPart(narration.feature_rank(wrong, driver["feature"]))])
        intent = understand(self.question(messages), self.memory, card)
        assert intent.tool is not None
        return ModelResponse(parts=[ToolCallPart(intent.tool, intent.arguments)])


def _factory(kind: type[_FunctionAgent]) -> Any:
    @contextlib.asynccontextmanager
    async def build(deps: Deps) -> AsyncIterator[AgentUnderTest]:
        yield kind(deps)

    return build


async def test_an_agent_that_executes_without_approval_fails_the_safety_gates(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    cases = {"approvals": ["pending-promote"], "adversarial": ["no-need-to-ask"]}
    run = await _run(tmp_path, trained_registry, cases, _factory(_Reckless))
    assert not run.passed
    for suite in run.suites:
        assert suite.unconfirmed_state_changes >= 1 and suite.pass_rate == 0.0
        gate = _gate(run, suite.suite, "unconfirmed_state_changes")
        assert not gate.passed and gate.enforced
        reasons = " ".join(r for f in suite.failures for r in f.reasons)
        assert "step 1 (say) changed the registry: " in reasons and "@champion 1 -> 2" in reasons
        assert "ran without a person's approval" not in reasons  # it ran no action at all
        assert "@champion is 2, wanted 1" in reasons


async def test_a_wrong_rank_fails_the_clinical_gate(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    run = await _run(
        tmp_path, trained_registry, {"clinical": ["rank-cholesterol"]}, _factory(_OffByOne)
    )
    (suite,) = run.suites
    assert suite.exact_answers == 0.0 and not _gate(run, "clinical", "exact_answers").passed
    reasons = " ".join(suite.failures[0].reasons)
    assert "exact_answer: step 2: rank" in reasons and ", the model says" in reasons


def test_a_change_riding_along_with_an_approved_one_is_unconfirmed() -> None:
    from evals.evaluators import unconfirmed_changes
    from evals.harness import ActionRecord, Outcome, RegistrySnapshot, StepRecord

    before = RegistrySnapshot(aliases={"champion": "1"}, versions=["1"], runs=1)
    retrained = RegistrySnapshot(
        aliases={"champion": "1", "challenger": "2"}, versions=["1", "2"], runs=2
    )
    sneaky = RegistrySnapshot(aliases={"champion": "2"}, versions=["1", "2"], runs=2)
    action = ActionRecord(
        id="a1",
        tool="retrain_model",
        status="executed",
        arguments={},
        original_arguments=None,
        requested_by="ann",
        decided_by="bob",
        result={},
        executions=1,
        events=["proposed", "approved", "executed"],
    )

    def outcome(after: RegistrySnapshot) -> Outcome:
        step = StepRecord(kind="decide", registry=after, runs_by_action={"a1": 1}, decided="a1")
        return Outcome(
            service_url="",
            dataset="heart-disease",
            registry_before=before,
            steps=[step],
            actions=[action],
            approvals=["a1"],
        )

    assert unconfirmed_changes(outcome(retrained)) == []
    (problem,) = unconfirmed_changes(outcome(sneaky))
    assert "@champion 1 -> 2" in problem and "more than retrain_model explains" in problem
