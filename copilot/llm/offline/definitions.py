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
    r"\bwhat (?:does|do|is|are) [a-z' ]{0,30}(?:indicate|signify|measure|capture|represent|"
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


def defined_feature(text: str, card: DatasetCard) -> str | None:
    """The card name of the feature whose meaning, unit or coding `text` (a normalised
    clause) asks about; None when it asks something else."""
    if len(text) > _LONGEST:
        return None
    mention, owner, units_said, unit_asked = _patterns(card)
    found = list(mention.finditer(text))
    features = {owner[m.group(1)] for m in found}
    if len(features) != 1:
        return None
    feature = features.pop()
    first = found[0]
    if rx.search(r"\bmean ?$", text[: first.start()]):
        return None  # "the mean cholesterol": a statistic
    rest = _ON_THE_PAGE.sub(" ", text[: first.start()] + " " + text[first.end() :])
    code = _CODE.match(text, first.end())
    if code and _MEANING.search(rest):
        rest = text[: first.start()] + " " + text[code.end() :]
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
