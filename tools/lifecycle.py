"""The state-changing tools: retrain, promote, roll back.

These change what patients are scored with. Nothing may call them except the execution
of an approved pending action (copilot/actions.py), which checks the approval and the
arguments' hash before it calls; they are not offered to the LLM directly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import anyio.to_thread
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from model_service import registry
from model_service.cards import CardError
from model_service.risk_model import MODEL_KINDS, ModelKind
from model_service.training import EvaluationSet, TrainingError, run_evaluation_set, train
from tools.context import ToolContext
from tools.errors import InvalidToolInput, ToolError

# The promotion gate, on the shared evaluation set (model_service/training.py).
AUC_MARGIN = 0.02  # the candidate's ROC AUC may be at most this much below the champion's
MAX_NOISE_FLIP_RATE = 0.15  # share of evaluation-set predictions that flip under measurement noise

ProgressCallback = Callable[[str, int, int], None]


FOLLOW_TIMEOUT_SECONDS = 10.0  # the model service polls the alias every 2 s
MAX_SITES = 16  # a dataset card names a handful of sites (heart-disease: four)
MAX_SITE_NAME = 100
VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # MLflow numbers versions 1, 2, 3, ...


class NoChallenger(ToolError):
    pass


class NothingToRollBack(ToolError):
    pass


class PromotionRefused(ToolError):
    """The promotion gate failed and `force` was not set."""


class RegistryUnavailable(ToolError):
    """The registry could not be asked (not: it said no)."""


def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def _each_once(values: Sequence[str], rule: str, what: str) -> None:
    repeated = next(((v, n) for v, n in Counter(values).items() if n > 1), None)
    if repeated is not None:
        raise PydanticCustomError(
            rule,
            '"{value}" is given {times} times (each {what} at most once)',
            {"value": _shown(repeated[0]), "times": repeated[1], "what": what},
        )


class RetrainInput(BaseModel):
    """What to retrain on, and why (recorded with the run)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sites: list[str] = Field(
        min_length=1,
        max_length=MAX_SITES,
        description="Training sites, e.g. ['Cleveland', 'Hungary'] (each once).",
    )
    model_kinds: list[ModelKind] = Field(
        default_factory=lambda: list(MODEL_KINDS),
        min_length=1,
        description="Candidates: logistic_regression, random_forest, xgboost.",
    )
    reason: str = Field(min_length=3, max_length=500, description="Why retrain now.")

    @field_validator("sites")
    @classmethod
    def _sites(cls, sites: list[str]) -> list[str]:
        for site in sites:
            if not site.strip() or len(site) > MAX_SITE_NAME:
                raise PydanticCustomError(
                    "site_name",
                    '"{value}" is not a site name (1 to {limit} characters, not blank)',
                    {"value": _shown(site), "limit": MAX_SITE_NAME},
                )
        _each_once(sites, "duplicate_site", "site")
        return sites

    @field_validator("model_kinds")
    @classmethod
    def _kinds(cls, kinds: list[ModelKind]) -> list[ModelKind]:
        _each_once(kinds, "duplicate_kind", "model kind")
        return kinds


def retrain_problems(ctx: ToolContext, args: RetrainInput) -> list[str]:
    """What the dataset card says against these arguments (sites it does not have)."""
    card = ctx.card
    if card.site_column is None:
        return [f"sites: dataset {card.name!r} has no sites; got {args.sites!r}"]
    known = card.sites()
    return [
        f'sites: "{_shown(site)}" is not a site of dataset {card.name!r} '
        f"(known: {', '.join(known)})"
        for site in args.sites
        if site not in known
    ]


class MetricAgainstChampion(BaseModel):
    """One holdout metric of the new version beside the champion's, on the same rows."""

    metric: str
    new: float
    champion: float | None = Field(
        description="Null when the champion was measured on other rows (not comparable)."
    )
    change: float | None = Field(description="new - champion.")


class TrainingOutcome(BaseModel):
    """A new model version registered as @challenger (the champion is untouched)."""

    run_id: str
    version: str
    alias: str
    sites: list[str]
    best_kind: str
    metrics: dict[str, float] = Field(
        description="The best candidate's holdout metrics, on the evaluation set."
    )
    evaluation_set: EvaluationSet = Field(
        description="The shared rows (every site) no run trains on, where metrics are measured."
    )
    candidates: dict[str, float] = Field(description="Cross-validated ROC AUC per candidate.")
    champion_version: str | None = Field(description="The @champion it is compared with.")
    against_champion: list[MetricAgainstChampion] = Field(
        description="The new version's holdout metrics beside the champion's, both on the "
        "same evaluation set, as the promotion gate compares them (the champion's are null "
        "when it was measured on other rows)."
    )


def _against_champion(
    ctx: ToolContext, metrics: dict[str, float], evaluation_set: EvaluationSet
) -> tuple[str | None, list[MetricAgainstChampion]]:
    """The champion's version and its holdout metrics beside `metrics`, when it was measured
    on the same evaluation set (read-only)."""
    client = registry.client(ctx.tracking_uri)
    champion = registry.alias_version(client, ctx.card.model_name, registry.CHAMPION)
    if champion is None:
        return None, []
    run = client.get_run(champion.run_id)
    theirs = run.data.metrics
    measured_on = run_evaluation_set(run.data.tags)
    if measured_on is None or measured_on.digest != evaluation_set.digest:
        theirs = {}
    compared = []
    for name, value in metrics.items():
        other = theirs.get(name)
        compared.append(
            MetricAgainstChampion(
                metric=name,
                new=value,
                champion=None if other is None else float(other),
                change=None if other is None else value - float(other),
            )
        )
    return str(champion.version), compared


async def retrain_model(
    ctx: ToolContext, args: RetrainInput, progress: ProgressCallback | None = None
) -> TrainingOutcome:
    """Retrain on the given sites and register the best candidate as @challenger.

    State-changing: runs only as an approved pending action. Takes seconds to minutes;
    `progress` receives (step, done, total) from a worker thread.
    """
    run = partial(
        train,
        ctx.card,
        tracking_uri=ctx.tracking_uri,
        sites=args.sites,
        kinds=args.model_kinds,
        reason=args.reason,
        progress=progress,
        challenger_only=True,
    )
    try:
        result = await anyio.to_thread.run_sync(run)
    except (TrainingError, CardError) as error:
        raise InvalidToolInput([str(error)]) from None
    holdout = {k: v for k, v in result.metrics.items() if k.startswith("holdout_")}
    champion, compared = await anyio.to_thread.run_sync(
        _against_champion, ctx, holdout, result.evaluation_set
    )
    return TrainingOutcome(
        run_id=result.run_id,
        version=result.version,
        alias=result.alias,
        sites=result.sites,
        best_kind=result.best_kind,
        metrics=holdout,
        evaluation_set=result.evaluation_set,
        candidates={c.kind: c.metrics["cv_roc_auc"] for c in result.candidates},
        champion_version=champion,
        against_champion=compared,
    )


class PromoteInput(BaseModel):
    """Which version to make the champion."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str | None = Field(
        default=None,
        description='A version number such as "3"; leave out for the @challenger.',
    )
    force: bool = Field(default=False, description="Promote even if the gate fails (recorded).")
    reason: str = Field(min_length=3, max_length=500, description="Why promote.")

    @field_validator("version")
    @classmethod
    def _version_number(cls, version: str | None) -> str | None:
        if version is not None and not VERSION_NUMBER.fullmatch(version):
            raise PydanticCustomError(
                "version_number",
                '"{value}" is not a version number: give a plain positive integer such as '
                '"3" (leave version out to promote the @challenger)',
                {"value": _shown(version)},
            )
        return version


def promote_problems(ctx: ToolContext, args: PromoteInput) -> list[str]:
    """What the registry says against these arguments (a version it does not hold)."""
    if args.version is None:
        return []
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - seconds to import

    name = ctx.card.model_name
    try:
        _version(registry.client(ctx.tracking_uri), name, args.version)
    except InvalidToolInput:
        return [f'version: "{args.version}" is not a version of model {name!r} in the registry']
    except MlflowException as error:
        raise RegistryUnavailable(
            f"the registry could not say whether model {name!r} has version {args.version}: {error}"
        ) from None
    return []


class Preview(BaseModel):
    """What the registry says of a proposal when it is made, read without changing anything
    (it may change before anyone decides)."""

    will_fail: bool = Field(description="Refused or failing if run as things stand.")
    note: str


def _gate_words(checks: list[GateCheck]) -> str:
    return "; ".join(f"{c.name}: {c.detail}" for c in checks)


def _promote_preview(ctx: ToolContext, args: PromoteInput) -> Preview:
    client = registry.client(ctx.tracking_uri)
    name = ctx.card.model_name
    champion = registry.alias_version(client, name, registry.CHAMPION)
    if args.version is None:
        candidate = registry.alias_version(client, name, registry.CHALLENGER)
        if candidate is None:
            return Preview(
                will_fail=True, note=f"model {name!r} has no @challenger to promote; retrain first"
            )
    else:
        candidate = _version(client, name, args.version)
    number = str(candidate.version)
    if champion is not None and str(champion.version) == number:
        return Preview(will_fail=True, note=f"version {number} is already the champion")
    checks = _gate(client, candidate, champion)
    failed = [check for check in checks if not check.passed]
    if failed and not args.force:
        return Preview(
            will_fail=True,
            note=f"the promotion gate refuses version {number}: {_gate_words(failed)} "
            "(edit it with force to override, which is recorded)",
        )
    if failed:
        return Preview(
            will_fail=False,
            note=f"the promotion gate fails for version {number} ({_gate_words(failed)}); "
            "force overrides it, and that is recorded",
        )
    return Preview(
        will_fail=False,
        note=f"version {number} passes the promotion gate: {_gate_words(checks)}",
    )


def promote_preview(ctx: ToolContext, args: PromoteInput) -> Preview | None:
    """Whether the promotion would pass the gate now (None: the registry cannot say)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - seconds to import

    try:
        return _promote_preview(ctx, args)
    except (MlflowException, InvalidToolInput):
        return None


class GateCheck(BaseModel):
    name: str
    passed: bool
    detail: str


class PromotionOutcome(BaseModel):
    """The new champion, the one it replaced, and the gate's verdict."""

    champion: str
    previous_champion: str | None
    forced: bool
    checks: list[GateCheck]
    serving: str | None = Field(
        default=None, description="The version the model service scores with, once it follows."
    )


def _measured(client: Any, version: Any) -> tuple[dict[str, float], EvaluationSet | None]:
    """A version's run metrics and the evaluation set they were measured on."""
    run = client.get_run(version.run_id)
    return dict(run.data.metrics), run_evaluation_set(run.data.tags)


def _auc_check(
    candidate: Any,
    auc: float | None,
    measured_on: EvaluationSet | None,
    champion: Any,
    champion_auc: float | None,
    champion_measured_on: EvaluationSet | None,
) -> GateCheck:
    name = "holdout_roc_auc"
    if auc is None or champion_auc is None:
        return GateCheck(name=name, passed=False, detail="not measured")
    if (
        measured_on is None
        or champion_measured_on is None
        or measured_on.digest != champion_measured_on.digest
    ):
        return GateCheck(
            name=name,
            passed=False,
            detail=f"version {candidate.version} and champion version {champion.version} "
            "were measured on different evaluation sets: not comparable",
        )
    return GateCheck(
        name=name,
        passed=auc >= champion_auc - AUC_MARGIN,
        detail=f"version {candidate.version}: {auc:.3f} against champion version "
        f"{champion.version}: {champion_auc:.3f} on the shared evaluation set, "
        f"{measured_on.describe()} (margin {AUC_MARGIN})",
    )


def _gate(client: Any, candidate: Any, champion: Any | None) -> list[GateCheck]:
    metrics, measured_on = _measured(client, candidate)
    flips = metrics.get("noise_flip_rate")
    checks = [
        GateCheck(
            name="robustness",
            passed=flips is not None and flips <= MAX_NOISE_FLIP_RATE,
            detail=f"{flips:.1%} of the evaluation set's predictions flip under measurement "
            f"noise (at most {MAX_NOISE_FLIP_RATE:.0%})"
            if flips is not None
            else "not measured",
        )
    ]
    if champion is not None:
        theirs, champion_measured_on = _measured(client, champion)
        checks.insert(
            0,
            _auc_check(
                candidate,
                metrics.get("holdout_roc_auc"),
                measured_on,
                champion,
                theirs.get("holdout_roc_auc"),
                champion_measured_on,
            ),
        )
    return checks


def _promote(ctx: ToolContext, args: PromoteInput) -> PromotionOutcome:
    client = registry.client(ctx.tracking_uri)
    name = ctx.card.model_name
    champion = registry.alias_version(client, name, registry.CHAMPION)
    if args.version is None:
        candidate = registry.alias_version(client, name, registry.CHALLENGER)
        if candidate is None:
            raise NoChallenger(f"model {name!r} has no @challenger to promote; retrain first")
    else:
        candidate = _version(client, name, args.version)
    number = str(candidate.version)
    if champion is not None and str(champion.version) == number:
        raise InvalidToolInput([f"version {number} of {name!r} is already the champion"])
    checks = _gate(client, candidate, champion)
    failed = [check for check in checks if not check.passed]
    if failed and not args.force:
        raise PromotionRefused(
            f"promotion of version {number} refused by the gate: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            + " (use force to override)"
        )
    if champion is not None:
        client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, str(champion.version))
    client.set_registered_model_alias(name, registry.CHAMPION, number)
    challenger = registry.alias_version(client, name, registry.CHALLENGER)
    if challenger is not None and str(challenger.version) == number:
        client.delete_registered_model_alias(name, registry.CHALLENGER)
    client.set_model_version_tag(name, number, "promotion_reason", args.reason)
    client.set_model_version_tag(name, number, "promotion_forced", str(bool(failed)).lower())
    return PromotionOutcome(
        champion=number,
        previous_champion=str(champion.version) if champion else None,
        forced=bool(failed),
        checks=checks,
    )


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if registry.is_not_found(error):
            raise InvalidToolInput([f"model {name!r} has no version {version}"]) from None
        raise


async def promote_model(ctx: ToolContext, args: PromoteInput) -> PromotionOutcome:
    """Make a version (default: the @challenger) the champion, if it passes the promotion
    gate: ROC AUC on the shared evaluation set (the same rows for both) not worse than the
    champion's beyond the margin, and robust to measurement noise. `force` overrides a
    failed gate and is recorded. The replaced champion stays as @previous-champion for a
    rollback; the model service follows.

    State-changing: runs only as an approved pending action.
    """
    outcome = await anyio.to_thread.run_sync(_promote, ctx, args)
    outcome.serving = await serving_version(ctx, outcome.champion)
    return outcome


class RollbackInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=3, max_length=500, description="Why roll back.")


class RollbackOutcome(BaseModel):
    champion: str = Field(description="The restored champion version.")
    previous_champion: str = Field(description="The version rolled back from (kept).")
    serving: str | None = Field(
        default=None, description="The version the model service scores with, once it follows."
    )


def _rollback(ctx: ToolContext, args: RollbackInput) -> RollbackOutcome:
    client = registry.client(ctx.tracking_uri)
    name = ctx.card.model_name
    previous = registry.alias_version(client, name, registry.PREVIOUS_CHAMPION)
    if previous is None:
        raise NothingToRollBack(f"model {name!r} has no @previous-champion to roll back to")
    current = registry.alias_version(client, name, registry.CHAMPION)
    client.set_registered_model_alias(name, registry.CHAMPION, str(previous.version))
    if current is not None:  # keep it, so that the rollback itself can be undone
        client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, str(current.version))
    client.set_model_version_tag(name, str(previous.version), "rollback_reason", args.reason)
    return RollbackOutcome(
        champion=str(previous.version), previous_champion=str(current.version) if current else ""
    )


def rollback_preview(ctx: ToolContext, _args: RollbackInput) -> Preview | None:
    """Whether there is a champion to roll back to now (None: the registry cannot say)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    client = registry.client(ctx.tracking_uri)
    name = ctx.card.model_name
    try:
        previous = registry.alias_version(client, name, registry.PREVIOUS_CHAMPION)
        current = registry.alias_version(client, name, registry.CHAMPION)
    except MlflowException:
        return None
    if previous is None:
        return Preview(
            will_fail=True, note=f"model {name!r} has no @previous-champion to roll back to"
        )
    now = f" in place of version {current.version}" if current is not None else ""
    return Preview(
        will_fail=False, note=f"version {previous.version} would be the @champion again{now}"
    )


async def rollback_model(ctx: ToolContext, args: RollbackInput) -> RollbackOutcome:
    """Restore the previous champion (before the last promotion or rollback).

    State-changing: runs only as an approved pending action.
    """
    outcome = await anyio.to_thread.run_sync(_rollback, ctx, args)
    outcome.serving = await serving_version(ctx, outcome.champion)
    return outcome


async def serving_version(
    ctx: ToolContext, expected: str, timeout: float = FOLLOW_TIMEOUT_SECONDS
) -> str | None:
    """The version the model service serves, waiting (briefly) until it has followed the
    alias to `expected`; None when the service cannot be asked or follows another registry.
    The registry is the truth either way: the service follows within its poll interval."""
    deadline = anyio.current_time() + timeout
    ours = registry.registry_id(ctx.tracking_uri)
    while True:
        try:
            response = await ctx.model_service.get("/v1/model", timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200 or response.json().get("registry_id") != ours:
            return None
        version = str(response.json().get("version"))
        if version == expected or anyio.current_time() >= deadline:
            return version
        await anyio.sleep(0.2)
