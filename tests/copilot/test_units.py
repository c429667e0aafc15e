"""Units the card does not use: converted by every reader of a patient, and said back."""

from copilot.facts import Memory, RouteRequest
from copilot.llm.grounding import unmentioned
from copilot.llm.offline.changes import relative_changes
from copilot.llm.offline.patients import parse_patient
from copilot.units import (
    UnitConversion,
    conversions_in,
    in_card_units,
    said_back,
    to_card_unit,
)
from model_service.cards import get_card

CARD = get_card("heart-disease")


def test_every_reader_converts_mmol_per_litre_the_same_way() -> None:
    assert to_card_unit("chol", 6.2, "mmol/l") == 240.0  # 6.2 x 38.67 = 239.75
    assert to_card_unit("chol", 233, "mg/dl") == 233 and to_card_unit("age", 6.2, "mmol/l") == 6.2
    assert parse_patient("63 yo m, chol 6.2 mmol/l", CARD)["chol"] == 240
    lower = relative_changes("what if his chol were 1 mmol/l lower", CARD, {"chol": 240})
    assert lower.values == {"chol": 201} and lower.problems == []
    patient = {"age": 63, "chol": 240}
    request = RouteRequest("63 yo man, cholesterol 6.2 mmol/l", Memory())
    assert unmentioned("predict_risk", {"patient": patient}, request, CARD) == []


def test_the_conversions_behind_a_call_are_found_as_data() -> None:
    text = "63 yo M, asymptomatic CP, BP 145, chol 6.2 mmol/L, max HR 150"
    (found,) = conversions_in(text, {"patient": {"age": 63, "chol": 240}}, CARD)
    assert found == UnitConversion(
        feature="chol",
        display_name="serum cholesterol",
        given=6.2,
        given_unit="mmol/l",
        value=240.0,
        unit="mg/dl",
    )
    assert found.said() == "serum cholesterol 6.2 mmol/l -> 240 mg/dl"
    # a real model that converted without rounding: what it used is what is said
    (exact,) = conversions_in(text, {"patient": {"chol": 239.75}}, CARD)
    assert exact.value == 239.75
    # a relative change: the amount, converted
    (amount,) = conversions_in("chol 1 mmol/l lower", {"changes": {"chol": 201}}, CARD)
    assert amount.said() == "serum cholesterol 1 mmol/l -> 39 mg/dl"
    assert said_back([found]) == (
        "Converted to the model's units: serum cholesterol 6.2 mmol/l -> 240 mg/dl."
    )


def test_nothing_is_said_when_nothing_was_converted() -> None:
    assert conversions_in("chol 233 mg/dl", {"patient": {"chol": 233}}, CARD) == []
    assert conversions_in("chol 6.2 mmol/l", {"prediction_id": "p1"}, CARD) == []  # not set
    assert said_back([]) == ""


def test_numbers_copied_in_another_unit_are_put_in_the_cards() -> None:
    card = get_card("heart-disease")
    said = "61 yo woman, BP 17.3kPa, chol 6.1 mmol/L, ST depression 0.12 mV, max HR 131 bpm"
    copied = {"age": 61, "trestbps": 17.3, "chol": 6.1, "oldpeak": 0.12, "thalch": 131}
    assert in_card_units(said, copied | {"exang": True}, card) == {
        "age": 61,
        "trestbps": 130.0,
        "chol": 236.0,
        "oldpeak": 1.2,
        "thalch": 131,  # bpm is the card's own unit
        "exang": True,
    }
    # values already in the card's units, or numbers said without another unit, stay
    assert in_card_units(said, {"trestbps": 130, "chol": 236}, card) == {
        "trestbps": 130,
        "chol": 236,
    }
    assert in_card_units("chol 6.1", {"chol": 6.1}, card) == {"chol": 6.1}
