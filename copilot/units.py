"""Units people say that the dataset card does not use, converted to the card's, and the
conversions said back: "serum cholesterol 6.2 mmol/l -> 240 mg/dl".

Every reader of a patient (the offline parser, what-if changes, grounding a real model's
tool call) converts with CONVERSIONS. What the router's tool call used is found by
`conversions_in` from the user's words and the call's typed arguments, and travels with
the route as UnitConversion values to the answer; the answer's text is never read back.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from model_service.cards import DatasetCard

# (feature, unit people say) -> factor to the card's unit
CONVERSIONS: dict[tuple[str, str], float] = {
    ("chol", "mmol/l"): 38.67,  # total cholesterol: mmol/l x 38.67 = mg/dl
    ("trestbps", "kpa"): 7.50062,  # blood pressure: kPa x 7.50062 = mmHg
    ("oldpeak", "mv"): 10.0,  # ST depression: 0.1 mV = 1 mm at standard ECG gain
}

# How a unit is written back to people (the readers see them in lower case)
_WRITTEN = {"kpa": "kPa", "mv": "mV"}

# Decimals a converted value keeps (the card's precision): whole numbers otherwise
_DECIMALS = {"oldpeak": 1}

# Fasting glucose, said in mmol/l, against the 120 mg/dl line of a card's "fbs"
GLUCOSE_MMOL_TO_MG_DL = 18.016

# How people spell the units, and the one spelling every reader sees ("mmol / L",
# "mmol/litre" -> "mmol/l"; "mm Hg" -> "mmhg"; "millivolts" -> "mv"; "beats per minute" ->
# "bpm"). Applied by the offline provider's normal form, before anything is read.
_SPELLINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), canonical)
    for pattern, canonical in (
        (
            r"(?<![a-z])(?:mmol|millimoles?|millimols?) ?(?:/|per) ?(?:l|litre|liter)(?![a-z])|"
            r"(?<![a-z])(?:mmol|millimoles?|millimols?)(?=[ ,;.)?]|$)",
            "mmol/l",
        ),
        (
            r"(?<![a-z])(?:mg|milligrams?) ?(?:/|per) ?(?:dl|decilitre|deciliter)(?![a-z])",
            "mg/dl",
        ),
        (r"(?<![a-z])(?:mm ?hg|mm of mercury|millimet(?:re|er)s? of mercury)(?![a-z])", "mmhg"),
        (r"(?<![a-z])kilopascals?(?![a-z])|(?<=\d)kpa(?![a-z])", "kpa"),
        (r"(?<![a-z])millivolts?(?![a-z])|(?<=\d)mv(?![a-z])", "mv"),
        (
            r"(?<![a-z])beats? ?(?:per|a|/) ?min(?:ute)?(?![a-z])|(?<=\d)bpm(?![a-z])|"
            r"(?<=\d) ?(?:/ ?min|per min(?:ute)?|b/min)(?![a-z])",
            "bpm",
        ),
    )
)

_UNIT_WORDS = "|".join(
    re.escape(u) for u in sorted({unit for _, unit in CONVERSIONS}, key=len, reverse=True)
)
_SAID = re.compile(rf"(?<![\w.])(\d{{1,4}}(?:\.\d{{1,3}})?) ?({_UNIT_WORDS})(?![a-z])")

# A unit said after a value, as a pattern group: the converted ones and the cards' own
SAID_UNIT = rf"({_UNIT_WORDS}|mg/dl|mmhg|bpm|mm)"


def spelled(text: str) -> str:
    """`text` (lower case) with every unit in its one spelling, a space before it when it
    was glued to its number ("18.7kpa" -> "18.7 kpa")."""
    for pattern, canonical in _SPELLINGS:
        text = pattern.sub(canonical, text)
    return re.sub(r"(?<=\d)(?=(?:mmol/l|mg/dl|mmhg|kpa|mv|bpm)(?![a-z]))", " ", text)


class UnitConversion(BaseModel):
    """One value given in a unit the card does not use, and what it became."""

    feature: str
    display_name: str
    given: float
    given_unit: str
    value: float
    unit: str

    def said(self) -> str:
        given_unit = _WRITTEN.get(self.given_unit, self.given_unit)
        return f"{self.display_name} {self.given:g} {given_unit} -> {self.value:g} {self.unit}"


def factor(feature: str, unit: str) -> float | None:
    """The factor from `unit` to the card's unit of `feature` (None: not converted)."""
    return CONVERSIONS.get((feature, unit))


def to_card_unit(feature: str, value: float, unit: str) -> float:
    """`value` in `unit`, in the card's unit, rounded as the card's values are."""
    found = factor(feature, unit)
    if found is None:
        return value
    return float(round(value * found, _DECIMALS.get(feature, 0)))


def _values_of(arguments: dict[str, Any], feature: str) -> list[float]:
    """The numbers a tool call gives for `feature` (a patient's value, a what-if change, a
    cohort condition's value)."""
    parts = [arguments.get(part) for part in ("patient", "changes")]
    given = [part.get(feature) for part in parts if isinstance(part, dict)]
    for condition in arguments.get("where") or []:  # a cohort's conditions
        if isinstance(condition, dict) and condition.get("feature") == feature:
            value = condition.get("value")
            given += value if isinstance(value, list) else [value]
    return [float(v) for v in given if isinstance(v, (int, float)) and not isinstance(v, bool)]


def in_card_units(text: str, values: dict[str, Any], card: DatasetCard) -> dict[str, Any]:
    """`values` (a patient, or a what-if's changes) with each number a model copied from the
    user's words in a unit the card converts ("BP 17.3 kPa" given as trestbps 17.3) in the
    card's unit (130 mmHg); every other value as it was."""
    said = [(float(m.group(1)), m.group(2)) for m in _SAID.finditer(spelled(text.lower()))]
    converted = dict(values)
    for name, value in values.items():
        if name not in card.feature_names or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            continue
        for given, unit in said:
            if factor(name, unit) is not None and abs(float(value) - given) < 1e-9:
                converted[name] = to_card_unit(name, given, unit)
                break
    return converted


def conversions_in(text: str, arguments: dict[str, Any], card: DatasetCard) -> list[UnitConversion]:
    """The conversions behind a tool call's values: each number the user gave in a unit
    the card converts (e.g. "6.2 mmol/l") for a feature the call sets. The value said is
    the one the call used when it is that number converted (within the card's
    measurement error); otherwise (a relative change: "1 mmol/l lower") the amount
    converted."""
    conversions = []
    lowered = text.lower()
    for (name, unit), ratio in CONVERSIONS.items():
        if name not in card.feature_names:
            continue
        used = _values_of(arguments, name)
        if not used:
            continue
        feature = card.feature(name)
        for match in _SAID.finditer(lowered):
            if match.group(2) != unit:
                continue
            given = float(match.group(1))
            converted = given * ratio
            tolerance = max(0.5, feature.measurement_error, converted * 0.01)
            close = [v for v in used if abs(v - converted) <= tolerance]
            conversions.append(
                UnitConversion(
                    feature=name,
                    display_name=feature.display_name,
                    given=given,
                    given_unit=unit,
                    value=close[0] if close else float(round(converted, _DECIMALS.get(name, 0))),
                    unit=feature.unit or "",
                )
            )
    return conversions


def said_back(conversions: list[UnitConversion]) -> str:
    """The sentence that says the conversions ("" when none)."""
    if not conversions:
        return ""
    return "Converted to the model's units: " + "; ".join(c.said() for c in conversions) + "."
