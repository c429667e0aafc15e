"""The offline provider on the categories of round Q, each by the rule that reads it (none
of these sentences is in an eval suite): questions about what one input is (meaning, unit,
coding), counterfactuals in other words, short words typed as they sound and swapped
letters, ages written with hyphens, a negation that stops at the next finding, a form's
yes/no after a label that carries the line, what-ifs in the past perfect or said before the
patient, and the patient given in answer to "which patient?"."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.definitions import defined_feature
from copilot.llm.offline.intents import pending_request, understand
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import normalise
from model_service.cards import DatasetCard

LAST = "f" * 32
PATIENT = {
    "age": 59,
    "sex": "Male",
    "cp": "asymptomatic",
    "trestbps": 150,
    "chol": 280,
    "fbs": True,
    "restecg": "normal",
    "thalch": 122,
    "exang": True,
    "oldpeak": 2.4,
    "slope": "flat",
}
AFTER = Memory(prediction_id=LAST, patient=PATIENT, last_tool="predict_risk")
DESCRIBED = (
    "64 yo woman, non-anginal pain, BP 146, chol 262, not diabetic, normal ECG, max HR 141, "
    "exercise angina, oldpeak 1.3, flat"
)


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        # meaning
        ("what is meant by the thalch field?", "thalch"),
        ("could you say what 'ca' stands for", "ca"),
        ("what does asymptomatic mean here", "cp"),  # a category's word names its feature
        # unit
        ("in which units is serum cholesterol stored", "chol"),
        ("max heart rate - measured in what?", "thalch"),
        ("is ST depression in mm or mv?", "oldpeak"),
        # coding
        ("how is exang encoded", "exang"),
        ("slope: which categories are possible?", "slope"),
        ("the codes for thal, what do they mean?", "thal"),
        # the name alone, asked
        ("whats thal exactly", "thal"),
        ("what's fbs in this dataset?", "fbs"),
    ],
)
def test_a_question_about_one_input_is_define_feature(
    text: str, feature: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


@pytest.mark.parametrize(
    "text",
    [
        "what's the mean cholesterol of the women?",  # a statistic
        "what units does the model expect blood pressure in?",  # what the model takes
        "which values of cholesterol are most common at Hungary",  # the data at a site
        "what does his thal mean for his risk",  # a patient
        "does ca matter for the prediction",  # the model's use of the input
        "what do thal and ca mean",  # two inputs: not one definition
    ],
)
def test_other_questions_naming_an_input_are_not_definitions(text: str, card: DatasetCard) -> None:
    assert defined_feature(normalise(text, card), card) is None


@pytest.mark.parametrize(
    "text",
    [
        "what should he work on to be rated low risk?",
        "what would she have to improve to get below the cut-off",
        "what would make the model see him as healthy",
        "what would get his risk down under the line, at the least?",
    ],
)
def test_counterfactuals_in_other_words(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER) == ("counterfactual", {"prediction_id": LAST})


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("for record 88, what would make the model say no disease?", 88),
        ("what would turn row 7 into a negative prediction", 7),
    ],
)
def test_a_row_counterfactual_in_other_words(text: str, row: int, card: DatasetCard) -> None:
    assert _call(text, card) == ("counterfactual", {"row_id": row})


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("wat wuld it take", "what would it take"),
        ("hw shud we read it", "how should we read it"),
        ("wot does it meen", "what does it mean"),
        ("exersice angina", "exercise angina"),  # two letters swapped
        ("st depresison", "st depression"),
        ("a sixty-two-year-old woman", "a 62-year-old woman"),
        ("forty-five-year-old man", "45-year-old man"),
    ],
)
def test_the_normal_form_reads_chat_spellings_swaps_and_hyphenated_ages(
    typed: str, meant: str, card: DatasetCard
) -> None:
    assert normalise(typed, card) == meant


def test_short_words_inside_other_words_are_left_alone(card: DatasetCard) -> None:
    assert normalise("the wattage and cuddly plszone", card).startswith("the wattage")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no DM LVH", {"fbs": False, "restecg": "lv hypertrophy"}),
        ("no exang asx", {"exang": False, "cp": "asymptomatic"}),
        ("not really diabetic", {"fbs": False}),  # a word that is no finding: still negated
    ],
)
def test_a_negation_stops_at_the_next_finding(
    text: str, expected: dict[str, Any], card: DatasetCard
) -> None:
    assert parse_patient(normalise(text, card), card) == expected


@pytest.mark.parametrize(
    ("text", "fbs"),
    [
        ("FBS>120: No", False),
        ("fasting blood sugar > 120 mg/dl: yes", True),
        ("Age: 67 FBS > 120: 0 RestECG: normal", False),
        ("fasting sugar over 160, normal ECG", True),  # a value, not a label's answer
        ("glucose over 130 no exercise angina", True),
    ],
)
def test_a_forms_yes_or_no_after_a_label_with_the_line(
    text: str, fbs: bool, card: DatasetCard
) -> None:
    assert parse_patient(normalise(text, card), card)["fbs"] is fbs


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("what if his max heart rate had been 165?", {"thalch": 165}),
        ("had his BP been 128, what then?", {"trestbps": 128}),
        ("and if his cholesterol has been 210 all along?", {"chol": 210}),
    ],
)
def test_a_what_if_in_the_past_perfect(
    text: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card, AFTER) == ("what_if", {"prediction_id": LAST, "changes": changes})


@pytest.mark.parametrize(
    ("opening", "changes"),
    [
        ("Suppose she had no exercise angina: ", {"exang": False}),
        ("what if her cholesterol were 190? ", {"chol": 190}),
        ("imagine she were 5 years older - ", {"age": 69}),
    ],
)
def test_a_what_if_said_before_the_patient(
    opening: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    tool, arguments = _call(opening + DESCRIBED, card)
    assert tool == "what_if"
    assert arguments["changes"] == changes
    assert arguments["patient"]["exang"] is True and arguments["patient"]["age"] == 64


def test_a_value_the_patient_already_has_is_no_change_said_first(card: DatasetCard) -> None:
    tool, _ = _call("suppose she had exercise angina: " + DESCRIBED, card)
    assert tool != "what_if"


def _answer_after(question: str, answer: str, card: DatasetCard) -> tuple[Any, Any]:
    asked = pending_request(question, Memory(), card)
    assert asked is not None
    memory = Memory(
        pending_patient=asked.pending or {},
        asked_for=tuple(asked.asked_for),
        pending_tool=asked.pending_tool,
    )
    return _call(answer, card, memory)


@pytest.mark.parametrize(
    ("question", "tool"),
    [
        ("can you explain a prediction for me?", "explain_prediction"),
        ("break down a prediction for me", "explain_prediction"),
        ("what would it take to bring the risk down?", "counterfactual"),
        ("which changes would get a patient under the threshold?", "counterfactual"),
    ],
)
def test_the_patient_given_after_which_patient_goes_where_it_was_asked_for(
    question: str, tool: str, card: DatasetCard
) -> None:
    called, arguments = _answer_after(question, DESCRIBED, card)
    assert called == tool
    assert arguments["patient"]["chol"] == 262


def test_a_missing_value_answer_keeps_what_the_patient_was_for(card: DatasetCard) -> None:
    first = pending_request("explain a prediction", Memory(), card)
    assert first is not None and first.pending_tool == "explain_prediction"
    memory = Memory(pending_patient={}, pending_tool="explain_prediction")
    # a new request in answer is read as itself
    assert _call("check drift at Hungary", card, memory) == ("check_drift", {"site": "Hungary"})
    assert _call("predict the risk for " + DESCRIBED, card, memory)[0] == "predict_risk"


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("what are the odds this lady has CAD? 57, atypical angina, BP 130, chol 236, LVH", 57),
        ("Patient record: 66, asymptomatic, BP 150, chol 300, diabetic", 66),
        ("show rows: 12, 13, 14, 15", None),  # numbers only: no record of findings
    ],
)
def test_a_record_that_opens_with_the_age(text: str, age: int | None, card: DatasetCard) -> None:
    assert parse_patient(normalise(text, card), card).get("age") == age


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("max heart rat 170", "max heart rate 170"),
        ("blod pressure 125", "blood pressure 125"),
        ("the rest of it", "the rest of it"),  # no two-word name beside it
        ("the heart is fine", "the heart is fine"),
    ],
)
def test_a_short_typo_is_fixed_by_its_neighbour_in_a_two_word_name(
    typed: str, meant: str, card: DatasetCard
) -> None:
    assert normalise(typed, card) == meant


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("what's the difference between upsloping and downsloping?", "slope"),
        ("what does a fixed defect on the perfusion scan indicate?", "thal"),
        ("how many levels does the chest pain type have", "cp"),
        ("how many categories is resting ECG split into?", "restecg"),
        ("tell me about the thalch column", "thalch"),
        ("some information on fbs please", "fbs"),
    ],
)
def test_more_ways_of_asking_what_an_input_is(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stopped having exercise angina", {"exang": False}),
        ("no longer diabetic", {"fbs": False}),
        ("free of exercise angina", {"exang": False}),
    ],
)
def test_a_finding_that_ended_is_negated(
    text: str, expected: dict[str, Any], card: DatasetCard
) -> None:
    assert parse_patient(normalise(text, card), card) == expected


@pytest.mark.parametrize(
    ("question", "changes"),
    [
        (". How much would her risk drop with chol 180?", {"chol": 180}),
        ("; how far would her risk fall at a BP of 120?", {"trestbps": 120}),
    ],
)
def test_how_much_her_risk_moves_with_a_change_is_a_what_if(
    question: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    tool, arguments = _call(DESCRIBED + question, card)
    assert tool == "what_if" and arguments["changes"] == changes


def test_a_bare_why_with_nothing_before_it_remembers_no_tool(card: DatasetCard) -> None:
    """ "why?" with no patient is asked back; the patient described next is scored first."""
    asked = pending_request("why?", Memory(), card)
    assert asked is None or asked.pending_tool is None
    assert _call(DESCRIBED, card, Memory(pending_patient={}))[0] == "predict_risk"
