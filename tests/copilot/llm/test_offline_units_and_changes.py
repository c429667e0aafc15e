"""The offline provider on units, numbers in words and what-ifs said in many forms, with
sentences of our own (none in an eval suite): each construction of the grammar is checked
with several phrasings, so that the rule, not a sentence, is what is tested."""

from typing import Any

import pytest

from copilot.facts import Memory, RouteRequest
from copilot.llm.grounding import unmentioned
from copilot.llm.offline.changes import relative_changes
from copilot.llm.offline.inputs import unknown_inputs
from copilot.llm.offline.intents import understand
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.steps import split_clauses
from copilot.llm.offline.text import normalise
from copilot.llm.providers import offline_model
from copilot.llm.router import build_router, route
from copilot.units import conversions_in, spelled, to_card_unit
from model_service.cards import DatasetCard

LAST = "c" * 32
HIM = {
    "age": 58,
    "sex": "Male",
    "cp": "non-anginal",
    "trestbps": 150,
    "chol": 260,
    "thalch": 140,
    "oldpeak": 1.8,
    "ca": 2,
}
AFTER = Memory(prediction_id=LAST, patient=HIM)


def _intent(card: DatasetCard, text: str, memory: Memory, tool: str | None) -> dict[str, Any]:
    intent = understand(text, memory, card)
    assert intent.tool == tool, (text, intent.tool, intent.arguments, intent.reply)
    return intent.arguments


# --- units: one spelling, one table of conversions ---------------------------------------


@pytest.mark.parametrize(
    ("said", "spelling"),
    [
        ("chol 6.1 mmol / l", "chol 6.1 mmol/l"),
        ("chol 6.1 mmol/litre", "chol 6.1 mmol/l"),
        ("bp 135mm hg", "bp 135 mmhg"),
        ("chol 240mg / dl", "chol 240 mg/dl"),
        ("bp 17.9kpa", "bp 17.9 kpa"),
        ("st depression 0.2 millivolts", "st depression 0.2 mv"),
        ("hr 150 beats per minute", "hr 150 bpm"),
        ("hr 150 beats a min", "hr 150 bpm"),
    ],
)
def test_units_have_one_spelling(said: str, spelling: str) -> None:
    assert spelled(said) == spelling


def test_kilopascals_and_millivolts_convert_to_the_cards_units(card: DatasetCard) -> None:
    assert to_card_unit("trestbps", 18.0, "kpa") == 135.0  # 18 x 7.50062
    assert to_card_unit("oldpeak", 0.15, "mv") == 1.5  # keeps the card's decimal
    found = parse_patient(normalise("70F, asx, bp 21.3 kPa, ST dep 0.3 mV", card), card)
    assert found["trestbps"] == 160 and found["oldpeak"] == 3.0
    (said,) = conversions_in("bp 21.3 kpa", {"patient": {"trestbps": 160.0}}, card)
    assert said.said() == "resting blood pressure 21.3 kPa -> 160 mmHg"


@pytest.mark.parametrize(
    ("text", "fbs"),
    [
        ("49 yo man, typical angina, bp 130, chol 210, fasting glucose 8.4 mmol / l", True),
        ("49 yo man, typical angina, bp 130, chol 210, fasting sugar 4.9 mmol", False),
        ("49 yo man, typical angina, bp 130, chol 210, fbs 140mg/dl", True),
    ],
)
def test_fasting_glucose_in_any_unit_decides_fbs(card: DatasetCard, text: str, fbs: bool) -> None:
    assert _intent(card, text, Memory(), "predict_risk")["patient"]["fbs"] is fbs


@pytest.mark.parametrize(
    ("text", "thalch"),
    [
        ("63 yo woman, asymptomatic, bp 140, chol 250, max hr one hundred and forty", 140),
        ("63 yo woman, asymptomatic, bp 140, chol 250, max hr a hundred seventy-two", 172),
        ("63 yo woman, asymptomatic, bp 140, chol 250, heart rate topped out at 133 bpm", 133),
        ("63 yo woman, asymptomatic, bp 140, chol 250, heart rate reached ninety-one", 91),
    ],
)
def test_heart_rate_said_in_words(card: DatasetCard, text: str, thalch: int) -> None:
    assert _intent(card, text, Memory(), "predict_risk")["patient"]["thalch"] == thalch


def test_a_hundred_before_a_noun_stays_a_count(card: DatasetCard) -> None:
    assert normalise("a hundred patients", card) == "100 patients"
    assert normalise("two hundred and five", card) == "205"


# --- relative what-ifs on the last patient -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("what if we halved his st depression?", {"oldpeak": 0.9}),
        ("and if we doubled his st depression", {"oldpeak": 3.6}),
        ("what about in 3 years' time?", {"age": 61}),
        ("and in a decade?", {"age": 68}),
        ("same again, 4 years from now", {"age": 62}),
        ("what if his bp came down by 15 and his chol by 30", {"trestbps": 135, "chol": 230}),
        ("suppose his chol went up by 20, and his bp by 5", {"chol": 280, "trestbps": 155}),
        ("if his max hr dropped by 10 and his bp by 10 mmhg", {"thalch": 130, "trestbps": 140}),
    ],
)
def test_relative_changes_said_many_ways(
    card: DatasetCard, text: str, changes: dict[str, Any]
) -> None:
    arguments = _intent(card, text, AFTER, "what_if")
    assert arguments == {"prediction_id": LAST, "changes": changes}
    grounded = RouteRequest(text, AFTER)
    assert unmentioned("what_if", arguments, grounded, card) == []


def test_a_second_change_without_by_is_a_new_value_not_a_difference(card: DatasetCard) -> None:
    found = relative_changes("what if his bp were 10 lower and his chol 200", card, HIM)
    assert found.values == {"trestbps": 140}  # "chol 200" is an absolute value, read elsewhere
    assert _intent(card, "what if his bp were 10 lower and his chol 200", AFTER, "what_if")[
        "changes"
    ] == {"trestbps": 140, "chol": 200.0}


# --- what-ifs on a patient described in the same message ---------------------------------

DESCRIBED = "47 yo woman, atypical angina, bp 150, chol 270, upsloping st"
HER = {
    "age": 47,
    "sex": "Female",
    "cp": "atypical angina",
    "trestbps": 150.0,
    "chol": 270.0,
    "slope": "upsloping",
}


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        (f"{DESCRIBED}; what if her bp went up by 20?", {"trestbps": 170}),
        (f"{DESCRIBED}; what would happen if her chol fell by 50", {"chol": 220}),
        (f"{DESCRIBED}. Same woman 10 years on?", {"age": 57}),
        (f"{DESCRIBED}. And with a flat st segment?", {"slope": "flat"}),
        (f"{DESCRIBED}. Without the upsloping, say downsloping?", {"slope": "downsloping"}),
        (f"{DESCRIBED}. Would the risk be different for a man?", {"sex": "Male"}),
        (f"{DESCRIBED}. What if we halved her chol?", {"chol": 135}),
    ],
)
def test_a_change_to_a_patient_described_alongside(
    card: DatasetCard, text: str, changes: dict[str, Any]
) -> None:
    arguments = _intent(card, text, Memory(), "what_if")
    assert arguments == {"patient": HER, "changes": changes}
    assert unmentioned("what_if", arguments, RouteRequest(text, Memory()), card) == []


def test_a_what_if_is_its_own_step_only_after_a_verb(card: DatasetCard) -> None:
    bare = normalise(f"{DESCRIBED}; what if her bp were 120", card)
    assert len(split_clauses(bare, card)) == 1
    asked = normalise(f"score {DESCRIBED}; what if her bp were 120", card)
    assert len(split_clauses(asked, card)) == 2


@pytest.mark.parametrize(
    "text",
    [
        "record for this gentleman: 66, asymptomatic, bp 160, chol 300",
        "patient: 66, asymptomatic, bp 160, chol 300, male",
    ],
)
def test_age_after_a_colon_in_a_record(card: DatasetCard, text: str) -> None:
    assert parse_patient(normalise(text, card), card)["age"] == 66


# --- what the model does not take: said, and the rest still done -------------------------


@pytest.mark.parametrize(
    ("text", "changes", "unused"),
    [
        ("what if his weight dropped to 80 and chol 200", {"chol": 200.0}, ["weight"]),
        ("suppose he stopped smoking and his bp fell by 20", {"trestbps": 130}, ["smoking"]),
        ("and if he gained 6 kilos, with max hr 120?", {"thalch": 120.0}, ["gained 6 kilos"]),
        ("what if he had a bmi of 27 and his chol were 190", {"chol": 190.0}, ["bmi"]),
        ("what if he were a smoker and his cholesterol 200", {"chol": 200.0}, ["smoker"]),
    ],
)
def test_a_change_beside_something_the_model_lacks_is_still_made(
    card: DatasetCard, text: str, changes: dict[str, Any], unused: list[str]
) -> None:
    assert _intent(card, text, AFTER, "what_if")["changes"] == changes
    assert unknown_inputs(normalise(text, card), card) == unused


@pytest.mark.anyio
async def test_the_route_names_what_is_not_in_the_model(card: DatasetCard) -> None:
    router = build_router(offline_model(card), card=card)
    said = "52 yo woman, smoker, atypical angina, bp 140, chol 250, bmi 31"
    decided = await route(router, RouteRequest(said))
    assert decided.tool == "predict_risk" and decided.not_in_model == ["smoker", "bmi"]
    plain = await route(router, RouteRequest("52 yo woman, atypical angina, bp 140, chol 250"))
    assert plain.not_in_model == []


@pytest.mark.parametrize(
    ("text", "site"),
    [
        ("has the case mix at Hungary moved?", "Hungary"),
        ("is the patient mix in long beach any different now", "VA Long Beach"),
    ],
)
def test_a_changed_patient_mix_is_drift(card: DatasetCard, text: str, site: str) -> None:
    assert _intent(card, text, Memory(), "check_drift") == {"site": site}
    assert understand("has our patient mix changed?", Memory(), card).reply.startswith(
        "Which data should I check for drift?"
    )
