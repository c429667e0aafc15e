"""The offline provider on phrasings of our own, one table per category of understanding
(none of them is in an eval suite): each category is fixed by a rule of the grammar, and
these sentences check that the rule, not a sentence, was learnt."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from model_service.cards import DatasetCard

LAST = "b" * 32
AFTER = Memory(
    prediction_id=LAST,
    patient={
        "age": 60,
        "sex": "Male",
        "cp": "asymptomatic",
        "trestbps": 140,
        "chol": 250,
        "fbs": True,
        "exang": True,
        "ca": 2,
        "thal": "reversable defect",
    },
)
FRESH = Memory()


def _routes(card: DatasetCard, text: str, memory: Memory, tool: str | None) -> dict[str, Any]:
    intent = understand(text, memory, card)
    assert intent.tool == tool, (text, intent.tool, intent.arguments, intent.reply)
    if tool is None:
        assert intent.reply
    return intent.arguments


# --- a patient's values: abbreviations, levels, glucose readings, lists ------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("61F atyp chest pain, chol 250", {"age": 61, "sex": "Female", "cp": "atypical angina"}),
        (
            "female, 52, non-anginal, bp 128, chol 201, max hr 150",
            {"age": 52, "sex": "Female", "trestbps": 128},
        ),
        ("female, 52, non-anginal", {"age": None, "sex": "Female"}),  # too short to tell
        ("score this one: 66, male, asymptomatic, chol 250", {"age": 66, "sex": "Male"}),
        ("Mr K, 71, asymptomatic, chol 199", {"age": 71, "sex": "Male", "chol": 199}),
        ("55 yo man with exertional angina", {"exang": True}),
        ("55 yo man, no exertional angina", {"exang": False}),
        ("70M, FBS pos, thal nl", {"fbs": True, "thal": "normal"}),
        ("48 yo woman, fbs neg, normal resting ECG", {"fbs": False, "restecg": "normal"}),
        ("66 yo man, fasting sugar elevated", {"fbs": True}),
        ("66 yo man, fasting glucose not raised", {"fbs": False}),
        ("66 yo man, fasting glucose 6.1 mmol/l", {"fbs": False}),
        ("66 yo man, fasting glucose 9 mmol", {"fbs": True}),
        ("66 yo man, fasting blood sugar 150 mg/dl", {"fbs": True}),
        ("66 yo man, fasting sugar above 120", {"fbs": True}),
        ("66 yo man, normal thal, 1 vessel", {"thal": "normal", "ca": 1}),
    ],
)
def test_patient_values_said_many_ways(
    card: DatasetCard, text: str, expected: dict[str, Any]
) -> None:
    values = parse_patient(text.lower(), card)
    assert {k: values.get(k) for k in expected} == expected


# --- each category: (text, memory, tool) ---------------------------------------------------

CATEGORIES: dict[str, list[tuple[str, Memory, str | None]]] = {
    # a patient described and changed in the same request
    "described what-if": [
        (
            "62 yo woman, asymptomatic, BP 150, chol 300: what if her chol were 220?",
            FRESH,
            "what_if",
        ),
        (
            "For a 49 yo man, typical angina, bp 160, what would it be with his BP at 130",
            FRESH,
            "what_if",
        ),
        (
            "58M non-anginal, chol 280, bp 140; suppose we got his chol down to 190",
            FRESH,
            "what_if",
        ),
        ("70 yo man, asymptomatic, chol 240 -- what if he was 10 years younger?", FRESH, "what_if"),
    ],
    # verbs of cause: drive, push, pull
    "explain verbs": [
        ("what drove that result?", AFTER, "explain_prediction"),
        ("how come she scores so low?", AFTER, "explain_prediction"),
        ("what's pulling his risk up?", AFTER, "explain_prediction"),
        ("what pushed the score so high", AFTER, "explain_prediction"),
        (
            "which inputs drive the score for a 51 yo woman, atypical angina, chol 230?",
            FRESH,
            "explain_prediction",
        ),
    ],
    # questions about the model's inputs: units, ranges, the decision cut-off
    "model inputs and cut-off": [
        # one input's unit or values, asked of the input: define_feature (round Q); asked of
        # what the model accepts: model_info
        ("which unit is blood pressure measured in?", FRESH, "define_feature"),
        ("what range of cholesterol values does it accept?", FRESH, "model_info"),
        ("what are the allowed values for chest pain type", FRESH, "define_feature"),
        ("what units does the model expect cholesterol in?", FRESH, "model_info"),
        ("at what probability does the model call a patient positive?", FRESH, "model_info"),
    ],
    # a model kind started is a training request
    "start a kind": [
        ("kick off an xgboost on Cleveland", FRESH, "retrain_model"),
        ("let's launch a random forest using the Swiss data", FRESH, "retrain_model"),
        ("spin up a new logistic regression on Hungary and VA Long Beach", FRESH, "retrain_model"),
    ],
    # the old model back
    "rollback said otherwise": [
        ("please bring back the previous model", FRESH, "rollback_model"),
        ("put the old champion back in place", FRESH, "rollback_model"),
        ("retire the current champion and go back to the old one", FRESH, "rollback_model"),
        ("delete the current champion", FRESH, None),
    ],
    # scope: words that look out of scope in a legitimate request
    "scope by meaning": [
        ("what threshold does it use to call somebody high risk?", FRESH, "model_info"),
        ("what if a statin brought his cholesterol down by 40?", AFTER, "what_if"),
        ("should he take aspirin?", AFTER, None),
        ("what statin dose would you give him", AFTER, None),
    ],
    # promotion said as becoming the champion or going to production
    "promote said otherwise": [
        ("I want version 3 to become the champion", FRESH, "promote_model"),
        ("set v2 as the production model", FRESH, "promote_model"),
        ("move version 1 to production", FRESH, "promote_model"),
        ("how does the new champion compare with the previous one?", FRESH, "compare_runs"),
    ],
    # relative changes with a word between the amount and the feature
    "relative with adjectives": [
        ("what if he had 1 fewer blocked vessel", AFTER, "what_if"),
        ("and with one more narrowed vessel?", AFTER, "what_if"),
        ("20 points lower total cholesterol?", AFTER, "what_if"),
    ],
    # verbs that set a value of the last patient
    "what-if verbs": [
        ("switch the chest pain type to non-anginal", AFTER, "what_if"),
        ("now make her 52", AFTER, "what_if"),
        ("change age to 45 and cholesterol to 210", AFTER, "what_if"),
        ("pretend his resting ECG showed ST-T abnormality", AFTER, "what_if"),
        ("assuming she is not diabetic, what then?", AFTER, "what_if"),
    ],
    # how much one input counts in the last explanation
    "explain one input": [
        ("which of her inputs increased the risk most?", AFTER, "explain_prediction"),
        ("does his blood pressure matter at all?", AFTER, "explain_prediction"),
    ],
    # a site's data against the training data is drift, not the model's inputs
    "drift against training": [
        ("are the Hungary inputs different from the training data?", FRESH, "check_drift"),
        ("does the Swiss data still look like the training data?", FRESH, "check_drift"),
        ("has Cleveland moved away from training", FRESH, "check_drift"),
    ],
    "the model as a whole": [
        ("tell me about the live model", FRESH, "model_info"),
        ("describe the model please", FRESH, "model_info"),
    ],
    "compare side by side": [
        ("put the 3 latest runs next to one another", FRESH, "compare_runs"),
        ("contrast the last two runs", FRESH, "compare_runs"),
    ],
    # questions about training that happened are answered by the runs, never proposed
    "past training": [
        ("when did we last retrain the model?", FRESH, "list_runs"),
        ("how long ago was the champion trained", FRESH, "list_runs"),
        ("has the model ever been retrained on Switzerland?", FRESH, "list_runs"),
        ("retrain it on Switzerland", FRESH, "retrain_model"),
    ],
    # a partial patient said of him after a prediction: a change to him
    "partial patient about him": [
        ("how does his risk look with a reversible defect", AFTER, "what_if"),
        ("what's his risk with chol 180", AFTER, "what_if"),
        ("would she still be positive at 45?", AFTER, "what_if"),
        ("and with a systolic, say 118?", AFTER, "what_if"),
        ("how much does the chest pain add?", AFTER, "explain_prediction"),
    ],
    # corrections and changes said as nouns
    "corrections and nouns of change": [
        ("her cholesterol is actually 301, please redo", AFTER, "what_if"),
        ("what would a 15 point rise in his blood pressure do?", AFTER, "what_if"),
        ("and a 5 year drop in age?", AFTER, "what_if"),
        ("how does her blood pressure affect the score?", AFTER, "explain_prediction"),
        ("training runs?", FRESH, "list_runs"),
    ],
    # questions about groups are not one incomplete patient: a cohort, or asked back
    "groups": [
        ("are older patients at higher risk?", FRESH, None),
        ("do diabetics tend to score higher?", FRESH, "describe_data"),
        ("risk for a 55 yo diabetic woman, asymptomatic, bp 150", FRESH, "predict_risk"),
    ],
    # a test result after its name, with linking words
    "test results": [
        ("what if his ECG had come back normal?", AFTER, "what_if"),
        ("and if the thallium scan turned out normal", AFTER, "what_if"),
    ],
    # inflections are not typos
    "inflections": [
        ("is the swiss data shifting?", FRESH, "check_drift"),
        ("has hungary been drifting lately", FRESH, "check_drift"),
    ],
}

_TABLE = [(name, *case) for name, cases in CATEGORIES.items() for case in cases]


@pytest.mark.parametrize(
    ("category", "text", "memory", "tool"), _TABLE, ids=[f"{c[0]}: {c[1][:40]}" for c in _TABLE]
)
def test_categories(
    card: DatasetCard, category: str, text: str, memory: Memory, tool: str | None
) -> None:
    _routes(card, text, memory, tool)


def test_a_described_patient_and_its_change_are_apart(card: DatasetCard) -> None:
    arguments = _routes(
        card,
        "62 yo woman, asymptomatic, BP 150, chol 300: what if her chol were 220?",
        FRESH,
        "what_if",
    )
    assert arguments["patient"] == {
        "age": 62,
        "sex": "Female",
        "cp": "asymptomatic",
        "trestbps": 150,
        "chol": 300,
    }
    assert arguments["changes"] == {"chol": 220}
    relative = _routes(
        card,
        "70 yo man, asymptomatic, chol 240 -- what if he was 10 years younger?",
        FRESH,
        "what_if",
    )
    assert relative["changes"] == {"age": 60}


def test_a_kind_started_is_trained_where_said(card: DatasetCard) -> None:
    arguments = _routes(
        card,
        "spin up a new logistic regression on Hungary and VA Long Beach",
        FRESH,
        "retrain_model",
    )
    assert arguments["sites"] == ["Hungary", "VA Long Beach"]
    assert arguments["model_kinds"] == ["logistic_regression"]


# --- follow-ups that lean on what ran before (typed facts in Memory) -----------------------


@pytest.mark.parametrize(
    ("text", "last_tool", "tool"),
    [
        ("what about Switzerland?", "check_drift", "check_drift"),
        ("and Cleveland?", None, "check_drift"),
        ("how about the VA", "check_drift", "check_drift"),
        ("what about Hungary?", "list_runs", "list_runs"),
        ("and for the swiss site?", "list_runs", "list_runs"),
    ],
)
def test_a_site_alone_follows_the_last_answer(
    card: DatasetCard, text: str, last_tool: str | None, tool: str
) -> None:
    arguments = _routes(card, text, Memory(last_tool=last_tool), tool)
    assert arguments["site"] in {"Switzerland", "Cleveland", "VA Long Beach", "Hungary"}


def test_a_site_in_a_what_if_about_him_is_not_a_site_question(card: DatasetCard) -> None:
    intent = understand("what if he were 5 years older, from Hungary", AFTER, card)
    assert intent.tool == "what_if"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("and if he was also 10 years younger?", {"chol": 190, "age": 50}),
        ("what if his bp were 120 as well", {"chol": 190, "trestbps": 120}),
        ("plus no exercise angina?", {"chol": 190, "exang": False}),
        ("what if he was 10 years younger?", {"age": 50}),  # not said: a new what-if
    ],
)
def test_also_keeps_the_last_what_ifs_changes(
    card: DatasetCard, text: str, expected: dict[str, Any]
) -> None:
    memory = Memory(
        prediction_id=LAST, patient=AFTER.patient, last_tool="what_if", last_changes={"chol": 190}
    )
    assert _routes(card, text, memory, "what_if")["changes"] == expected


@pytest.mark.parametrize(
    "text",
    [
        "retrain on the Mayo Clinic data",
        "train a new random forest using the St Mary's hospital data",
        "refit the model with the Boston site",
    ],
)
def test_an_unknown_site_is_said_back_never_replaced(card: DatasetCard, text: str) -> None:
    intent = understand(text, FRESH, card)
    assert intent.tool is None
    assert intent.reply is not None
    assert "don't know a site" in intent.reply and "Did you mean" in intent.reply


@pytest.mark.parametrize(
    "text", ["retrain on the latest data", "retrain on all the data", "retrain with the Swiss data"]
)
def test_known_or_unnamed_data_is_still_trained_on(card: DatasetCard, text: str) -> None:
    _routes(card, text, FRESH, "retrain_model")


@pytest.mark.parametrize(
    ("text", "last_tool", "tool"),
    [
        ("compare them", "list_runs", "compare_runs"),
        ("now compare those two", "list_runs", "compare_runs"),
        ("compare them", None, None),  # nothing listed: which?
        ("since last week?", "check_drift", "check_drift"),
        ("and since 2026-11-01?", None, "check_drift"),
    ],
)
def test_follow_ups_on_the_last_answer(
    card: DatasetCard, text: str, last_tool: str | None, tool: str | None
) -> None:
    _routes(card, text, Memory(last_tool=last_tool), tool)


@pytest.mark.parametrize(
    ("last_tool", "suggested"),
    [("list_runs", "list the recent runs"), ("check_drift", "check drift at Cleveland")],
)
def test_an_unclear_follow_up_is_offered_readings_of_the_last_answer(
    card: DatasetCard, last_tool: str, suggested: str
) -> None:
    reply = understand("and the one before?", Memory(last_tool=last_tool), card).reply or ""
    assert "Did you mean" in reply and f'"{suggested}"' in reply
    for option in reply.split('"')[1::2]:  # each suggestion is a request it understands
        assert understand(option, Memory(last_tool=last_tool), card).tool is not None, option
