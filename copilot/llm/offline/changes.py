"""Relative what-ifs: changes said as a difference from the last patient ("chol 20 lower",
"BP down 10", "decreased by 20", "twenty years older", "2 fewer vessels", "raise his
cholesterol by 10%"), turned into new absolute values from the remembered patient.

The grammar, with F a numeric feature of the card (its synonyms), N an amount with an
optional unit, UP/DOWN the words of a direction:

    F [link] N UP|DOWN          "chol 20 lower", "his BP were 10 mmHg higher"
    F [link] UP|DOWN [by] N     "BP down 10", "chol decreased by 20", "went up by 15"
    N UP|DOWN [in|of] F         "2 fewer vessels", "20 points lower cholesterol"
    N years UP|DOWN             "20 years older" (age)
    RAISE|LOWER [his|the] F by N  "lower his cholesterol by 30"
    TAKE|ADD N off|to [his] F     "take 20 off his cholesterol", "add 10 to the BP"
    F plus|minus N                "cholesterol minus 20"
    RAISE|LOWER [his|the] F     (no amount: asked back, never guessed)
    HALVE|DOUBLE[D] [his] F     "halved his ST depression", "double the vessels"
    F UP|DOWN of|by N             "a cholesterol reduction of 50", "a BP rise of 10"
    UP|DOWN in|of [his] F of|by N "a reduction in cholesterol of 50"
    UP|DOWN of|by N in|of [his] F "a drop of 15 in his blood pressure"
    in N years [time] | N years from now   (age, later)
    ..., and [his] F by N       a second change with the first one's direction

A change that cannot be applied (no value to start from, a result outside the card's
limits, no amount) is returned as a problem naming it, so the caller says so instead of
silently dropping it. Every pattern is a sequence of bounded alternatives: linear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from copilot import units
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import known_words
from model_service.cards import DatasetCard, Feature

_UP = (
    r"(?:higher|more|up|greater|bigger|larger|increased|raised|older|extra|rose|risen|"
    r"went up|goes up|gone up|go up|increases|increase|rise|jump|gain|bump|spike)"
)
_DOWN = (
    r"(?:lower|less|down|fewer|smaller|decreased|reduced|dropped|lowered|younger|fell|fallen|"
    r"went down|goes down|gone down|go down|cut|decreases|decrease|drops|drop|fall|reduction|"
    r"decline|dip|off)"
)
# Verbs of a change said before the feature, in the present and the past ("if we dropped
# his cholesterol by 50", "suppose they increased her max HR by 20").
_RAISE = (
    r"(?:increase|increased|increasing|raise|raised|raising|bump up|bumped up|bumping up|bump|"
    r"bumped|push up|pushed up|pushing up|boost|boosted|boosting|up)"
)
_LOWER = (
    r"(?:decrease|decreased|decreasing|lower|lowered|lowering|reduce|reduced|reducing|drop|"
    r"dropped|dropping|cut|cutting|bring down|brought down|bringing down|take down|took down|"
    r"knock down|knocked down|bring|brought)"
)
_TAKE = r"(?:take|taking|takes|shave|shaving|knock|knocking|subtract|subtracting|remove|minus)"
_ADD = r"(?:add|adding|adds|put|putting|tack|plus|\+)"
_AMOUNT = r"(?P<amount>\d{1,4}(?:\.\d{1,3})?|one)"
_UNIT_WORDS = (
    r"%|percent|mmol/l|mg/dl|mmhg|bpm|beats|mm|points?|units?|years?|yrs?|decades?|vessels?"
)
_UNIT = (
    r"(?: ?(?P<unit>%|percent|mmol/l|mg/dl|mmhg|mm hg|bpm|beats|mm|points?|units?|years?|yrs?|"
    r"decades?|vessels?))?"
)
_FACTORS = {
    "doubled": 2.0,
    "double": 2.0,
    "tripled": 3.0,
    "triple": 3.0,
    "halved": 0.5,
    "halve": 0.5,
    "cut in half": 0.5,
    "half": 0.5,
    "twice": 2.0,
    "three times": 3.0,
}
_LINK = r"(?: (?:is|was|were|be|being|at|of|would be|went|goes|got|gets|had|has|came|comes))?"
_BY = r"(?: by| of)?"


known_words(_UP, _DOWN, _RAISE, _LOWER, _TAKE, _ADD, " ".join(_FACTORS))


@dataclass
class Changes:
    """New absolute values, what could not be applied, and where they were said."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)


def _names(feature: Feature) -> str:
    names = {*feature.synonyms, feature.display_name, feature.name.replace("_", " ")}
    names = {n.lower() for n in names if len(n) > 1 and n not in {"yo", "y/o", "yrs", "aged"}}
    names |= {n[:-1] for n in names if n.endswith("s") and len(n) > 4}  # "vessel(s)"
    ordered = sorted(names, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(n) for n in ordered) + ")"


def _amount(token: str) -> float:
    return 1.0 if token in {"one", "a", "an"} else float(token)


def _patterns(feature: Feature) -> list[re.Pattern[str]]:
    # "LDL cholesterol dropped by 40" is no change of (total) cholesterol
    f = rf"(?<![a-z])(?<!ldl )(?<!hdl )(?<!ldl-)(?<!hdl-){_names(feature)}(?![a-z])"
    own = r"(?:(?:his|her|their|the|its|patient's|the patient's) )?"
    patterns = [
        rf"{f}{_LINK} {_AMOUNT}{_UNIT} (?P<dir>{_UP}|{_DOWN})\b",
        rf"{f}{_LINK} (?P<dir>{_UP}|{_DOWN}){_BY} {_AMOUNT}{_UNIT}",
        # an adjective may come between: "2 fewer diseased vessels", "1 more blocked vessel"
        rf"\b{_AMOUNT}{_UNIT} (?P<dir>{_UP}|{_DOWN})(?: (?:in|of|on|for))? {own}"
        rf"(?:[a-z-]{{3,15}} )?{f}",
        # "one vessel fewer", "20 mmhg bp lower"
        rf"\b{_AMOUNT}{_UNIT} (?:[a-z-]{{3,15}} )?{f} (?P<dir>{_UP}|{_DOWN})\b",
        # "10 more beats of max heart rate", "20 points off cholesterol"
        rf"\b{_AMOUNT} (?P<dir>{_UP}|{_DOWN})(?: (?:{_UNIT_WORDS}))?(?: (?:in|of|on|for|from))?"
        rf" {own}{f}",
        rf"\b(?P<dir>{_RAISE}|{_LOWER}) {own}{f}(?: by)? {_AMOUNT}{_UNIT}",
        # the change as a noun: "a reduction in cholesterol of 50", "a drop of 15 in his BP"
        rf"\b(?P<dir>{_UP}|{_DOWN}) (?:in|of) {own}{f} (?:of|by) {_AMOUNT}{_UNIT}",
        rf"\b(?P<dir>{_UP}|{_DOWN}) (?:of|by) {_AMOUNT}{_UNIT} (?:in|of|on) {own}{f}",
        rf"\b(?:{_LOWER}|cut|halve) {own}{f} (?:in|by) (?P<factor>half)\b",
        # an amount taken off or put on: "take 20 off his cholesterol", "add 10 to the BP",
        # "knock 15 points off", "shave 0.5 off the ST depression"
        rf"\b(?P<dir>{_TAKE}|{_ADD})(?: on| off)? {_AMOUNT}{_UNIT}(?: (?:off|from|on|onto|to))?"
        rf" {own}{f}",
        # "cholesterol minus 20", "BP plus 10"
        rf"{f}{_LINK} (?P<dir>plus|minus|\+) ?{_AMOUNT}{_UNIT}",
        rf"{f}{_LINK} (?P<factor>doubled|halved|cut in half|tripled)\b",
        rf"{f}{_LINK} (?P<factor>twice|half|three times) as (?:high|large|big|much|great)\b",
        rf"\b(?P<factor>doubled|halved|tripled|double|halve|triple|cut in half) {own}{f}",
        rf"\b(?P<dir>{_RAISE}|{_LOWER}) {own}{f}(?! by| to| from| of| at)(?P<vague>)",
    ]
    if feature.limits is not None and feature.limits.low >= 0:
        # a value that can't be negative said with a minus sign is a change ("trestbps -15")
        patterns.append(rf"{f}{_LINK} (?P<dir>-) ?{_AMOUNT}{_UNIT}(?![0-9.])")
    if feature.name == "age":
        patterns.insert(
            0,
            r"\b(?P<amount>\d{1,3}|one|a|an) ?(?P<unit>years?|yrs?|decades?) "
            r"(?P<dir>older|younger)\b",
        )
        # "in 5 years' time", "in a decade", "5 years from now", "a decade on"
        patterns.insert(
            1,
            r"\b(?:in (?P<amount>\d{1,2}|a|one) ?(?P<unit>years?|yrs?|decades?)(?:'s|')?"
            r"(?: time)?|(?P<amount2>\d{1,2}|a|one) ?(?P<unit2>years?|decades?) "
            r"(?:from now|on|later|down the (?:road|line)))",
        )
        # "if he aged 10 years", "gets a decade older" is above; "ages by 5 years"
        patterns.insert(
            2,
            r"\b(?:aged|ages|ageing|aging|age) (?:by |another )?(?P<amount>\d{1,2}|a|one) ?"
            r"(?P<unit>years?|yrs?|decades?)\b",
        )
    return [re.compile(p) for p in patterns]


_COMPILED: dict[str, list[tuple[Feature, list[re.Pattern[str]]]]] = {}


def _grammar(card: DatasetCard) -> list[tuple[Feature, list[re.Pattern[str]]]]:
    if card.name not in _COMPILED:
        _COMPILED[card.name] = [(f, _patterns(f)) for f in card.features if f.kind == "numeric"]
    return _COMPILED[card.name]


def _direction(word: str) -> int:
    up = rx.fullmatch(_UP + "|" + _RAISE + "|" + _ADD, word)
    return 1 if up else -1


def _delta(feature: Feature, match: re.Match[str], base: float) -> float:
    groups = match.groupdict()
    amount = _amount(groups.get("amount") or groups.get("amount2") or "1")
    unit = groups.get("unit") or groups.get("unit2")
    if unit in {"%", "percent"}:
        return base * amount / 100
    ratio = units.factor(feature.name, unit or "")
    if ratio is not None:  # said in a unit the card does not use
        return amount * ratio
    if unit in {"decade", "decades"}:
        return amount * 10
    return amount


def relative_changes(text: str, card: DatasetCard, patient: dict[str, Any] | None) -> Changes:
    """The changes said relative to `patient` (normal form text), each applied or named as
    a problem. A change said after another without its direction ("BP down by 10 and his
    cholesterol by 20") goes the way of the one before it."""
    found = Changes()
    signs: list[tuple[int, int]] = []  # where a direction was said, and which
    for feature, patterns in _grammar(card):
        for pattern in patterns:
            match = pattern.search(text)
            if match is None or _overlaps(match, found.spans):
                continue  # not said, or said once: read by the first form that fits
            direction = match.groupdict().get("dir")
            sign = _direction(direction) if direction else 1
            if direction:
                signs.append((match.start(), sign))
            _read(feature, match, sign, patient, found)
            break
    for feature, pattern in _elliptical_grammar(card):
        match = pattern.search(text)
        if match is None or feature.name in found.values or _overlaps(match, found.spans):
            continue
        before = [sign for start, sign in signs if start < match.start()]
        if before:
            _read(feature, match, before[-1], patient, found)
    return found


def _overlaps(match: re.Match[str], spans: list[tuple[int, int]]) -> bool:
    return any(s <= match.start() < e or match.start() <= s < match.end() for s, e in spans)


def _read(
    feature: Feature,
    match: re.Match[str],
    sign: int,
    patient: dict[str, Any] | None,
    found: Changes,
) -> None:
    """One change said by `match`, applied to `patient` into `found` (or named a problem)."""
    found.spans.append(match.span())
    said = match.group(0)
    if match.groupdict().get("vague") is not None:
        found.problems.append(f"'{said}' (by how much? e.g. '{said} by 10')")
        return
    base = (patient or {}).get(feature.name)
    factor = match.groupdict().get("factor")
    if not isinstance(base, (int, float)) or isinstance(base, bool):
        found.problems.append(
            f"'{said}' (I don't know the {feature.display_name} to start from: "
            f"say the new value, e.g. '{feature.display_name} {_example(feature)}')"
        )
        return
    if factor is not None:
        value = base * _FACTORS[factor]
    else:  # "in 5 years" (no direction word) is later: older
        value = base + sign * _delta(feature, match, float(base))
    value = round(value) if feature.integer or float(base).is_integer() else round(value, 1)
    limits = feature.limits
    if limits is not None and value not in limits:
        found.problems.append(
            f"'{said}' (that gives {value:g}, outside {limits.low:g}-{limits.high:g} "
            f"{feature.unit or ''})".replace(" )", ")")
        )
        return
    found.values[feature.name] = int(value) if feature.integer else value


_ELLIPTICAL: dict[str, list[tuple[Feature, re.Pattern[str]]]] = {}


def _elliptical_grammar(card: DatasetCard) -> list[tuple[Feature, re.Pattern[str]]]:
    """ "and [his] F by N": a second change that borrows the first one's direction."""
    if card.name not in _ELLIPTICAL:
        own = r"(?:(?:his|her|their|the|its) )?"
        _ELLIPTICAL[card.name] = [
            (
                f,
                re.compile(
                    rf"(?:\band|,) {own}(?<![a-z]){_names(f)}(?![a-z]) by {_AMOUNT}{_UNIT}"
                    r"(?![\w.])"
                ),
            )
            for f in card.features
            if f.kind == "numeric"
        ]
    return _ELLIPTICAL[card.name]


def _example(feature: Feature) -> str:
    if feature.limits is None:
        return "1"
    middle = (feature.limits.low + feature.limits.high) / 2
    return f"{round(middle)}" if feature.integer or middle > 10 else f"{middle:.1f}"
