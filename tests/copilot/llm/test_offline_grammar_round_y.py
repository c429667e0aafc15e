"""The offline provider on round Y's conversations (several turns each), each rule by two or
more of its cases: corrections of a scored patient or of the last call's slot, a relative's
age and exertional pain in lay words, the last group carried to follow-ups that go on from
it, a what-if that names an input and no value (asked, then answered), and the last question
about a patient asked again of the next one."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

MAN = {
    "age": 85,
    "sex": "Male",
    "cp": "asymptomatic",
    "trestbps": 180.0,
    "chol": 211.0,
    "thalch": 165.0,
}
SCORED = Memory(patient=MAN, prediction_id="p-1", last_tool="predict_risk")


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


# --- corrections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        ("sorry, I meant 58 not 85", {"age": 58}),
        ("wait, the BP is 140, not 180", {"trestbps": 140.0}),
        ("my mistake, she's a woman", {"sex": "Female"}),
        ("actually make that female", {"sex": "Female"}),
    ],
)
def test_a_corrected_patient_is_scored_anew(
    text: str, changed: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card, SCORED) == ("predict_risk", {"patient": {**MAN, **changed}})


def test_a_corrected_patient_is_explained_anew_after_an_explanation(card: DatasetCard) -> None:
    explained = Memory(patient=MAN, prediction_id="p-1", last_tool="explain_prediction")
    tool, arguments = _call("sorry, I meant 58 not 85", card, explained)
    assert (tool, arguments["patient"]["age"]) == ("explain_prediction", 58)


@pytest.mark.parametrize(
    "text", ["sorry, what if he were 58?", "sorry, I meant chol 200", "no angina"]
)
def test_no_correction_without_an_old_value_or_a_required_input(
    text: str, card: DatasetCard
) -> None:
    assert _call(text, card, SCORED)[0] != "predict_risk"


@pytest.mark.parametrize(
    ("last", "before", "text", "after"),
    [
        ("check_drift", {"site": "Switzerland"}, "no, Hungary, not Switzerland", "Hungary"),
        (
            "model_performance",
            {"where": [{"feature": "site", "op": "==", "value": "Cleveland"}]},
            "sorry I meant the VA ones",
            "VA Long Beach",
        ),
    ],
)
def test_a_corrected_site_repeats_the_last_call(
    last: str, before: dict[str, Any], text: str, after: str, card: DatasetCard
) -> None:
    tool, arguments = _call(text, card, Memory(last_tool=last, last_arguments=before))
    assert tool == last
    assert after in str(arguments)
    assert "Switzerland" not in str(arguments) and "Cleveland" not in str(arguments)


# --- a relative's words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("my father is 71, he has typical angina, blood pressure 150, cholesterol 270", 71),
        ("my husband is 64, asymptomatic, blood pressure 132, cholesterol 299", 64),
    ],
)
def test_a_relatives_age(text: str, age: int, card: DatasetCard) -> None:
    tool, arguments = _call(text, card)
    assert (tool, arguments["patient"]["age"]) == ("predict_risk", age)


@pytest.mark.parametrize(
    "text",
    [
        "62 yo man, asymptomatic, bp 140, chol 250, he got angina on the bike test",
        "62 yo man, asymptomatic, bp 140, chol 250, he had pain during the test",
        "man 62 years, asymptomatic, bp 140, chol 250, angina in exercise yes",
    ],
)
def test_exertional_pain_in_lay_words(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[1]["patient"]["exang"] is True


# --- the last group -----------------------------------------------------------------------------

WOMEN_OVER_60 = [
    {"feature": "sex", "op": "==", "value": "Female"},
    {"feature": "age", "op": ">", "value": 60},
]


@pytest.mark.parametrize(
    ("last", "text", "tool"),
    [
        ("model_performance", "the top features for the last group?", "feature_importance"),
        ("model_performance", "which pairs interact the most there?", "feature_interactions"),
        ("model_mistakes", "only the missed cases", "model_mistakes"),
    ],
)
def test_the_last_group_is_kept(last: str, text: str, tool: str, card: DatasetCard) -> None:
    memory = Memory(last_tool=last, last_arguments={"where": WOMEN_OVER_60})
    found, arguments = _call(text, card, memory)
    assert (found, arguments["where"]) == (tool, WOMEN_OVER_60)


def test_the_same_but_narrower_adds_a_condition(card: DatasetCard) -> None:
    over_70 = [{"feature": "age", "op": ">", "value": 70}]
    memory = Memory(last_tool="describe_data", last_arguments={"where": over_70})
    tool, arguments = _call("the same but only men", card, memory)
    assert tool == "describe_data"
    assert arguments["where"] == [*over_70, {"feature": "sex", "op": "==", "value": "Male"}]


def test_a_what_if_on_the_group_is_not_the_same_question(card: DatasetCard) -> None:
    exang = [{"feature": "exang", "op": "==", "value": True}]
    memory = Memory(last_tool="feature_importance", last_arguments={"where": exang})
    tool, arguments = _call("and if none of them had diabetes?", card, memory)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == [{"feature": "fbs", "op": "set", "value": False}]


def test_everyone_is_not_the_last_group(card: DatasetCard) -> None:
    memory = Memory(last_tool="model_performance", last_arguments={"where": WOMEN_OVER_60})
    assert "where" not in _call("and the top features overall?", card, memory)[1]


# --- a what-if without its value ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("what if his ST depression were different?", "oldpeak"),
        ("could you check how her risk changes with a different cholesterol?", "chol"),
    ],
)
def test_a_what_if_without_a_value_asks_for_it(text: str, asked: str, card: DatasetCard) -> None:
    intent = understand(text, SCORED, card)
    assert (intent.tool, intent.asked_for, intent.pending_tool) == (None, [asked], "what_if")


@pytest.mark.parametrize(
    ("asked", "answer", "value"),
    [("oldpeak", "it's 2.3", 2.3), ("chol", "let's say 190", 190.0), ("chol", "190", 190.0)],
)
def test_the_answer_runs_the_what_if(
    asked: str, answer: str, value: float, card: DatasetCard
) -> None:
    memory = Memory(
        patient=MAN,
        prediction_id="p-1",
        last_tool="predict_risk",
        pending_patient=MAN,
        asked_for=(asked,),
        pending_tool="what_if",
    )
    assert _call(answer, card, memory) == (
        "what_if",
        {"prediction_id": "p-1", "changes": {asked: value}},
    )


# --- the next patient ---------------------------------------------------------------------------

WOMAN = {"age": 63, "sex": "Female", "cp": "non-anginal", "trestbps": 135.0, "chol": 252.0}


@pytest.mark.parametrize(
    ("question", "text", "tool", "arguments"),
    [
        ({"tool": "explain_prediction"}, "now for her", "explain_prediction", {}),
        (
            {"tool": "what_if", "changes": {"chol": 180}},
            "same question for her",
            "what_if",
            {"changes": {"chol": 180}},
        ),
    ],
)
def test_the_last_question_is_asked_of_the_next_patient(
    question: dict[str, Any],
    text: str,
    tool: str,
    arguments: dict[str, Any],
    card: DatasetCard,
) -> None:
    memory = Memory(
        patient=WOMAN, prediction_id="p-2", last_tool="predict_risk", last_question=question
    )
    assert _call(text, card, memory) == (tool, {"prediction_id": "p-2", **arguments})


def test_and_for_her_after_a_man_is_still_the_other_sex(card: DatasetCard) -> None:
    memory = Memory(
        patient=MAN,
        prediction_id="p-1",
        last_tool="predict_risk",
        last_question={"tool": "explain_prediction"},
    )
    assert _call("and for her?", card, memory) == (
        "what_if",
        {"prediction_id": "p-1", "changes": {"sex": "Female"}},
    )


@pytest.mark.parametrize(
    "text",
    [
        "ok, another one: 44M, atypical angina, BP 130, chol 233, max HR 179",
        "and patient B: 70 yo male, asymptomatic, BP 145, chol 174, max HR 125",
    ],
)
def test_the_next_patient_announced_is_scored(text: str, card: DatasetCard) -> None:
    assert _call(text, card, SCORED)[0] == "predict_risk"


@pytest.mark.parametrize(
    "text",
    [
        "go back to patient A - what if his cholesterol were 200?",
        "let's go back to the first patient",
        "back to that man: what if he were 10 years older?",
        "going back to the previous patient, why is his risk high?",
    ],
)
def test_going_back_to_a_patient_proposes_no_rollback(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] != "rollback_model"


@pytest.mark.parametrize(
    "text",
    ["go back to the previous model", "go back to the previous one", "bring back the old champion"],
)
def test_going_back_to_a_model_is_still_a_rollback(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == "rollback_model"
