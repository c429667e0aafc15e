"""The offline provider on the categories of round P, each by the rule that reads it (none
of these sentences is in an eval suite): yes/no findings said with a comparison or a
negation, counterfactuals in other words and a stated change that is a what-if, a patient
put forward in time in the same message, questions about the model's inputs, the data's
make-up and a group named by an age word, feature names joined to their values, and a yes
to an offered explanation."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import fasting_glucose_above, parse_patient
from copilot.llm.offline.text import normalise
from model_service.cards import DatasetCard

LAST = "e" * 32
PATIENT = {
    "age": 61,
    "sex": "Female",
    "cp": "asymptomatic",
    "trestbps": 155,
    "chol": 310,
    "fbs": True,
    "restecg": "lv hypertrophy",
    "thalch": 118,
    "exang": True,
    "oldpeak": 2.8,
    "slope": "flat",
}
AFTER = Memory(prediction_id=LAST, patient=PATIENT, last_tool="predict_risk")
DESCRIBED = (
    "66 yo woman, non-anginal pain, BP 136, chol 255, not diabetic, normal ECG, max HR 148, "
    "no exercise angina, oldpeak 0.9, flat"
)


def _read(card: DatasetCard, text: str) -> dict[str, Any]:
    return parse_patient(normalise(text, card), card)


# --- 1. yes/no findings: a comparison with a number, or a negation --------------------------


@pytest.mark.parametrize(
    ("text", "above"),
    [
        ("fasting glucose less than 105", False),
        ("fbs not over 120", False),
        ("blood sugar 118 or lower", False),
        ("fasting sugar at most 115", False),
        ("fasting glucose <= 120", False),
        ("glucose well under 100", False),
        ("fasting sugar no more than 110 mg/dl", False),
        ("fasting glucose greater than 140", True),
        ("fbs at least 130", True),
        ("fasting blood sugar 135 or more", True),
        ("fasting glucose 120", False),  # on the line is not above it
        ("fasting glucose 121", True),
    ],
)
def test_a_glucose_bound_is_read_against_the_cards_line(text: str, above: bool) -> None:
    assert fasting_glucose_above(text) is above


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stress test negative for angina", {"exang": False}),
        ("exercise ecg was positive for angina", {"exang": True}),
        ("no angina during the treadmill test", {"exang": False}),
        ("angina during the stress test", {"exang": True}),
        ("normotensive at 124", {"trestbps": 124.0}),
    ],
)
def test_findings_said_by_a_test_result_or_a_normal_word(
    card: DatasetCard, text: str, expected: dict[str, Any]
) -> None:
    read = _read(card, text)
    assert {k: read.get(k) for k in expected} == expected


def test_a_negated_value_of_a_many_valued_feature_is_not_read_as_that_value(
    card: DatasetCard,
) -> None:
    assert "restecg" not in _read(card, "resting ecg without lvh")
    assert _read(card, "ecg without lvh but with st-t changes")["restecg"] == "st-t abnormality"
    assert _read(card, "if she weren't female")["sex"] == "Male"  # two values: the other


def test_a_what_if_that_brings_the_sugar_under_the_line_sets_fbs_false(card: DatasetCard) -> None:
    intent = understand("and if her fasting glucose dropped below 100?", AFTER, card)
    assert (intent.tool, intent.arguments["changes"]) == ("what_if", {"fbs": False})


# --- 2. counterfactuals, and a stated change asked against the threshold ---------------------


@pytest.mark.parametrize(
    "text",
    [
        "what would it take to get her out of the high-risk band?",
        "what's the leanest package of changes that turns her to low risk?",
        "what must change for the model to classify her as negative?",
        "how do we get her below the threshold with the fewest tweaks?",
    ],
)
def test_counterfactuals_in_other_words(card: DatasetCard, text: str) -> None:
    intent = understand(text, AFTER, card)
    assert (intent.tool, intent.arguments) == ("counterfactual", {"prediction_id": LAST})


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("if her chol were 200, would she drop below the cutoff?", {"chol": 200.0}),
        ("were her BP 125, would she fall under the threshold?", {"trestbps": 125.0}),
    ],
)
def test_a_stated_change_asked_against_the_threshold_is_a_what_if(
    card: DatasetCard, text: str, changes: dict[str, Any]
) -> None:
    intent = understand(text, AFTER, card)
    assert (intent.tool, intent.arguments["changes"]) == ("what_if", changes)


# --- 3. a patient put forward in time in the same message ------------------------------------


@pytest.mark.parametrize(
    ("said", "age"),
    [
        ("How would her risk look in 4 years, all else equal?", 70),
        ("- and in a decade?", 76),
        (": where would her risk be seven years from now?", 73),
        ("; her risk two years down the line, nothing else changed?", 68),
    ],
)
def test_a_patient_described_then_aged_is_a_what_if_on_that_patient(
    card: DatasetCard, said: str, age: int
) -> None:
    intent = understand(f"{DESCRIBED}{'' if said[0] in ':;' else ' '}{said}", Memory(), card)
    assert intent.tool == "what_if"
    assert intent.arguments["patient"]["age"] == 66
    assert intent.arguments["changes"] == {"age": age}


def test_a_patient_with_a_question_and_no_change_is_scored(card: DatasetCard) -> None:
    intent = understand(f"{DESCRIBED}. How would you rate her risk?", Memory(), card)
    assert intent.tool == "predict_risk"


# --- 4. the model's inputs, the data's make-up, a group named by an age word -----------------


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        ("which inputs does the model need and their valid ranges?", "model_info", {}),
        ("show the variables with their units", "model_info", {}),
        (
            "what percentage of the patients are from Switzerland?",
            "describe_data",
            {"where": [{"feature": "site", "op": "==", "value": "Switzerland"}]},
        ),
        ("is a challenger registered? do we have a challenger?", "list_runs", {"limit": 5}),
    ],
)
def test_model_and_data_questions(
    card: DatasetCard, text: str, tool: str, arguments: dict[str, Any]
) -> None:
    intent = understand(text, Memory(), card)
    assert (intent.tool, intent.arguments) == (tool, arguments)


@pytest.mark.parametrize(
    "text",
    [
        "how well does the model do on the elderly?",
        "what matters most for younger patients?",
        "show me the older adults",
    ],
)
def test_a_group_named_by_an_age_word_is_asked_about(card: DatasetCard, text: str) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "Which ages" in (intent.reply or "")


def test_an_age_word_with_ages_is_a_group(card: DatasetCard) -> None:
    intent = understand("how accurate is the model for older patients over 70?", Memory(), card)
    assert intent.tool == "model_performance"


# --- 5. names joined to their values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("maxhr 141", {"thalch": 141.0}),
        ("max-hr141", {"thalch": 141.0}),
        ("bp142/88", {"trestbps": 142.0}),
        ("chol-212", {"chol": 212.0}),
        ("peakhr 160", {"thalch": 160.0}),
        ("restingbp 150", {"trestbps": 150.0}),
        ("oldpeak -0.5", {"oldpeak": -0.5}),  # a sign said apart from the name stays a sign
    ],
)
def test_names_joined_to_values(card: DatasetCard, text: str, expected: dict[str, Any]) -> None:
    read = _read(card, text)
    assert {k: read.get(k) for k in expected} == expected


# --- 6. a yes to an offered explanation --------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["yes, go ahead and explain", "yep please, explain it", "sure - explain"]
)
def test_a_yes_before_a_request_is_no_step_of_its_own(card: DatasetCard, text: str) -> None:
    intent = understand(text, AFTER, card)
    assert (intent.tool, intent.arguments) == ("explain_prediction", {"prediction_id": LAST})
