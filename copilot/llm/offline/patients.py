"""Patients in free text: feature values with units and abbreviations, by the card
("63 yo M, asymptomatic CP, BP 145/90, chol 233 mg/dl, max HR 150, ST dep 2.3, exang no")."""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any

from copilot import units
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import NUMBER, NUMBER_WORDS, known_words, number
from model_service.cards import DatasetCard, Feature

_YES = {"yes", "y", "true", "positive", "pos", "present", "1", "+"}

_NO = {"no", "n", "false", "negative", "neg", "absent", "none", "0", "-"}

# A test result said as a level: "fasting sugar raised", "fasting blood sugar not raised".
_HIGH = {"raised", "elevated", "high", "abnormal", "increased"}
_NORMAL = {"normal", "low", "ok", "fine", "unremarkable", "controlled", "under control"}


def _synonym_pattern(feature: Feature) -> str:
    """A feature's names, each with its words joined as people type them: by a space, a
    hyphen or nothing ("max hr", "max-hr", "maxhr")."""
    names = feature.synonyms or (feature.display_name, feature.name.replace("_", " "))
    ordered = sorted({n.lower() for n in names}, key=len, reverse=True)
    joined = (re.escape(n).replace(r"\ ", "[ -]?").replace(r"\-", "[ -]?") for n in ordered)
    return "(?:" + "|".join(joined) + ")"


def synonym_pattern(feature: Feature) -> str:
    """A feature's names as one pattern (for readers outside this module)."""
    return _synonym_pattern(feature)


# Between a feature's name and its value: "chol 233", "cholesterol of 199", "BP was 140",
# "blood pressure dropped to 120", "his bp is at 150", "his max HR had been 170".
_LINK = (
    r"(?: ?(?:is|was|were|would be|had been|has been|have been|been|went|goes|dropped|fell|"
    r"rose|changed|came|got|gets|become|becomes|became|"
    r"reduced|lowered|raised|increased|decreased|brought|down|up|set|peaked|peaks|reached|"
    r"reaches|hit|hits|maxed out|topped out|maxed|topping out|peaking|peak|max|achieved|attained|"
    r"recorded|climbed|got up|went up|measured|reads|read|reading|level|value)){0,2}"
    r"(?: ?(?:actually|really|now|currently|only|just|more like|closer to|under control))?"
    r"(?: ?(?:of|=|:|at|to|->|is|was|were|around|about|, say|say|under|below|over|above|"
    r"to under|to below|of about|of around|at about|at around))? ?"
)


known_words(_LINK)  # "cholesterol reading 290": "reading" is a word, not a typo


# A count of vessels said as a clinician would ("3 coloured vessels", "two-vessel disease",
# "single vessel disease", "no major vessels blocked").
_VESSEL_COUNTS = {
    **{"no": 0, "zero": 0, "one": 1, "single": 1},
    **{"two": 2, "double": 2, "three": 3, "triple": 3},
}
_VESSELS = re.compile(
    r"\b(\d|" + "|".join(_VESSEL_COUNTS) + r")[ -]"
    r"(?:(?:major|coloured|colored|diseased|blocked|narrowed|affected|occluded|stenosed|"
    r"stenotic|significant|coronary|main)[ -]){0,2}vessels?\b"
)


# The patient named by a relative who asks for them ("my father", "her husband"): the age
# said right after ("my dad is 71") is theirs.
_RELATIVES = (
    r"(?:father|dad|daddy|husband|brother|son|grandfather|grandpa|uncle|mother|mum|mom|"
    r"mommy|mummy|wife|sister|daughter|grandmother|grandma|aunt|partner)"
)


def _numeric(feature: Feature, text: str, card: DatasetCard) -> float | None:
    names = _synonym_pattern(feature)
    link = _LINK
    if feature.name == "age":
        for pattern in (
            r"\b(\d{1,3})\s*-?\s*(?:yo|y/o|y\.o\.|yrs?\b|years?\b|year-old)",
            rf"\bage[d]?{link}(\d{{1,3}})\b",
            r"\b(\d{2})\s*(?:m|f)\b",
            r"\b(\d{2,3}) ?y\b",  # "48y"
            # sex then age, written together ("male 61", "F 48"; "man, 38" stays a question)
            r"\b(?:male|female|man|woman|m|f|gentleman|lady) (\d{2,3})\b"
            r"(?! ?(?:mg|mmol|bpm|mm|%|/|\.\d))",
            r"\b(\d{2,3}) (?:male|female|man|woman|gentleman|lady)\b",
            # "a man of 64", "a lady of 70 years"
            r"\b(?:male|female|man|woman|gentleman|lady|patient|person) of (\d{2,3})\b"
            r"(?! ?(?:mg|mmol|bpm|mm|%|/|\.\d))",
            # a record of fields that opens with sex and age ("male, 45, asymptomatic,
            # resting BP 142, chol 309, ..."); a short one ("man, 38, chol 180") is asked
            r"\b(?:male|female|man|woman|m|f|gentleman|lady|guy|gent|chap|fellow|bloke|patient)"
            r"(?:[,:]| -) (\d{2,3}),"
            r"(?:[^,]{1,40},){2}",
            r"(?:^|: )(\d{2,3}), (?:male|female|man|woman|m|f),[^,]{1,40},[^,]{2,40}",
            # a record that opens with the age after a question or a label, then findings
            # ("what are the odds this lady has CAD? 57, atypical angina, BP 130, ...")
            r"(?:^|[:?] )(\d{2,3}), [a-z][a-z -]{2,40},[^,]{2,40},[^,]{2,40},",
            # "how about at 50?", "and aged 45?": an age said alone after a follow-on word
            r"^(?:and |but |now |what about |how about |and what about |and how about )?"
            r"(?:at|aged?|at age) (\d{2,3})(?: years(?: old)?)?\W*$",
            # "would he still be high risk at 50?"
            r"\b(?:he|she|they|him|her|same (?:guy|man|woman|patient|lady|gentleman|person))\b"
            r"[a-z' ]{0,40} at (?:age )?(\d{2,3})"
            r"(?: years(?: old)?)?\W*$",
            # "make him 45", "she turns 70"
            r"\bmake (?:him|her|them|the patient|it) (\d{2,3})\b(?! ?(?:mg|mmol|bpm|mm|%|/|\.\d))",
            # a title and an initial or a name, then the age ("Mrs J, 67", "Mr Smith 54")
            r"\b(?:mr|mrs|ms|miss)\.? [a-z]{1,15},? (\d{2,3})\b(?! ?(?:mg|mmol|bpm|mm|%|/|\.\d))",
            # "he is 64", and a relative's age as family write it ("my father is 71",
            # "my husband is 64")
            rf"\b(?:he|she|patient|{_RELATIVES})(?: is| was| were| turns| turned|'s)?"
            r"(?: actually| really| in fact| now| only| just)? (\d{2,3})\b"
            r"(?! ?(?:mg|mmol|bpm|mm|%|vessels?|points?|units?|/|\.\d))",
        ):
            found = rx.search(pattern, text)
            if found and not _named_before(found.start(1), feature, text, card):
                return float(found.group(1))
        return None
    found = rx.search(
        rf"(?<![a-z]){_NOT_THIS}{names}{_JOINER}{link}{NUMBER}(?:\s*/\s*\d+| over \d{{2,3}})?"
        rf"\s*{units.SAID_UNIT}?",
        text,
    )
    if found is None:  # the value first: "a 190 cholesterol", "at 120 systolic"
        found = _value_first(feature, names, text, card)
    if found is None:  # the value with the card's unit alone: "achieved 145 bpm"
        found = _by_unit(feature, text, card)
    if found is None and feature.name == "trestbps":  # a pressure said alone: "150/95"
        found = _PRESSURE.search(text)
    if found is None and feature.name == "ca":
        found = _VESSELS.search(text)
        if found is not None:
            return float(_VESSEL_COUNTS.get(found.group(1), found.group(1)))
    if found is None:
        return _none_of(feature, names, text)
    value = number(found.group(1))
    if found.lastindex == 2 and found.group(2):  # a unit said: in the card's, if it differs
        value = units.to_card_unit(feature.name, value, found.group(2))
    return value


# A hyphen glued to both a name and its value joins them ("chol-248"): no minus sign, which
# is said apart from the name ("oldpeak -0.5").
_JOINER = r"(?:-(?=\d))?"

# A name qualified as another measure: "LDL cholesterol 160" is no total cholesterol.
_NOT_THIS = r"(?<!ldl )(?<!hdl )(?<!ldl-)(?<!hdl-)(?<!non-hdl )(?<!vldl )"


def _named_before(start: int, feature: Feature, text: str, card: DatasetCard) -> bool:
    """Whether another feature's name comes just before a number ("with BP at 120"): the
    number is that feature's value."""
    before = rx.split(r"[,;:]", text[max(0, start - 16) : start])[-1]
    names = "|".join(
        _synonym_pattern(f) for f in card.features if f.name != feature.name and f.kind == "numeric"
    )
    return bool(rx.search(rf"(?<![a-z])(?:{names})(?: at| of| is| was)? ?$", before))


def _none_of(feature: Feature, names: str, text: str) -> float | None:
    """0 for a feature said to be absent ("no ST depression", "without ST depression"),
    when 0 is one of its values on the card: not for a required feature, one whose 0 means
    "not recorded", or one whose limits leave 0 out (a heart rate)."""
    limits = feature.limits
    if feature.required or feature.zero_means_missing or limits is None or 0 not in limits:
        return None
    absent = rx.search(rf"\b(?:no|without|nil|zero|absent) {names}(?![a-z])", text)
    return 0.0 if absent else None


def _value_first(
    feature: Feature, names: str, text: str, card: DatasetCard
) -> re.Match[str] | None:
    """A value said before the feature's name ("at 190 cholesterol", "a 120 systolic"),
    when no other feature's name comes just before the number (whose value it would be)."""
    pattern = (
        rf"(?<![\w.])(\d{{1,4}}(?:\.\d{{1,3}})?)\s*{units.SAID_UNIT}? (?:of )?{names}(?![a-z])"
    )
    for found in itertools.islice(rx.finditer(pattern, text), 3):
        before = rx.split(r"[,;:]", text[max(0, found.start() - 30) : found.start()])[-1]
        if not _other_names(feature, card).search(before):
            return found
    return None


# A blood pressure said without its name: systolic/diastolic in their usual ranges.
_PRESSURE = re.compile(r"(?<![\w./-])(\d{2,3}) ?/ ?(?:[4-9]\d|1[0-4]\d)(?![\w./-])")


def _by_unit(feature: Feature, text: str, card: DatasetCard) -> re.Match[str] | None:
    """A number said with the unit only this feature has on the card ("145 bpm": the
    maximum heart rate), when no other feature's name comes just before it."""
    unit = (feature.unit or "").lower()
    if not unit or sum((f.unit or "").lower() == unit for f in card.features) > 1:
        return None
    if unit in {"years", "vessels"}:  # read by their own patterns
        return None
    pattern = rf"(?<![\w.])(\d{{1,4}}(?:\.\d{{1,3}})?) ?({re.escape(unit)})(?![a-z/])"
    for found in itertools.islice(rx.finditer(pattern, text), 3):
        before = rx.split(r"[,;:]", text[max(0, found.start() - 30) : found.start()])[-1]
        if not _other_names(feature, card).search(before) and not _GLUCOSE.search(before):
            return found
    return None


_GLUCOSE = re.compile(r"\b(?:glucose|sugar|fbs|fpg)\b")


@functools.lru_cache(maxsize=4096)
def _word_pattern(word: str, *, digits: bool) -> re.Pattern[str]:
    """A value word between word boundaries (digits too, when `digits`), compiled once: the
    card has more of them than the `re` module keeps compiled. A word of four letters or
    more may be said in the plural, of a group ("had normal ECGs", "diabetics")."""
    edge = "a-z0-9" if digits else "a-z"
    plural = "s?" if len(word) > 3 and word[-1].isalpha() and word[-1] != "s" else ""
    return re.compile(rf"(?<![{edge}]){re.escape(word)}{plural}(?![{edge}])")


# Worked out once per feature and per card (cards are immutable; every request reads them
# again): keyed by the object's id, the object kept beside so the id is never reused.
_WORDS: dict[int, tuple[Feature, list[tuple[str, Any]]]] = {}
_SHARED: dict[int, tuple[DatasetCard, dict[str, frozenset[str]]]] = {}


def _words(feature: Feature) -> list[tuple[str, Any]]:
    """A feature's value words and categories, the longest first."""
    cached = _WORDS.get(id(feature))
    if cached is None or cached[0] is not feature:
        words = dict(feature.value_words)
        for category in feature.categories or ():
            words.setdefault(category.lower(), category)
        ordered = sorted(words.items(), key=lambda item: len(item[0]), reverse=True)
        cached = _WORDS[id(feature)] = (feature, ordered)
    return cached[1]


# Between a test's name and its result: "thal normal", "thallium had come back normal",
# "ECG was normal", "thal result: normal".
_CATEGORY_LINK = (
    r"(?:\s?(?:is|was|were|be|been|had|has|came|come|comes|back|result|results|turned|out|"
    r"as|of|showed|shows|=|:)){0,4}\s*"
)


def _categorical(feature: Feature, text: str, card: DatasetCard) -> Any:
    if feature.name == "sex":
        glued = rx.search(r"\b\d{1,3}\s*(m|f)\b", text)  # "63M", "54 F"
        if glued:
            return "Male" if glued.group(1) == "m" else "Female"
    names = _synonym_pattern(feature)
    coded = _coded(feature, names, text)
    if coded is not None:
        return coded
    for word, value in _words(feature):
        if feature.name == "sex" and word in {"he", "his", "him", "she", "her"}:
            continue  # pronouns are weak evidence: see _pronoun_sex
        if _ambiguous(word, feature, card):  # e.g. "normal": say which test
            if _said_of(feature, names, word, text, card) and not _only_negated(word, text, card):
                return value
        else:
            said = _word_pattern(word, digits=True).search(text)
            if said and not _negated(text, said.start(), card):
                return value
            if said and _other_of_two(feature, value) is not None:
                return _other_of_two(feature, value)
    return None


def _coded(feature: Feature, names: str, text: str) -> str | None:
    """A category said by its number in the source data's coding, right after the feature's
    name ("cp 4", "thal=7", "restecg: 2"), and not as a count or a measure ("chest pain 2
    days", "cp 3/10")."""
    if not feature.codes:
        return None
    said = rx.search(
        rf"(?<![a-z]){names} ?(?:=|:|is|was|of|code)? ?(\d{{1,2}})(?![\d./%])"
        r"(?! ?(?:days?|weeks?|months?|years?|yrs?|hours?|hrs?|times?|mm|mg|x\b|out of|of 10))",
        text,
    )
    return feature.codes.get(int(said.group(1))) if said else None


def _only_negated(word: str, text: str, card: DatasetCard) -> bool:
    """Whether every time a value word is said, it is negated ("thal isn't normal")."""
    said = list(itertools.islice(_word_pattern(word, digits=True).finditer(text), 5))
    return bool(said) and all(_negated(text, m.start(), card) for m in said)


def category_mentions(
    feature: Feature, text: str, card: DatasetCard
) -> list[tuple[tuple[int, int], Any, bool]]:
    """Each value of a categorical feature said in `text`, in order: where, which, and
    whether it is said negated ("chest pain not asymptomatic"); a word inside a longer
    value word already found is not counted again ("anginal" in "non-anginal"), and a word
    two tests share ("normal") counts only where it is said of this one."""
    names = _synonym_pattern(feature)
    taken: list[tuple[int, int]] = []
    found: list[tuple[tuple[int, int], Any, bool]] = []
    for word, value in _words(feature):
        if _ambiguous(word, feature, card) and not _said_of(feature, names, word, text, card):
            continue
        for said in itertools.islice(_word_pattern(word, digits=True).finditer(text), 5):
            if any(start < said.end() and said.start() < end for start, end in taken):
                continue
            taken.append(said.span())
            found.append((said.span(), value, _negated(text, said.start(), card)))
    return sorted(found, key=lambda f: f[0])


def _other_of_two(feature: Feature, value: Any) -> Any:
    """A value said negated ("if he weren't male"): the other one, when the feature has
    two; else None (a negation of one of many says nothing of which: "ECG without ST-T
    abnormality" may still show hypertrophy), and the words go on being read."""
    categories = feature.categories or ()
    if len(categories) == 2 and value in categories:
        return next(c for c in categories if c != value)
    return None


def _said_of(feature: Feature, names: str, word: str, text: str, card: DatasetCard) -> bool:
    """Whether a value word two tests share ("normal") is said of this feature: after its
    name, with up to three words between that name no other feature ("thallium perfusion
    came back normal"), or just before it ("a normal nuclear scan")."""
    value = re.escape(word)
    after = rf"(?<![a-z]){names}{_CATEGORY_LINK}((?:[a-z'-]{{1,15}} ){{0,3}}?){value}(?![a-z0-9])"
    before = rf"(?<![a-z0-9]){value} ((?:[a-z'-]{{1,15}} )?){names}(?![a-z])"
    others = _other_names(feature, card)
    return any(
        not others.search(match.group(1))
        for pattern in (after, before)
        for match in itertools.islice(rx.finditer(pattern, text), 5)
    )


_OTHER_NAMES: dict[tuple[str, str], re.Pattern[str]] = {}


def _other_names(feature: Feature, card: DatasetCard) -> re.Pattern[str]:
    """Any other feature's name: a gap that holds one is about that feature."""
    key = (card.name, feature.name)
    if key not in _OTHER_NAMES:
        _OTHER_NAMES[key] = _names_but(feature, card)
    return _OTHER_NAMES[key]


def _names_but(feature: Feature, card: DatasetCard) -> re.Pattern[str]:
    names = {
        n.lower()
        for other in card.features
        if other.name != feature.name
        for n in (*other.synonyms, other.display_name)
        if len(n) > 2
    }
    ordered = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(n) for n in ordered) + r")(?![a-z])")


def _ambiguous(word: str, feature: Feature, card: DatasetCard) -> bool:
    """Whether another categorical feature has the same value word ("normal")."""
    cached = _SHARED.get(id(card))
    if cached is None or cached[0] is not card:
        shared = {
            own.name: frozenset(
                w
                for other in card.features
                if other.name != own.name and other.kind == "categorical"
                for w, _ in _words(other)
            )
            for own in card.features
        }
        cached = _SHARED[id(card)] = (card, shared)
    return word in cached[1].get(feature.name, frozenset())


_NEGATED = re.compile(
    r"(?:\b(?:not|no|never|neither|nor|without|denies|non|didnt|doesnt|dont|wasnt|isnt|werent|hasnt|"
    r"hadnt|aint|no longer|stopped|stops|quit|ceased|free of)|n't)"
    r"(?: (?P<between>[a-z]{1,8}))? ?-?$"
)


def _negated(text: str, start: int, card: DatasetCard | None = None) -> bool:
    """Whether the words just before `start` negate it ("wasn't diabetic", "non-diabetic",
    "didn't have exercise angina", "stopped having exercise angina", "no longer diabetic").
    With the card, a word between that is itself a finding
    ("no DM LVH": no diabetes, and hypertrophy) ends the negation there."""
    negation = _NEGATED.search(text[max(0, start - 20) : start])
    if negation is None:
        return False
    between = negation.group("between")
    return card is None or between is None or between not in _finding_words(card)


def _finding_words(card: DatasetCard) -> frozenset[str]:
    """The card's one-word names of findings ("dm", "lvh", "asx", "exang"): a negation
    said of one of them is said of it alone."""
    if card.name not in _FINDING_WORDS:
        _FINDING_WORDS[card.name] = frozenset(
            word
            for f in card.features
            if f.kind != "numeric" and f.name != "sex"
            for word in (*f.value_words, *f.synonyms)
            if rx.fullmatch(r"[a-z]{2,8}", word)
        )
    return _FINDING_WORDS[card.name]


_FINDING_WORDS: dict[str, frozenset[str]] = {}


def _answered(names: str, text: str) -> bool | None:
    """A yes or no said after the finding's name ("exang: yes", "fbs = 0"), or after a
    form's label that carries the line ("FBS>120: No", "fbs > 120 mg/dl yes")."""
    found = rx.search(
        rf"(?<![a-z]){names} ?(?:is|was|were|are|be|=|:|set to|became)? ?([a-z0-9+\-]+)", text
    )
    if found and found.group(1) in _YES | _NO:
        return found.group(1) in _YES
    labelled = rx.search(
        rf"(?<![a-z]){names} ?(?:>=?|over|above) ?{NUMBER}(?: ?(?:mg/dl|mmol/l))? ?[:=?-]? ?"
        # the answer ends the entry: punctuation, the end, or the next label ("restecg: lvh")
        r"(?P<answer>[a-z0-9+]+) ?(?=[,;.]|$|[a-z][a-z0-9>/ -]{0,24}:)",
        text,
    )
    if labelled and labelled.group("answer") in _YES | _NO:
        return labelled.group("answer") in _YES
    return None


def _boolean(feature: Feature, text: str) -> bool | None:
    names = _synonym_pattern(feature)
    answered = _answered(names, text)
    if answered is not None:
        return answered
    if rx.search(rf"\b(?:no|without|denies) {names}", text):
        return False
    for word, value in _words(feature):
        said = _word_pattern(word, digits=False).search(text)
        if said:
            return _finding_said(text, said, value)
    above = fasting_glucose_above(text) if feature.name == "fbs" else None
    level = above if above is not None else _level(names, text)
    if level is not None:
        return level
    named = rx.search(rf"(?<![a-z]){names}(?![a-z])", text)
    if named and rx.sub("[ -]", " ", named.group(0)) not in _LEVEL_ONLY:
        # named without a value: present ("exercise-induced angina"), unless negated
        return not _negated(text, named.start())
    return None


def _finding_said(text: str, said: re.Match[str], value: Any) -> bool:
    """A finding's word said: its value, unless the words before negate it; a finding used
    as a form's label is what follows it ("DM: no", "diabetes = yes")."""
    answer = _LABEL_ANSWER.match(text, said.end())
    if answer and value is True:
        return answer.group(1) in _YES
    return bool(value) != _negated(text, said.start()) if value else False


_LABEL_ANSWER = re.compile(
    r" ?(?:is|was|=|:) ?(yes|no|y|n|true|false|positive|negative|pos|neg|present|absent|0|1)"
    r"(?![a-z0-9])"
)

# Names of a measurement, not of a finding: said alone ("sugar"), they say nothing.
_LEVEL_ONLY = frozenset({"glucose", "sugar", "blood sugar", "blood glucose"})


def _level(names: str, text: str) -> bool | None:
    """A test said as high or normal after its name ("fasting sugar not raised": False,
    "sugar normal when fasting") or before it ("high blood sugar", "normal glucose")."""
    level = rx.search(
        rf"(?<![a-z]){names} (?:is |was |were |be |came back |comes back |looks |reads |of )?"
        r"(not )?([a-z]+(?: control\b)?)",
        text,
    )
    if level and level.group(2) in _HIGH | _NORMAL:
        return (level.group(2) in _HIGH) != bool(level.group(1))
    before = rx.search(rf"\b(not )?([a-z]+) (?:fasting )?{names}(?![a-z])", text)
    if before and before.group(2) in _HIGH | _NORMAL:
        return (before.group(2) in _HIGH) != bool(before.group(1))
    return None


# How a glucose is compared with a number: a bound above ("over", "more than", ">", "at
# least") or below ("under", "less than", "<", "at most", "not above"), before the number;
# "or less", "or more" after it. Verbs of a change may come between ("came down below").
_ABOVE = r"over|above|more than|greater than|higher than|in excess of|>=?|≥|at least|no less than"
_BELOW = (
    r"under|below|less than|lower than|beneath|<=?|≤|at most|up to|no more than|no higher than|"
    r"not (?:over|above|more than|greater than|higher than|exceeding)|at or below|within"
)
_GLUCOSE_SAID = re.compile(
    r"(?<![a-z])(?:(?:fasting )?(?:plasma |blood )?(?:glucose|sugar)(?: level)?|fbs|fpg)"
    r"(?: (?:fasting|reading|value|level))?"
    r"(?:\s*(?:of|is|was|were|=|:|at|came|comes|come|went|goes|go|got|gets|get|fell|falls|"
    r"dropped|drops|rose|rises|kept|brought|down|up|back|now|to|still|well|stays|stayed)){0,3}\s*"
    rf"(?P<bound>{_ABOVE}|{_BELOW})?\s*(?P<value>{NUMBER})\s*(?P<unit>mmol/l|mmol|mg/dl)?"
    r"(?: (?P<after>or (?:less|lower|under|below|more|higher|over|above)))?"
)


def fasting_glucose_above(text: str) -> bool | None:
    """Whether a (fasting) glucose said as a number, or bounded by one, is above the card's
    120 mg/dl line (at or below it: False): "fasting glucose 7.8 mmol/l" (a value under 30
    is read as mmol/l), "fasting sugar over 160", "glucose less than 110", "FBS not above
    120", "blood sugar of 120 or less", "glucose >150 fasting". A bound that leaves both
    sides open ("over 100") is read as its number."""
    glucose = _GLUCOSE_SAID.search(text)
    if glucose is None or glucose.group("value") in NUMBER_WORDS:
        return None
    value, unit = number(glucose.group("value")), glucose.group("unit")
    if unit in {"mmol/l", "mmol"} or (unit is None and value < 30):
        value *= units.GLUCOSE_MMOL_TO_MG_DL
    bound, after = glucose.group("bound") or "", glucose.group("after") or ""
    above = bool(rx.fullmatch(_ABOVE, bound)) or after.endswith(("more", "higher", "over", "above"))
    # over the line, or over a number at the line; at, under or "at most" a number at or
    # under the line is at or under it (a bound on the far side is read as its number)
    return value >= 120 if above else value > 120


def _pronoun_sex(text: str) -> str | None:
    if rx.search(r"\b(he|his|him)\b", text):
        return "Male"
    if rx.search(r"\b(she|her)\b", text):
        return "Female"
    return None


def parse_patient(text: str, card: DatasetCard, *, pronouns: bool = True) -> dict[str, Any]:
    """Feature values named in `text` (lower case), in the card's units and spellings."""
    values: dict[str, Any] = {}
    for feature in card.features:
        if feature.kind == "numeric":
            value: Any = _numeric(feature, text, card)
            if value is not None and feature.integer:
                value = int(value)
        elif feature.kind == "boolean":
            value = _boolean(feature, text)
        else:
            value = _categorical(feature, text, card)
        if value is not None:
            values[feature.name] = value
    if pronouns and "sex" in card.feature_names and "sex" not in values:
        sex = _pronoun_sex(text)
        if sex is not None:
            values["sex"] = sex
    return values


def missing_required(values: dict[str, Any], card: DatasetCard) -> list[Feature]:
    return [f for f in card.features if f.required and f.name not in values]
