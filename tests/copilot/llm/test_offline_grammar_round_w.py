"""The offline provider on round W's writers (clinicians on a phone, non-native speakers,
managers, data scientists, dictation, nurses), each rule by two or more of its cases:
dictation fillers and spoken numbers, a card name said in pieces, category words cut short
and a clinician's shorthand, definitions read off a chart, "if <input>" after a described
patient, a finding said controlled for a group, a feature that is both the group's bound and
the change, the effect of an input the card lacks, signed changes, drift against the
training data, a patient's value asked about as a problem, and SHAP said of a group."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.text import normalise
from model_service.cards import DatasetCard

SCORED = Memory(
    prediction_id="p-1",
    patient={"age": 53, "sex": "Male", "cp": "non-anginal", "trestbps": 155, "chol": 250},
    last_tool="predict_risk",
)


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


# --- the normal form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("um so like what is the slope thing exactly", "so what is the slope thing exactly"),
        ("what if the blood pressure went down by like twenty", "went down by 20"),
        ("okay and um why is that", "okay and why is that"),
    ],
)
def test_dictation_fillers_are_dropped(text: str, said: str, card: DatasetCard) -> None:
    assert said in normalise(text, card)


def test_a_like_that_is_a_verb_stays(card: DatasetCard) -> None:
    assert "would like to see" in normalise("I would like to see the runs", card)


@pytest.mark.parametrize(
    ("text", "number"),
    [("blood pressure one eighteen", "118"), ("cholesterol one eighty six", "186")],
)
def test_spoken_hundreds_take_a_teen_or_tens(text: str, number: str, card: DatasetCard) -> None:
    assert number in normalise(text, card).split()


@pytest.mark.parametrize(
    ("text", "joined"),
    [
        ("what does the old peak thing mean", "oldpeak"),
        ("b p one twenty", "bp"),
        ("okay what does trest b p stand for", "bp"),
    ],
)
def test_a_card_name_said_in_pieces_is_joined(text: str, joined: str, card: DatasetCard) -> None:
    assert joined in normalise(text, card).split()


@pytest.mark.parametrize(
    ("text", "word"),
    [("62M asympt BP 160", "asymptomatic"), ("63M typ CP BP 145", "typical")],
)
def test_a_category_word_cut_short_is_written_out(text: str, word: str, card: DatasetCard) -> None:
    assert word in normalise(text, card).split()


def test_a_three_letter_cut_needs_a_word_of_its_feature_after_it(card: DatasetCard) -> None:
    assert "typical" in normalise("70M typ angina BP 170", card).split()
    assert normalise("thal rev", card) == "thal rev"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("all pts w/ FBS pos", "all patients with fbs pos"),
        ("what happens to grp risk", "what happens to group risk"),
        ("58M smoker hx", "58m smoker history"),
    ],
)
def test_a_clinicians_shorthand_is_written_out(text: str, words: str, card: DatasetCard) -> None:
    assert words in normalise(text, card)


# --- definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        ("what does the old peak thing mean on his chart", "oldpeak"),
        ("what does the fasting blood sugar box on this form mean", "fbs"),
        ("um so like what is the slope thing exactly", "slope"),
        ("okay what does trest b p stand for", "trestbps"),
    ],
)
def test_a_definition_read_off_the_page(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


# --- one patient ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "patient", "changes"),
    [
        (
            "70M typ angina BP 170 chol 310 if BP down 20 and chol down 60",
            {"age": 70, "sex": "Male", "cp": "typical angina", "trestbps": 170, "chol": 310},
            {"trestbps": 150, "chol": 250},
        ),
        (
            "man 59, chest pain asymptomatic, pressure 140, cholesterol 300. if cholesterol is "
            "less by 50, how the risk change?",
            {"age": 59, "sex": "Male", "cp": "asymptomatic", "trestbps": 140, "chol": 300},
            {"chol": 250},
        ),
        (
            "patient man 55 years, chest pain typical, pressure 145, cholesterol 260. if "
            "pressure become 120 how much is risk?",
            {"age": 55, "sex": "Male", "cp": "typical angina", "trestbps": 145, "chol": 260},
            {"trestbps": 120},
        ),
        (
            "um sixty five year old man atypical angina blood pressure one fifty cholesterol "
            "two sixty what if the blood pressure went down by like twenty",
            {"age": 65, "sex": "Male", "cp": "atypical angina", "trestbps": 150, "chol": 260},
            {"trestbps": 130},
        ),
    ],
)
def test_if_an_input_after_a_described_patient_is_a_what_if(
    text: str, patient: dict[str, Any], changes: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card) == ("what_if", {"patient": patient, "changes": changes})


@pytest.mark.parametrize(
    ("text", "changes"),
    [("what's the delta if trestbps -15", {"trestbps": 140}), ("and chol -40?", {"chol": 210})],
)
def test_a_minus_on_a_value_that_cant_be_negative_is_a_change(
    text: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card, SCORED) == ("what_if", {"prediction_id": "p-1", "changes": changes})


def test_a_minus_on_a_value_that_can_be_negative_is_the_value(card: DatasetCard) -> None:
    assert _call("what if oldpeak -0.5", card, SCORED)[1]["changes"] == {"oldpeak": -0.5}


@pytest.mark.parametrize(
    "text",
    [
        "is his sugar a problem",
        "which thing is most making the risk high for him?",
        "show me the feature attributions for that prediction",
    ],
)
def test_a_value_asked_about_as_a_problem_is_an_explanation(text: str, card: DatasetCard) -> None:
    assert _call(text, card, SCORED) == ("explain_prediction", {"prediction_id": "p-1"})


# --- what the card lacks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("58M smoker 40 pk yr hx how much does the smoking add to his risk", "smoking"),
        (
            "Could the model factor in each patient's insurance status, so we can see whether "
            "that changes the predicted risk?",
            "insurance",
        ),
        ("his troponin came back high, does that change his heart risk in the model", "troponin"),
    ],
)
def test_the_effect_of_an_input_the_card_lacks_is_said_back(
    text: str, named: str, card: DatasetCard
) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert named in (intent.reply or "")


# --- groups ---------------------------------------------------------------------------------

_FBS_HIGH = [{"feature": "fbs", "op": "==", "value": True}]


@pytest.mark.parametrize(
    "text",
    [
        "all pts w/ FBS pos if sugar controlled how much does grp risk drop",
        "if everyone with high blood sugar got it under control would the risk for that group "
        "go down much",
    ],
)
def test_a_finding_said_controlled_is_set_false_for_the_group(text: str, card: DatasetCard) -> None:
    assert _call(text, card) == (
        "cohort_what_if",
        {"where": _FBS_HIGH, "changes": [{"feature": "fbs", "op": "set", "value": False}]},
    )


@pytest.mark.parametrize(
    "text", ["what if all the women stopped smoking?", "what if all the diabetics took metformin?"]
)
def test_an_if_with_no_finding_treated_sets_nothing(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] != "cohort_what_if"


def test_the_changed_mention_is_not_the_groups_bound(card: DatasetCard) -> None:
    tool, arguments = _call("men >55 w/ BP over 140 drop BP by 15 what happens to grp risk", card)
    assert tool == "cohort_what_if"
    assert {"feature": "trestbps", "op": ">", "value": 140.0} in arguments["where"]
    assert arguments["changes"] == [{"feature": "trestbps", "op": "add", "value": -15.0}]


@pytest.mark.parametrize(
    ("text", "change"),
    [
        (
            "simulate a -10 mmHg shift in trestbps for everyone over 60",
            {"feature": "trestbps", "op": "add", "value": -10.0},
        ),
        (
            "simulate a +20 change to chol for all women",
            {"feature": "chol", "op": "add", "value": 20.0},
        ),
    ],
)
def test_a_signed_shift_is_a_groups_change(
    text: str, change: dict[str, Any], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == [change]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "global SHAP importance over the Swiss cohort, top 5",
            [{"feature": "site", "op": "==", "value": "Switzerland"}],
        ),
        ("mean SHAP values across the whole dataset", None),
    ],
)
def test_shap_said_of_a_group_is_importance(
    text: str, where: list[dict[str, Any]] | None, card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "feature_importance"
    assert arguments.get("where") == where


# --- drift and runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "site"),
    [
        (
            "Is there any degradation in the data coming from the Swiss site compared with what "
            "the model was trained on?",
            "Switzerland",
        ),
        ("the data of Hungary is changed from the training? please check", "Hungary"),
        (
            "so um can you check if the patients from hungary look different from what the "
            "model learned on",
            "Hungary",
        ),
    ],
)
def test_the_data_against_training_is_a_drift_check(
    text: str, site: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("check_drift", {"site": site})


def test_a_count_said_wins_for_recent_training(card: DatasetCard) -> None:
    text = "Could you give me visibility on the most recent training activity, say the last 5 runs?"
    assert _call(text, card) == ("list_runs", {"limit": 5})
