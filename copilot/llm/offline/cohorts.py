"""Questions about groups of patients and the data, read into the cohort tools' calls.

A cohort is read from the words the card gives its features: "women" (sex), a site's
name, "over 60" (age when no other feature is named before it), "chol >= 240",
"oldpeak > 2", "between 40 and 60", and the categorical and yes/no values a patient's
description would use ("exercise angina", "typical angina", "diabetics"). The request
then picks the tool:

   counterfactual        what would bring his risk under the threshold (the last prediction)
   cohort_what_if        what if everyone's cholesterol were 20 lower
   show_rows             show row 12, rows 3 and 7
   define_feature        what does oldpeak mean
   model_mistakes        where does it make mistakes, false negatives among women
   feature_interactions  which features interact
   feature_importance    most important features (for women)
   model_performance     how accurate is the model on women (a cohort named)
   describe_data         women over 60 at Hungary, how many diabetics have exercise angina

A question about one patient (a pronoun, "a 60 year old woman") is left to the other frames.
"""

from __future__ import annotations

import re
from typing import Any

from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import NUMBER, number, sites_in
from model_service.cards import DatasetCard, Feature

ToolCall = tuple[str, dict[str, Any]]

_FEMALE = re.compile(r"\b(?:women|woman|females?|ladies|girls)\b")
_MALE = re.compile(r"\b(?:men|man|males?|gentlemen|boys)\b")
_GROUP = re.compile(
    r"\b(?:patients|people|women|men|males|females|persons|individuals|cases|cohort|"
    r"population|group|subgroup|everyone|everybody|those|diabetics|rows)\b"
)
_ONE_PATIENT = re.compile(
    r"\b(?:he|his|him|she|her|this patient|the patient|that patient|this one)\b|"
    r"\b(?:a|an|one|this|that|the|my) (?:\d{1,3} ?(?:yo|y/o|year old|years old|-year-old) )?"
    r"(?:man|woman|patient|gentleman|lady|male|female|guy|person)\b"
    # "the female patients": an adjective of a group, not one patient
    r"(?! (?:patients|people|cases|persons|individuals|subjects|population|cohort))|"
    r"\b\d{1,3} ?(?:yo|y/o)\b"
)
_EVERYONE = re.compile(
    r"\b(?:everyone|everybody|all (?:the )?patients|every patient|all of them|the whole "
    r"cohort|everyone's|everybody's|all patients'|if all)\b"
)

_ABOVE = (
    r"(?:>=|>|=>|over|above|more than|greater than|higher than|older than|at least|" r"exceeding)"
)
_BELOW = r"(?:<=|<|=<|under|below|less than|lower than|younger than|at most)"
_OPS = {
    ">": ">",
    "over": ">",
    "above": ">",
    "more than": ">",
    "greater than": ">",
    "higher than": ">",
    "older than": ">",
    "exceeding": ">",
    ">=": ">=",
    "=>": ">=",
    "at least": ">=",
    "<": "<",
    "under": "<",
    "below": "<",
    "less than": "<",
    "lower than": "<",
    "younger than": "<",
    "<=": "<=",
    "=<": "<=",
    "at most": "<=",
}
_COMPARISON = re.compile(rf"({_ABOVE}|{_BELOW}) ?{NUMBER}")
_BETWEEN = re.compile(rf"between {NUMBER} and {NUMBER}")

_COUNTERFACTUAL = re.compile(
    r"\bcounterfactual|\b(?:bring|get|push|take|drop|lower|reduce)s? (?:his|her|their|the|"
    r"this|that|its) (?:patient's )?risk (?:down )?(?:under|below|beneath)\b|"
    r"\bwhat would (?:it )?take (?:for (?:him|her|them) )?to (?:get|go|fall|drop) "
    r"(?:under|below)\b|"
    r"\b(?:smallest|minimal|least) change\b|"
    # "the least he'd have to change to drop below the cut-off"
    r"\b(?:least|smallest|minimal|minimum|fewest)\b[a-z' ]{0,30}\bchange|"
    r"\b(?:drop|get|fall|go|come|bring [a-z]{2,4})(?: [a-z']{1,12}){0,2} (?:below|under|beneath)"
    r" (?:the )?(?:cut-?off|threshold|line|decision threshold)\b"
)
_ROWS = re.compile(
    r"\b(?:rows?|records?|entr(?:y|ies)|cases?)(?: (?:number|numbers|no\.?|id|ids))? #?"
    r"(\d{1,4}(?:(?:, ?| and | & )#?\d{1,4}){0,19})\b"
)
_DEFINE = re.compile(
    r"\bwhat (?:does|do) (?:the )?(?:feature |column |variable )?['\"]?([a-z][a-z ./>-]{0,40}?)"
    r"['\"]? (?:mean|stand for|measure|refer to)\b|\bdefin(?:e|ition of) (?:the )?"
    r"(?:feature |column |variable )?([a-z][a-z ./>-]{0,40})$|\bmeaning of (?:the )?"
    r"([a-z][a-z ./>-]{0,40})$|\bwhat is (?:the feature |the column |the variable )"
    r"([a-z][a-z ./>-]{0,40})$|"
    # "what is "ca" exactly?", "what's thal again?": a card's name, checked by the caller
    r"\bwhat(?: is|'s| are) (?:the )?['\"]?([a-z][a-z ./>-]{0,30}?)['\"]?"
    r"(?: exactly| again| here| in (?:this|the) (?:data|dataset))?\W*$"
)
_MISTAKES = re.compile(
    r"\bmistakes?\b|\berrors?\b|\bwrong\b|\bmisclassif[a-z]*|\bfalse (?:negative|positive)s?\b|"
    r"\bmiss(?:es|ed)?\b|\bfalse alarms?\b|\bget(?:s)? wrong\b"
)
_INTERACTIONS = re.compile(
    r"\binteract(?:s|ion|ions|ing)?\b|\bwork(?:s|ing)? together\b|\bpairs? of features\b|"
    r"\bfeature pairs?\b|\bcombinations? of features\b|\bjointly\b|\bin combination\b"
)
_IMPORTANCE = re.compile(
    r"\b(?:most |more |least )?important features?\b|\bfeature importances?\b|"
    r"\bimportance of (?:the )?features\b|\bwhich features? (?:matters?|counts?) (?:the )?most\b|"
    r"\btop \d{1,2} features\b|\btop features\b|\bglobal importance\b|"
    r"\bwhat does the model (?:rely|depend|lean) on\b|\bmost influential features?\b|"
    r"\bpay[a-z]* (?:the )?most attention\b|\bwhat does (?:the model|it) (?:care|focus) "
    r"(?:about|on) most\b|\b(?:look|looks) at most\b"
)
_ACCURACY = re.compile(
    r"\baccura(?:te|cy)\b|\bauc\b|\broc\b|\bsensitiv[a-z]*|\bspecificity\b|\bperform[a-z]*|"
    r"\bhow (?:well|good)\b|\bcalibrat[a-z]*|\bheld[- ]out\b|\bconfidence interval|"
    r"\bany good\b|\breliab[a-z]*|\btrustworth[a-z]*|\bhow right\b|\bget(?:s)? right\b"
)
_DATA_QUESTION = re.compile(
    r"\bhow many\b|\baverage\b|\bmean\b|\bmedian\b|\bstatistics\b|\bstats\b|\bdescribe\b|"
    r"\bsummar[a-z]*|\bproportion\b|\bpercentage\b|\bshare\b|\bbalance\b|\bdistribution\b|"
    r"\brange\b|\bmissing\b|\brisk\b|\bcount\b|\bshow\b|\blist\b"
)
_DATA_OVERALL = re.compile(
    r"\b(?:label|class|outcome) balance\b|\bdescribe the (?:data|dataset)\b|\b(?:data|dataset) "
    r"(?:statistics|stats|summary)\b|\bsummar[a-z]* (?:of )?the (?:data|dataset)\b|"
    r"\bhow many (?:patients|rows) (?:have|had|with) (?:heart disease|the outcome|disease)\b"
)
_SITE_STATUS = re.compile(
    r"\b(?:mov[a-z]*|drift[a-z]*|shift[a-z]*|odd|weird|doing|chang[a-z]*|different|ok|okay|"
    r"healthy|status|going on|trained on|anything|lately|recent[a-z]*|incoming|new)\b"
)
_CHANGE = re.compile(
    rf"{NUMBER} ?(?:[a-z/]{{1,6}} )?(lower|less|higher|more|down|up|fewer)\b|"
    rf"\b(lower|reduce|cut|drop|decrease|raise|increase)(?:d|s)? (?:by )?{NUMBER}"
)


def _names(feature: Feature) -> list[str]:
    words = {feature.name.lower(), feature.display_name.lower(), *feature.synonyms}
    return sorted((w for w in words if len(w) > 1), key=len, reverse=True)


def _named(feature: Feature, text: str) -> re.Match[str] | None:
    pattern = "|".join(re.escape(w) for w in _names(feature))
    return re.search(rf"(?<![a-z])(?:{pattern})(?![a-z])", text)


def _numeric_conditions(text: str, card: DatasetCard) -> tuple[list[dict[str, Any]], list[str]]:
    """Comparisons on numeric features: (conditions, features named without a comparison)."""
    conditions: list[dict[str, Any]] = []
    named_only: list[str] = []
    claimed: list[tuple[int, int]] = []
    for feature in card.features:
        if feature.kind != "numeric":
            continue
        names = "|".join(re.escape(w) for w in _names(feature))
        near = re.compile(
            rf"(?<![a-z])(?:{names})(?![a-z])(?: (?:is|was|of|level|levels|values?))? ?"
            rf"(?:({_ABOVE}|{_BELOW}) ?{NUMBER}|between {NUMBER} and {NUMBER})"
        )
        found = near.search(text)
        if found:
            claimed.append(found.span())
            if found.group(1):
                conditions.append(
                    {
                        "feature": feature.name,
                        "op": _OPS[found.group(1)],
                        "value": number(found.group(2)),
                    }
                )
            else:
                low, high = number(found.group(3)), number(found.group(4))
                conditions += [
                    {"feature": feature.name, "op": ">=", "value": low},
                    {"feature": feature.name, "op": "<=", "value": high},
                ]
        elif feature.name != "age" and _named(feature, text):
            named_only.append(feature.name)
    if not any(c["feature"] == "age" for c in conditions) and "age" in card.feature_names:
        for match in _COMPARISON.finditer(text):  # "women over 60": age, when nothing else
            if any(start <= match.start() < end for start, end in claimed):
                continue
            value = number(match.group(2))
            if 1 <= value <= 120 and not re.match(r" ?(?:mg|mmhg|bpm|mm\b|%)", text[match.end() :]):
                conditions.append({"feature": "age", "op": _OPS[match.group(1)], "value": value})
                break
        between = _BETWEEN.search(text)
        aged = re.search(r"\b(?:aged|age|ages|years?)\b", text)
        if between and aged and not any(s <= between.start() < e for s, e in claimed):
            conditions += [
                {"feature": "age", "op": ">=", "value": number(between.group(1))},
                {"feature": "age", "op": "<=", "value": number(between.group(2))},
            ]
    return conditions, named_only


def conditions_in(text: str, card: DatasetCard) -> tuple[list[dict[str, Any]], list[str]]:
    """The cohort a question names, and the features it names without a condition."""
    conditions, named_only = _numeric_conditions(text, card)
    names = set(card.feature_names)
    if "sex" in names:
        female, male = _FEMALE.search(text), _MALE.search(text)
        if female and not male:
            conditions.insert(0, {"feature": "sex", "op": "==", "value": "Female"})
        elif male and not female:
            conditions.insert(0, {"feature": "sex", "op": "==", "value": "Male"})
    values = parse_patient(text, card, pronouns=False)
    for feature in card.features:  # plural value words name a group: "diabetics"
        for word, value in feature.value_words.items():
            if feature.name not in values and re.search(rf"(?<![a-z]){re.escape(word)}s\b", text):
                values[feature.name] = value
    for feature in card.features:
        if feature.kind == "numeric" or feature.name == "sex" or feature.name not in values:
            continue
        conditions.append({"feature": feature.name, "op": "==", "value": values[feature.name]})
    if card.site_column:
        found = sites_in(text, card)
        if len(found) == 1:
            conditions.append({"feature": "site", "op": "==", "value": found[0]})
        elif found:
            conditions.append({"feature": "site", "op": "in", "value": found})
    return conditions, named_only


def _change(text: str, card: DatasetCard) -> list[dict[str, Any]]:
    """ "cholesterol were 20 lower", "lower everyone's bp by 10"."""
    for feature in card.features:
        if feature.kind != "numeric":
            continue
        named = _named(feature, text)
        if named is None:
            continue
        found = _CHANGE.search(text, named.start()) or _CHANGE.search(text)
        if found is None:
            continue
        if found.group(2):
            amount, down = (
                number(found.group(1)),
                found.group(2) in {"lower", "less", "down", "fewer"},
            )
        else:
            amount, down = (
                number(found.group(4)),
                found.group(3) in {"lower", "reduce", "cut", "drop", "decrease"},
            )
        return [{"feature": feature.name, "op": "add", "value": -amount if down else amount}]
    return []


def _without_feature_names(text: str, card: DatasetCard) -> str:
    """The text with the card's feature names blanked ("radius error" is no error)."""
    for feature in card.features:
        for word in _names(feature):
            text = re.sub(rf"(?<![a-z]){re.escape(word)}(?![a-z])", " ", text)
    return text


def _where(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"where": conditions} if conditions else {}


def _top(text: str) -> int | None:
    found = re.search(r"\btop (\d{1,2})\b|\b(\d{1,2}) most\b", text)
    return int(found.group(1) or found.group(2)) if found else None


def _counterfactual(text: str, prediction_id: str | None) -> ToolCall | None:
    if not _COUNTERFACTUAL.search(text):
        return None
    rows = _ROWS.search(text)
    if rows:
        return "counterfactual", {"row_id": int(re.findall(r"\d{1,4}", rows.group(1))[0])}
    return ("counterfactual", {"prediction_id": prediction_id}) if prediction_id else None


def _cohort_what_if(text: str, card: DatasetCard) -> ToolCall | None:
    everyone = _EVERYONE.search(text)
    if not (everyone or (_GROUP.search(text) and "what if" in text)):
        return None
    changes = _change(text, card)
    if not changes:
        return None
    conditions, _ = conditions_in(text, card)
    kept = [c for c in conditions if c["feature"] != changes[0]["feature"]]
    return "cohort_what_if", {**_where(kept), "changes": changes}


def _rows_or_definition(text: str, card: DatasetCard) -> ToolCall | None:
    rows = _ROWS.search(text)
    if rows and re.search(r"\b(?:show|see|display|get|list|give|what|which|row)\b", text):
        return "show_rows", {"row_ids": [int(n) for n in re.findall(r"\d{1,4}", rows.group(1))]}
    defined = _DEFINE.search(text)
    if defined:
        word = next(g for g in defined.groups() if g).strip(" ?.")
        for feature in card.features:
            if word in _names(feature):
                return "define_feature", {"feature": feature.name}
    return None


def _about_the_model(text: str, conditions: list[dict[str, Any]]) -> ToolCall | None:
    """Mistakes, interactions, importance, or performance on a named cohort."""
    where = _where(conditions)
    top = _top(text)
    if _MISTAKES.search(text) and (conditions or re.search(r"\b(?:model|it|we|predict)", text)):
        kind = "both"
        if re.search(r"\bfalse negatives?\b|\bmiss(?:es|ed)?\b", text):
            kind = "false_negative"
        elif re.search(r"\bfalse (?:positives?|alarms?)\b", text):
            kind = "false_positive"
        return "model_mistakes", {**where, "kind": kind}
    if _INTERACTIONS.search(text):
        return "feature_interactions", {**where, **({"top": top} if top else {})}
    if _IMPORTANCE.search(text):
        return "feature_importance", {**where, **({"top": top} if top else {})}
    if _ACCURACY.search(text) and conditions:
        return "model_performance", where
    return None


def cohort_request(text: str, card: DatasetCard, prediction_id: str | None) -> ToolCall | None:
    """The cohort tool a clause asks for, with its arguments; None when it is not one."""
    found = (
        _counterfactual(text, prediction_id)
        or _cohort_what_if(text, card)
        or _rows_or_definition(text, card)
    )
    if found or _ONE_PATIENT.search(text):
        return found
    conditions, named_only = conditions_in(text, card)
    stated = [n for n in parse_patient(text, card) if card.feature(n).kind == "numeric"]
    if len([n for n in stated if not any(c["feature"] == n for c in conditions)]) >= 2:
        return None  # "bp 145, chol 233": one patient's values, not a group
    found = _about_the_model(_without_feature_names(text, card), conditions)
    if found:
        return found
    if _DATA_OVERALL.search(text):
        features = {"features": named_only} if named_only else {}
        return "describe_data", {**_where(conditions), **features}
    return _described(text, card, conditions, named_only)


def _described(
    text: str, card: DatasetCard, conditions: list[dict[str, Any]], named_only: list[str]
) -> ToolCall | None:
    """describe_data for a group of patients named by its conditions ("women over 60 at
    Hungary"); a site alone needs a question about its data ("how is Hungary doing" is not)."""
    grouped = bool(_GROUP.search(text))
    compared = any(c["op"] != "==" for c in conditions)
    site_only = all(c["feature"] == "site" for c in conditions)
    if not conditions or not (grouped or compared):
        return None  # "typical angina" alone describes a patient, not a group
    if site_only and (_SITE_STATUS.search(text) or not (grouped or _DATA_QUESTION.search(text))):
        return None  # a site's status is check_drift's
    arguments = {**_where(conditions), **({"features": named_only} if named_only else {})}
    return "describe_data", arguments
