"""Tools about models and training runs: what is served, what was trained, how runs compare."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, Field, model_validator

from model_service import registry
from model_service.schemas import ModelInfo
from model_service.training import EvaluationSet, run_evaluation_set
from tools.context import ToolContext
from tools.errors import InvalidToolInput, NotFound
from tools.service import call

# Metrics shown for runs, and whether higher is better.
RUN_METRICS: dict[str, bool] = {
    "holdout_roc_auc": True,
    "holdout_pr_auc": True,
    "holdout_brier": False,
    "holdout_calibration_error": False,
    "holdout_sensitivity": True,
    "holdout_specificity": True,
    "cv_roc_auc": True,
    "overfit_gap": False,
    "noise_flip_rate": False,
}


async def model_info(ctx: ToolContext) -> ModelInfo:
    """The model being served: name, version, kind, threshold, its metrics and the features
    it expects (units, allowed values, limits, training ranges).

    Use for "which model is live?" or "what inputs does it need?".
    """
    return ModelInfo.model_validate(await call(ctx, "GET", "/v1/model"))


class ListRunsInput(BaseModel):
    """Which training runs to list."""

    limit: int = Field(default=5, ge=1, le=50, description="How many, newest first.")
    site: str | None = Field(default=None, description="Only runs trained on this site.")


class RunSummary(BaseModel):
    """One training run as the registry knows it."""

    run_id: str
    name: str
    started_at: datetime
    dataset: str
    sites: list[str]
    best_kind: str
    reason: str
    metrics: dict[str, float] = Field(
        description="holdout_*: on its evaluation set; cv_*, overfit_gap: on its own "
        "training rows (cross-validated)."
    )
    evaluation_set: EvaluationSet | None = Field(
        default=None,
        description="The rows its holdout_* metrics were measured on (null: a run from "
        "before the shared evaluation set, judged on a holdout of its own).",
    )
    version: str | None = Field(description="The registered model version it produced.")
    aliases: list[str] = Field(description="e.g. ['champion'] or ['challenger'].")


class RunList(BaseModel):
    runs: list[RunSummary]


def _summaries(ctx: ToolContext, runs: list[Any]) -> list[RunSummary]:
    client = registry.client(ctx.tracking_uri)
    name = ctx.card.model_name
    versions = {v.run_id: str(v.version) for v in client.search_model_versions(f"name='{name}'")}
    aliases: dict[str, list[str]] = {}
    if versions:  # the version search leaves aliases out; the registered model has them
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
    summaries = []
    for run in runs:
        tags = run.data.tags
        version = versions.get(run.info.run_id)
        summaries.append(
            RunSummary(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id,
                started_at=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
                dataset=tags.get("copilot.dataset", ctx.card.name),
                sites=json.loads(tags.get("copilot.sites", "[]")),
                best_kind=tags.get("copilot.best_kind", ""),
                reason=tags.get("copilot.reason", ""),
                metrics={k: v for k, v in run.data.metrics.items() if k in RUN_METRICS},
                evaluation_set=run_evaluation_set(tags),
                version=version,
                aliases=sorted(aliases.get(version, [])) if version else [],
            )
        )
    return summaries


def _training_runs(ctx: ToolContext, limit: int, site: str | None) -> list[RunSummary]:
    client = registry.client(ctx.tracking_uri)
    experiment = client.get_experiment_by_name(f"{ctx.card.name}-training")
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`copilot.kind` = 'training'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    if site is not None:
        runs = [r for r in runs if site in json.loads(r.data.tags.get("copilot.sites", "[]"))]
    return _summaries(ctx, runs[:limit])


async def list_runs(ctx: ToolContext, args: ListRunsInput) -> RunList:
    """List recent training runs, newest first: sites, best model kind, key holdout metrics,
    and the registered version with its aliases.

    Use for "show the last runs" or "which runs used Hungary?".
    """
    if args.site is not None and ctx.card.site_column is not None:
        known = ctx.card.sites()
        if args.site not in known:
            raise InvalidToolInput([f"unknown site {args.site!r}; known: {', '.join(known)}"])
    runs = await anyio.to_thread.run_sync(_training_runs, ctx, args.limit, args.site)
    return RunList(runs=runs)


class CompareRunsInput(BaseModel):
    """Which runs to compare: explicit ids, or the last N runs."""

    run_ids: list[str] | None = Field(
        default=None, min_length=2, max_length=5, description="Run ids, oldest or newest first."
    )
    last: int = Field(default=2, ge=2, le=5, description="Compare the last N runs (no ids).")

    @model_validator(mode="after")
    def _distinct(self) -> CompareRunsInput:
        if self.run_ids is not None and len(set(self.run_ids)) != len(self.run_ids):
            raise ValueError("run_ids must be different runs")
        return self


class MetricComparison(BaseModel):
    metric: str
    higher_is_better: bool
    values: dict[str, float] = Field(description="run_id -> value")
    best_run: str
    delta: float | None = Field(description="Second run minus first (when two runs).")


class RunComparison(BaseModel):
    """Runs side by side: shared metrics with the better run per metric, differing params."""

    runs: list[RunSummary]
    evaluation_set: EvaluationSet | None = Field(
        default=None,
        description="The one set of rows every run's holdout_* metrics were measured on; "
        "null when they were measured on different rows (holdout_* metrics are then left out).",
    )
    metrics: list[MetricComparison]
    params_differing: dict[str, dict[str, str]] = Field(description="param -> run_id -> value")


def shared_evaluation_set(summaries: list[RunSummary]) -> EvaluationSet | None:
    """The evaluation set all the runs were measured on, or None when not one and the same."""
    sets = [summary.evaluation_set for summary in summaries]
    first = sets[0]
    if first is None or any(s is None or s.digest != first.digest for s in sets):
        return None
    return first


def _get_runs(ctx: ToolContext, run_ids: list[str]) -> tuple[list[RunSummary], list[Any]]:
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    client = registry.client(ctx.tracking_uri)
    runs = []
    for run_id in run_ids:
        try:
            runs.append(client.get_run(run_id))
        except MlflowException as error:
            if registry.is_not_found(error):
                raise NotFound(f"run {run_id!r} does not exist") from None
            raise
    return _summaries(ctx, runs), runs


async def compare_runs(ctx: ToolContext, args: CompareRunsInput) -> RunComparison:
    """Compare training runs side by side: each shared metric with the better run, and the
    parameters that differ. Without run ids, compares the last N runs (default 2). Holdout
    metrics are compared only when every run was measured on the same evaluation set (named
    in the result: rows and sites).

    Use for "compare the last two training runs" or "compare it with the previous run".
    """
    run_ids = args.run_ids
    if run_ids is None:
        latest = await anyio.to_thread.run_sync(_training_runs, ctx, args.last, None)
        if len(latest) < 2:
            raise InvalidToolInput(
                [f"only {len(latest)} training run(s) of {ctx.card.name} exist; need 2 to compare"]
            )
        run_ids = [run.run_id for run in reversed(latest)]  # oldest first
    summaries, runs = await anyio.to_thread.run_sync(_get_runs, ctx, run_ids)
    shared = shared_evaluation_set(summaries)
    metrics = []
    for name, higher in RUN_METRICS.items():
        if shared is None and name.startswith("holdout_"):
            continue  # measured on different rows: not comparable
        values = {r.info.run_id: r.data.metrics[name] for r in runs if name in r.data.metrics}
        if len(values) != len(runs):
            continue  # compare only what every run has
        best = (max if higher else min)(values, key=lambda run_id: values[run_id])
        delta = values[run_ids[1]] - values[run_ids[0]] if len(run_ids) == 2 else None
        metrics.append(
            MetricComparison(
                metric=name, higher_is_better=higher, values=values, best_run=best, delta=delta
            )
        )
    params: dict[str, dict[str, str]] = {}
    for key in sorted({k for r in runs for k in r.data.params}):
        values = {r.info.run_id: r.data.params.get(key, "") for r in runs}
        if len(set(values.values())) > 1:
            params[key] = values
    return RunComparison(
        runs=summaries, evaluation_set=shared, metrics=metrics, params_differing=params
    )
