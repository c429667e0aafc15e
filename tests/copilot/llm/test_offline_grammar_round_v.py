"""The offline provider on the requests of round V (TalkToModel-style questions, the rv-
cases of evals/suites/paraphrases.yaml), each by the rule that reads it: a dataset row by
the words people use for one ("data point id 33", "sample number 7", "point #12"), asked
about by the model's view of it; groups said as "instances" and "samples"; a group
referred back to ("on those", "for them", "their"); a row's counterfactual carried to the
next turn; "a different prediction" and "the model's decision" as a counterfactual's goal;
importance asked with the features named first."""

from typing import Any

import pytest

from copilot.facts import Memory, RouteRequest
from copilot.llm.grounding import cannot_fill, unmentioned
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard, get_card

FRESH = Memory()


def _call(text: str, card: DatasetCard, memory: Memory = FRESH) -> tuple[Any, Any]:
    intent = understand(text, memory, card)
    return intent.tool, intent.arguments


def _after(tool: str, arguments: dict[str, Any]) -> Memory:
    """The memory after a read-only call ran (as graphs.graph._remember keeps it)."""
    return Memory(last_tool=tool, last_arguments=arguments)


# --- a row by the words people use for one, asked about by the model's view -------------


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("tell me about data point id 33", [33]),
        ("what does the model predict for sample number 7?", [7]),
        ("how likely is point #12 to have heart disease", [12]),
        ("What's the probability the model gives instance 250?", [250]),
        ("is patient with id 88 classified as having heart disease?", [88]),
        ("chances of heart disease for ids 5 and 6?", [5, 6]),
        ("show sample 52", [52]),
    ],
)
def test_a_row_by_its_id_is_shown(text: str, rows: list[int], card: DatasetCard) -> None:
    assert _call(text, card) == ("show_rows", {"row_ids": rows})


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("what does the model predict for sample number 7?", [7]),
        ("What's the probability the model gives instance 250?", [250]),
        ("show sample 52", [52]),
    ],
)
def test_a_row_said_by_a_datasets_word_is_grounded(
    text: str, rows: list[int], card: DatasetCard
) -> None:
    assert cannot_fill("show_rows", RouteRequest(text)) is None
    assert unmentioned("show_rows", {"row_ids": rows}, RouteRequest(text), card) == []


def test_a_number_of_samples_is_no_row(card: DatasetCard) -> None:
    text = "a sample of 50 patients over 60"
    assert unmentioned("show_rows", {"row_ids": [50]}, RouteRequest(text), card) != []


def test_a_value_named_points_is_no_row() -> None:
    breast = get_card("breast-cancer")
    values = " ".join(f"{f.display_name} {i + 1}" for i, f in enumerate(breast.features))
    tool, arguments = _call(f"predict: {values}", breast)
    assert tool == "predict_risk" and len(arguments["patient"]) == 30


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("what would it take to change the prediction for id 12?", 12),
        (
            "what's the smallest change that would make sample 300 be predicted as not "
            "having heart disease?",
            300,
        ),
        ("how could we flip the model's decision on instance 45?", 45),
        ("what would need to change for row 15 to get a different prediction?", 15),
    ],
)
def test_a_rows_counterfactual(text: str, row: int, card: DatasetCard) -> None:
    assert _call(text, card) == ("counterfactual", {"row_id": row})


# --- the row of the last answer --------------------------------------------------------------


def test_its_prediction_is_the_row_just_shown(card: DatasetCard) -> None:
    memory = _after("show_rows", {"row_ids": [52]})
    text = "what would it take to change its prediction?"
    assert _call(text, card, memory) == ("counterfactual", {"row_id": 52})


def test_another_row_after_a_rows_counterfactual(card: DatasetCard) -> None:
    memory = _after("counterfactual", {"row_id": 15})
    assert _call("and for row 21?", card, memory) == ("counterfactual", {"row_id": 21})


def test_another_row_after_a_patients_counterfactual_is_no_repeat(card: DatasetCard) -> None:
    memory = Memory(
        prediction_id="p-1", last_tool="counterfactual", last_arguments={"prediction_id": "p-1"}
    )
    assert _call("and for row 21?", card, memory)[0] != "counterfactual"


# --- groups said as a dataset's rows, and referred back to -----------------------------------

OVER_60_DIABETIC = [
    {"feature": "age", "op": ">", "value": 60},
    {"feature": "fbs", "op": "==", "value": True},
]


def test_instances_are_a_group_for_a_what_if(card: DatasetCard) -> None:
    text = (
        "what if the instances with high fasting blood sugar had normal fasting blood sugar "
        "instead?"
    )
    assert _call(text, card) == (
        "cohort_what_if",
        {
            "where": [{"feature": "fbs", "op": "==", "value": True}],
            "changes": [{"feature": "fbs", "op": "set", "value": False}],
        },
    )


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("and how accurate is the model on those?", "model_performance"),
        ("what are the most important features for them?", "feature_importance"),
        ("where does the model make mistakes on them?", "model_mistakes"),
    ],
)
def test_those_are_the_last_group(text: str, tool: str, card: DatasetCard) -> None:
    memory = _after("describe_data", {"where": OVER_60_DIABETIC})
    found, arguments = _call(text, card, memory)
    assert found == tool and arguments["where"] == OVER_60_DIABETIC


def test_their_values_changed_are_the_last_groups(card: DatasetCard) -> None:
    memory = _after("describe_data", {"where": OVER_60_DIABETIC})
    text = "what if their resting blood pressure went down by 15?"
    assert _call(text, card, memory) == (
        "cohort_what_if",
        {
            "where": OVER_60_DIABETIC,
            "changes": [{"feature": "trestbps", "op": "add", "value": -15}],
        },
    )


def test_those_with_conditions_of_their_own_are_a_new_group(card: DatasetCard) -> None:
    memory = _after("describe_data", {"where": OVER_60_DIABETIC})
    tool, arguments = _call("how accurate is the model on those over 70?", card, memory)
    assert tool == "model_performance"
    assert arguments["where"] == [{"feature": "age", "op": ">", "value": 70}]


def test_those_after_a_patient_are_no_group(card: DatasetCard) -> None:
    memory = Memory(prediction_id="p-1", patient={"age": 61}, last_tool="predict_risk")
    tool, arguments = _call("how accurate is the model on those?", card, memory)
    assert (tool, arguments.get("where")) != ("model_performance", OVER_60_DIABETIC)


# --- importance asked with the features named first --------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("which features does the model rely on most, in general?", None),
        (
            "for those with atypical angina, which features are most important?",
            [{"feature": "cp", "op": "==", "value": "atypical angina"}],
        ),
    ],
)
def test_features_named_first_then_the_superlative(
    text: str, where: list[dict[str, Any]] | None, card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "feature_importance" and arguments.get("where") == where
