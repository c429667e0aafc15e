"""The offline provider's readings of requests about groups, counterfactuals, cohort
what-ifs, monitoring history and declines, one table per rule of the grammar (sentences of
our own, none of them in an eval suite or in the blind check set)."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

LAST = "d" * 32
AFTER = Memory(
    prediction_id=LAST,
    patient={"age": 66, "sex": "Male", "cp": "asymptomatic", "trestbps": 160, "chol": 290},
    last_tool="predict_risk",
)
FRESH = Memory()


def _intent(
    card: DatasetCard, text: str, memory: Memory = FRESH
) -> tuple[str | None, dict[str, Any]]:
    intent = understand(text, memory, card)
    if intent.tool is None:
        assert intent.reply
    return intent.tool, intent.arguments


# an ask ("what would it take", "which changes", "how can she lower") with a goal ("under the
# threshold", "low risk", "not flagged", "out of the positive class", "below 30%")
@pytest.mark.parametrize(
    "text",
    [
        "what would it take for him to fall under the cutoff",
        "which changes would get him classified as negative?",
        "how can he lower his risk below 30%?",
        "what needs to be different for him to no longer be flagged",
        "which of his values would have to change to flip the prediction?",
        "minimal tweak that gets him into the low risk group",
    ],
)
def test_counterfactual_follow_ups(card: DatasetCard, text: str) -> None:
    assert _intent(card, text, AFTER) == ("counterfactual", {"prediction_id": LAST})


def test_a_counterfactual_for_a_patient_described_in_the_same_request(card: DatasetCard) -> None:
    tool, arguments = _intent(
        card,
        "70 yo man, non-anginal pain, bp 170, chol 300: what would it take to get him low risk?",
    )
    assert tool == "counterfactual"
    assert arguments["patient"]["age"] == 70 and arguments["patient"]["chol"] == 300


def test_a_change_to_him_is_no_counterfactual(card: DatasetCard) -> None:
    assert _intent(card, "what if his cholesterol were 180", AFTER)[0] == "what_if"
    assert _intent(card, "what if his cholesterol were below 200", AFTER)[0] != "counterfactual"


@pytest.mark.parametrize(
    ("text", "where", "changes"),
    [
        (
            "what happens to the Hungary patients if their max heart rate rose by 20?",
            [{"feature": "site", "op": "==", "value": "Hungary"}],
            [{"feature": "thalch", "op": "add", "value": 20}],
        ),
        (
            "if each man's cholesterol dropped 25 points, how many labels would flip?",
            [{"feature": "sex", "op": "==", "value": "Male"}],
            [{"feature": "chol", "op": "add", "value": -25}],
        ),
        (
            "imagine blood pressure fixed at 120 across the entire dataset",
            [],
            [{"feature": "trestbps", "op": "set", "value": 120}],
        ),
        (
            "what if everyone with chol over 240 had it lowered by 40",
            [{"feature": "chol", "op": ">", "value": 240}],
            [{"feature": "chol", "op": "add", "value": -40}],
        ),
    ],
)
def test_what_ifs_over_a_group(
    card: DatasetCard, text: str, where: list[dict[str, Any]], changes: list[dict[str, Any]]
) -> None:
    tool, arguments = _intent(card, text)
    assert tool == "cohort_what_if"
    assert arguments.get("where", []) == where and arguments["changes"] == changes


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        ("what is oldpeak?", "define_feature", {"feature": "oldpeak"}),
        ("how is thal coded?", "define_feature", {"feature": "thal"}),
        ("fetch entries 3 and 9", "show_rows", {"row_ids": [3, 9]}),
        ("median resting blood pressure", "describe_data", {"features": ["trestbps"]}),
        (
            "breakdown of ST slope at Cleveland",
            "describe_data",
            {
                "where": [{"feature": "site", "op": "==", "value": "Cleveland"}],
                "features": ["slope"],
            },
        ),
        (
            "women aged 50-60",
            "describe_data",
            {
                "where": [
                    {"feature": "sex", "op": "==", "value": "Female"},
                    {"feature": "age", "op": ">=", "value": 50},
                    {"feature": "age", "op": "<=", "value": 60},
                ]
            },
        ),
        ("what are the main risk factors overall?", "feature_importance", {}),
        (
            "which inputs carry the biggest weight for Switzerland",
            "feature_importance",
            {"where": [{"feature": "site", "op": "==", "value": "Switzerland"}]},
        ),
        (
            "is the model biased against women?",
            "model_performance",
            {"where": [{"feature": "sex", "op": "==", "value": "Female"}]},
        ),
    ],
)
def test_data_and_model_questions_about_a_group(
    card: DatasetCard, text: str, tool: str, arguments: dict[str, Any]
) -> None:
    assert _intent(card, text) == (tool, arguments)


def test_a_distribution_that_moved_is_still_drift(card: DatasetCard) -> None:
    assert _intent(card, "has the cholesterol distribution shifted at Hungary?")[0] == "check_drift"


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        (
            "has sensitivity fallen at VA Long Beach?",
            {"site": "VA Long Beach", "metric": "sensitivity"},
        ),
        ("is accuracy slipping?", {"metric": "accuracy"}),
        ("chart the drift for Switzerland", {"site": "Switzerland", "metric": "share_drifted"}),
        ("how did the AUC evolve?", {"metric": "auc"}),
        ("any alerts from the monitor?", {}),
        ("is the model improving?", {"metric": "auc"}),
    ],
)
def test_history_questions(card: DatasetCard, text: str, arguments: dict[str, Any]) -> None:
    assert _intent(card, text) == ("monitoring_history", arguments)


def test_a_measure_asked_of_a_period_is_history_and_drift_since_stays_a_check(
    card: DatasetCard,
) -> None:
    tool, arguments = _intent(card, "what has the specificity been since 2026-11-01 at Hungary?")
    assert tool == "monitoring_history"
    assert arguments["metric"] == "specificity" and arguments["site"] == "Hungary"
    assert arguments["since"].startswith("2026-11-01")
    assert _intent(card, "any drift since 2026-11-01?")[0] == "check_drift"


@pytest.mark.parametrize(
    "text",
    [
        "relabel record 40 as healthy",
        "raise the classification cutoff to 0.7",
        "post the false positives on slack",
        "forward the cohort stats to prof. jones",
        "give me the patients' names for the false negatives",
        "turn off the monitor alerts",
        "fudge the AUC a bit for the report",
    ],
)
def test_declined(card: DatasetCard, text: str) -> None:
    assert _intent(card, text)[0] is None


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("what if the threshold were 0.3 for him", None),  # no tool changes it: asked back
        ("show me the feature names and units", "model_info"),
        ("kill two birds: which features matter most for men?", "feature_importance"),
        ("what if his cholesterol were 40 lower", "what_if"),
    ],
)
def test_not_declined_by_words_alone(card: DatasetCard, text: str, tool: str | None) -> None:
    intent = understand(text, AFTER, card)
    assert intent.tool == tool
    if tool is None:
        assert "I can't do that. I never change" not in (intent.reply or "")
