"""`copilot eval`: build the scratch world, run the suites against the configured
provider, grade, and say whether the gates hold."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic_evals import Case
from pydantic_evals.lifecycle import CaseLifecycle
from pydantic_evals.reporting import ReportCaseFailure
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from copilot.deps import Deps
from copilot.settings import Settings
from evals.canaries import canary
from evals.cases import Expect, Script
from evals.datasets import DATASET, SUITES, EvalDataset, SuiteError, load_suite, suite_digest
from evals.environment import Agent, AgentFactory, CaseWorld, Environment, open_environment
from evals.harness import Outcome, play
from evals.metrics import SuiteResult, gates, summarise
from evals.records import (
    CaseRecord,
    RunHeader,
    RunLog,
    RunLogError,
    Selection,
    failed,
    graded,
)
from evals.report import EvalRun


@contextlib.asynccontextmanager
async def copilot_agent(deps: Deps) -> AsyncIterator[Agent]:
    """The copilot itself (the graph over the configured provider), without a warm-up
    request per case."""
    from graphs.session import open_copilot  # noqa: PLC0415

    async with open_copilot(deps, warm=False) as copilot:
        yield copilot


# The lifecycle of the case being run (set by WorldPerCase.setup, read by the task).
_CASE: ContextVar[WorldPerCase | None] = ContextVar("eval_case", default=None)


class CaseTimedOut(TimeoutError):
    """A case ran past --case-timeout: recorded as timed out, and the run goes on."""


class WorldPerCase(CaseLifecycle[Script, Outcome, Expect]):
    """Each case's world (registry copy, copilot database, agent, and for approving cases
    a model service of its own) lives from before its task until its graders are done;
    then the case's record goes to `recorded` (the run log)."""

    def __init__(
        self,
        case: Case[Script, Outcome, Expect],
        env: Environment,
        agent_factory: AgentFactory,
        suite: str,
        recorded: Callable[[CaseRecord], None],
    ) -> None:
        super().__init__(case)
        self.env = env
        self.agent_factory = agent_factory
        self.suite = suite
        self.recorded = recorded
        self.world: CaseWorld | None = None
        self.timed_out = False
        self.started = time.perf_counter()
        self.stack = contextlib.AsyncExitStack()

    async def setup(self) -> None:
        self.started = time.perf_counter()
        _CASE.set(self)
        script = self.case.inputs
        if script.canary is not None:  # a canary needs only the model service
            return
        self.world = await self.stack.enter_async_context(
            self.env.case(
                self.agent_factory,
                registry_template=script.setup.registry,
                ttl_seconds=script.setup.ttl_seconds,
                four_eyes=script.setup.four_eyes,
                own_service=script.approves,
                monitored=script.setup.monitored,
            )
        )

    async def teardown(self, result: Any) -> None:
        _CASE.set(None)
        await self.stack.aclose()
        if result is None:  # interrupted: not graded, so not recorded
            return
        seconds = time.perf_counter() - self.started
        if isinstance(result, ReportCaseFailure):
            self.recorded(failed(self.suite, result, seconds, self.timed_out))
        else:
            self.recorded(graded(self.suite, result, seconds))


async def run_case(env: Environment, script: Script, timeout: float | None = None) -> Outcome:
    """One case in the world its lifecycle set up (a canary needs only the model service),
    stopped after `timeout` seconds."""
    lifecycle = _CASE.get()
    if lifecycle is None:
        raise RuntimeError("a case ran without its lifecycle (WorldPerCase.setup)")
    try:
        with anyio.fail_after(timeout):
            if script.canary is not None:
                return await canary(env, script.canary)
            if lifecycle.world is None:
                raise RuntimeError("a case ran without its world (WorldPerCase.setup)")
            return await play(lifecycle.world, script, env.card.model_name, uuid.uuid4().hex)
    except TimeoutError:
        lifecycle.timed_out = True
        raise CaseTimedOut(f"timed out after {timeout:g} s (--case-timeout)") from None


def select(
    dataset: EvalDataset, selection: Selection, done: Collection[str]
) -> list[Case[Script, Any, Expect]]:
    """The selection's cases of the suite (the first `limit`, or a `sample` drawn with
    `seed`, in suite order), less those already recorded `repeat` times (`done`)."""
    cases = list(dataset.cases)
    if selection.sample is not None and selection.sample < len(cases):
        chosen = set(random.Random(selection.seed).sample(range(len(cases)), selection.sample))
        cases = [case for index, case in enumerate(cases) if index in chosen]
    if selection.limit is not None:
        cases = cases[: selection.limit]
    return [case for case in cases if case.name not in done]


async def _suite(
    env: Environment,
    name: str,
    selection: Selection,
    agent_factory: AgentFactory,
    progress: Progress,
    only: Collection[str] | None,
    earlier: list[CaseRecord],
    log: RunLog | None,
    case_timeout: float | None,
) -> tuple[SuiteResult, list[CaseRecord]]:
    dataset = load_suite(name)
    repeat = selection.repeat
    runs: dict[str, list[CaseRecord]] = defaultdict(list)
    for record in earlier:
        runs[record.source_case].append(record)
    done = {case for case, records in runs.items() if len(records) >= repeat}
    kept = [record for record in earlier if record.source_case in done]
    dataset.cases = select(dataset, selection, done)
    if only is not None:
        dataset.cases = [case for case in dataset.cases if case.name in only]
    task_id = progress.add_task(name, total=(len(dataset.cases) + len(done)) * repeat)
    progress.advance(task_id, len(kept))
    records: list[CaseRecord] = []

    def recorded(record: CaseRecord) -> None:
        records.append(record)
        if log is not None:
            log.append(record)

    async def task(script: Script) -> Outcome:
        try:
            return await run_case(env, script, case_timeout)
        finally:
            progress.advance(task_id)

    if any(case.inputs.setup.monitored for case in dataset.cases):
        # made once, before the cases, so no case's seconds or timeout include it
        seeding = progress.add_task(f"{name}: seeding the monitor history", total=None)
        await env.monitored_database(lambda step: progress.update(seeding, description=step))
        progress.update(seeding, total=1, completed=1)
    if dataset.cases:
        await dataset.evaluate(
            task,
            name=name,
            task_name="copilot",
            max_concurrency=1,
            progress=False,
            repeat=repeat,
            lifecycle=lambda case: WorldPerCase(case, env, agent_factory, name, recorded),
        )
    every = kept + records
    return summarise(name, suite_digest(name), every, repeat), every


async def run_evals(
    settings: Settings,
    suites: list[str],
    *,
    repeat: int,
    console: Console,
    agent_factory: AgentFactory = copilot_agent,
    template: Path | None = None,
    cases: Collection[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    case_timeout: float | None = None,
    log: RunLog | None = None,
    resume: bool = False,
) -> EvalRun:
    """Every named suite (all when empty), each case `repeat` times, graded and gated.
    `agent_factory` builds the agent under test per case (default: the copilot over the
    configured provider); `template` skips training (an mlflow.db with v1 @champion and
    v2 @challenger); `cases` keeps only the cases of these names; `limit` / `sample` (with
    `seed`) the first N or a seeded sample of N per suite; `case_timeout` stops a case
    after that many seconds (recorded as timed out). Each graded case is appended to `log`
    as it finishes; with `resume`, the log's run is carried on (its provider and cases) and
    the cases it recorded are not run again."""
    import pydantic_ai  # noqa: PLC0415

    pydantic_ai.BANNER_ENABLED = False  # the eval report owns the terminal
    if settings.copilot_dataset != DATASET:
        raise SuiteError(
            f"the suites are written for the {DATASET} card; "
            f"COPILOT_DATASET={settings.copilot_dataset!r}"
        )
    selection = Selection(
        suites=suites or list(SUITES), repeat=repeat, limit=limit, sample=sample, seed=seed
    )
    earlier: list[CaseRecord] = []
    started = datetime.now(UTC)
    if resume:
        if log is None:
            raise RunLogError("--resume needs the run log of the run to carry on")
        header, earlier = log.carry_on()
        if header.provider != settings.copilot_llm:
            raise RunLogError(
                f"--resume: the run was made with COPILOT_LLM={header.provider!r}, "
                f"not {settings.copilot_llm!r}: one run measures one provider"
            )
        selection, started = header.selection, header.started_at
    elif log is not None:
        log.start(RunHeader(provider=settings.copilot_llm, started_at=started, selection=selection))
    for name in selection.suites:
        load_suite(name)  # fail on a bad suite before minutes of setup
    clock = time.perf_counter()
    results: list[SuiteResult] = []
    records: list[CaseRecord] = []
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
            for name in selection.suites:
                mine = [record for record in earlier if record.suite == name]
                result, played = await _suite(
                    env,
                    name,
                    selection,
                    agent_factory,
                    progress,
                    cases,
                    mine,
                    log,
                    case_timeout,
                )
                results.append(result)
                records.extend(played)
    checked = gates(results, settings.copilot_llm)
    return EvalRun(
        started_at=started,
        provider=settings.copilot_llm,
        repeat=selection.repeat,
        selection=selection,
        case_timeout_seconds=case_timeout,
        resumed=len(earlier),
        suites=results,
        cases=records,
        gates=checked,
        passed=all(g.passed for g in checked if g.enforced),
        setup_seconds=setup_seconds,
        seconds=time.perf_counter() - clock,
    )
