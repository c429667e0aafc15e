"""The offline provider on the patient side of round S, each by the mechanism that reads it
(none of these sentences is in an eval suite): records written with slashes, words of four
letters with two letters swapped, "dose" typed for "does", verbs of change in the past and
in the third person, an age bound that is no new value, angina said of "the test", what an
explanation rests on, the model's call made ("make him negative"), and questions about
what one input is: as a column, in plain words, its cut-off, what counts as a value."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import normalise
from model_service.cards import DatasetCard

LAST = "e" * 32
PATIENT = {
    "age": 61,
    "sex": "Female",
    "cp": "asymptomatic",
    "trestbps": 148,
    "chol": 262,
    "fbs": True,
    "restecg": "normal",
    "thalch": 119,
    "exang": True,
    "oldpeak": 2.2,
    "slope": "flat",
}
AFTER = Memory(prediction_id=LAST, patient=PATIENT, last_tool="predict_risk")


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


def _patient(text: str, card: DatasetCard) -> dict[str, Any]:
    return parse_patient(normalise(text, card), card)


# --- the normal form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("47/F/asx/chol 250", "47, f, asx, chol 250"),
        ("male / 70 / typical angina / bp 150", "male, 70, typical angina, bp 150"),
        # numbers on both sides, units and short forms: no separators
        ("bp 145/90, chol 5.2 mmol/l, 60 y/o", "bp 145/90, chol 5.2 mmol/l, 60 y/o"),
        ("70/m with BP 130/85", "70/m with bp 130/85"),  # one slash between words: kept
    ],
)
def test_a_record_written_with_slashes_is_a_list(typed: str, meant: str, card: DatasetCard) -> None:
    assert normalise(typed, card) == meant


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("a 70 yo mael", "a 70 yo male"),
        ("what is his rsik", "what is his risk"),
        ("chest pian", "chest pain"),
        # real words and words with no neighbour swapped are left alone
        ("form from urns", "form from urns"),
    ],
)
def test_four_letter_words_with_two_letters_swapped(
    typed: str, meant: str, card: DatasetCard
) -> None:
    assert normalise(typed, card) == meant


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("what dose ca stand for", "what does ca stand for"),
        ("how dose the slope work", "how does the slope work"),
        ("what dose of statin", "what dose of statin"),  # a dose, asked about
    ],
)
def test_dose_typed_for_does(typed: str, meant: str, card: DatasetCard) -> None:
    assert normalise(typed, card) == meant


def test_common_words_are_not_fixed_into_the_grammars(card: DatasetCard) -> None:
    assert normalise("if chol falls or rises, in plain terms", card) == (
        "if chol falls or rises, in plain terms"
    )


# --- patients -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("58/M/atypical/BP 140/chol 199", {"age": 58, "sex": "Male", "cp": "atypical angina"}),
        ("71/F/FBS+/exang-/ST dep 2", {"age": 71, "sex": "Female", "fbs": True, "exang": False}),
    ],
)
def test_a_slash_record_is_read(text: str, expected: dict[str, Any], card: DatasetCard) -> None:
    values = _patient(text, card)
    assert {k: values.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("text", "exang"),
    [
        ("59 yo man, max HR 140, no angina on testing", False),
        ("59 yo man, max HR 140, developed angina during the test", True),
    ],
)
def test_angina_said_of_the_test_is_exercise_angina(
    text: str, exang: bool, card: DatasetCard
) -> None:
    assert _patient(text, card)["exang"] is exang


# --- what-ifs and counterfactuals -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("what if we lowered her cholesterol by 40?", {"chol": 222}),
        ("suppose they increased her max HR by 20", {"thalch": 139}),
        ("and if we reduced her BP by 18", {"trestbps": 130}),
    ],
)
def test_a_verb_of_change_in_the_past_before_the_feature(
    text: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card, AFTER) == ("what_if", {"prediction_id": LAST, "changes": changes})


@pytest.mark.parametrize(
    "text",
    [
        "fewest changes to make her negative?",
        "what would it take to get her to low",
    ],
)
def test_the_models_call_made_or_got_is_a_counterfactual_goal(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER) == ("counterfactual", {"prediction_id": LAST})


@pytest.mark.parametrize(
    ("text", "where", "changes"),
    [
        (
            "women aged 60+: what if their chol were all 190?",
            [{"feature": "sex", "op": "==", "value": "Female"}],
            [{"feature": "chol", "op": "set", "value": 190}],
        ),
        (
            "what happens to patients 70 and over if their BP rises by 10?",
            [{"feature": "age", "op": ">=", "value": 70}],
            [{"feature": "trestbps", "op": "add", "value": 10}],
        ),
    ],
)
def test_a_group_bound_by_age_is_no_new_age(
    text: str, where: list[dict[str, Any]], changes: list[dict[str, Any]], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == changes
    assert all(condition in arguments["where"] for condition in where)
    assert not any(c["feature"] == "age" for c in arguments["changes"])


# --- explanations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "what did the model base that on?",
        "on what basis is she scored that high?",
        "which of her values are doing the most harm?",
        "which of her results weigh in here",
    ],
)
def test_what_a_result_rests_on_is_an_explanation(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER)[0] == "explain_prediction"


# --- what one input is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        # the input named as a column, with a question anywhere
        ("the thal field - what's that about?", "thal"),
        ("can you describe the slope variable for me", "slope"),
        ("column oldpeak: what is it?", "oldpeak"),
        # in plain words
        ("thal in layman's terms please", "thal"),
        ("restecg, in simple words?", "restecg"),
        # the line a yes/no input is drawn at
        ("which threshold is used for the fbs flag?", "fbs"),
        ("fasting blood sugar: what's the cutoff for it", "fbs"),
        # what a value of it amounts to
        ("what counts as typical angina here?", "cp"),
        ("what qualifies as a flat slope", "slope"),
        # what a value tells
        ("when fbs is false, what does that imply?", "fbs"),
        ("exang = yes - what does it say?", "exang"),
    ],
)
def test_more_ways_to_ask_what_one_input_is(text: str, feature: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


@pytest.mark.parametrize(
    "text",
    [
        "what's the decision threshold of the model?",  # the model's own cut-off
        "the chol column - what is the average at Hungary?",  # a statistic at a site
        "which of her values counts as high risk?",  # a patient
    ],
)
def test_questions_that_are_not_about_one_input(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER)[0] != "define_feature"


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        # the feature said first, asked about by a pronoun
        ("ca - what is it", "ca"),
        ("thal: what's that?", "thal"),
        # named inside a question about what it is
        ("remind me what trestbps is", "trestbps"),
        ("I don't know what thal is", "thal"),
        # a category's word with an article
        ("what is a fixed defect", "thal"),
        ("what's an st-t abnormality?", "restecg"),
        # one unit asked about
        ("is oldpeak in mm?", "oldpeak"),
        ("is cholesterol recorded in mmol/l here?", "chol"),
        # a code of it
        ("what does thal = 7 mean", "thal"),
        ("what does restecg=2 mean", "restecg"),
        # the definition's own fields
        ("what are the limits on cholesterol", "chol"),
        ("what is the actionable range for resting blood pressure", "trestbps"),
        # understanding asked for
        ("help me understand oldpeak", "oldpeak"),
        ("I don't understand the slope feature", "slope"),
    ],
)
def test_still_more_ways_to_ask_what_one_input_is(
    text: str, feature: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("define_feature", {"feature": feature})


@pytest.mark.parametrize(
    "text",
    [
        "what's the closest low-risk version of her?",
        "nearest low-risk profile for this patient",
        "how far is she from being low risk?",
        "how far away is she from low risk",
        "which actionable features would flip her?",
        "what modifiable factors get her below the line",
        "what should change so the model no longer flags her",
        "what could she change so the model stops flagging her?",
        "how do we make her not high risk",
        "smallest tweak to flip the verdict",
        "ok so what would it take?",
        "what would it take for her?",
    ],
)
def test_more_counterfactuals(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER) == ("counterfactual", {"prediction_id": LAST})


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("what would it take for row 12 to be predicted negative?", 12),
        ("what changes would get record 40 to drop below the threshold", 40),
    ],
)
def test_a_row_then_to_is_no_range(text: str, row: int, card: DatasetCard) -> None:
    assert _call(text, card) == ("counterfactual", {"row_id": row})


@pytest.mark.parametrize(
    ("text", "where", "changes"),
    [
        # "for all" is everyone
        (
            "at Hungary, what if chol were set to 200 for all",
            [{"feature": "site", "op": "==", "value": "Hungary"}],
            [{"feature": "chol", "op": "set", "value": 200}],
        ),
        # a change said as a gerund
        (
            "simulate lowering BP by 15 for everyone over 70",
            [{"feature": "age", "op": ">", "value": 70}],
            [{"feature": "trestbps", "op": "add", "value": -15}],
        ),
        (
            "the effect of raising max HR by 10 for those under 50?",
            [{"feature": "age", "op": "<", "value": 50}],
            [{"feature": "thalch", "op": "add", "value": 10}],
        ),
        # "what-if" written with a hyphen
        (
            "cohort what-if: bp -10 for patients with bp over 150",
            [{"feature": "trestbps", "op": ">", "value": 150}],
            [{"feature": "trestbps", "op": "add", "value": -10}],
        ),
        # a yes/no or a category given by naming the feature first
        (
            "for all women, set exang to no: how many flip?",
            [{"feature": "sex", "op": "==", "value": "Female"}],
            [{"feature": "exang", "op": "set", "value": False}],
        ),
        (
            "change slope to upsloping for everyone at Cleveland",
            [{"feature": "site", "op": "==", "value": "Cleveland"}],
            [{"feature": "slope", "op": "set", "value": "upsloping"}],
        ),
        # a sugar brought under control, a value word in the plural
        (
            "if all the diabetics got their sugar under control?",
            [{"feature": "fbs", "op": "==", "value": True}],
            [{"feature": "fbs", "op": "set", "value": False}],
        ),
        (
            "what if all the people with flat slopes had upsloping ones?",
            [{"feature": "slope", "op": "==", "value": "flat"}],
            [{"feature": "slope", "op": "set", "value": "upsloping"}],
        ),
    ],
)
def test_more_group_what_ifs(
    text: str, where: list[dict[str, Any]], changes: list[dict[str, Any]], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == changes
    assert arguments["where"] == where


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("what if exang were no", {"exang": False}),
        ("and if fbs were yes?", {"fbs": True}),
        ("same lady at 45", {"age": 45}),
        ("what about the same patient at 70?", {"age": 70}),
    ],
)
def test_a_what_if_answered_after_the_name_or_at_an_age(
    text: str, changes: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card, AFTER) == ("what_if", {"prediction_id": LAST, "changes": changes})


@pytest.mark.parametrize("text", ["anything protective?", "which values are responsible?"])
def test_protective_and_responsible_values_are_an_explanation(text: str, card: DatasetCard) -> None:
    assert _call(text, card, AFTER)[0] == "explain_prediction"


@pytest.mark.parametrize(
    ("text", "fbs"),
    [("DM: no, LVH", False), ("diabetes = yes, normal ECG", True), ("known diabetic: no", False)],
)
def test_a_finding_used_as_a_label_then_answered(text: str, fbs: bool, card: DatasetCard) -> None:
    assert _patient(text, card)["fbs"] is fbs


@pytest.mark.parametrize(
    "typed",
    [
        "what's driving her risk",
        "the gate fails",
        "in order of importance",
        "3 blocked vessels",
        "suppose they increased her max hr by 20",
    ],
)
def test_real_words_are_not_fixed_into_the_grammars(typed: str, card: DatasetCard) -> None:
    assert normalise(typed, card) == typed.lower()
