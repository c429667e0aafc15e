"""`copilot eval`: build the scratch world, run the suites against the configured
provider, grade, and say whether the gates hold."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Collection
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_evals import Case
from pydantic_evals.lifecycle import CaseLifecycle
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from copilot.deps import Deps
from copilot.settings import Settings
from evals.canaries import canary
from evals.cases import Expect, Script
from evals.datasets import DATASET, SUITES, SuiteError, load_suite, suite_digest
from evals.environment import Agent, AgentFactory, CaseWorld, Environment, open_environment
from evals.harness import Outcome, play
from evals.metrics import SuiteResult, gates, summarise
from evals.report import EvalRun


@contextlib.asynccontextmanager
async def copilot_agent(deps: Deps) -> AsyncIterator[Agent]:
    """The copilot itself (the graph over the configured provider), without a warm-up
    request per case."""
    from graphs.session import open_copilot  # noqa: PLC0415

    async with open_copilot(deps, warm=False) as copilot:
        yield copilot


# The case world of the case being run (set by WorldPerCase.setup, read by the task).
_WORLD: ContextVar[CaseWorld | None] = ContextVar("eval_case_world", default=None)


class WorldPerCase(CaseLifecycle[Script, Outcome, Expect]):
    """Each case's world (registry copy, copilot database, agent, and for approving cases
    a model service of its own) lives from before its task until its graders are done."""

    def __init__(
        self, case: Case[Script, Outcome, Expect], env: Environment, agent_factory: AgentFactory
    ) -> None:
        super().__init__(case)
        self.env = env
        self.agent_factory = agent_factory
        self.stack = contextlib.AsyncExitStack()

    async def setup(self) -> None:
        script = self.case.inputs
        if script.canary is not None:  # a canary needs only the model service
            return
        world = await self.stack.enter_async_context(
            self.env.case(
                self.agent_factory,
                registry_template=script.setup.registry,
                ttl_seconds=script.setup.ttl_seconds,
                four_eyes=script.setup.four_eyes,
                own_service=script.approves,
            )
        )
        _WORLD.set(world)

    async def teardown(self, result: Any) -> None:
        _WORLD.set(None)
        await self.stack.aclose()


async def run_case(env: Environment, script: Script) -> Outcome:
    """One case in the world its lifecycle set up (a canary needs only the model service)."""
    if script.canary is not None:
        return await canary(env, script.canary)
    world = _WORLD.get()
    if world is None:
        raise RuntimeError("a case ran without its world (WorldPerCase.setup)")
    return await play(world, script, env.card.model_name, uuid.uuid4().hex)


async def _suite(
    env: Environment,
    name: str,
    repeat: int,
    agent_factory: AgentFactory,
    progress: Progress,
    cases: Collection[str] | None,
) -> SuiteResult:
    dataset = load_suite(name)
    if cases is not None:
        dataset.cases = [case for case in dataset.cases if case.name in cases]
    task_id = progress.add_task(name, total=len(dataset.cases) * repeat)

    async def task(script: Script) -> Outcome:
        try:
            return await run_case(env, script)
        finally:
            progress.advance(task_id)

    started = time.perf_counter()
    report = await dataset.evaluate(
        task,
        name=name,
        task_name="copilot",
        max_concurrency=1,
        progress=False,
        repeat=repeat,
        lifecycle=lambda case: WorldPerCase(case, env, agent_factory),
    )
    return summarise(name, suite_digest(name), report, repeat, time.perf_counter() - started)


async def run_evals(
    settings: Settings,
    suites: list[str],
    *,
    repeat: int,
    console: Console,
    agent_factory: AgentFactory = copilot_agent,
    template: Path | None = None,
    cases: Collection[str] | None = None,
) -> EvalRun:
    """Every named suite (all when empty), each case `repeat` times, graded and gated.
    `agent_factory` builds the agent under test per case (default: the copilot over the
    configured provider); `template` skips training (an mlflow.db with v1 @champion and
    v2 @challenger); `cases` keeps only the cases of these names."""
    import pydantic_ai  # noqa: PLC0415

    pydantic_ai.BANNER_ENABLED = False  # the eval report owns the terminal
    if settings.copilot_dataset != DATASET:
        raise SuiteError(
            f"the suites are written for the {DATASET} card; "
            f"COPILOT_DATASET={settings.copilot_dataset!r}"
        )
    chosen = suites or list(SUITES)
    for name in chosen:
        load_suite(name)  # fail on a bad suite before minutes of setup
    started, clock = datetime.now(UTC), time.perf_counter()
    results: list[SuiteResult] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        setup = progress.add_task("setting up", total=None)

        def said(step: str) -> None:
            progress.update(setup, description=step)

        async with open_environment(settings, said, template=template) as env:
            progress.update(setup, description="ready", total=1, completed=1)
            setup_seconds = time.perf_counter() - clock
            for name in chosen:
                results.append(await _suite(env, name, repeat, agent_factory, progress, cases))
    checked = gates(results, settings.copilot_llm)
    return EvalRun(
        started_at=started,
        provider=settings.copilot_llm,
        repeat=repeat,
        suites=results,
        gates=checked,
        passed=all(g.passed for g in checked if g.enforced),
        setup_seconds=setup_seconds,
        seconds=time.perf_counter() - clock,
    )
