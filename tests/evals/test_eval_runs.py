"""`copilot eval` against a slow provider: the first N cases or a seeded sample, a per-case
timeout, a run log a killed run resumes from, and tokens and seconds per case and suite."""

import contextlib
import dataclasses
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from rich.console import Console
from typer.testing import CliRunner

from copilot.cli.main import app
from copilot.deps import Deps
from copilot.llm.router import build_router
from copilot.settings import Settings
from evals.datasets import load_suite
from evals.environment import Agent as AgentUnderTest
from evals.records import RunHeader, RunLog, RunLogError, Selection, log_path, report_path
from evals.report import EvalRun, print_run, write_reports
from evals.runner import copilot_agent, run_evals, select
from tests.conftest import TrainedRegistry

pytestmark = pytest.mark.anyio
TWO = {"routing": ["list-recent", "model-live"]}


async def _run(
    home: Path, registry: TrainedRegistry, agent: Any = copilot_agent, **options: Any
) -> EvalRun:
    return await run_evals(
        Settings(copilot_home=home, copilot_llm="offline"),
        list(TWO),
        repeat=1,
        console=Console(file=io.StringIO()),
        template=registry.root / "mlflow.db",
        cases=set(TWO["routing"]),
        agent_factory=agent,
        **options,
    )


def test_the_first_n_or_a_seeded_sample_in_suite_order() -> None:
    routing = load_suite("routing")
    names = [case.name for case in routing.cases]
    first = select(routing, Selection(suites=["routing"], limit=3), done=())
    assert [case.name for case in first] == names[:3]
    drawn = [c.name for c in select(routing, Selection(suites=["routing"], sample=8), ())]
    again = [c.name for c in select(routing, Selection(suites=["routing"], sample=8), ())]
    other = [c.name for c in select(routing, Selection(suites=["routing"], sample=8, seed=7), ())]
    assert len(drawn) == 8 and drawn == again and drawn != other
    assert drawn == [name for name in names if name in drawn]  # suite order
    rest = select(routing, Selection(suites=["routing"], limit=3), done={names[1]})
    assert [case.name for case in rest] == [names[0], names[2]]


@contextlib.asynccontextmanager
async def _hangs_on_the_live_model(deps: Deps) -> AsyncIterator[AgentUnderTest]:
    """The real graph; its router model never answers "which model is live?" and sends
    every other request to model_info."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.graph import build_graph
    from graphs.session import Copilot

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        first = messages[0]
        assert isinstance(first, ModelRequest)
        if "live" in str(first.parts[-1].content):
            await anyio.sleep(3600)
        return ModelResponse(parts=[ToolCallPart("model_info", {})])

    agents = dataclasses.replace(deps.agents, router=build_router(FunctionModel(respond)))
    yield Copilot(dataclasses.replace(deps, agents=agents), build_graph(InMemorySaver()))


async def test_a_case_past_its_timeout_is_recorded_and_the_run_goes_on(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    run = await _run(tmp_path, trained_registry, _hangs_on_the_live_model, case_timeout=2.0)
    (suite,) = run.suites
    by_case = {case.source_case: case for case in run.cases}
    hung, answered = by_case["model-live"], by_case["list-recent"]
    assert hung.timed_out and not hung.passed and hung.seconds < 60
    assert hung.reasons == ["timed out after 2 s (--case-timeout)"]
    assert not answered.timed_out and answered.routed is False  # model_info, not list_runs
    assert answered.llm_requests == 1 and answered.input_tokens > 0  # FunctionModel counts
    assert suite.timed_out == 1 and suite.accuracy == 0.0 and suite.runs == 2
    assert suite.input_tokens == answered.input_tokens and suite.seconds_per_case is not None
    json_path, html_path = write_reports(run, tmp_path / "report")
    saved = json.loads(json_path.read_text())
    assert [c["timed_out"] for c in saved["cases"]] == [c.timed_out for c in run.cases]
    assert saved["case_timeout_seconds"] == 2.0
    page = html_path.read_text()
    assert "<h2>Cases</h2>" in page and "timed out" in page
    shown = io.StringIO()
    print_run(Console(file=shown, width=250), run)
    assert "timed out" in shown.getvalue() and "case timeout 2 s" in shown.getvalue()


async def test_a_killed_run_resumes_without_playing_its_graded_cases_again(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    log = RunLog(log_path(tmp_path / "run" / "report.json"))
    whole = await _run(tmp_path / "a", trained_registry, log=log)
    assert whole.suites[0].accuracy == 1.0
    header, graded, second = log.path.read_text().splitlines()
    assert json.loads(graded)["case"]["source_case"] == "list-recent"
    log.path.write_text(f"{header}\n{graded}\n{second[:40]}")  # killed while writing the second

    played: list[str] = []

    @contextlib.asynccontextmanager
    async def counted(deps: Deps) -> AsyncIterator[AgentUnderTest]:
        async with copilot_agent(deps) as agent:
            original = agent.send

            async def send(conversation_id: str, text: str, user: str) -> Any:
                played.append(text)
                return await original(conversation_id, text, user)

            agent.send = send  # type: ignore[method-assign]
            yield agent

    resumed = await _run(tmp_path / "b", trained_registry, counted, log=log, resume=True)
    assert played == ["which model is live?"]
    assert resumed.resumed == 1 and resumed.started_at == whole.started_at
    assert sorted(c.source_case for c in resumed.cases) == ["list-recent", "model-live"]
    assert resumed.suites[0].accuracy == 1.0 and resumed.suites[0].runs == 2
    _, records = log.read()
    assert [r.source_case for r in records] == ["list-recent", "model-live"]


def test_eval_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COPILOT_HOME": str(tmp_path)}
    both = runner.invoke(app, ["eval", "--limit", "2", "--sample", "3"], env=env)
    assert both.exit_code == 2 and "--limit 2 and --sample 3: choose one" in both.output
    mixed = runner.invoke(app, ["eval", "--resume", str(tmp_path), "--limit", "2"], env=env)
    assert mixed.exit_code == 2 and "--limit cannot be given with --resume" in mixed.output
    missing = runner.invoke(app, ["eval", "--resume", str(tmp_path)], env=env)
    assert missing.exit_code == 2 and "no run log at" in missing.output
    assert str(tmp_path / "report.cases.jsonl") in missing.output
    zero = runner.invoke(app, ["eval", "--case-timeout", "0"], env=env)
    assert zero.exit_code == 2 and "--case-timeout" in zero.output
    assert report_path(tmp_path / "r.cases.jsonl") == tmp_path / "r.json"


async def test_a_resumed_run_keeps_its_provider(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "report.cases.jsonl")
    log.start(
        RunHeader(
            provider="openai:gpt-4.1-mini",
            started_at=datetime.now(UTC),
            selection=Selection(suites=["routing"]),
        )
    )
    with pytest.raises(RunLogError, match=re.escape("made with COPILOT_LLM='openai:gpt-4.1-mini'")):
        await run_evals(
            Settings(copilot_home=tmp_path, copilot_llm="offline"),
            [],
            repeat=1,
            console=Console(file=io.StringIO()),
            log=log,
            resume=True,
        )
