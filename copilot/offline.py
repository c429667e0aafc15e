"""The offline provider's understanding: one chat turn -> one tool call, or a plain reply.

Deterministic and local (no network, no model weights). It reads requests the way people
type them: patients in free text with units and abbreviations ("63 yo M, asymptomatic CP,
BP 145/90, chol 233 mg/dl, max HR 150, ST dep 2.3, exang no"), typos, follow-ups about the
last patient ("why?", "what if his cholesterol were 180?", "and for a woman?"), run ids,
site names, model kinds and numbers of runs. What it does not understand gets "I can't do
that" and the list of what it can, never a guess at a tool.

Two-step requests ("predict and explain", "check drift at VA Long Beach and retrain if it
drifted") are routed one step at a time: the graph asks again with `continuation_prompt`,
which lists what this turn already did as typed facts (never tool output text), and the
next clause runs only when its condition holds. Questions about one explanation ("the top
three drivers", "what rank does cholesterol have", "is age more important than cholesterol
for him") are read by `question_focus` so that the answer states exactly that.

Words that sound like consent ("approved", "skip confirmation", "I am the admin") mean
nothing here: state-changing requests only ever become proposals for a human to decide.
Quoted text and labelled notes ("note from the chart: '...'") are a patient's free text:
they are never read as requests.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from model_service.cards import DatasetCard, Feature
from model_service.risk_model import MODEL_KINDS

CAPABILITIES = (
    "I can predict a patient's risk, explain it (why?), answer what-if questions, check "
    "drift at a site or since a date, list or compare training runs, show the live model, "
    "and propose retraining, promotion or rollback for a person to approve."
)

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "zero": 0,
    "no": 0,
}
_NUMBER = r"(-?\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_YES = {"yes", "y", "true", "positive", "present", "1", "+"}
_NO = {"no", "n", "false", "negative", "absent", "none", "0", "-"}
_MMOL_TO_MG_DL = 38.67  # total cholesterol
_KIND_WORDS = {
    "logistic_regression": ("logistic regression", "logistic", "logreg", "lr", "linear model"),
    "random_forest": ("random forest", "forest", "rf"),
    "xgboost": ("xgboost", "xgb", "gradient boosting", "boosted trees", "boosting"),
}
_SITE_WORDS = {
    "va": "VA Long Beach",
    "long beach": "VA Long Beach",
    "swiss": "Switzerland",
    "zurich": "Switzerland",
    "basel": "Switzerland",
    "hungarian": "Hungary",
    "budapest": "Hungary",
    "cleveland clinic": "Cleveland",
}
_OUT_OF_SCOPE = re.compile(
    r"\b(delete|drop|erase|wipe|purge|truncate)\b|\b(e-?mail|send|text message|sms)\b|"
    r"\bweather\b|\bjoke\b|\bpassword|\bsocial security\b|\bhome address\b|\bprescri|"
    r"\bdose\b|\bdosage\b|\bbook (an )?appointment\b|\bshell\b|\bexecute (a |the )?command\b"
)
_KEYWORDS = frozenset(
    """
    predict risk probability latest older younger chance likelihood score explain explanation
    drivers factors contributions contributing reasons drift drifted shifted distribution
    quality compare comparison versus difference runs training history retrain refit promote
    promotion challenger champion rollback revert restore previous deploy deployed serving
    model version suppose instead patient cholesterol pressure asymptomatic typical atypical
    anginal angina depression vessels thallium reversible downsloping upsloping hypertrophy
    abnormality exercise fasting glucose diabetic female male woman logistic regression
    forest xgboost boosting cleveland hungary switzerland force override rank ranks ranked
    important importance matters biggest largest strongest feature features drifted driver
    factor reason contributor contributors
    """.split()
)
CONTINUATION_MARKER = "Already done for this message (JSON):"
NOTHING_LEFT = "DONE"
# A step of a two-step request starts with one of these ("... and explain", "... then retrain").
_STEP_VERB = (
    r"(?:predict|score|estimate|explain|why|tell me|show|list|compare|check|retrain|re-train|"
    r"refit|promote|roll ?back|revert|deploy|give me|what if|what are|what's|which)"
)
_STEP_SPLIT = re.compile(
    rf"\s*(?:;|,?\s*\b(?:and then|then|and also|and|also|after that,?)\b)\s+"
    rf"(?=(?:if so,?\s+)?{_STEP_VERB}\b)"
)
_SO_CONDITION = re.compile(r"^if so,?\s+|,?\s*\bif so\b")
_DRIFT_CONDITION = re.compile(
    r",?\s*\bif\s+(?:it|they|there|the data|that|this|the site|[a-z ]{0,25}?)\s*"
    r"(?:has|have|is|was|were)?\s*(?:any\s+)?(?:drifted|drifts|drift|shifted)\b[^,;]*"
)
_RISK_CONDITION = re.compile(
    r",?\s*\bif\s+(?:(?:his|her|their|the|its)\s+)?(?:risk|probability)\s+(?:is\s+)?"
    r"(?:high|above (?:the )?threshold|over (?:the )?threshold|positive)[^,;]*"
)
# Questions about one explanation that name no driver word ("what rank does chol have").
_FOCUS_WORDS = re.compile(
    r"\brank|\bimportan|\binfluential|\b(?:matters?|counts?|weighs?) (?:more|less)\b|"
    r"\b(?:raise|lower|increase|decrease|reduce|push)(?:s|es)?\b.{0,30}\brisk\b|"
    r"\btop (?:\d+|one|two|three|four|five)\b"
)
_WHAT_IF_CUE = re.compile(r"\bwhat if\b|\bsuppose\b|\bwere\b|\binstead\b|\bhow about\b")
_COMPARE = re.compile(
    r"\b(?P<relation>more|less|bigger|smaller|larger|greater|stronger|weaker) "
    r"(?:important|influential|(?:of an? )?(?:driver|factor|effect|impact|contributor))\s+than\b|"
    r"\b(?:matters?|counts?|weighs?|contributes?) (?P<relation2>more|less)\b[^.?]*?\bthan\b"
)
_RANK = re.compile(
    r"\brank(?:s|ed|ing)?\b|\bwhere does\b|\bposition\b|\bhow important\b|\bwhich place\b"
)
_DIRECTION = re.compile(
    r"\b(?:raise|raising|increase|increasing|lower|lowering|reduce|reducing|decrease|"
    r"decreasing|push|pushing)\b"
)
_TOP = re.compile(
    r"\btop\s+(?P<count>\d+|" + "|".join(_NUMBER_WORDS) + r")\b|"
    r"\b(?:top|main|key|biggest|largest|strongest|most important|leading) "
    r"(?P<what>drivers?|factors?|features?|reasons?|contributors?)\b"
)
# A patient's free text: quoted passages of three words or more, and labelled notes.
_QUOTED = re.compile(
    r"(?:(?<=[\s:(])|^)(?:'[^']*\s[^']*\s[^']*'|\"[^\"]*\s[^\"]*\s[^\"]*\"|“[^”]*”|‘[^’]*’)"
)
_NOTE = re.compile(
    r"\(?\b(?:note|notes|comment|comments|remark|remarks|free[- ]text|wrote|writes|says|said)"
    r"\b[^:]{0,30}:.*$"
)


@dataclass(frozen=True)
class Memory:
    """What the conversation so far says about "him", "it" and "the last run"."""

    patient: dict[str, Any] | None = None
    prediction_id: str | None = None


class Intent(BaseModel):
    """One tool call with its arguments, or (tool None) a reply to give instead."""

    tool: str | None
    arguments: dict[str, Any] = {}
    reply: str | None = None


def _fix_typos(text: str, vocabulary: set[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) < 5 or word in vocabulary:
            return word
        # typos rarely change the first letter ("latest" must not become "test")
        same_start = [w for w in vocabulary if w[0] == word[0]]
        close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.8)
        return close[0] if close else word

    return re.sub(r"[a-z]+", fix, text)


def _number(token: str) -> float:
    return float(_NUMBER_WORDS.get(token, token))


def _synonym_pattern(feature: Feature) -> str:
    names = feature.synonyms or (feature.display_name, feature.name.replace("_", " "))
    ordered = sorted({n.lower() for n in names}, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(n) for n in ordered) + ")"


def _numeric(feature: Feature, text: str) -> float | None:
    names = _synonym_pattern(feature)
    link = r"\s*(?:is|was|of|=|:|at|were|to|would be|->)?\s*"
    if feature.name == "age":
        for pattern in (
            r"\b(\d{1,3})\s*-?\s*(?:yo|y/o|y\.o\.|yrs?\b|years?\b|year-old)",
            rf"\bage[d]?{link}(\d{{1,3}})\b",
            r"\b(\d{2})\s*(?:m|f)\b",
        ):
            found = re.search(pattern, text)
            if found:
                return float(found.group(1))
        return None
    found = re.search(rf"(?<![a-z]){names}{link}{_NUMBER}(?:\s*/\s*\d+)?\s*(mmol/l|mg/dl)?", text)
    if found is None and feature.name == "ca":
        found = re.search(rf"\b{_NUMBER}\s+(?:major\s+)?vessels?\b", text)
    if found is None:
        return None
    value = _number(found.group(1))
    if feature.name == "chol" and found.lastindex == 2 and found.group(2) == "mmol/l":
        value = round(value * _MMOL_TO_MG_DL)
    return value


def _words(feature: Feature) -> list[tuple[str, Any]]:
    words = dict(feature.value_words)
    for category in feature.categories or ():
        words.setdefault(category.lower(), category)
    return sorted(words.items(), key=lambda item: len(item[0]), reverse=True)


def _categorical(feature: Feature, text: str, card: DatasetCard) -> Any:
    if feature.name == "sex":
        glued = re.search(r"\b\d{1,3}\s*(m|f)\b", text)  # "63M", "54 F"
        if glued:
            return "Male" if glued.group(1) == "m" else "Female"
    names = _synonym_pattern(feature)
    for word, value in _words(feature):
        if feature.name == "sex" and word in {"he", "his", "him", "she", "her"}:
            continue  # pronouns are weak evidence: see _pronoun_sex
        bare = rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])"
        if _ambiguous(word, feature, card):  # e.g. "normal": say which test
            bare = rf"(?<![a-z]){names}\s*(?:is|was|=|:|result)?\s*{re.escape(word)}(?![a-z0-9])"
        if re.search(bare, text):
            return value
    return None


def _ambiguous(word: str, feature: Feature, card: DatasetCard) -> bool:
    return any(
        word in {w for w, _ in _words(other)}
        for other in card.features
        if other.name != feature.name and other.kind == "categorical"
    )


def _boolean(feature: Feature, text: str) -> bool | None:
    names = _synonym_pattern(feature)
    found = re.search(rf"(?<![a-z]){names}\s*(?:is|was|=|:)?\s*([a-z0-9+\-]+)", text)
    if found and found.group(1) in _YES | _NO:
        return found.group(1) in _YES
    if re.search(rf"\b(?:no|without|denies)\s+{names}", text):
        return False
    for word, value in _words(feature):
        if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text):
            return bool(value)
    if feature.name == "fbs":
        glucose = re.search(
            rf"(?:fasting glucose|fasting sugar|fasting blood sugar)\s*(?:of|is|=|:)?\s*{_NUMBER}",
            text,
        )
        if glucose:
            return _number(glucose.group(1)) > 120
    if re.search(rf"(?<![a-z]){names}(?![a-z])", text):
        return True  # named without a value: present ("exercise-induced angina")
    return None


def _pronoun_sex(text: str) -> str | None:
    if re.search(r"\b(he|his|him)\b", text):
        return "Male"
    if re.search(r"\b(she|her)\b", text):
        return "Female"
    return None


def parse_patient(text: str, card: DatasetCard, *, pronouns: bool = True) -> dict[str, Any]:
    """Feature values named in `text` (lower case), in the card's units and spellings."""
    values: dict[str, Any] = {}
    for feature in card.features:
        if feature.kind == "numeric":
            value: Any = _numeric(feature, text)
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


def _sites(text: str, card: DatasetCard) -> list[str]:
    found: list[tuple[int, str]] = []
    for site in card.sites():
        position = text.find(site.lower())
        if position >= 0:
            found.append((position, site))
    for word, site in _SITE_WORDS.items():
        match = re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text)
        if match and site in card.sites() and site not in [s for _, s in found]:
            found.append((match.start(), site))
    return [site for _, site in sorted(found)]


def _kinds(text: str) -> list[str]:
    kinds = [
        kind
        for kind, words in _KIND_WORDS.items()
        if any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text) for w in words)
    ]
    return [kind for kind in MODEL_KINDS if kind in kinds]


def _count(text: str) -> int | None:
    found = re.search(
        r"\b(?:last|latest|recent|past|previous)\s+(\d+|" + "|".join(_NUMBER_WORDS) + r")\b", text
    )
    return int(_number(found.group(1))) if found else None


def _missing_required(values: dict[str, Any], card: DatasetCard) -> list[Feature]:
    return [f for f in card.features if f.required and f.name not in values]


def _clarify(intent: str) -> Intent:
    return Intent(tool=None, reply=intent)


def _normalise(text: str, card: DatasetCard) -> str:
    """Lower case, one space, dashes unified, typos fixed against the card's vocabulary."""
    lowered = " ".join(text.lower().replace("–", "-").replace("—", "-").split())
    vocabulary = (
        set(_KEYWORDS)
        | {
            word
            for f in card.features
            for name in (*f.synonyms, *f.value_words, f.display_name)
            for word in name.lower().split()
        }
        | {word for site in card.sites() for word in site.lower().split()}
    )
    return _fix_typos(lowered, vocabulary)


def without_notes(lowered: str) -> str:
    """The request without a patient's free text (quoted passages, labelled notes)."""
    return " ".join(_NOTE.sub(" ", _QUOTED.sub(" ", lowered)).split())


def continuation_prompt(text: str, done: list[dict[str, Any]]) -> str:
    """The user's request again with what this turn already did (typed facts only), so
    that any model can pick the next step or say it is done."""
    return (
        f"{text}\n\n{CONTINUATION_MARKER} {json.dumps(done, sort_keys=True)}\n"
        "Do the next part of the request that is not done yet with one tool, or reply "
        f"{NOTHING_LEFT} if nothing is left."
    )


def _split_continuation(text: str) -> tuple[str, list[dict[str, Any]]]:
    marker = text.rfind(CONTINUATION_MARKER)
    if marker < 0:
        return text, []
    found = re.match(r"\s*(\[.*?\])\s*(?:\n|$)", text[marker + len(CONTINUATION_MARKER) :], re.S)
    try:
        done = json.loads(found.group(1)) if found else []
    except json.JSONDecodeError:
        done = []
    if not isinstance(done, list) or not all(isinstance(d, dict) for d in done):
        done = []
    return text[:marker], done


def _clauses(lowered: str, card: DatasetCard) -> list[str]:
    """The steps of a request, in order; "X if it drifted" without a drift check first
    gets one ("check drift at <its site>")."""
    clauses = [c.strip(" ,.") for c in _STEP_SPLIT.split(lowered) if c.strip(" ,.")]
    checked = False
    steps: list[str] = []
    for clause in clauses or [lowered]:
        drifts = re.search(r"\bdrift|\bshift", _DRIFT_CONDITION.sub("", clause))
        if _DRIFT_CONDITION.search(clause) and not checked and not drifts:
            sites = _sites(clause, card)
            steps.append(f"check drift at {sites[0].lower()}" if sites else "check for drift")
            checked = True
        checked = checked or bool(drifts)
        steps.append(clause)
    return steps


def _condition(clause: str, done: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The clause without its condition, and the condition ('drift' or 'risk') if any."""
    if _SO_CONDITION.search(clause):
        previous = done[-1]["tool"] if done else None
        kind = {"check_drift": "drift", "predict_risk": "risk", "explain_prediction": "risk"}
        return _SO_CONDITION.sub(" ", clause).strip(" ,"), kind.get(str(previous), "unknown")
    if _DRIFT_CONDITION.search(clause):
        return _DRIFT_CONDITION.sub("", clause).strip(" ,"), "drift"
    if _RISK_CONDITION.search(clause):
        return _RISK_CONDITION.sub("", clause).strip(" ,"), "risk"
    return clause, None


def _unmet(condition: str, clause: str, done: list[dict[str, Any]]) -> str | None:
    """Why the condition does not hold (None when it does)."""
    what = "propose retraining" if re.search(r"\bre-?train|\brefit", clause) else "do the rest"
    if condition == "drift":
        checks = [d for d in done if d.get("tool") == "check_drift"]
        if any(d.get("facts", {}).get("drift_detected") is True for d in checks):
            return None
        where = ", ".join(
            str(d.get("arguments", {}).get("site") or d.get("arguments", {}).get("since") or "")
            for d in checks
        ).strip(", ")
        return f"No drift was detected{' for ' + where if where else ''}, so I did not {what}."
    if condition == "risk":
        scored = [d for d in done if "label" in d.get("facts", {})]
        if scored and scored[-1]["facts"]["label"] == 1:
            return None
        return f"The risk is below the decision threshold, so I did not {what}."
    return f"I could not tell which condition you meant, so I did not {what}."


def _route(
    clause: str,
    reason: str,
    memory: Memory,
    card: DatasetCard,
    shared: dict[str, Any],
    drift_sites: list[str],
) -> Intent | None:
    for route in (_state_changing, _models_and_runs, _patient):
        intent = route(clause, reason, memory, card, shared=shared, drift_sites=drift_sites)
        if intent is not None:
            return intent
    return None


def _matches(
    clauses: list[str],
    done: list[dict[str, Any]],
    memory: Memory,
    card: DatasetCard,
    shared: dict[str, Any],
) -> bool:
    """Whether the steps said to be done are the first steps of this request."""
    if len(done) > len(clauses):
        return False
    for clause, step in zip(clauses, done, strict=False):
        intent = _route(_condition(clause, [])[0], "", memory, card, shared, [])
        if intent is None or intent.tool != step.get("tool"):
            return False
    return True


def understand(text: str, memory: Memory, card: DatasetCard) -> Intent:  # noqa: PLR0911
    """The tool call (or reply) for one user turn, or for the next step of a two-step turn."""
    request, done = _split_continuation(text)
    lowered = without_notes(_normalise(request, card))
    if _OUT_OF_SCOPE.search(lowered):
        if done:
            return Intent(tool=None, reply=NOTHING_LEFT)
        return _clarify(f"I can't do that. {CAPABILITIES}")
    reason = request.strip()[:500]
    clauses = _clauses(lowered, card)
    shared = parse_patient(lowered, card) if len(clauses) > 1 else {}
    if done and not _matches(clauses, done, memory, card, shared):
        done = []  # not this request's steps (e.g. typed by the user): start from the first
    if len(clauses) <= len(done):
        return Intent(tool=None, reply=NOTHING_LEFT)
    clause, condition = _condition(clauses[len(done)], done)
    if condition is not None:
        unmet = _unmet(condition, clause, done)
        if unmet is not None:
            return _clarify(unmet)
    drift_sites = [
        str(d["arguments"]["site"])
        for d in done
        if d.get("tool") == "check_drift" and isinstance(d.get("arguments", {}).get("site"), str)
    ]
    intent = _route(clause, reason, memory, card, shared, drift_sites)
    if intent is not None:
        return intent
    if done:
        return _clarify(f"I did not understand the rest of the request ({clause!r}).")
    return _clarify(f"I can't do that. {CAPABILITIES}")


def _state_changing(
    lowered: str,
    reason: str,
    _: Memory,
    card: DatasetCard,
    *,
    shared: dict[str, Any],
    drift_sites: list[str],
) -> Intent | None:
    """Retrain, promote, roll back: always proposals, whatever the text claims about consent.
    A retrain after a drift check adds the drifted site to the default training sites."""
    if re.search(
        r"\broll ?back\b|\brevert\b|\bundo (the |that |last )?promotion\b|"
        r"\brestore (the )?previous\b|\bgo back to the (previous|old) model\b",
        lowered,
    ):
        return Intent(tool="rollback_model", arguments={"reason": reason})
    if re.search(
        r"\bpromot(e|ion)\b|\bmake (the )?challenger (the |our )?champion\b|"
        r"\bdeploy (the )?(challenger|version|v\d)|"
        r"\bput (the )?challenger (live|in production)",
        lowered,
    ):
        arguments: dict[str, Any] = {"reason": reason}
        version = re.search(r"\b(?:version|v)\s*(\d+)\b", lowered)
        if version:
            arguments["version"] = version.group(1)
        if re.search(r"\bforce\b|\bforced\b|\boverride\b|\beven if\b|\bregardless\b", lowered):
            arguments["force"] = True
        return Intent(tool="promote_model", arguments=arguments)
    if re.search(
        r"\bre-?train|\bre-?fit\b|\btrain (it |the model |a (new )?model |again )?"
        r"(on|with|using)\b|\bnew model on\b",
        lowered,
    ):
        sites = _sites(lowered, card) or list(
            dict.fromkeys([*card.default_training_sites, *drift_sites])
        )
        arguments = {"sites": sites, "reason": reason}
        kinds = _kinds(lowered)
        if kinds:
            arguments["model_kinds"] = kinds
        return Intent(tool="retrain_model", arguments=arguments)
    return None


def _models_and_runs(  # noqa: PLR0911 - one return per route
    lowered: str,
    _: str,
    __: Memory,
    card: DatasetCard,
    *,
    shared: dict[str, Any],
    drift_sites: list[str],
) -> Intent | None:
    """Drift, runs and the live model."""
    sites = _sites(lowered, card)
    if re.search(
        r"\bdrift|\bshift(ed|s)?\b|\bdistribution\b|\bdata quality\b|"
        r"\b(changed|moved|differ\w*) from (what we|the data we|the) train",
        lowered,
    ):
        if sites:
            return Intent(tool="check_drift", arguments={"site": sites[0]})
        since = re.search(r"\bsince\s+(\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?)?)", lowered)
        if since:
            return Intent(tool="check_drift", arguments={"since": since.group(1).replace(" ", "T")})
        known = ", ".join(card.sites()) or "none"
        return _clarify(
            "Which data should I check for drift? Name a site "
            f"({known}) or a start date, e.g. 'since 2026-11-01'."
        )
    run_ids = re.findall(r"\b[0-9a-f]{32}\b", lowered)
    compare = re.search(
        r"\bcompar|\bversus\b|\bvs\.?\b|\bdifference between\b|"
        r"\bdiffer\b.*\bruns?\b|\bruns?\b.*\bdiffer",
        lowered,
    )
    last_few = re.search(r"\b(?:last|latest|recent)\s+(?:\d+|two|three|four|five)\b", lowered)
    if compare and (run_ids or last_few or re.search(r"\bruns?\b|\bprevious\b|\bit\b", lowered)):
        if len(run_ids) >= 2:
            return Intent(tool="compare_runs", arguments={"run_ids": run_ids[:5]})
        return Intent(tool="compare_runs", arguments={"last": min(max(_count(lowered) or 2, 2), 5)})
    if re.search(r"\bruns?\b", lowered) and re.search(
        r"\b(list|show|recent|last|latest|history|which|what|all|past)\b", lowered
    ):
        arguments: dict[str, Any] = {"limit": min(_count(lowered) or 5, 50)}
        if sites:
            arguments["site"] = sites[0]
        return Intent(tool="list_runs", arguments=arguments)
    if re.search(
        r"\b(which|what) (model|version)\b|\bmodel (info|details|version|card)\b|"
        r"\b(is|are) (live|deployed|serving|in production)\b|\bcurrent champion\b|"
        r"\bwho is (the )?champion\b|\bwhat inputs\b|\bwhich features\b",
        lowered,
    ):
        return Intent(tool="model_info")
    return None


def _patient(  # noqa: PLR0911 - one return per route
    lowered: str,
    _: str,
    memory: Memory,
    card: DatasetCard,
    *,
    shared: dict[str, Any],
    drift_sites: list[str],
) -> Intent | None:
    """Predict, explain and what-if, with follow-ups about the last patient. A step of a
    two-step request that names no patient ("predict and explain <patient>") uses the one
    the whole request describes."""
    patient = parse_patient(lowered, card)
    explicit = parse_patient(lowered, card, pronouns=False)
    if not explicit and len(shared) >= 2:
        patient, explicit = dict(shared), dict(shared)
    asks_why = re.search(
        r"\bwhy\b|\bexplain|\bdrivers?\b|\bfactors?\b|\bcontribut|"
        r"\breasons?\b|\bwhat drives\b|\bshap\b|\bbreak ?down\b",
        lowered,
    ) or (_FOCUS_WORDS.search(lowered) and not _WHAT_IF_CUE.search(lowered))
    if asks_why and len(explicit) < 2:
        if memory.prediction_id is not None:
            return Intent(
                tool="explain_prediction", arguments={"prediction_id": memory.prediction_id}
            )
        return _clarify(
            "Which patient should I explain? Describe one first, e.g. "
            "'63 yo M, asymptomatic chest pain, BP 145, chol 233'."
        )
    relative = re.search(r"\b(\d{1,2}) years? (older|younger)\b", lowered)
    base_age = (memory.patient or {}).get("age")
    if relative and isinstance(base_age, (int, float)):
        step = int(relative.group(1)) * (1 if relative.group(2) == "older" else -1)
        explicit["age"] = int(base_age) + step
    what_if = re.search(
        r"\bwhat if\b|\bsuppose\b|\bwere\b|\binstead\b|\bhad\b|\bhow about\b|"
        r"^(?:and|but|now|ok|then)\b|\bsame patient\b",
        lowered,
    )
    if what_if and memory.prediction_id is not None and explicit:
        return Intent(
            tool="what_if", arguments={"prediction_id": memory.prediction_id, "changes": explicit}
        )
    if len(explicit) >= 2 or (explicit and re.search(r"\brisk\b|\bpredict|\bchance\b", lowered)):
        if asks_why:
            return Intent(tool="explain_prediction", arguments={"patient": patient})
        missing = _missing_required(patient, card)
        if missing:
            needed = ", ".join(f"{f.display_name} ({f.name})" for f in missing)
            return _clarify(f"To score this patient I also need: {needed}.")
        return Intent(tool="predict_risk", arguments={"patient": patient})
    if re.search(r"\brisk\b|\bpredict", lowered):
        return _clarify(
            "Describe the patient, e.g. '63 yo M, asymptomatic chest pain, "
            "BP 145/90, chol 233 mg/dl, max HR 150, ST depression 2.3'."
        )
    return None


class Focus(BaseModel):
    """What a question about one explanation asks for."""

    kind: Literal["top", "rank", "direction", "compare"]
    features: list[str] = []  # by the card's names: one for rank/direction, two for compare
    count: int = 3  # how many drivers, for "top"
    relation: Literal["more", "less"] = "more"  # compare: "is A more (less) important than B"


def _mentioned(text: str, card: DatasetCard) -> list[str]:
    """The card's features named in `text`, in order of appearance."""
    found: list[tuple[int, str]] = []
    for feature in card.features:
        names = {*feature.synonyms, feature.display_name, feature.name.replace("_", " ")}
        pattern = "|".join(re.escape(n.lower()) for n in sorted(names, key=len, reverse=True))
        match = re.search(rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])", text)
        if match:
            found.append((match.start(), feature.name))
    return [name for _, name in sorted(found)]


def question_focus(text: str, card: DatasetCard) -> Focus | None:  # noqa: PLR0911
    """What an explanation question asks for: the top N drivers, one feature's rank or
    direction, or which of two features matters more (None: a plain "why?")."""
    lowered = without_notes(_normalise(_split_continuation(text)[0], card))
    compare = _COMPARE.search(lowered)
    if compare:
        left = _mentioned(lowered[: compare.start()], card)
        right = _mentioned(lowered[compare.end() :], card)
        relation = compare.group("relation") or compare.group("relation2")
        if left and right and left[-1] != right[0]:
            less = relation in {"less", "smaller", "weaker"}
            return Focus(
                kind="compare", features=[left[-1], right[0]], relation="less" if less else "more"
            )
    named = _mentioned(lowered, card)
    if len(named) == 1 and _RANK.search(lowered):
        return Focus(kind="rank", features=named)
    if len(named) == 1 and _DIRECTION.search(lowered):
        return Focus(kind="direction", features=named)
    top = _TOP.search(lowered)
    if top:
        if top.group("count"):
            return Focus(kind="top", count=max(1, min(int(_number(top.group("count"))), 13)))
        plural = top.group("what").endswith("s")
        return Focus(kind="top", count=3 if plural else 1)
    if re.search(r"\b(?:most important|biggest|largest|strongest|main) (?:thing|one)\b", lowered):
        return Focus(kind="top", count=1)
    return None
