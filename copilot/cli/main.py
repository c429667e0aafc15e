"""The `copilot` command line (see docs/interfaces.md). Heavy imports happen inside commands."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast
from urllib.parse import urlsplit

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from copilot.actions import Decision, PendingAction
    from copilot.deps import Deps
    from copilot.settings import Settings
    from graphs.session import Copilot, Turn
    from model_service.cards import DatasetCard
    from model_service.training import TrainingResult

app = typer.Typer(
    name="copilot",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="MLOps copilot for a clinical risk model.",
)
serve_app = typer.Typer(no_args_is_help=True, help="Start one service in the foreground.")
app.add_typer(serve_app, name="serve")
actions_app = typer.Typer(no_args_is_help=True, help="Decide pending actions from the shell.")
app.add_typer(actions_app, name="actions")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log of pending actions.")
app.add_typer(audit_app, name="audit")

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and the exit code (2 = usage, 1 = failure)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    from copilot.settings import Settings  # noqa: PLC0415

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["loc"]:
            message = f"{str(first['loc'][0]).upper()}: {message}"
        fail(f"invalid configuration: {message}", 2)


@contextlib.contextmanager
def registry_failures(settings: Settings) -> Iterator[None]:
    """An unreachable or broken MLflow store, or an unwritable COPILOT_HOME: one line."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        yield
    except MlflowException as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        fail(f"MLflow at {settings.tracking_uri}: {first_line}")
    except OSError as error:
        fail(f"{error.filename or settings.home}: {error.strerror or error}")


def _quiet_libraries() -> None:
    from model_service.registry import disable_mlflow_telemetry  # noqa: PLC0415

    disable_mlflow_telemetry()
    os.environ.setdefault("PYDANTIC_AI_NO_BANNER", "1")  # its poster would fill our output
    for name in ("mlflow", "alembic", "evidently", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # uv-made environments have no pip; MLflow warns about it while writing conda.yaml.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def _card(settings: Settings, dataset: str | None) -> DatasetCard:
    from model_service.cards import CardError, get_card  # noqa: PLC0415

    try:
        return get_card(dataset or settings.copilot_dataset)
    except CardError as error:
        fail(str(error), 2)


def run_training(
    settings: Settings,
    card: DatasetCard,
    sites: list[str],
    kinds: list[str],
    seed: int,
    reason: str | None,
) -> TrainingResult:
    """Trains with a progress bar; known failures become one clear line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    from model_service.cards import CardError  # noqa: PLC0415
    from model_service.risk_model import MODEL_KINDS, ModelKind  # noqa: PLC0415
    from model_service.training import TrainingError, train  # noqa: PLC0415

    unknown = [kind for kind in kinds if kind not in MODEL_KINDS]
    if unknown:
        fail(f"--models: unknown model kind {unknown[0]!r}; known: {', '.join(MODEL_KINDS)}", 2)
    settings.home.mkdir(parents=True, exist_ok=True)
    _quiet_libraries()
    with (
        registry_failures(settings),
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task(f"training on {card.name}", total=None)

        def report(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        try:
            result = train(
                card,
                tracking_uri=settings.tracking_uri,
                sites=sites or None,
                kinds=cast("list[ModelKind]", kinds) or MODEL_KINDS,
                seed=seed,
                reason=reason,
                progress=report,
            )
        except CardError as error:
            fail(str(error), 2)
        except TrainingError as error:
            fail(str(error))
        progress.update(task, completed=progress.tasks[0].total)
    return result


def _split_sites(values: list[str] | None) -> list[str]:
    return [s.strip() for value in values or [] for s in value.split(",") if s.strip()]


@app.command()
def train(
    sites: Annotated[
        list[str] | None,
        typer.Option(
            "--sites", help="Training site(s); repeat or separate with commas. Default: the card's."
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset card (default: COPILOT_DATASET).")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models", help="Candidate kinds: logistic_regression, random_forest, xgboost."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic).")] = 42,
    reason: Annotated[str | None, typer.Option(help="Why this run; kept with the run.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    if_missing: Annotated[
        bool,
        typer.Option(
            "--if-missing",
            help="Train only when the registry has no @champion yet (one-shot jobs such as "
            "docker compose's `train`); otherwise say which version it is and exit 0.",
        ),
    ] = False,
) -> None:
    """Train candidates, log them to MLflow and register the best as a new version."""
    settings = load_settings()
    card = _card(settings, dataset)
    if if_missing:
        version = champion_version(settings, card)
        if version is not None:
            console.print(f"{card.model_name}@champion is version {version}: nothing to train")
            return
    result = run_training(settings, card, _split_sites(sites), _split_sites(models), seed, reason)
    if json_output:
        print(result.model_dump_json(indent=2))
        return
    _print_training(result)


def _print_training(result: TrainingResult) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{result.dataset} on {', '.join(result.sites) or 'all rows'}")
    for column in (
        "candidate",
        "CV ROC AUC",
        "holdout ROC AUC",
        "holdout Brier",
        "sensitivity",
        "specificity",
        "overfit gap",
        "noise flips",
        "calibrated",
    ):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in result.candidates:
        m = c.metrics
        mark = " *" if c.kind == result.best_kind else ""
        table.add_row(
            f"{c.kind}{mark}",
            f"{m['cv_roc_auc']:.3f}",
            f"{m['holdout_roc_auc']:.3f}",
            f"{m['holdout_brier']:.3f}",
            f"{m['holdout_sensitivity']:.2f}",
            f"{m['holdout_specificity']:.2f}",
            f"{m['overfit_gap']:+.3f}",
            f"{m['noise_flip_rate']:.1%}",
            "yes" if c.calibrated else "no",
        )
    out = Console(width=None if Console().is_terminal else 140)
    out.print(table)
    out.print(
        f"registered {result.model_name} version {result.version} as "
        f"@{result.alias} (run {result.run_id}, threshold {result.threshold:.3f})"
    )


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            fail(f"cannot listen on {host}:{port}: {error.strerror}")


def run_model_service(settings: Settings, host: str, port: int) -> None:
    """Runs the model service in the foreground until Ctrl-C / SIGTERM."""
    import uvicorn  # noqa: PLC0415

    from model_service.app import ServiceConfig, create_app, server_options  # noqa: PLC0415
    from model_service.observability import configure_json_logging  # noqa: PLC0415

    _check_port_free(host, port)
    configure_json_logging()
    _quiet_libraries()
    settings.home.mkdir(parents=True, exist_ok=True)
    config = ServiceConfig(
        card=_card(settings, None),
        tracking_uri=settings.tracking_uri,
        database_url=settings.database_url,
        reports_dir=settings.reports_dir,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
            **server_options(config),
        )
    )
    server.run()


@serve_app.command("model")
def serve_model(
    host: Annotated[str | None, typer.Option(help="Default: from MODEL_SERVICE_URL.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Default: from MODEL_SERVICE_URL.")
    ] = None,
) -> None:
    """The model service (FastAPI): predict, explain, drift, metrics."""
    settings = load_settings()
    default_host, default_port = _host_port(settings.model_service_url)
    run_model_service(settings, host or default_host, port or default_port)


def run_agent_api(settings: Settings, host: str, port: int) -> None:
    """Runs the agent API in the foreground until Ctrl-C / SIGTERM."""
    import uvicorn  # noqa: PLC0415

    from copilot.api.app import ApiConfigError, create_api  # noqa: PLC0415
    from model_service.observability import configure_json_logging  # noqa: PLC0415

    try:
        api = create_api(settings)
    except ApiConfigError as error:
        fail(str(error), 2)
    _check_port_free(host, port)
    configure_json_logging()
    _quiet_libraries()
    server = uvicorn.Server(
        uvicorn.Config(
            api,
            host=host,
            port=port,
            log_config=None,
            access_log=True,  # method, path and status only: bodies hold patient details
            timeout_graceful_shutdown=30,
            timeout_keep_alive=5,  # idle connections are closed
            limit_concurrency=512,  # past it uvicorn answers 503 at once
        )
    )
    server.run()


@serve_app.command("api")
def serve_api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8001,
) -> None:
    """The agent API (FastAPI): conversations, events and decisions; needs COPILOT_API_KEYS."""
    run_agent_api(load_settings(), host, port)


@serve_app.command("ui")
def serve_ui(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """The Chainlit chat UI (sign in with a name and key from COPILOT_API_KEYS)."""
    from copilot.chat.server import UiError  # noqa: PLC0415
    from copilot.chat.server import serve_ui as run_ui  # noqa: PLC0415

    settings = load_settings()
    _check_port_free(host, port)
    _quiet_libraries()
    console.print(
        f"chat UI  http://{host}:{port}  (state in {settings.home / 'ui'})", soft_wrap=True
    )
    try:
        run_ui(settings, host, port)
    except UiError as error:
        fail(str(error), 2)


def champion_version(settings: Settings, card: DatasetCard) -> str | None:
    """The version behind `<model>@champion`, or None when there is none (errors: one line)."""
    from model_service import registry  # noqa: PLC0415

    _quiet_libraries()
    with registry_failures(settings):
        settings.home.mkdir(parents=True, exist_ok=True)
        client = registry.client(settings.tracking_uri)
        champion = registry.alias_version(client, card.model_name, registry.CHAMPION)
    return None if champion is None else str(champion.version)


def ensure_champion(settings: Settings) -> None:
    """Trains and registers the demo model when the registry has no `@champion`."""
    card = _card(settings, None)
    if champion_version(settings, card) is None:
        console.print(f"no @champion for {card.model_name}: training the demo model first")
        result = run_training(settings, card, [], [], 42, "demo model for copilot up")
        _print_training(result)


@app.command()
def up(
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="The agent API's port.")] = 8001,
    ui_port: Annotated[int, typer.Option(min=1, max=65535, help="The chat UI's port.")] = 8080,
) -> None:
    """Everything for a newcomer: train the demo model if needed, then start the model
    service, the agent API, the chat UI and the monitor; Ctrl-C stops all four."""
    from copilot.cli import launcher  # noqa: PLC0415

    settings = load_settings()
    host, port = _host_port(settings.model_service_url)
    if len({port, api_port, ui_port}) < 3:
        fail(f"the three services need three ports, got {port}, {api_port}, {ui_port}", 2)
    for taken in (port, api_port, ui_port):
        _check_port_free(host, taken)
    ensure_champion(settings)
    launch = launcher.plan(settings, port, api_port, ui_port, host)
    logs = settings.home / "logs"

    def announce(launch: launcher.Launch) -> None:
        model, api, ui = launch.services[:3]
        console.print(f"chat UI        {ui.url}")
        console.print(f"agent API      {api.url}  (docs: {api.url}/docs)")
        console.print(f"model service  {model.url}  (docs: {model.url}/docs)")
        if launch.sign_in is not None:
            name, key = launch.sign_in
            console.print(f"sign in as     {name}  with key  {key}  (role approver)")
            console.print(f"               kept in {settings.home / launcher.LOCAL_KEY_FILE}")
        else:
            console.print("sign in with a name and key from COPILOT_API_KEYS")
        console.print(
            f"monitor        a check every {settings.copilot_monitor_interval_seconds} s "
            "(history: ask the chat; one now: copilot monitor --once)"
        )
        console.print(f"state in {settings.home}, logs in {logs}; press Ctrl-C to stop")

    console.print("starting the model service, the agent API, the chat UI and the monitor ...")
    try:
        launcher.run(launch, logs, announce)
    except launcher.LaunchError as error:
        fail(str(error))
    console.print("stopped")


@app.command()
def bench(
    rows: Annotated[int, typer.Option(help="Rows in the batch benchmark.")] = 10_000,
    requests: Annotated[int, typer.Option(help="Single-row requests per latency run.")] = 2000,
    skip_mlflow: Annotated[
        bool,
        typer.Option("--skip-mlflow", help="Do not start MLflow's scoring server for comparison."),
    ] = False,
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write results here.")
    ] = None,
) -> None:
    """Benchmarks the model service against the in-process floor and MLflow's server."""
    from copilot.cli.bench import BenchError, run_benchmarks  # noqa: PLC0415

    settings = load_settings()
    ensure_champion(settings)
    try:
        with registry_failures(settings):
            run_benchmarks(
                settings,
                rows=rows,
                requests=requests,
                with_mlflow=not skip_mlflow,
                json_path=json_output,
                console=Console(width=None if Console().is_terminal else 150),
            )
    except BenchError as error:
        fail(str(error))


@app.command("eval")
def eval_suites(
    suites: Annotated[
        list[str] | None,
        typer.Argument(
            help="Suites (default: all): routing, follow-ups, compositional, approvals, "
            "adversarial, clinical, cohorts, monitoring, paraphrases, paraphrases-heldout, "
            "paraphrases-heldout-2, paraphrases-heldout-3 (the last four reported, not gated)."
        ),
    ] = None,
    repeat: Annotated[
        int, typer.Option(min=1, max=16, help="Run each case K times (pass^k for k=1,2,4,8).")
    ] = 1,
    report: Annotated[
        Path | None,
        typer.Option(help="JSON report path (HTML beside it); default COPILOT_HOME/evals/<time>/."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="An earlier report.json to show regressions against.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N cases of each suite.")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="A random sample of N cases of each suite (see --seed)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="The seed of --sample.")] = 0,
    case_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001, max=86400, help="Stop a case after SECONDS; it is recorded as timed out."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Carry on an interrupted run (its directory, report.json or "
            "report.cases.jsonl): the cases it graded are not run again."
        ),
    ] = None,
) -> None:
    """Eval suites of the agent's behaviour on scratch state; exit 1 when a gate fails."""
    from evals.datasets import SUITES, SuiteError  # noqa: PLC0415
    from evals.environment import SetupFailed  # noqa: PLC0415
    from evals.records import RunLog, RunLogError, log_path, report_path  # noqa: PLC0415
    from evals.report import (  # noqa: PLC0415
        BaselineError,
        load_run,
        print_run,
        regressions,
        write_reports,
    )
    from evals.runner import run_evals  # noqa: PLC0415

    settings = load_settings()
    unknown = [s for s in suites or [] if s not in SUITES]
    if unknown:
        fail(f"SUITE: unknown suite {unknown[0]!r}; known: {', '.join(SUITES)}", 2)
    if limit is not None and sample is not None:
        fail(f"--limit {limit} and --sample {sample}: choose one way to pick cases", 2)
    if resume is not None:
        given = [
            name
            for name, value in (
                ("SUITES", suites),
                ("--repeat", repeat != 1),
                ("--limit", limit),
                ("--sample", sample),
                ("--seed", seed != 0),
                ("--report", report),
            )
            if value
        ]
        if given:
            fail(
                f"--resume {resume}: {', '.join(given)} cannot be given with --resume "
                "(the interrupted run's cases and report are carried on)",
                2,
            )
    earlier = None
    if baseline is not None:
        try:
            earlier = load_run(baseline)
        except BaselineError as error:
            fail(str(error), 2)
    _quiet_libraries()
    out = Console(width=None if Console().is_terminal else 160)
    if resume is not None:
        path = report_path(resume)
    else:
        path = report or settings.home / "evals" / _now_stamp() / "report.json"
        if path.is_dir():
            path = path / "report.json"
    log = RunLog(log_path(path))
    try:
        with registry_failures(settings):
            run = anyio.run(
                lambda: run_evals(
                    settings,
                    list(suites or []),
                    repeat=repeat,
                    console=console,
                    limit=limit,
                    sample=sample,
                    seed=seed,
                    case_timeout=case_timeout,
                    log=log,
                    resume=resume is not None,
                )
            )
    except RunLogError as error:
        fail(str(error), 2)
    except (SuiteError, SetupFailed) as error:
        fail(str(error))
    found = regressions(run, earlier) if earlier is not None else None
    with registry_failures(settings):
        json_path, html_path = write_reports(run, path, found)
    print_run(out, run, found)
    out.print(
        f"reports: {json_path} and {html_path} (cases as they finished: {log.path})",
        highlight=False,
        soft_wrap=True,
    )
    if not run.passed:
        raise typer.Exit(1)


def _now_stamp() -> str:
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _operator(name: str | None) -> str:
    """Who acts from this shell: the local account, named `--as NAME` in the audit log when
    given ("NAME via local:account": the four-eyes rule compares the account)."""
    account = f"local:{getpass.getuser()}"
    return f"{name} via {account}" if name else account


def _print_action(action: PendingAction, as_json: bool) -> None:
    if as_json:
        print(action.model_dump_json(indent=2))
        return
    out = Console(width=None if Console().is_terminal else 140)
    out.print(
        f"[bold]{action.id}[/]  {action.tool}  [bold]{action.status}[/]"
        + ("  (executing)" if action.executing else "")
    )
    lines = [
        f"  will: {action.summary}",
        f"  arguments: {json.dumps(action.arguments)}  sha256 {action.arguments_sha256[:12]}",
    ]
    if action.preview is not None and action.status == "pending":
        from copilot.narration import preview  # noqa: PLC0415

        lines.insert(1, f"  {preview(action.model_dump(mode='json'))}")
    if action.original_arguments is not None:
        lines.append(f"  proposed as: {json.dumps(action.original_arguments)}")
    if action.edited_by is not None and action.status == "pending":
        lines.append(
            f"  edited by {action.edited_by}: nothing has run; approve the new arguments with "
            f"`uv run copilot actions approve {action.id} --arguments-sha256 "
            f"{action.arguments_sha256}`"
        )
    lines.append(
        f"  requested by {action.requested_by} at {action.created_at:%Y-%m-%d %H:%M:%S}"
        f"; expires {action.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if action.decided_by:
        lines.append(
            f"  decided by {action.decided_by}" + (f": {action.comment}" if action.comment else "")
        )
    if action.result is not None:
        lines.append(f"  result: {json.dumps(action.result)}")
    for line in lines:  # user text (reasons, comments) is never read as markup
        out.print(escape(line), highlight=False)


def _run_action_command(
    work: Callable[[Deps], Awaitable[list[PendingAction]]], as_json: bool, listing: bool = False
) -> None:
    """Opens the deps, runs `work`, prints what it returns; action errors become one line."""
    from copilot.actions import ActionError, InvalidArguments  # noqa: PLC0415
    from copilot.deps import open_deps  # noqa: PLC0415

    settings = load_settings()
    _quiet_libraries()

    async def run() -> list[PendingAction]:
        async with open_deps(settings) as deps:
            return await work(deps)

    try:
        with registry_failures(settings):
            actions = anyio.run(run)
    except InvalidArguments as error:
        fail(str(error), 2)
    except ActionError as error:
        fail(str(error))
    if as_json and listing:
        print(json.dumps([a.model_dump(mode="json") for a in actions], indent=2))
        return
    for action in actions:
        _print_action(action, as_json)
    if not actions:
        Console().print("no actions")


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsName = Annotated[str | None, typer.Option("--as", help="Who decides (for the audit log).")]
Comment = Annotated[str | None, typer.Option(help="Why (kept with the decision).")]


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="Run one pass, print it, exit.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """The scheduled check of drift, data quality and performance per site, stored as a
    time series; proposes a retrain or rollback (never runs one) when a threshold is
    crossed and tells the webhook. Every COPILOT_MONITOR_INTERVAL_SECONDS, or `--once`."""
    from rich.table import Table  # noqa: PLC0415

    from copilot.cli.monitor import build_monitor, pass_summary  # noqa: PLC0415
    from copilot.deps import open_deps  # noqa: PLC0415
    from copilot.monitor import run_forever  # noqa: PLC0415
    from tools.errors import ToolError  # noqa: PLC0415

    settings = load_settings()
    _quiet_libraries()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> dict[str, Any] | None:
        async with open_deps(settings) as deps:
            watcher = build_monitor(deps)
            if not once:
                await run_forever(watcher, settings.copilot_monitor_interval_seconds)
            result = await watcher.run_pass()
            return None if result is None else pass_summary(result)

    try:
        with registry_failures(settings):
            summary = anyio.run(run)
    except ToolError as error:
        fail(str(error))
    except KeyboardInterrupt:
        return
    if summary is None:
        fail("another process is running a monitor check; try again when it is done")
    if json_output:
        print(json.dumps(summary, indent=2))
        return
    table = Table("site", "metric", "version", "value", "estimated", "labels", "rows", "note")
    for point in summary["points"]:
        value = point["value"]
        table.add_row(
            point["site"],
            point["metric"],
            point["model_version"] or "",
            "" if value is None else f"{value:.3g}",
            "yes" if point["estimated"] else "",
            str(point["labels"]),
            str(point["rows"]),
            escape(point["note"] or "")[:60],
        )
    out = Console()
    out.print(table)
    out.print(f"check {summary['check_id']} at {summary['checked_at']}")
    for action_id in summary["proposed"]:
        out.print(f"proposed action {action_id} (decide: copilot actions show {action_id})")
    for cause in summary["already_pending"]:
        out.print(f"{cause}: an action for it is already pending")
    for delivery in summary["deliveries"]:
        state = "delivered" if delivery["delivered"] else "not delivered"
        out.print(f"webhook {state}: {delivery['detail']}")


@actions_app.command("list")
def actions_list(
    status: Annotated[
        str | None, typer.Option(help="pending, approved, executed, ...")
    ] = "pending",
    json_output: JsonFlag = False,
) -> None:
    """Pending actions (or those with --status), newest first."""
    statuses = {"pending", "approved", "rejected", "expired", "executed", "failed", "all"}
    if status not in statuses:
        fail(f"--status: {status!r} is not one of {', '.join(sorted(statuses))}", 2)

    async def work(deps: Deps) -> list[PendingAction]:
        return deps.actions.list(None if status == "all" else status)  # type: ignore[arg-type]

    _run_action_command(work, json_output, listing=True)


@actions_app.command("show")
def actions_show(action_id: str, json_output: JsonFlag = False) -> None:
    """One action with its arguments, decision and result."""

    async def work(deps: Deps) -> list[PendingAction]:
        return [deps.actions.get(action_id)]

    _run_action_command(work, json_output)


def _decide_and_run(
    action_id: str,
    decision: Decision,
    by: str,
    arguments: dict[str, Any] | None,
    comment: str | None,
    as_json: bool,
    expected_sha256: str | None = None,
) -> None:
    """Records the decision; runs the action only when it is now approved (an edit leaves
    it pending, to be approved as a separate step)."""

    async def work(deps: Deps) -> list[PendingAction]:
        action = deps.actions.decide(action_id, decision, by, arguments, comment, expected_sha256)
        if action.status != "approved":
            return [action]
        return [await deps.actions.execute(action_id, deps.tools, progress=None)]

    _run_action_command(work, as_json)


ArgumentsSha256 = Annotated[
    str | None,
    typer.Option(
        "--arguments-sha256",
        help="Decide only if the action's arguments still have this hash (e.g. not edited "
        "since you read them).",
    ),
]


@actions_app.command("approve")
def actions_approve(
    action_id: str,
    as_name: AsName = None,
    comment: Comment = None,
    json_output: JsonFlag = False,
    arguments_sha256: ArgumentsSha256 = None,
) -> None:
    """Approve an action and run it (exactly once)."""
    _decide_and_run(
        action_id, "approve", _operator(as_name), None, comment, json_output, arguments_sha256
    )


@actions_app.command("reject")
def actions_reject(
    action_id: str, as_name: AsName = None, comment: Comment = None, json_output: JsonFlag = False
) -> None:
    """Reject an action; nothing runs."""
    _decide_and_run(action_id, "reject", _operator(as_name), None, comment, json_output)


@actions_app.command("edit")
def actions_edit(
    action_id: str,
    arguments: str,
    as_name: AsName = None,
    comment: Comment = None,
    json_output: JsonFlag = False,
) -> None:
    """Replace an action's arguments (a JSON object, validated first); nothing runs: the
    edited action stays pending, to be approved as a separate step."""
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as error:
        fail(f"ARGUMENTS: not JSON ({error.msg} at character {error.pos})", 2)
    if not isinstance(parsed, dict):
        fail("ARGUMENTS: must be a JSON object, e.g. '{\"force\": true}'", 2)
    _decide_and_run(action_id, "edit", _operator(as_name), parsed, comment, json_output)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 1 if it was altered."""
    settings = load_settings()
    from copilot.actions import ActionStore  # noqa: PLC0415
    from model_service.database import make_engine  # noqa: PLC0415

    engine = make_engine(settings.database_url)
    try:
        result = ActionStore(
            engine, audit_key=settings.audit_key(), ttl_seconds=settings.copilot_action_ttl_seconds
        ).verify_audit()
    finally:
        engine.dispose()
    if not result.ok:
        for problem in result.problems:
            console.print(f"[red]broken:[/] {escape(problem)}", highlight=False)
        fail(
            f"the audit log is not intact ({len(result.problems)} problem(s) in {result.rows} rows)"
        )
    Console().print(f"audit log intact: {result.rows} rows, hash chain verified")


def _print_turn(turn: Turn, as_json: bool) -> None:
    if as_json:
        print(turn.model_dump_json(indent=2))
        return
    out = Console(width=None if Console().is_terminal else 140)
    for message in turn.messages:
        out.print(f"[bold cyan]copilot>[/] {escape(message['content'])}", highlight=False)


@dataclass(frozen=True)
class _ChatTurns:
    """Turns of one terminal conversation, run by the turn recipe every surface shares
    (graphs.turns: the conversation's lease, its events published for followers)."""

    copilot: Copilot
    conversation_id: str

    async def send(self, text: str, operator: str) -> Turn:
        from graphs import turns  # noqa: PLC0415

        return await turns.send(self.copilot, self.conversation_id, text, operator)

    async def decide(
        self,
        action_id: str,
        decision: Decision,
        operator: str,
        arguments: dict[str, Any] | None,
        comment: str | None,
        expected_sha256: str | None = None,
    ) -> Turn:
        """Records the decision and runs what follows, waiting up to 30 s for a turn of the
        conversation running elsewhere (the decision is not recorded while one runs); a
        decision on arguments other than `expected_sha256` is refused."""
        from graphs import turns  # noqa: PLC0415

        _, turn = await turns.decide(
            self.copilot,
            action_id,
            decision,
            operator,
            arguments,
            comment,
            expected_sha256=expected_sha256,
        )
        return turn


async def _decide_at_prompt(turns: _ChatTurns, action_id: str, operator: str) -> None:
    """Asks the local operator (the approver here) what to do with a proposal."""
    from copilot.actions import ActionError  # noqa: PLC0415
    from copilot.conversations import ConversationError  # noqa: PLC0415
    from copilot.narration import preview  # noqa: PLC0415

    actions = turns.copilot.deps.actions
    shown: PendingAction | None = None
    while True:
        action = actions.get(action_id)
        if action.status != "pending":
            return
        if shown is None or shown.arguments_sha256 != action.arguments_sha256:
            ahead = preview(action.model_dump(mode="json"))
            edited = f" (edited by {action.edited_by})" if action.edited_by else ""
            console.print(
                f"[bold]pending{escape(edited)}:[/] {escape(action.summary)}\n"
                + (f"  {escape(ahead)}\n" if ahead else "")
                + f"  arguments: {escape(json.dumps(action.arguments))}"
            )
            shown = action
        answer = typer.prompt("approve, edit, reject or later? [a/e/r/l]", default="l").strip()
        choice = {"a": "approve", "e": "edit", "r": "reject", "l": "later"}.get(answer[:1].lower())
        if choice is None:
            continue
        if choice == "later":
            console.print(
                f"left pending: decide later with `uv run copilot actions approve {action_id}`"
            )
            return
        arguments = None
        if choice == "edit":
            try:
                arguments = json.loads(typer.prompt("new arguments (JSON)"))
            except json.JSONDecodeError as error:
                console.print(f"[red]not JSON:[/] {error.msg}")
                continue
        comment = typer.prompt("comment", default="", show_default=False) or None
        try:
            turn = await turns.decide(
                action_id,
                choice,  # type: ignore[arg-type]
                operator,
                arguments,
                comment,
                shown.arguments_sha256,  # what was shown is what is decided
            )
        except (ActionError, ConversationError) as error:
            console.print(f"[red]{escape(str(error))}[/]")
            continue  # asked again while it is pending (with its new arguments if edited)
        _print_turn(turn, as_json=False)
        if choice != "edit":
            return


@app.command()
def chat(
    text: Annotated[str | None, typer.Argument(help="One turn, then exit.")] = None,
    conversation: Annotated[str | None, typer.Option(help="Continue this conversation.")] = None,
    json_output: JsonFlag = False,
    as_name: AsName = None,
) -> None:
    """Chat with the copilot in the terminal; proposals are decided at the prompt."""
    from copilot.actions import ActionError  # noqa: PLC0415
    from copilot.conversations import ConversationError  # noqa: PLC0415
    from copilot.deps import open_deps  # noqa: PLC0415
    from graphs.session import open_copilot  # noqa: PLC0415

    settings = load_settings()
    _quiet_libraries()
    operator = _operator(as_name)

    async def run() -> None:
        async with open_deps(settings) as deps, open_copilot(deps) as copilot:
            if copilot.warm_up is not None and not copilot.warm_up.ok:
                typer.echo(f"warning: {copilot.warm_up.detail}", err=True)
            conversation_id = conversation
            if conversation_id is None:
                owner = operator.rpartition(" via ")[2]  # the account, as the API names owners
                created = await anyio.to_thread.run_sync(deps.conversations.create, owner)
                conversation_id = created.id
            turns = _ChatTurns(copilot, conversation_id)
            if text is not None:
                _print_turn(await turns.send(text, operator), json_output)
                return
            console.print(f"conversation {conversation_id}; empty line or Ctrl-D to leave")
            while True:
                try:
                    line = input("you> ").strip()
                except EOFError:
                    return
                if not line:
                    return
                try:
                    turn = await turns.send(line, operator)
                except ConversationError as error:
                    console.print(f"[red]{escape(str(error))}[/]")
                    continue
                _print_turn(turn, json_output)
                proposed = [
                    c["result"]["action_id"]
                    for c in turn.tool_calls
                    if isinstance(c.get("result"), dict) and "action_id" in c["result"]
                ]
                for action_id in proposed:
                    await _decide_at_prompt(turns, action_id, operator)

    try:
        with registry_failures(settings):
            anyio.run(run)
    except (ActionError, ConversationError) as error:
        fail(str(error))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
