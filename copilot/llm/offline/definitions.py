"""Questions about what one of the card's inputs is: its meaning, its unit, how it is coded
or which values it may take ("which unit is ST depression recorded in?", "thal - what are
the possible values?", "what do the numbers in ca stand for", "is cholesterol in mg/dl or
mmol/l?", "whats restecg"), read as define_feature.

A clause is such a question when

- it names exactly one of the card's features: by its name, display name or a synonym
  (quoted or not), or by a word for one of its categories ("what does LVH mean");
- it asks about the input itself, by one of these word classes:
  meaning  "mean(s)", "meant by", "meaning", "stand(s) for", "definition", "define",
           "refer(s) to", "short for", "abbreviation";
  unit     "unit(s)", "measured (in)", "recorded in", "expressed in", "given in", "scale",
           or two units said as alternatives ("mg/dl or mmol/l");
  coding   "coded", "encoded", "coding", "the numbers/values/codes in", possible, allowed or
           valid values, categories, levels or options;
  "the difference between", "what does ... indicate/measure";
  or it is nothing but a question word and the feature ("what is thal?", "whats restecg",
  "tell me about the ca variable");
- it says no value (no digit: "what if his chol were 200" is a patient), does not ask what
  the model takes ("what units does it expect cholesterol in?": model_info) and nothing of a
  patient, a risk, the model's use of the input, a group or a site, or a statistic of the
  data ("his", "risk", "important", "women", "at Cleveland", "average", "how common").

Also read as such a question (round X):

- the input's label alone, as a column header or a form prints it ("trestbps?", "oldpeak
  (mm)", "FBS > 120 mg/dl - meaning?"): its names, unit and the words of its display name
  and description, nothing else (not after a patient was scored: then it is their value);
- how it is stored, two of the card's kinds said as alternatives ("a boolean or a number?");
- a value of it read off one's own report and asked about ("my slope was flat, is flat
  bad?", "trestbps 150, what is that number?");
- the first of two questions, when the second asks more of the same input ("what is oldpeak
  and does it matter much?").

"mean" said of a statistic ("the mean cholesterol", "mean of chol") is no meaning word.
Every pattern is alternatives between word boundaries: linear in the text.
"""

from __future__ import annotations

import re

from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import known_words, sites_in
from copilot.units import CONVERSIONS
from model_service.cards import DatasetCard, Feature

_MEANING = re.compile(
    r"\bmean(?:s|t)?\b(?! (?:of|value|values|level|levels|average)\b)|\bmeaning\b|"
    r"\bstands? for\b|\bstanding for\b|\bshort for\b|\bdefinitions?\b|\bdefined?\b|"
    r"\brefers? to\b|\babbreviation\b|\bacronym\b|\bdescription of\b|\bdifference between\b|"
    # an adverb may follow the question word ("what exactly does oldpeak measure?")
    r"\bwhat (?:exactly |actually |really |precisely )?(?:does|do|is|are) [a-z' ]{0,30}"
    r"(?:indicate|signify|measure|capture|represent|"
    r"describe|tell us|tell me|tell you|imply|say)\b|"
    # what a value of it amounts to ("what counts as a reversable defect in thal?")
    r"\bwhat (?:counts|qualifies|passes) as\b|\bwhat is (?:considered|classed as|called)\b|"
    r"\bunderstand\b|"
    # said in other words ("oldpeak, in plain English?", "explain thal in simple terms")
    r"\bin (?:plain|simple|everyday|lay|layman's|laymans|layman|non-technical|normal) "
    r"(?:english|terms|words|language)\b|\bfor (?:a )?(?:layman|lay person|non-specialist)\b|"
    # the line a yes/no input is drawn at ("the cut-off used for fasting blood sugar")
    r"\b(?:cut-?offs?|cut points?|thresholds?) (?:is |are |was )?(?:used |applied |set )?"
    r"(?:for|of|on|in)\b"
)

_UNIT = re.compile(
    r"\bunits?\b|\bmeasured\b|\bmeasurement\b|\b(?:recorded|expressed|given|reported|stored) "
    r"(?:in|as)\b|\bscale\b|\bin what\b"
)

_CODING = re.compile(
    r"\b(?:en)?cod(?:ed|ing|es)\b|"
    r"\b(?:possible|allowed|valid|permitted|permissible|acceptable|legal) (?:values?|categories|"
    r"options|levels|entries|answers|range|ranges|inputs)\b|"
    r"\b(?:values?|categories|options|levels) (?:are |is )?(?:allowed|possible|permitted|valid)\b|"
    r"\bthe (?:numbers|values|codes|categories|levels|options) (?:in|of|for)\b|"
    r"\b(?:what|which) (?:values|categories|options|levels|codes)\b|\bcan (?:it|this|that) take\b|"
    r"\bhow many (?:categories|values|levels|options|codes|kinds|types)\b|"
    # the definition's own fields: its limits and the range a counterfactual may move it in
    r"\b(?:limits?|actionable(?: range)?|plausible range)\b"
)

# How an input is stored, in the card's kinds (numeric, categorical, boolean) and the
# everyday words for them; two said as alternatives ask its coding ("is fbs a boolean or a
# number?", "is ca a count or a category?"), whatever else those words mean ("count").
_KINDS: dict[str, tuple[str, ...]] = {
    "numeric": ("number", "numeric", "numerical", "continuous", "count", "integer", "float"),
    "categorical": ("category", "categorical", "categories", "factor", "string", "text"),
    "boolean": ("boolean", "bool", "binary", "flag", "yes/no", "true/false"),
}
_KIND = "|".join(
    sorted((re.escape(w) for ws in _KINDS.values() for w in ws), key=len, reverse=True)
)
_KIND_ASKED = re.compile(
    rf"(?<![a-z])(?:an? )?(?:{_KIND}) (?:or|vs|versus) (?:an? )?(?:{_KIND})(?![a-z/])"
)

# A request that is about a patient, a risk, the model's use of an input or the data's
# numbers: not about what the input is.
_NOT_ABOUT_THE_INPUT = re.compile(
    r"\d|\b(?:his|her|their|he|she|him|patient's|my patient|this patient)\b|"
    r"\b(?:risk|predict\w*|probability|chance|odds|score)\b|"
    r"\b(?:important|importance|influence\w*|effect|impact|affects?|matters?|weighs?|"
    r"drivers?|driving|contribut\w*|rank\w*)\b|"
    r"\b(?:average|median|distribution|missing|count|percent\w*|share|proportion|"
    r"how many(?! (?:categories|values|levels|options|codes|kinds|types))|"
    r"histogram|spread|common\w*|usual\w*|typical\w*|frequent\w*|seen|observed|among|"
    r"patients|women|men|people)\b|\b(?:what if|suppose|imagine)\b|"
    r"\b(?:drift\w*|shift\w*)\b|"
    # what the model takes, not what the input is ("what units does it expect chol in?")
    r"\b(?:it|model|classifier) (?:expects?|accepts?|takes?|needs?|wants?|uses?)\b|"
    r"\bdoes (?:it|the model|the classifier) (?:expect|accept|take|need|want|use)\b"
)

# Where a nurse or a family reads the input ("what does the old peak thing mean on his
# chart", "the fasting sugar box on her form"): the page it is written on, not the patient.
_ON_THE_PAGE = re.compile(
    r"\b(?:on|in|from) (?:his|her|their|the|this|that|my|the patient's) (?:chart|notes?|form|"
    r"records?|report|sheet|letter|file|results?|printout|paperwork|discharge summary)\b"
)

# A value of the input read off one's own report, then asked about ("my report shows
# trestbps 150, what is that number?", "my slope was flat, is flat bad?"): what the value
# means is the input's definition. The value is a number right after the input's name or
# one of its category words.
_VALUE_SAID = re.compile(r" ?(?:==?|:|is|was|of|at)? ?\d{1,3}(?:\.\d{1,2})?(?![\d.])")
_VALUE_ASKED = re.compile(
    r"\bwhat (?:is|does|do) (?:that|this|it)(?: (?:number|value|result|reading|score))?"
    r"(?: mean| tell me| say)?\b|"
    r"\b(?:is|was|are)(?: (?:that|this|it|[a-z-]{3,20}))? (?:bad|good|normal|abnormal|high|low|ok|"
    r"okay|fine|worrying|concerning|serious|dangerous)\b"
)

# Nothing but a question word around the feature: "what is thal?", "whats restecg",
# "and ca?" is not one (no question word).
_ASK = (
    r"(?:so |ok |okay |and |sorry,? |hi,? )?(?:(?:what|whats|what's) ?(?:is|are|'s)? ?|"
    r"(?:(?:please |can you |could you )?(?:explain|describe|tell me about|define) |"
    r"(?:some )?(?:info|information|details) (?:on|about) ))"
    r"(?:exactly |again )?(?:the |this |that |a |an )?(?:term |feature |column |variable |field |"
    r"input |word |abbreviation )?"
)
_AFTER = (
    r"(?: (?:feature|column|variable|field|input|term|thing))?"
    r"(?: (?:exactly|again|here|then|please|to me|for me|briefly|quickly|"
    r"(?:in|of) (?:this|the) (?:data|dataset|data set|card|model|table)))*"
)

# The feature named as one of the data's columns ("the trestbps column", "the ca variable",
# "field thal"): with a question word anywhere, a question about the input, whatever the rest
# says ("the trestbps column, what is that exactly?").
_AS_A_COLUMN = r"(?:feature|column|variable|field|attribute|input|predictor)"
_QUESTION = re.compile(
    r"\b(?:what|whats|which|how|explain|describe|tell me|define|clarify)\b|\?\s*$"
)


# The feature said first, then asked about by a pronoun ("ca - what is it?", "thal: what's
# that?"), or named inside a question about what it is ("remind me what trestbps is", "I
# don't know what thal is").
_WHAT_IT_IS = r"\W{0,3}what(?:'s| is| does| do)? (?:it|that|this)(?: mean| stand for)?"
_WHAT_IS_SAID = r"\bwhat (?:the )?(?:term |feature |column |variable |field )?"
_IS_AFTER = r" (?:is|means|stands for|refers to)(?: exactly| again)?\W*$"

# A code said with the feature's name ("what does thal = 7 mean", "restecg=2"): a question
# about its coding, not a patient's value.
_CODE = re.compile(r" ?(?:==?|is|of) ?\d{1,2}(?![\d.])")


# The question's own verb is a word, never a typo ("clarify" is not "classify").
known_words("clarify")


def _units_said(card: DatasetCard) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Two units said as alternatives ("mg/dl or mmol/l", "mm or mv"), and one unit asked
    about ("is oldpeak in mm?", "is cholesterol recorded in mmol/l here?"): the card's units
    and the spellings copilot.units converts."""
    words = {unit for _, unit in CONVERSIONS} | {f.unit.lower() for f in card.features if f.unit}
    unit = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return (
        re.compile(rf"(?<![a-z])(?:{unit}) or (?:{unit})(?![a-z])"),
        re.compile(rf"^\W*(?:is|are|was) .{{0,40}}\bin (?:{unit})(?![a-z])"),
    )


def _words(feature: Feature, card: DatasetCard) -> list[str]:
    """A feature's names, and the words for its categories that name no other feature
    (sex's words are pronouns and nouns of people: never a question about the input)."""
    names = {feature.name.lower(), feature.display_name.lower(), *feature.synonyms}
    if feature.name != "sex":
        shared = {
            word
            for other in card.features
            if other.name != feature.name
            for word in other.value_words
        }
        names |= {w for w in feature.value_words if len(w) > 2 and w not in shared}
    return [w for w in names if len(w) > 1]


_Patterns = tuple[re.Pattern[str], dict[str, str], re.Pattern[str], re.Pattern[str]]
_PATTERNS: dict[str, _Patterns] = {}


def _patterns(card: DatasetCard) -> _Patterns:
    if card.name not in _PATTERNS:
        owner = {w: f.name for f in card.features for w in _words(f, card)}
        alternatives = "|".join(re.escape(w) for w in sorted(owner, key=len, reverse=True))
        mention = re.compile(rf"(?<![a-z])['\"]?({alternatives})['\"]?(?![a-z])")
        _PATTERNS[card.name] = (mention, owner, *_units_said(card))
    return _PATTERNS[card.name]


# A question about what one input is fits in a sentence or two.
_LONGEST = 300


def defined_feature(text: str, card: DatasetCard, *, labels: bool = True) -> str | None:
    """The card name of the feature whose meaning, unit or coding `text` (a normalised
    clause) asks about; None when it asks something else. `labels`: whether a bare label
    ("cholesterol?") is a definition; after a patient was scored it is about their value."""
    if len(text) > _LONGEST:
        return None
    return _asked_about(text, card, labels) or _first_of_two(text, card, labels)


def _asked_about(text: str, card: DatasetCard, labels: bool) -> str | None:
    """The feature one question asks about (see the module's docstring)."""
    mention, owner, units_said, unit_asked = _patterns(card)
    found = list(mention.finditer(text))
    features = {owner[m.group(1)] for m in found}
    if len(features) != 1:
        return None
    feature = features.pop()
    first = found[0]
    if rx.search(r"\bmean ?$", text[: first.start()]):
        return None  # "the mean cholesterol": a statistic
    if labels and _label_only(text, card.feature(feature), found):
        return feature
    rest = _ON_THE_PAGE.sub(" ", text[: first.start()] + " " + text[first.end() :])
    code = _CODE.match(text, first.end())
    if code and _MEANING.search(rest):
        rest = text[: first.start()] + " " + text[code.end() :]
    valued = _value_asked(text, card.feature(feature), found)
    if valued is not None:
        rest = valued
    kind = _KIND_ASKED.search(rest)
    if kind:
        rest = rest[: kind.start()] + " " + rest[kind.end() :]
    if _NOT_ABOUT_THE_INPUT.search(rest) or sites_in(text, card):
        return None
    said = re.escape(first.group(1))
    column = rx.search(
        rf"\b{_AS_A_COLUMN} ['\"]?{re.escape(first.group(1))}\b|"
        rf"{re.escape(first.group(1))}['\"]? {_AS_A_COLUMN}\b",
        text,
    )
    asked = (
        (column and _QUESTION.search(rest))
        or valued is not None
        or kind
        or _MEANING.search(rest)
        or _UNIT.search(rest)
        or _CODING.search(rest)
        or units_said.search(text)
        or unit_asked.search(rest)
        or rx.fullmatch(rf"\W*{_ASK}['\"]?{said}['\"]?{_AFTER}\W*", text)
        or rx.fullmatch(rf"\W*(?:the )?['\"]?{said}['\"]?{_AFTER}{_WHAT_IT_IS}{_AFTER}\W*", text)
        or rx.search(rf"{_WHAT_IS_SAID}['\"]?{said}['\"]?{_IS_AFTER}", text)
    )
    return feature if asked else None


# Words around a label that ask nothing else ("oldpeak (mm)", "age: in years?").
_LABEL_FILLERS = frozenset("the of in a an by meaning definition def".split())


def _label_only(text: str, feature: Feature, found: list[re.Match[str]]) -> bool:
    """Whether the clause is nothing but the input's label, as a column header or a form
    prints it ("trestbps?", "oldpeak (mm)", "FBS > 120 mg/dl - meaning?", "Slope of peak
    exercise ST segment?"): its names, its unit and the words of its display name and
    description. A category word is a value ("cp asymptomatic" answers a question), and a
    number is the label's only when its display name says it ("> 120 mg/dl")."""
    names = {feature.name.lower(), feature.display_name.lower(), *feature.synonyms}
    if any(m.group(1) not in names for m in found):
        return False
    rest = text
    for m in reversed(found):
        rest = rest[: m.start()] + " " + rest[m.end() :]
    described = f"{feature.description} {feature.unit or ''}".lower()
    own = set(rx.findall(r"[a-z][a-z/]*", described)) | set(
        rx.findall(r"[a-z0-9][a-z0-9/]*", feature.display_name.lower())
    )
    words = rx.findall(r"[a-z0-9][a-z0-9/]*", rest)
    return all(w in own or w in _LABEL_FILLERS for w in words)


def _value_asked(text: str, feature: Feature, found: list[re.Match[str]]) -> str | None:
    """The clause without the value, when it says a value of the input and asks what it
    means ("my report shows trestbps 150, what is that number?", "my slope was flat, is
    flat bad?"); None otherwise."""
    first = found[0]
    number = _VALUE_SAID.match(text, first.end())
    category = any(m.group(1) in feature.value_words for m in found)
    if not (number or category):
        return None
    end = number.end() if number else first.end()
    rest = " ".join(_ON_THE_PAGE.sub(" ", text[: first.start()] + " " + text[end:]).split())
    return rest if _VALUE_ASKED.search(rest) else None


# Two questions in one message ("what is oldpeak and does it matter much?", "age: in years?
# and is there a max?"): the joints between them.
_TWO_QUESTIONS = re.compile(r"(?:\?|,)? (?:and|also|plus) |\? ")
_OF_A_PATIENT = re.compile(r"\d|\b(?:his|her|their|he|she|him|patient's|my patient|this patient)\b")


def _first_of_two(text: str, card: DatasetCard, labels: bool) -> str | None:
    """The input the first of two questions asks about, when the second asks more of the
    same input (no other input, no patient): the definition answers what it is first."""
    mention, owner, _, _ = _patterns(card)
    for joint in _TWO_QUESTIONS.finditer(text):
        feature = _asked_about(text[: joint.start()], card, labels)
        second = text[joint.end() :]
        if feature is None or _OF_A_PATIENT.search(second):
            continue
        if {owner[m.group(1)] for m in mention.finditer(second)} <= {feature}:
            return feature
    return None
