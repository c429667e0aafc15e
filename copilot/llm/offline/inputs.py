"""Inputs a card does not have: risk factors people name ("BMI", "smoker", "LDL") and words
used like a feature's name with a number ("his HbA1c were 8") that are none of the card's
features. Read by the offline provider (asked back when nothing else can be done) and by
the router for every provider (said after the answer: not used)."""

from __future__ import annotations

import re

from model_service.cards import DatasetCard

_UNKNOWN_NAMED = re.compile(
    r"\b(?:his|her|their|its|the patient's) ([a-z][a-z-]{1,20})(?: (?:level|score|value))? "
    r"(?:were|was|is|at|of|to|went to|dropped to|rose to|=|:)? ?\d"
)

# Risk factors people know that a card may not have (checked against the card's words).
_NOT_INPUTS = re.compile(
    r"\bsmok[a-z]{0,5}|\bcigarettes?\b|\bbmi\b|\bbody mass\b|\bweight\b|\bobes[a-z]{0,3}\b|"
    r"\bheight\b|\bldl\b|\bhdl\b|\btriglycerides?\b|\bdiet\b|\balcohol\b|\bdrinker\b|"
    r"\bfamily history\b|\bstress\b|\bhba1c\b|\bcreatinine\b|\btroponin\b|\bwaist\b|"
    r"\b(?:lost|lose|loses|losing|gained|gains|gain|put on|shed) (?:\d{1,3} ?)?"
    r"(?:kg|kgs|kilos?|pounds|lbs?|stone)\b|\bstatins?\b|\bexercis(?:ing|es) (?:more|regularly)\b"
)

_STOP = frozenset(
    "risk chance probability age he she they it prediction score value level reading "
    "number count".split()
)


def unknown_inputs(text: str, card: DatasetCard) -> list[str]:
    """Words used like a feature's name with a number ("his BMI were 30") that are none of
    the card's features."""
    known = {
        word
        for f in card.features
        for name in (*f.synonyms, *f.value_words, f.display_name, f.name)
        for word in re.split(r"[ _/-]", name.lower())
    }
    named = [
        m.group(1)
        for m in _UNKNOWN_NAMED.finditer(text)
        if m.group(1) not in known and m.group(1) not in _STOP
    ]
    others = [m.group(0) for m in _NOT_INPUTS.finditer(text) if m.group(0) not in known]
    return list(dict.fromkeys([*named, *others]))
