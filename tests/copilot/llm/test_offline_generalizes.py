"""The offline provider on phrasings of our own, one table per category of understanding
(none of them is in an eval suite): each category is fixed by a rule of the grammar, and
these sentences check that the rule, not a sentence, was learnt."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from model_service.cards import DatasetCard, get_card

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


@pytest.fixture(scope="module")
def card() -> DatasetCard:
    return get_card("heart-disease")


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
        ("female, 52, non-anginal, bp 128", {"age": 52, "sex": "Female", "trestbps": 128}),
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
def test_patient_values_said_many_ways(card: DatasetCard, text: str, expected: dict[str, Any]) -> None:
    values = parse_patient(text.lower(), card)
    assert {k: values.get(k) for k in expected} == expected
