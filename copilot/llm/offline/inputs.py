"""Inputs a card does not have: risk factors people name ("BMI", "smoker", "LDL") and words
used like a feature's name with a number ("his HbA1c were 8") that are none of the card's
features. Read by the offline provider (asked back when nothing else can be done) and by
the router for every provider (said after the answer: not used)."""

from __future__ import annotations

import re

from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import known_words
from model_service.cards import DatasetCard

_UNKNOWN_NAMED = re.compile(
    r"\b(?:his|her|their|its|the patient's) ([a-z][a-z-]{1,20})(?: (?:level|score|value))? "
    r"(?:were|was|is|at|of|to|went to|dropped to|rose to|=|:)? ?\d"
)

# Risk factors people know that a card may not have (checked against the card's words).
_NOT_INPUTS = re.compile(
    r"\bsmok[a-z]{0,5}|\bcigarettes?\b|\bbmi\b|\bbody mass\b|\bweight\b|\bobes[a-z]{0,3}\b|"
    r"\bheight\b|\bldl\b|\bhdl\b|\btriglycerides?\b|\bdiet\b|\balcohol\b|\bdrinkers?\b|"
    r"\bfamily history\b|\bstress\b|\bhba1c\b|\bcreatinine\b|\btroponin\b|\bwaist\b|"
    r"\b(?:lost|lose|loses|losing|gained|gains|gain|put on|shed) (?:\d{1,3} ?)?"
    r"(?:kg|kgs|kilos?|pounds|lbs?|stone)\b|\bstatins?\b|\bexercis(?:ing|es) (?:more|regularly)\b|"
    # who people are beyond age and sex, and what they take
    r"\bethnic[a-z]{0,4}\b|\brac(?:e|ial)\b|\bhispanic\b|\blatin[oax]s?\b|\bblack\b|\basian\b|"
    r"\bcaucasian\b|\b(?:un)?insured\b|\binsurance\b|\bincome\b|\bpostcodes?\b|\bzip codes?\b|"
    r"\bsocio-?economic\b|\bdeprivation\b|\bmedicaid\b|\bmedications?\b|\bmetformin\b|"
    r"\baspirin\b|\bbeta[- ]blockers?\b|\bace inhibitors?\b"
)

# Their words are words, never typos of the grammar's ("statins" is not "stats", "smoke" not
# "smokers", "drinkers" not "drivers").
known_words(
    "smoke smoked smoker smokers smoking smokes cigarettes drink drinks drinker drinkers "
    "drinking alcohol obese obesity overweight triglycerides statin statins creatinine "
    "troponin ethnicity ethnic racial hispanic latino caucasian insured uninsured insurance "
    "income postcode socioeconomic deprivation medicaid medication medications metformin aspirin"
)

_STOP = frozenset(
    "risk chance probability age he she they it prediction score value level reading "
    "number count".split()
)


def unknown_inputs(text: str, card: DatasetCard) -> list[str]:
    """Words used like a feature's name with a number ("his BMI were 30") that are none of
    the card's features."""
    known = _card_words(card)
    named = [
        m.group(1)
        for m in _UNKNOWN_NAMED.finditer(text)
        if m.group(1) not in known and m.group(1) not in _STOP
    ]
    others = [m.group(0) for m in _NOT_INPUTS.finditer(text) if m.group(0) not in known]
    return list(dict.fromkeys([*named, *others]))


# What an input the card lacks does in a request about a group: it picks out the group
# ("smokers", "obese patients", "patients with a BMI over 30", "those on statins", "people
# who smoke") or it is a change given to the group ("stopped smoking", "lost 5 kg", "drank
# less alcohol", "everyone's LDL dropped by 30", "had a BMI of 25"). Read from the words
# just before the input: a verb of change, or a word that attaches a trait to people.
_PERSON_WORD = re.compile(r"(?:non-?|ex-?)?smokers?|drinkers?|obes[a-z]{0,3}")
_CHANGE_LEAD = re.compile(
    r"\b(?:stopped|stop|stops|quit|quits|quitting|gave up|give up|lost|lose|loses|gained|gain|"
    r"gains|drank|drink|drinks|ate|eat|eats|cut(?: down on| out)?|reduced|reduce|lowered|lower|"
    r"raised|raise|started|start|took up|take up|put on|went on|became|become|got|took|take|"
    r"takes|taking|prescribed|given)"
    r"(?: [a-z'-]+){0,2} $"
)
# A trait said right before the people it picks out ("black patients", "uninsured women").
_PEOPLE_AFTER = re.compile(
    r"^ (?:patients|people|persons|men|women|males|females|adults|individuals|"
    r"subjects|folks|ones|cases|population|group)\b"
)
_GROUP_LEAD = re.compile(r"\b(?:with|on|who|whose|having|among)(?: [a-z'-]+){0,2} $")
_WEAK_CHANGE_LEAD = re.compile(r"\b(?:had|have|has|were|was|be|is|are|'s)(?: [a-z'-]+){0,2} $")
_CHANGED_AFTER = re.compile(
    r"^(?: levels?| values?| readings?)? (?:dropped|fell|rose|went|were|was|decreased|increased|"
    r"lowered|reduced|raised|came|got|by|of|to)\b"
)
_CHANGE_VERB_FIRST = re.compile(r"^(?:lost|lose|loses|losing|gained|gains|gain|put on|shed)\b")


def unknown_roles(text: str, card: DatasetCard) -> tuple[list[str], list[str]]:
    """The inputs the card lacks that pick out a group (first) and that are changes given
    to it (second), in the order said; an input doing neither ("carry the most weight")
    is in neither list."""
    known = _card_words(card)
    group: list[str] = []
    changed: list[str] = []
    for match in _NOT_INPUTS.finditer(text):
        word = match.group(0)
        if word in known:
            continue
        before = text[max(0, match.start() - 40) : match.start()]
        after = text[match.end() : match.end() + 20]
        if not _CHANGE_VERB_FIRST.match(word) and _PEOPLE_AFTER.match(after):
            group.append(word)  # "lower in hispanic women": the trait names the people
        elif _CHANGE_VERB_FIRST.match(word) or _CHANGE_LEAD.search(before):
            changed.append(word)
        elif _PERSON_WORD.fullmatch(word) or _GROUP_LEAD.search(before):
            group.append(word)
        elif _WEAK_CHANGE_LEAD.search(before) or _CHANGED_AFTER.match(after):
            changed.append(word)
    return list(dict.fromkeys(group)), list(dict.fromkeys(changed))


def _card_words(card: DatasetCard) -> set[str]:
    return {
        word
        for f in card.features
        for name in (*f.synonyms, *f.value_words, f.display_name, f.name)
        for word in rx.split(r"[ _/-]", name.lower())
    }
