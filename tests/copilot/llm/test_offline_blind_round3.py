"""A blind check set for the offline provider, round 3: requests written from the dataset
card (feature names, value names, units) and the tools' descriptions only, before the
grammar was changed for them, one row per way of saying a thing the card allows. The
categories follow the failure families seen on held-out paraphrases (described, never the
sentences): clinical words for card values, unusual units, what-ifs and relative what-ifs
in other verbs and word orders, drift without the word "drift", odd words, inputs outside
the schema beside ones inside it, explain and runs phrasings, follow-ups that repeat the
last tool with one argument changed."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

LAST = "c" * 32
PATIENT = {
    "age": 60,
    "sex": "Male",
    "cp": "asymptomatic",
    "trestbps": 140,
    "chol": 250,
    "fbs": True,
    "exang": True,
    "oldpeak": 2.0,
    "ca": 2,
    "thal": "reversable defect",
}
FRESH = Memory()
SCORED = Memory(prediction_id=LAST, patient=PATIENT, last_tool="predict_risk")
DRIFTED = Memory(last_tool="check_drift")
LISTED = Memory(last_tool="list_runs")

BASE = "62 yo man, asymptomatic chest pain, bp 140, chol 260"

# (memory, request, tool, arguments that must be among the call's; for a patient: values)
CASES: list[tuple[Memory, str, str | None, dict[str, Any]]] = [
    # --- a patient in clinical words -----------------------------------------------------
    (
        FRESH,
        f"{BASE}, thallium scan showed a reversible defect",
        "predict_risk",
        {"thal": "reversable defect"},
    ),
    (
        FRESH,
        f"{BASE}, fixed defect on the thallium study",
        "predict_risk",
        {"thal": "fixed defect"},
    ),
    (FRESH, f"{BASE}, thallium perfusion came back normal", "predict_risk", {"thal": "normal"}),
    (FRESH, f"{BASE}, fasting glucose of 95", "predict_risk", {"fbs": False}),
    (FRESH, f"{BASE}, blood glucose 160 mg/dl fasting", "predict_risk", {"fbs": True}),
    (FRESH, f"{BASE}, normal sugar", "predict_risk", {"fbs": False}),
    (FRESH, f"{BASE}, high blood sugar", "predict_risk", {"fbs": True}),
    (
        FRESH,
        f"{BASE}, the ST segment slopes down at peak exercise",
        "predict_risk",
        {"slope": "downsloping"},
    ),
    (FRESH, f"{BASE}, ST segment sloping upwards", "predict_risk", {"slope": "upsloping"}),
    (FRESH, f"{BASE}, fluoroscopy showed three coloured vessels", "predict_risk", {"ca": 3}),
    (FRESH, f"{BASE}, no major vessels blocked", "predict_risk", {"ca": 0}),
    (FRESH, f"{BASE}, pulse peaked at 128 beats per minute", "predict_risk", {"thalch": 128}),
    (
        FRESH,
        "58 yo woman, atypical angina, systolic 13.5 kpa, cholesterol 5.9 mmol/l",
        "predict_risk",
        {"age": 58, "sex": "Female", "cp": "atypical angina"},
    ),
    (FRESH, f"{BASE}, ST depression 0.2 mV", "predict_risk", {"oldpeak": 2.0}),
    # --- what-ifs: other verbs and orders ------------------------------------------------
    (
        SCORED,
        "how would his risk change if his cholesterol dropped to 200?",
        "what_if",
        {"changes": {"chol": 200}},
    ),
    (
        SCORED,
        "lower his blood pressure to 120 and score him again",
        "what_if",
        {"changes": {"trestbps": 120}},
    ),
    (SCORED, "rerun him with a normal thallium result", "what_if", {"changes": {"thal": "normal"}}),
    (SCORED, "say he had no exercise angina, what then?", "what_if", {"changes": {"exang": False}}),
    (SCORED, "rescore him as a non-diabetic", "what_if", {"changes": {"fbs": False}}),
    (SCORED, "with a cholesterol of 180 where would he be?", "what_if", {"changes": {"chol": 180}}),
    # --- relative what-ifs -------------------------------------------------------------------
    (SCORED, "cut his cholesterol by 40", "what_if", {"changes": {"chol": 210}}),
    (SCORED, "bump the blood pressure up by 15", "what_if", {"changes": {"trestbps": 155}}),
    (SCORED, "and a decade younger?", "what_if", {"changes": {"age": 50}}),
    (
        SCORED,
        "what if his cholesterol were 30 points higher",
        "what_if",
        {"changes": {"chol": 280}},
    ),
    (SCORED, "one fewer diseased vessel?", "what_if", {"changes": {"ca": 1}}),
    # --- drift without the word ------------------------------------------------------------
    (
        FRESH,
        "has the patient population at Hungary shifted since we trained?",
        "check_drift",
        {"site": "Hungary"},
    ),
    (
        FRESH,
        "do the Swiss patients look different from the ones the model learned on?",
        "check_drift",
        {"site": "Switzerland"},
    ),
    (
        FRESH,
        "is the VA Long Beach data still similar to the training set?",
        "check_drift",
        {"site": "VA Long Beach"},
    ),
    (
        FRESH,
        "has the distribution of incoming patients changed over the last week?",
        "check_drift",
        {},
    ),
    (
        FRESH,
        "compare the Cleveland population with the training data",
        "check_drift",
        {"site": "Cleveland"},
    ),
    # --- odd words, polite, runs, explain --------------------------------------------------
    (FRESH, "give me the lowdown on our newest training runs", "list_runs", {}),
    (FRESH, "which version is in charge right now?", "model_info", {}),
    (
        FRESH,
        "size up the odds for a 45 yo woman, typical angina, bp 120, chol 200",
        "predict_risk",
        {"age": 45},
    ),
    (FRESH, "how many models have we trained on Hungary?", "list_runs", {"site": "Hungary"}),
    (SCORED, "what's behind that number?", "explain_prediction", {}),
    (SCORED, "unpack that score for me", "explain_prediction", {}),
    (SCORED, "which of his values hurt him most?", "explain_prediction", {}),
    # --- outside the schema beside inside it ----------------------------------------------
    (
        SCORED,
        "what if his cholesterol were 200 and he quit smoking?",
        "what_if",
        {"changes": {"chol": 200}},
    ),
    (FRESH, "what's his BMI risk?", None, {}),
    # --- follow-ups repeating the last tool with one argument changed ---------------------
    (DRIFTED, "and for Hungary?", "check_drift", {"site": "Hungary"}),
    (DRIFTED, "same for the Swiss", "check_drift", {"site": "Switzerland"}),
    (LISTED, "and the ones on VA?", "list_runs", {"site": "VA Long Beach"}),
    (SCORED, "same but for a woman", "what_if", {"changes": {"sex": "Female"}}),
    # --- a second batch, written before any change too ----------------------------------------
    (FRESH, f"{BASE}, heart rate topped out at 150/min", "predict_risk", {"thalch": 150}),
    (
        FRESH,
        f"{BASE}, systolic pressure 140 mm of mercury, cholesterol 6 millimoles",
        "predict_risk",
        {"age": 62},
    ),
    (
        FRESH,
        f"{BASE}, thallium: reversible perfusion defect, 2 diseased vessels",
        "predict_risk",
        {"thal": "reversable defect", "ca": 2},
    ),
    (
        FRESH,
        f"{BASE}, sugar normal when fasting, downward sloping ST",
        "predict_risk",
        {"fbs": False, "slope": "downsloping"},
    ),
    (
        FRESH,
        "is the data coming in from Hungary still like what the model was built on?",
        "check_drift",
        {"site": "Hungary"},
    ),
    (
        FRESH,
        "the Cleveland numbers look off lately, can you check?",
        "check_drift",
        {"site": "Cleveland"},
    ),
    (
        FRESH,
        "are we seeing a different kind of patient at VA Long Beach these days?",
        "check_drift",
        {"site": "VA Long Beach"},
    ),
    (FRESH, "any change in the patient mix over the past month?", "check_drift", {}),
    (
        FRESH,
        "crunch the numbers for a 51 yo man, typical angina, bp 130, chol 210",
        "predict_risk",
        {"age": 51},
    ),
    (FRESH, "any fresh experiments this week?", "list_runs", {}),
    (FRESH, "who is the reigning model?", "model_info", {}),
    (SCORED, "take 20 off his cholesterol", "what_if", {"changes": {"chol": 230}}),
    (
        SCORED,
        "if his resting pressure went up 10 points?",
        "what_if",
        {"changes": {"trestbps": 150}},
    ),
    (
        SCORED,
        "now make him a non-smoker with a cholesterol of 190",
        "what_if",
        {"changes": {"chol": 190}},
    ),
    (SCORED, "walk me through the reasoning", "explain_prediction", {}),
    (SCORED, "which inputs weigh heaviest in his score?", "explain_prediction", {}),
    (DRIFTED, "how about VA?", "check_drift", {"site": "VA Long Beach"}),
]


def _holds(expected: dict[str, Any], arguments: dict[str, Any]) -> bool:
    patient = arguments.get("patient") or {}
    for key, value in expected.items():
        if key == "changes":
            if {k: arguments.get("changes", {}).get(k) for k in value} != value:
                return False
        elif key in patient:
            if patient[key] != value:
                return False
        elif arguments.get(key) != value:
            return False
    return True


@pytest.mark.parametrize(("memory", "text", "tool", "expected"), CASES)
def test_blind_round3(
    card: DatasetCard, memory: Memory, text: str, tool: str | None, expected: dict[str, Any]
) -> None:
    intent = understand(text, memory, card)
    assert intent.tool == tool, (text, intent.tool, intent.arguments, intent.reply)
    assert _holds(expected, intent.arguments), (text, intent.arguments)
