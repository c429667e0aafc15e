"""The offline provider on round X's writers (a medical student, an auditor, a patient
reading a report, an ops engineer, a statistician, a nurse educator, bare column headers and
two questions at once), each rule by two or more of its cases: an input's label alone, how an
input is stored, a value read off one's report, the first of two questions about one input,
the model's evaluation on held-out rows, a place the card has no data from, and the kind of
model asked for."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

SCORED = Memory(
    prediction_id="p-1",
    patient={"age": 53, "sex": "Male", "cp": "non-anginal", "trestbps": 155, "chol": 250},
    last_tool="predict_risk",
)


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


# --- what an input is -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("trestbps?", "trestbps"),
        ("thalach ??", "thalch"),
        ("oldpeak (mm)", "oldpeak"),
        ("FBS > 120 mg/dl - meaning?", "fbs"),
        ("Slope of peak exercise ST segment?", "slope"),
        ("vessels coloured by fluoroscopy?", "ca"),
    ],
)
def test_an_inputs_label_alone_is_a_definition(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


def test_a_label_with_a_value_word_is_no_definition(card: DatasetCard) -> None:
    assert _call("cp asymptomatic", card)[0] != "define_feature"


def test_a_bare_label_after_a_scored_patient_is_about_the_patient(card: DatasetCard) -> None:
    assert _call("cholesterol?", card, SCORED)[0] != "define_feature"


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("is fbs a boolean or a number in the payload?", "fbs"),
        ("Is ca a count or a category? What are its limits?", "ca"),
    ],
)
def test_how_an_input_is_stored_is_its_coding(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("my report shows trestbps 150, what is that number?", "trestbps"),
        ("my slope was flat, is flat bad?", "slope"),
    ],
)
def test_a_value_read_off_ones_report_is_a_definition(
    text: str, feature: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


def test_a_patients_value_asked_about_is_no_definition(card: DatasetCard) -> None:
    assert _call("his chol is 250, is that bad?", card, SCORED)[0] != "define_feature"


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("what is oldpeak and does it matter much?", "oldpeak"),
        ("what is thal and what values can it take?", "thal"),
        ("age: in years? and is there a max?", "age"),
        ("what is oldpeak, and what is BMI?", "oldpeak"),
    ],
)
def test_the_first_of_two_questions_about_one_input(
    text: str, feature: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


def test_a_second_question_about_a_patient_is_not_dropped(card: DatasetCard) -> None:
    assert _call("what is thal and what if his chol were 200", card, SCORED)[0] != "define_feature"


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("For my cardiology exam: what exactly does oldpeak measure?", "oldpeak"),
        ("what actually does thal indicate?", "thal"),
    ],
)
def test_an_adverb_after_the_question_word(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


# --- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "what's the AUC with its confidence interval on held-out data?",
        "how reliable is this heart risk thing? how often is it right?",
        "how often does the tool miss someone who really has heart disease?",
    ],
)
def test_the_evaluation_on_held_out_rows_is_performance(text: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("model_performance", {"where": []})


def test_a_metric_named_alone_stays_the_served_models(card: DatasetCard) -> None:
    assert _call("tell me the specificity and the calibration", card)[0] == "model_info"


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("Report the model's accuracy at the Mayo Clinic site.", "mayo"),
        ("how does it perform on the Stanford cohort?", "stanford"),
    ],
)
def test_a_place_the_card_lacks_is_said_back(text: str, place: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None and place in (intent.reply or "")
    assert "Cleveland" in (intent.reply or "")


@pytest.mark.parametrize(
    "text",
    [
        "how does the model actually work, what kind of algorithm is it?",
        "what type of classifier is it?",
    ],
)
def test_the_kind_of_model_asked_for(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == "model_info"
