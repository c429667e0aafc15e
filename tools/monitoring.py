"""The monitoring history tool: how drift, data quality and performance moved over time,
read from the series `copilot monitor` stores (never recomputed here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from tools.context import ToolContext
from tools.errors import InvalidToolInput, ToolError

ALL_SITES = "all"  # the series of every site together
DRIFT_METRICS = ("share_drifted", "features_drifted", "data_quality_findings")
PERFORMANCE_METRICS = ("auc", "sensitivity", "specificity", "accuracy")
METRIC_NAMES = {
    "share_drifted": "share of features drifted",
    "features_drifted": "features drifted",
    "data_quality_findings": "data-quality findings",
    "auc": "AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "accuracy": "accuracy",
}
Metric = Literal[
    "share_drifted",
    "features_drifted",
    "data_quality_findings",
    "auc",
    "sensitivity",
    "specificity",
    "accuracy",
]
DEFAULT_DAYS = 30


class MonitoringHistoryInput(BaseModel):
    """Which series: a site (default: all sites together), a metric (default: all), since."""

    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(
        default=None,
        max_length=100,
        description="e.g. 'VA Long Beach'; omit for all sites together.",
    )
    metric: Metric | None = Field(
        default=None,
        description="share_drifted, features_drifted, data_quality_findings (drift and data "
        "quality) or auc, sensitivity, specificity, accuracy (performance); omit for all.",
    )
    since: datetime | None = Field(
        default=None, description="From this time (ISO 8601); default the last 30 days."
    )


class HistoryPoint(BaseModel):
    checked_at: datetime
    check_id: str
    value: float | None = Field(description="None when the check could not measure it.")
    estimated: bool = Field(description="Expected from the probabilities, not observed.")
    labels: int = Field(description="Observed outcomes behind a performance value.")
    rows: int = Field(description="Predictions behind the value.")
    note: str | None = Field(description="Why there is no value.")


class Series(BaseModel):
    site: str
    metric: str
    metric_name: str
    model_version: str | None = Field(description="For performance metrics.")
    points: list[HistoryPoint] = Field(description="Oldest first.")
    first: float | None = Field(description="The oldest measured value.")
    last: float | None = Field(description="The newest measured value.")
    change: float | None = Field(description="last - first.")
    estimated_last: bool = Field(description="Whether the newest value is an estimate.")


class MonitoringHistory(BaseModel):
    """The stored monitor checks: one series per site, metric and model version."""

    site: str
    metric: str | None
    since: datetime
    checks: int = Field(description="Monitor checks in the window.")
    series: list[Series]


def _series(site: str, metric: str, version: str | None, rows: Sequence[dict[str, Any]]) -> Series:
    points = [
        HistoryPoint(
            checked_at=row["checked_at"],
            check_id=row["check_id"],
            value=row["value"],
            estimated=row["estimated"],
            labels=row["labels"],
            rows=row["rows"],
            note=row["note"],
        )
        for row in rows
    ]
    measured = [p for p in points if p.value is not None]
    first = measured[0].value if measured else None
    last = measured[-1].value if measured else None
    return Series(
        site=site,
        metric=metric,
        metric_name=METRIC_NAMES.get(metric, metric),
        model_version=version,
        points=points,
        first=first,
        last=last,
        change=last - first if first is not None and last is not None else None,
        estimated_last=measured[-1].estimated if measured else False,
    )


async def monitoring_history(ctx: ToolContext, args: MonitoringHistoryInput) -> MonitoringHistory:
    """How drift, data quality or performance (AUC, sensitivity, specificity, accuracy;
    observed from recorded outcomes, or estimated from the model's probabilities until they
    arrive) moved over time, per site and model version, from the checks `copilot monitor`
    stored. Read-only.

    Use for "how has VA Long Beach drifted over the last month?" or "is the model getting
    worse?".
    """
    if ctx.history is None:
        raise ToolError("the monitoring history needs the copilot database; none is open here")
    site = args.site or ALL_SITES
    known = ctx.card.sites()
    if site != ALL_SITES and site not in known:
        shown = ", ".join(known)
        raise InvalidToolInput(
            [f'site: "{site}" is not a site of dataset {ctx.card.name!r} (known: {shown})']
        )
    since = args.since or datetime.now(UTC) - timedelta(days=DEFAULT_DAYS)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    history = ctx.history
    rows = await anyio.to_thread.run_sync(lambda: history(site, args.metric, since))
    grouped: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["metric"], row["model_version"]), []).append(row)
    order = {name: index for index, name in enumerate(METRIC_NAMES)}
    keys = sorted(grouped, key=lambda k: (order.get(k[0], len(order)), k[1] or ""))
    return MonitoringHistory(
        site=site,
        metric=args.metric,
        since=since,
        checks=len({row["check_id"] for row in rows}),
        series=[
            _series(site, metric, version, grouped[(metric, version)]) for metric, version in keys
        ],
    )
