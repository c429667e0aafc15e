"""A question over time, end to end with the offline provider: routed to
monitoring_history, answered from the stored series, the numbers in the tool result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from copilot.llm.verifier import unsupported_numbers
from copilot.monitoring import Point
from tests.conftest import TrainedRegistry
from tests.graphs.test_graph import open_for

pytestmark = pytest.mark.anyio


async def test_how_has_a_site_drifted_over_the_last_month(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    database_url = f"sqlite:///{tmp_path / 'copilot.db'}"
    # no model service behind it: the history is read from the copilot database alone
    async with open_for(
        database_url, trained_registry.copy(tmp_path), "http://127.0.0.1:9"
    ) as copilot:
        now = datetime.now(UTC)
        for day, share in ((20, 0.2), (10, 0.4), (1, 0.6)):
            copilot.deps.monitoring.record_points(
                f"c{day}",
                now - timedelta(days=day),
                [Point("VA Long Beach", "share_drifted", share, rows=120)],
            )
        copilot.deps.monitoring.record_points(
            "old", now - timedelta(days=45), [Point("VA Long Beach", "share_drifted", 0.9, rows=80)]
        )
        turn = await copilot.send("m1", "how has VA Long Beach drifted over the last month?", "ann")
    (call,) = turn.tool_calls
    assert call["tool"] == "monitoring_history"
    assert call["arguments"]["site"] == "VA Long Beach"
    assert call["arguments"]["metric"] == "share_drifted"
    (series,) = call["result"]["series"]
    assert [p["value"] for p in series["points"]] == [0.2, 0.4, 0.6]  # the 45-day-old one is out
    assert series["change"] == pytest.approx(0.4)
    said = turn.messages[0]["content"]
    assert "0.2 at the first check, 0.6 at the latest (up, +0.4)" in said
    assert unsupported_numbers(said, call["result"]) == []
