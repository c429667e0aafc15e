"""The offline provider reads questions over time as monitoring_history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard


def _days_ago(days: int) -> str:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days)).date().isoformat()


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        (
            "how has VA Long Beach drifted over the last month?",
            {"site": "VA Long Beach", "metric": "share_drifted", "since": _days_ago(30)},
        ),
        ("is the model getting worse?", {"metric": "auc"}),
        ("AUC trend at Hungary", {"site": "Hungary", "metric": "auc"}),
        (
            "how has accuracy changed over the past 2 weeks",
            {"metric": "accuracy", "since": _days_ago(14)},
        ),
        ("is performance declining at Cleveland?", {"site": "Cleveland", "metric": "auc"}),
        ("show the monitoring history", {}),
        (
            "data quality trend for Switzerland",
            {"site": "Switzerland", "metric": "data_quality_findings"},
        ),
    ],
)
def test_questions_over_time(text: str, arguments: dict[str, str], heart_card: DatasetCard) -> None:
    intent = understand(text, Memory(), heart_card)
    assert (intent.tool, intent.arguments) == ("monitoring_history", arguments)


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("has VA Long Beach drifted?", "check_drift"),
        ("check drift since yesterday", "check_drift"),
        ("what's the AUC of the model?", "model_info"),
        ("compare the last two runs", "compare_runs"),
    ],
)
def test_questions_about_now_keep_their_tools(
    text: str, tool: str, heart_card: DatasetCard
) -> None:
    assert understand(text, Memory(), heart_card).tool == tool


@pytest.mark.parametrize(
    ("text", "site"),
    [
        ("and for Hungary?", "Hungary"),
        ("what about VA Long Beach?", "VA Long Beach"),
        ("same for the Swiss site", "Switzerland"),
    ],
)
def test_a_short_follow_up_after_a_history_answer_asks_for_that_sites_history(
    text: str, site: str, heart_card: DatasetCard
) -> None:
    after_history = Memory(last_tool="monitoring_history")
    intent = understand(text, after_history, heart_card)
    assert (intent.tool, intent.arguments) == ("monitoring_history", {"site": site})
    after_drift = understand(text, Memory(last_tool="check_drift"), heart_card)
    assert after_drift.tool == "check_drift"


@pytest.mark.parametrize(
    "text",
    [
        "how has the Berlin site drifted over time?",
        "what's the drift trend at the Mayo Clinic data?",
    ],
)
def test_a_place_that_is_no_site_is_passed_on_for_the_tool_to_refuse(
    text: str, heart_card: DatasetCard
) -> None:
    intent = understand(text, Memory(), heart_card)
    assert intent.tool == "monitoring_history"
    assert intent.arguments["site"] in {"berlin", "mayo clinic", "mayo"}
    assert intent.arguments["metric"] == "share_drifted"
    assert (
        "site"
        not in understand(
            "how has the model data drifted over time?", Memory(), heart_card
        ).arguments
    )
