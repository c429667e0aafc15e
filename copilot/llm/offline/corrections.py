"""Corrections of what was just said: "sorry, I meant 58 not 85", "oops, cholesterol should
be 196", "wait, the BP is 140, not 180", "my mistake, she's a woman", "actually make that
female" after a patient was scored; "no, Hungary, not Switzerland", "sorry, I meant the VA
ones" after a question about a site or a group.

A correction replaces a value of the last request and asks it again: the patient scored
anew (never a what-if, whose answer would compare the corrected patient with one that never
existed), or the last call with the slot replaced (copilot.llm.offline.followups). The
value it replaces ("not 85", "instead of Switzerland") is the old one: it is taken off the
text before the new values are read, and a number said alone ("58 not 85") replaces the
last patient's input that had the old number. Every pattern is bounded: linear.
"""

from __future__ import annotations

import re
from typing import Any

from copilot.llm.offline.patients import parse_patient
from model_service.cards import DatasetCard

# Words that say the last message was wrong: an apology, "I meant", "should be", "make
# that", "correction", "typo"... said at the start or as the clause's own verb.
_CORRECTION = re.compile(
    r"^(?:sorry|oops|whoops|wait|hang on|hold on|actually|correction|my bad|my mistake|"
    r"apologies|pardon)\b|^(?:no|nope),|"
    r"\b(?:i meant|i mean|meant to (?:say|write|type)|should (?:have )?be(?:en)?|should read|"
    r"typo|mistyped|misspoke|i wrote|i typed|make that|change that to|"
    r"my mistake|my bad|correction)\b"
)

# The old value, said beside the new one: "not 85", "instead of Switzerland", "rather than
# 180" (up to three words: "not the Swiss one").
OLD_VALUE = re.compile(
    r"(?:,? ?\b(?:not|instead of|rather than)\b (?:the |a |an )?"
    r"(?P<old>[a-z0-9.'-]{1,20}(?: [a-z0-9.'-]{1,20}){0,2}?))(?=\W*(?:$|[,;.!?]| but\b| i\b))"
)

# A number said alone as the new value, with the old one beside it: "58 not 85", "not 85
# but 58", "85 should be 58", "I meant 58 instead of 85".
_NUMBER = r"(\d{1,3}(?:\.\d{1,2})?)"
_NUMBERS = re.compile(r"\d{1,4}(?:\.\d{1,2})?")
_SWAPPED = (
    re.compile(rf"\b{_NUMBER},? (?:not|instead of|rather than) {_NUMBER}\b"),  # new, old
    re.compile(rf"\bnot {_NUMBER},? (?:but|it's|it is|rather) {_NUMBER}\b"),  # old, new
    re.compile(
        rf"\b{_NUMBER} (?:should (?:have )?be(?:en)?|was meant to be|is really) {_NUMBER}\b"
    ),  # old, new
)


def is_correction(text: str) -> bool:
    """Whether the clause says the last message was wrong."""
    return _CORRECTION.search(text) is not None


def without_old_values(text: str) -> str:
    """The clause with the values it replaces taken off ("hungary, not switzerland":
    "hungary,")."""
    return " ".join(OLD_VALUE.sub(" ", text).split())


def corrected_patient(
    text: str, card: DatasetCard, patient: dict[str, Any]
) -> dict[str, Any] | None:
    """The last patient with the values this correction gives, or None when it is no
    correction of the patient. A correction names the old value ("140, not 180") or says
    again an input the card requires (who the patient is and why they came: "she's a woman");
    another new value said alone ("sorry, I meant chol 200") stays a what-if (the risk with
    that value, beside the last one)."""
    if not is_correction(text):
        return None
    swapped = _swapped_number(text, card, patient)
    if swapped:
        return {**patient, **swapped}
    masked, replaced = _without_old(text, card, patient)
    values = parse_patient(masked, card, pronouns=True)
    new = {name: value for name, value in values.items() if patient.get(name) != value}
    required = {f.name for f in card.features if f.required}
    if not new or not (replaced or set(new) <= required):
        return None
    return {**patient, **new}


def _without_old(text: str, card: DatasetCard, patient: dict[str, Any]) -> tuple[str, bool]:
    """The clause without the old values it names (those the patient had: "not 180" of a
    blood pressure of 180; "not diabetic" of a diabetic is the new value and stays), and
    whether there was one."""
    kept, replaced, start = [], False, 0
    for found in OLD_VALUE.finditer(text):
        old = found.group("old")
        numbers = [float(n) for n in _NUMBERS.findall(old)]
        had = any(
            isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) in numbers
            for v in patient.values()
        )
        said = parse_patient(old, card, pronouns=False)
        if had or (said and said.items() <= patient.items()):
            kept.append(text[start : found.start()])
            start, replaced = found.end(), True
    kept.append(text[start:])
    return " ".join(" ".join(kept).split()), replaced


def _swapped_number(text: str, card: DatasetCard, patient: dict[str, Any]) -> dict[str, Any]:
    """ "58 not 85": the one input of the patient whose value was the old number, given the
    new one; nothing when no input or several had it."""
    for index, pattern in enumerate(_SWAPPED):
        found = pattern.search(text)
        if found is None:
            continue
        new, old = found.groups() if index == 0 else (found.group(2), found.group(1))
        had = [
            name
            for name, value in patient.items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and abs(float(value) - float(old)) < 1e-9
        ]
        if len(had) != 1:
            return {}
        feature = card.feature(had[0])
        value = float(new)
        if feature.limits is not None and value not in feature.limits:
            return {}
        return {feature.name: int(value) if feature.integer else value}
    return {}
