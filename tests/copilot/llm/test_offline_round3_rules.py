"""The grammar's round-3 rules, one table per rule (each row another way the rule covers):
card values in clinical words, units and values said first, drift set against training,
periods, relative forms, corrections, follow-ups that repeat the last call with one
argument changed, and words for the lifecycle, runs and the live model."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import normalise, since_in
from model_service.cards import DatasetCard

LAST = "d" * 32
PATIENT = {"age": 60, "sex": "Male", "cp": "asymptomatic", "trestbps": 140, "chol": 250}
SCORED = Memory(prediction_id=LAST, patient={**PATIENT, "ca": 2}, last_tool="predict_risk")
FRESH = Memory()


def _call(card: DatasetCard, text: str, memory: Memory) -> tuple[str | None, dict[str, Any]]:
    intent = understand(text, memory, card)
    return intent.tool, intent.arguments


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("thallium perfusion came back normal", {"thal": "normal"}),
        ("a normal nuclear scan", {"thal": "normal"}),
        ("reversible ischemia on spect", {"thal": "reversable defect"}),
        ("ecg normal, thallium fixed perfusion defect", {"restecg": "normal"}),
        ("lvh on ecg and thallium normal", {"restecg": "lv hypertrophy", "thal": "normal"}),
        ("glucose of 95", {"fbs": False}),
        ("blood glucose 160 mg/dl fasting", {"fbs": True}),
        ("high blood sugar", {"fbs": True}),
        ("sugar normal when fasting", {"fbs": False}),
        ("cuts out sugar", {"fbs": None}),
        ("the st segment slopes down", {"slope": "downsloping"}),
        ("upward sloping st", {"slope": "upsloping"}),
        ("horizontal st", {"slope": "flat"}),
        ("two-vessel disease", {"ca": 2}),
        ("single vessel disease", {"ca": 1}),
        ("fluoroscopy showed 3 coloured vessels", {"ca": 3}),
        ("pulse peaked at 128 bpm", {"thalch": 128}),
        ("maximum heart rate achieved 172", {"thalch": 172}),
        ("achieved 145 bpm at peak exercise", {"thalch": 145}),
        ("max hr 150, 2.3 st depression", {"thalch": 150, "oldpeak": 2.3}),
        ("a 190 cholesterol", {"chol": 190}),
        ("bp 150/95", {"trestbps": 150}),
        ("150/95, chol 260", {"trestbps": 150, "chol": 260}),
        ("fasting glucose 5.5 mmol/l, chol 200", {"fbs": False, "chol": 200}),
    ],
)
def test_card_values_in_clinical_words(
    card: DatasetCard, said: str, expected: dict[str, Any]
) -> None:
    values = parse_patient(normalise(said, card), card)
    assert {k: values.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("bp one forty", "bp 140"),
        ("chol two fifty", "chol 250"),
        ("one twenty five", "125"),
        ("hr 150/min", "hr 150 bpm"),
        ("6 millimoles per litre", "6 mmol/l"),
        ("140 mm of mercury", "140 mmhg"),
    ],
)
def test_numbers_and_units_said_aloud(card: DatasetCard, said: str, digits: str) -> None:
    assert normalise(said, card) == digits


@pytest.mark.parametrize(
    ("said", "iso"),
    [
        ("since october", "2026-10-01"),
        ("in november", "2026-11-01"),
        ("since 3 november", "2026-11-03"),
        ("from nov 1st", "2026-11-01"),
        ("since the start of the month", "2026-12-01"),
        ("over the last fortnight", "2026-11-17"),
        ("in february", "2026-02-01"),
    ],
)
def test_periods(said: str, iso: str) -> None:
    from datetime import UTC, datetime

    assert since_in(said, datetime(2026, 12, 1, 9, tzinfo=UTC)) == iso


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        ("are recent patients unlike the ones in the training data?", {}),
        ("compared with training, how do the recent inputs look?", {}),
        ("check whether the VA Long Beach patients are comparable to training", {}),
        ("has the data moved since October?", {}),
        ("did the case mix change in November?", {}),
        ("is the Hungarian population different from what we trained on?", {"site": "Hungary"}),
        ("is Budapest data still representative?", {"site": "Hungary"}),
    ],
)
def test_drift_without_the_word(card: DatasetCard, text: str, arguments: dict[str, Any]) -> None:
    tool, called = _call(card, text, FRESH)
    assert tool == "check_drift"
    assert arguments.items() <= called.items()
    assert len(called) == 1  # a site, or a start date


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("take 20 off his cholesterol", {"chol": 230}),
        ("add 10 to the bp", {"trestbps": 150}),
        ("his blood pressure minus 15", {"trestbps": 125}),
        ("another 20 points off cholesterol", {"chol": 230}),
        ("reduce his cholesterol 40 points", {"chol": 210}),
        ("one vessel fewer", {"ca": 1}),
        ("cut cholesterol in half", {"chol": 125}),
        ("if he aged 10 years", {"age": 70}),
        ("he's actually 55", {"age": 55}),
        ("actually make that chol 300", {"chol": 300}),
        ("give me the risk at a cholesterol of 190", {"chol": 190}),
        ("cholesterol reduced to 200", {"chol": 200}),
        ("if he got his cholesterol under 200?", {"chol": 200}),
        ("swap the asymptomatic pain for non-anginal", {"cp": "non-anginal"}),
        ("change chest pain from asymptomatic to typical angina", {"cp": "typical angina"}),
        ("re-estimate with bp 130", {"trestbps": 130}),
        ("plug in a cholesterol of 210", {"chol": 210}),
    ],
)
def test_changes_to_the_last_patient(card: DatasetCard, text: str, changes: dict[str, Any]) -> None:
    tool, arguments = _call(card, text, SCORED)
    assert (tool, arguments.get("changes")) == ("what_if", changes)


def test_a_new_patient_is_still_asked_about(card: DatasetCard) -> None:
    # who the patient is (age, sex) makes a new patient, not a change to the last one
    tool, _ = _call(card, "55 yo man, chol 250", SCORED)
    assert tool is None


@pytest.mark.parametrize(
    ("last", "before", "text", "tool", "arguments"),
    [
        (
            "check_drift",
            {"site": "Cleveland"},
            "and since October?",
            "check_drift",
            {"since": "2026-10-01"},
        ),
        ("list_runs", {"limit": 5}, "just the last one", "list_runs", {"limit": 1}),
        (
            "list_runs",
            {"limit": 5, "site": "Hungary"},
            "and the last 10?",
            "list_runs",
            {"limit": 10, "site": "Hungary"},
        ),
        ("compare_runs", {"last": 2}, "and the last three?", "compare_runs", {"last": 3}),
        (
            "model_performance",
            {
                "where": [
                    {"feature": "sex", "op": "==", "value": "Male"},
                    {"feature": "age", "op": ">", "value": 60},
                ]
            },
            "same for women",
            "model_performance",
            {
                "where": [
                    {"feature": "age", "op": ">", "value": 60},
                    {"feature": "sex", "op": "==", "value": "Female"},
                ]
            },
        ),
        (
            "model_performance",
            {"where": [{"feature": "sex", "op": "==", "value": "Male"}]},
            "and overall?",
            "model_performance",
            {},
        ),
        (
            "feature_importance",
            {"top": 5},
            "same for Hungary",
            "feature_importance",
            {"top": 5, "where": [{"feature": "site", "op": "==", "value": "Hungary"}]},
        ),
        (
            "monitoring_history",
            {"site": "Hungary", "metric": "auc"},
            "and the sensitivity?",
            "monitoring_history",
            {"site": "Hungary", "metric": "sensitivity"},
        ),
        ("model_info", None, "and the challenger?", "compare_runs", {"last": 2}),
    ],
)
def test_follow_ups_repeat_the_last_call_with_one_argument_changed(
    card: DatasetCard,
    last: str,
    before: dict[str, Any] | None,
    text: str,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    memory = Memory(last_tool=last, last_arguments=before)
    if "october" in text.lower():
        arguments = {"since": since_in("since october")}
    assert _call(card, text, memory) == (tool, arguments)


@pytest.mark.parametrize(
    ("last", "text", "tool"),
    [
        ("check_drift", "and retrain on it", "retrain_model"),  # a request of its own
        ("list_runs", "and drift at VA?", "check_drift"),
        ("check_drift", "what about the runs?", "list_runs"),
    ],
)
def test_a_follow_up_naming_another_request_is_that_request(
    card: DatasetCard, last: str, text: str, tool: str
) -> None:
    assert _call(card, text, Memory(last_tool=last, last_arguments={"limit": 5}))[0] == tool


@pytest.mark.parametrize(
    ("text", "memory", "tool"),
    [
        ("how did the model reach that number?", SCORED, "explain_prediction"),
        ("is his cholesterol a big part of it?", SCORED, "explain_prediction"),
        ("where is the risk coming from?", SCORED, "explain_prediction"),
        ("decode that score", SCORED, "explain_prediction"),
        ("what's been trained lately?", FRESH, "list_runs"),
        ("what models have been built so far?", FRESH, "list_runs"),
        ("how did the latest training go?", FRESH, "list_runs"),
        ("what were the results of the most recent retraining?", FRESH, "list_runs"),
        ("pull up the run log", FRESH, "list_runs"),
        ("how does v2 stack up against v1?", FRESH, "compare_runs"),
        ("how do the two newest runs measure up?", FRESH, "compare_runs"),
        ("who is the reigning model?", FRESH, "model_info"),
        ("what's powering the predictions?", FRESH, "model_info"),
        ("spin up a fresh model on Hungary and Switzerland", FRESH, "retrain_model"),
        ("put the challenger in charge", FRESH, "promote_model"),
        ("ditch the new model", FRESH, "rollback_model"),
        ("demote the champion", FRESH, "rollback_model"),
        ("rescore him as a non-diabetic", SCORED, "what_if"),
        (
            "work out the odds for a 49 yo woman, atypical angina, bp 130, chol 250",
            FRESH,
            "predict_risk",
        ),
        ("and in a decade?", SCORED, "what_if"),
    ],
)
def test_words_for_ordinary_requests(
    card: DatasetCard, text: str, memory: Memory, tool: str
) -> None:
    assert _call(card, text, memory)[0] == tool


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("which of these is best", "which of these is best"),
        ("twice as large", "twice as large"),
        ("the runs built", "the runs built"),
        ("and a decade younger", "and a decade younger"),
        ("cholestrol", "cholesterol"),  # still a typo
        # common English words one letter off a word of ours, from the frequency list
        ("i was talking to the team", "i was talking to the team"),
        ("we heard the model drifted", "we heard the model drifted"),
        ("a feeling that it became worse", "a feeling that it became worse"),
        ("sitting patients, scared of the miles", "sitting patients, scared of the miles"),
        ("kind regards, a silly question", "kind regards, a silly question"),
        # rare words beside ours are still typos of ours, short ones still by their neighbour
        ("ballance of the labels", "balance of the labels"),
        ("max heart rat 170", "max heart rate 170"),
        ("heat rate 150", "heart rate 150"),
    ],
)
def test_english_words_are_not_typos(card: DatasetCard, said: str, kept: str) -> None:
    assert normalise(said, card) == kept


@pytest.mark.parametrize(
    ("memory", "text", "tool", "arguments"),
    [
        (
            Memory(
                prediction_id=LAST, patient=PATIENT, last_tool="what_if", last_changes={"chol": 200}
            ),
            "and 180?",
            "what_if",
            {"prediction_id": LAST, "changes": {"chol": 180}},
        ),
        (SCORED, "how about at 50?", "what_if", {"prediction_id": LAST, "changes": {"age": 50}}),
        (
            Memory(prediction_id=LAST, patient=PATIENT, last_tool="explain_prediction"),
            "ok and the top 3 only?",
            "explain_prediction",
            {"prediction_id": LAST},
        ),
        (
            Memory(last_tool="list_runs", last_arguments={"limit": 5}),
            "compare the top two",
            "compare_runs",
            {"last": 2},
        ),
        (
            FRESH,
            "have the incoming patients changed over the last two weeks?",
            "check_drift",
            {"since": since_in("the last 2 weeks")},
        ),
        (
            FRESH,
            "are we getting older patients at Hungary than in training?",
            "check_drift",
            {"site": "Hungary"},
        ),
    ],
)
def test_short_follow_ups_and_periods(
    card: DatasetCard, memory: Memory, text: str, tool: str, arguments: dict[str, Any]
) -> None:
    assert _call(card, text, memory) == (tool, arguments)


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        ("Can I see record number 45 from the dataset?", "show_rows", {"row_ids": [45]}),
        ("show me entries 3 and 7", "show_rows", {"row_ids": [3, 7]}),
        ('what is "thal" exactly?', "define_feature", {"feature": "thal"}),
        ("what's oldpeak again?", "define_feature", {"feature": "oldpeak"}),
        (
            "is the model reliable for women?",
            "model_performance",
            {"where": [{"feature": "sex", "op": "==", "value": "Female"}]},
        ),
        ("what does the model pay most attention to?", "feature_importance", {}),
        ("which features work together?", "feature_interactions", {}),
        (
            "describe the male patients at Hungary",
            "describe_data",
            {
                "where": [
                    {"feature": "sex", "op": "==", "value": "Male"},
                    {"feature": "site", "op": "==", "value": "Hungary"},
                ]
            },
        ),
    ],
)
def test_cohort_and_data_words(
    card: DatasetCard, text: str, tool: str, arguments: dict[str, Any]
) -> None:
    assert _call(card, text, FRESH) == (tool, arguments)


def test_a_group_said_alone_after_a_cohort_question_is_a_new_question(card: DatasetCard) -> None:
    before = {"where": [{"feature": "sex", "op": "==", "value": "Female"}]}
    memory = Memory(last_tool="model_performance", last_arguments=before)
    tool, arguments = _call(card, "patients over 70", memory)
    assert tool == "describe_data"
    assert arguments["where"] == [{"feature": "age", "op": ">", "value": 70.0}]


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        # a feature named in a question about the explanation is no change to the patient
        ("does exercise angina matter more than ST depression here?", "explain_prediction"),
        ("what's the least he'd have to change to drop below the cut-off?", "counterfactual"),
        ("what would it take for him to get under the threshold?", "counterfactual"),
    ],
)
def test_questions_about_the_last_prediction(card: DatasetCard, text: str, tool: str) -> None:
    assert _call(card, text, SCORED)[0] == tool


@pytest.mark.parametrize(
    "text", ["what if she weren't diabetic?", "and if she doesn't have diabetes"]
)
def test_contractions_are_words_not_typos(card: DatasetCard, text: str) -> None:
    """ "weren't" was "fixed" into "where't", which lost the negation."""
    diabetic = Memory(patient={"age": 50, "sex": "Female", "fbs": True}, prediction_id="a" * 32)
    assert _call(card, text, diabetic)[1]["changes"] == {"fbs": False}
