"""monitoring_history: the stored series as one tool result, exact to the stored numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from copilot.chat.views import history_chart_png
from copilot.llm.verifier import unsupported_numbers
from copilot.monitoring import MonitorStore, Point
from copilot.narration import monitoring_history as narrate
from model_service.cards import DatasetCard
from model_service.database import make_engine
from tools.catalog import READ_ONLY
from tools.context import ToolContext
from tools.errors import InvalidToolInput, ToolError
from tools.monitoring import MonitoringHistoryInput, monitoring_history

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def seeded(tmp_path: Path) -> MonitorStore:
    """Three weekly checks: VA Long Beach drifting more each week; the AUC of version 1
    estimated at first, then observed once 40 outcomes arrived."""
    store = MonitorStore(make_engine(f"sqlite:///{tmp_path / 'copilot.db'}"))
    weeks = [
        (0.25, 0.81, True, 0),
        (0.5, 0.78, True, 0),
        (0.75, 0.64, False, 40),
    ]
    for index, (share, auc, estimated, labels) in enumerate(weeks):
        checked_at = NOW - timedelta(days=14 - 7 * index)
        store.record_points(
            f"check{index}",
            checked_at,
            [
                Point("VA Long Beach", "share_drifted", share, rows=200),
                Point("VA Long Beach", "auc", auc, "1", estimated, labels, 200),
                Point("all", "auc", auc + 0.05, "1", estimated, labels, 900),
                Point("Cleveland", "share_drifted", None, note="only 0 predictions logged"),
            ],
        )
    return store


def context(card: DatasetCard, store: MonitorStore | None) -> ToolContext:
    client = httpx.AsyncClient(base_url="http://127.0.0.1:9")  # never called by this tool
    return ToolContext(client, "", card, history=store.history if store else None)


async def test_the_series_are_the_stored_numbers(tmp_path: Path, heart_card: DatasetCard) -> None:
    ctx = context(heart_card, seeded(tmp_path))
    since = NOW - timedelta(days=30)
    args = MonitoringHistoryInput(site="VA Long Beach", since=since)
    result = await monitoring_history(ctx, args)
    assert result.site == "VA Long Beach" and result.checks == 3
    drift, auc = result.series
    assert (drift.metric, drift.model_version) == ("share_drifted", None)
    assert [p.value for p in drift.points] == [0.25, 0.5, 0.75]
    assert (drift.first, drift.last, drift.change) == (0.25, 0.75, 0.5)
    assert [p.estimated for p in auc.points] == [True, True, False]
    assert auc.points[-1].labels == 40 and auc.estimated_last is False
    assert auc.change == pytest.approx(0.64 - 0.81)

    told = narrate(result.model_dump(mode="json"))
    assert "share of features drifted: 0.25 at the first check, 0.75 at the latest (up" in told
    assert "AUC of version 1: 0.81 at the first check, 0.64 at the latest (down" in told
    assert "observed on 40 outcomes" in told
    assert unsupported_numbers(told, result.model_dump(mode="json")) == []

    overall = await monitoring_history(ctx, MonitoringHistoryInput(metric="auc", since=since))
    (series,) = overall.series
    assert series.site == "all" and series.last == pytest.approx(0.69)
    png = history_chart_png(overall.model_dump(mode="json"))
    assert png is not None and png.startswith(b"\x89PNG")


async def test_nothing_measured_and_nothing_stored_are_said(
    tmp_path: Path, heart_card: DatasetCard
) -> None:
    ctx = context(heart_card, seeded(tmp_path))
    since = NOW - timedelta(days=30)
    quiet = await monitoring_history(ctx, MonitoringHistoryInput(site="Cleveland", since=since))
    (series,) = quiet.series
    assert series.last is None and series.points[0].note == "only 0 predictions logged"
    assert "not measured (only 0 predictions logged)" in narrate(quiet.model_dump(mode="json"))
    assert history_chart_png(quiet.model_dump(mode="json")) is None
    later = await monitoring_history(ctx, MonitoringHistoryInput(since=NOW + timedelta(days=1)))
    assert later.series == [] and "No monitor checks are stored" in narrate(
        later.model_dump(mode="json")
    )


async def test_bad_input_is_refused_clearly(tmp_path: Path, heart_card: DatasetCard) -> None:
    ctx = context(heart_card, seeded(tmp_path))
    with pytest.raises(InvalidToolInput, match='site: "Atlantis" is not a site of dataset'):
        await monitoring_history(ctx, MonitoringHistoryInput(site="Atlantis"))
    with pytest.raises(ValueError, match="metric"):
        MonitoringHistoryInput.model_validate({"metric": "f1"})
    with pytest.raises(ToolError, match="needs the copilot database"):
        await monitoring_history(context(heart_card, None), MonitoringHistoryInput())
    assert READ_ONLY["monitoring_history"].input_model is MonitoringHistoryInput
