"""The offline provider on the categories of round N, each by the rule that reads it (none
of these sentences is in an eval suite): the card's words for people and findings, inputs
the model does not have said beside real ones, changes said as nouns or relative to the
last what-if, negations of a two-valued feature, acknowledgements before a request, and a
patient whose risk lacked values completed by the next turn."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.steps import split_clauses
from copilot.llm.offline.text import normalise
from model_service.cards import DatasetCard

LAST = "d" * 32
PATIENT = {
    "age": 57,
    "sex": "Male",
    "cp": "atypical angina",
    "trestbps": 140,
    "chol": 260,
    "fbs": True,
    "restecg": "normal",
    "thalch": 145,
    "exang": True,
    "oldpeak": 2.0,
    "slope": "flat",
}
AFTER = Memory(prediction_id=LAST, patient=PATIENT, last_tool="predict_risk")


def _read(card: DatasetCard, text: str) -> dict[str, Any]:
    return parse_patient(normalise(text, card), card)


# --- the card's words: people, findings, measures ------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a 49 year old chap with typical angina", {"sex": "Male", "cp": "typical angina"}),
        ("fellow of 70, classical angina", {"sex": "Male", "cp": "typical angina"}),
        ("55 yo bloke, pain-free", {"sex": "Male", "cp": "asymptomatic"}),
        ("old gent - 81, no chest symptoms, bp 150, chol 230", {"age": 81, "cp": "asymptomatic"}),
        ("normoglycemic", {"fbs": False}),
        ("known T2DM", {"fbs": True}),
        ("hyperglycemia on the fasting test", {"fbs": True}),
        ("resting tracing showed LVH", {"restecg": "lv hypertrophy"}),
        ("ECG wnl", {"restecg": "normal"}),
        ("thallium unremarkable", {"thal": "normal"}),
        ("angina provoked by effort", {"exang": True}),
        ("no angina on the treadmill", {"exang": False}),
        ("treadmill-induced angina", {"exang": True}),
        ("no ST depression", {"oldpeak": 0.0}),
        ("hr max 150, peak rate reached 150", {"thalch": 150.0}),
        ("chol level 260, bp reading 135", {"chol": 260.0, "trestbps": 135.0}),
    ],
)
def test_card_words_for_people_and_findings(
    card: DatasetCard, text: str, expected: dict[str, Any]
) -> None:
    values = _read(card, text)
    assert {k: values.get(k) for k in expected} == expected, (text, values)


def test_a_word_two_tests_share_is_read_only_of_the_test_named(card: DatasetCard) -> None:
    values = _read(card, "ecg unremarkable, thallium showed a reversible defect")
    assert values["restecg"] == "normal"
    assert values["thal"] == "reversable defect"


def test_no_of_a_feature_whose_zero_is_no_value_says_nothing(card: DatasetCard) -> None:
    """'no cholesterol' or 'no heart rate' is no 0: 0 of cholesterol means not recorded
    and a heart rate's limits leave 0 out."""
    values = _read(card, "no cholesterol result, no heart rate recorded")
    assert "chol" not in values and "thalch" not in values


def test_another_measure_of_the_same_name_is_not_the_feature(card: DatasetCard) -> None:
    values = _read(card, "ldl cholesterol 170, hdl-cholesterol 38, total cholesterol 250")
    assert values["chol"] == 250.0


def test_a_number_after_another_features_name_is_no_age(card: DatasetCard) -> None:
    intent = understand("what happens to him with his pressure at 125?", AFTER, card)
    assert intent.tool == "what_if"
    assert intent.arguments["changes"] == {"trestbps": 125.0}


# --- inputs the model does not have, beside a real request ----------------------------------


def test_a_workup_with_risk_factors_the_model_lacks_is_scored_on_the_rest(
    card: DatasetCard,
) -> None:
    intent = understand(
        "48 yo woman, ex-smoker, BMI 33, LDL cholesterol 150, atypical angina, bp 128, "
        "total chol 215, no diabetes, normal ecg, max hr 162, no exercise angina",
        Memory(),
        card,
    )
    assert intent.tool == "predict_risk"
    assert intent.arguments["patient"]["chol"] == 215.0
    assert "bmi" not in intent.arguments["patient"]


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("what if he went on a statin and his cholesterol fell by 60?", {"chol": 200}),
        ("suppose he took aspirin and his BP were 125", {"trestbps": 125.0}),
    ],
)
def test_a_drug_said_in_a_what_if_is_no_request_for_advice(
    card: DatasetCard, text: str, changes: dict[str, Any]
) -> None:
    intent = understand(text, AFTER, card)
    assert intent.tool == "what_if", intent.reply
    assert intent.arguments["changes"] == changes


@pytest.mark.parametrize("text", ["should he be on a statin?", "which statin would you prescribe?"])
def test_advice_is_still_declined(card: DatasetCard, text: str) -> None:
    intent = understand(text, AFTER, card)
    assert intent.tool is None and "advice" in (intent.reply or "")


# --- what-ifs: nouns, negation, from-to, relative to the last what-if -----------------------


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("and a cholesterol drop of 40?", {"chol": 220}),
        ("what would an increase in blood pressure of 15 do?", {"trestbps": 155}),
        ("a fall of 10 in his max heart rate?", {"thalch": 135}),
        ("what if his pressure went from 140 to 118?", {"trestbps": 118.0}),
        ("if he weren't male", {"sex": "Female"}),
        ("what if he wasn't a man?", {"sex": "Female"}),
    ],
)
def test_what_if_grammar(card: DatasetCard, text: str, changes: dict[str, Any]) -> None:
    intent = understand(text, AFTER, card)
    assert intent.tool == "what_if", intent.reply
    assert intent.arguments["changes"] == changes


def test_a_negated_value_of_many_is_not_turned_into_another(card: DatasetCard) -> None:
    """'not typical angina' says nothing of which of the other three it is."""
    values = _read(card, "58 yo man, chest pain not typical angina")
    assert values.get("cp") in {None, "typical angina"}


def test_a_step_relative_to_the_last_what_if(card: DatasetCard) -> None:
    memory = Memory(
        prediction_id=LAST, patient=PATIENT, last_tool="what_if", last_changes={"trestbps": 130}
    )
    intent = understand("and 10 lower still?", memory, card)
    assert intent.tool == "what_if"
    assert intent.arguments["changes"] == {"trestbps": 120}
    assert understand("and 400 higher?", memory, card).tool != "what_if"  # off the card


# --- follow-ups ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["ok, and why?", "thanks - and the drivers?", "great, explain it"])
def test_an_acknowledgement_before_a_request_is_no_step(card: DatasetCard, text: str) -> None:
    assert len(split_clauses(normalise(text, card), card)) == 1
    assert understand(text, AFTER, card).tool == "explain_prediction"


def test_values_a_risk_lacked_complete_the_patient(card: DatasetCard) -> None:
    """A risk given too few inputs says what is missing; values said next complete it."""
    memory = Memory(
        prediction_id=LAST,
        patient={"age": 66, "sex": "Female", "cp": "non-anginal"},
        last_tool="predict_risk",
    )
    intent = understand("bp 150, chol 290, normal ecg, max hr 120, no exang", memory, card)
    assert intent.tool == "predict_risk"
    assert intent.arguments["patient"] == {
        "age": 66,
        "sex": "Female",
        "cp": "non-anginal",
        "trestbps": 150.0,
        "chol": 290.0,
        "restecg": "normal",
        "thalch": 120.0,
        "exang": False,
    }
    # a change of a value it had is a what-if, as after any prediction
    assert understand("what if her age were 60?", memory, card).tool == "what_if"


@pytest.mark.parametrize(
    "text",
    [
        "what's fuelling that?",
        "who's the culprit here?",
        "what's to blame?",
        "what's raising her risk?",
        "the biggest single thing?",
    ],
)
def test_what_a_risk_is_blamed_on_is_an_explanation(card: DatasetCard, text: str) -> None:
    assert understand(text, AFTER, card).tool == "explain_prediction"


def test_a_value_said_again_is_no_change(card: DatasetCard) -> None:
    """'the same man with ...': his sex is said again, only the cholesterol changes."""
    intent = understand("run the same man again with a cholesterol of 210", AFTER, card)
    assert intent.tool == "what_if"
    assert intent.arguments["changes"] == {"chol": 210.0}
