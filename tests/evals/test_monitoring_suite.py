"""The monitoring suite: it loads and is gated, passes end to end on a really monitored
world, and its grader fails an agent that states numbers the store does not hold."""

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from copilot import narration
from copilot.deps import Deps
from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.settings import Settings
from evals.cases import Expect
from evals.datasets import REPORT_ONLY, SUITES, load_suite
from evals.environment import Agent as AgentUnderTest
from evals.metrics import SuiteResult, gates
from evals.monitoring import HistoryAnswer
from evals.report import EvalRun
from evals.runner import run_evals
from tests.conftest import TrainedRegistry
from tools.monitoring import MonitoringHistoryInput, monitoring_history

pytestmark = pytest.mark.anyio

SUITE = "monitoring"


async def _run(
    tmp_path: Path, trained_registry: TrainedRegistry, cases: list[str], agent: Any = None
) -> EvalRun:
    settings = Settings(copilot_home=tmp_path / "home", copilot_llm="offline")
    extra = {} if agent is None else {"agent_factory": agent}
    return await run_evals(
        settings,
        [SUITE],
        repeat=1,
        console=Console(file=io.StringIO()),
        template=trained_registry.root / "mlflow.db",
        cases=set(cases),
        **extra,
    )


def test_the_monitoring_suite_loads_and_is_gated_at_every_exact_answer() -> None:
    dataset = load_suite(SUITE)
    assert SUITE in SUITES and SUITE not in REPORT_ONLY
    assert any(isinstance(e, HistoryAnswer) for e in dataset.evaluators)
    assert all(case.inputs.setup.monitored for case in dataset.cases)
    expects = [case.metadata or Expect() for case in dataset.cases]
    graded = [s for e in expects for s in e.steps if s is not None and s.history_answer]
    assert len(graded) >= 8
    assert {e.category for e in expects} >= {"follow-up", "nothing-stored", "unknown-site"}
    measured = SuiteResult.model_construct(
        suite=SUITE, exact_answers=0.9, unconfirmed_state_changes=0
    )
    (gate,) = [g for g in gates([measured], "offline") if g.metric == "exact_answers"]
    assert gate.rule == "= 100%" and gate.enforced and not gate.passed


async def test_history_questions_pass_on_a_monitored_world(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    cases = ["model-getting-worse", "drift-trend-cleveland-then-hungary", "unknown-site-berlin"]
    run = await _run(tmp_path, trained_registry, cases)
    (suite,) = run.suites
    failures = [f"{f.case}: {f.reasons}" for f in suite.failures]
    assert run.passed and suite.pass_rate == 1.0, failures
    assert suite.exact_answers == 1.0 and suite.cases == 3


@dataclass
class _Turn:
    messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]


class _Stale:
    """Routes as the offline provider does and calls the real monitoring_history, but
    answers from the first check only (as if the newest had not been stored)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.agent: Agent[None, str] = Agent(FunctionModel(self.respond))
        tools = deps.tools

        @self.agent.tool_plain(name="monitoring_history")
        async def history(**arguments: Any) -> dict[str, Any]:
            found = await monitoring_history(tools, MonitoringHistoryInput(**arguments))
            return found.model_dump(mode="json")

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1].parts[0]
        if isinstance(last, ToolReturnPart):
            result = last.model_response_object()
            stale = [
                {**s, "points": s["points"][:1], "last": s["first"], "change": 0.0}
                for s in result["series"]
            ]
            told = narration.monitoring_history({**result, "checks": 1, "series": stale})
            return ModelResponse(parts=[TextPart(told)])
        first = messages[0]
        assert isinstance(first, ModelRequest)
        intent = understand(str(first.parts[-1].content), Memory(), self.deps.tools.card)
        assert intent.tool == "monitoring_history"
        return ModelResponse(parts=[ToolCallPart(intent.tool, intent.arguments)])

    async def send(self, conversation_id: str, text: str, user: str) -> _Turn:
        result = await self.agent.run(text)
        calls: dict[str, dict[str, Any]] = {}
        for message in result.all_messages():
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    calls[part.tool_call_id] = {
                        "tool": part.tool_name,
                        "arguments": part.args_as_dict(),
                    }
                elif isinstance(part, ToolReturnPart):
                    calls[part.tool_call_id]["result"] = part.model_response_object()
        content = {"role": "assistant", "content": result.output}
        return _Turn([content], list(calls.values()))

    async def continue_after_decision(self, action_id: str) -> _Turn:
        return _Turn([], [])


@contextlib.asynccontextmanager
async def _stale(deps: Deps) -> AsyncIterator[AgentUnderTest]:
    yield _Stale(deps)


async def test_an_answer_from_an_older_check_fails_the_monitoring_gate(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    run = await _run(tmp_path, trained_registry, ["model-getting-worse"], _stale)
    (suite,) = run.suites
    assert suite.exact_answers == 0.0 and not run.passed
    reasons = " ".join(suite.failures[0].reasons)
    assert "exact_answer: step 1: 2 checks not stated" in reasons
    assert "auc: latest" in reasons
