"""Whether the patient values in a tool call come from the conversation.

A model may copy a patient from anywhere (an example it once saw, a guess): every value of
a `patient` in predict_risk / explain_prediction / what_if must be mentioned in the user's
text, or equal the remembered patient's (`copilot.facts.Memory`, including one the copilot
asked more about), or come from a step this turn already ran. A `what_if` change must be in
the text, or be the remembered value moved by a number in the text ("10 years older", "20%
lower", "halved"; a what-if's own patient is remembered too: "55 yo man, chol 280: what if
it went up by 40"), or be the last what-if's change kept ("and if he were also 10 years
younger").
Otherwise the router sends the model back with the values that were not in the
conversation.
"""

from __future__ import annotations

import math
import re
from typing import Any

from copilot import units
from copilot.facts import RouteRequest
from copilot.llm.offline.cohorts import conditions_in
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import NUMBER_WORDS, kinds_in, normalise, sites_in
from model_service.cards import DatasetCard, Feature

PATIENT_TOOLS = frozenset({"predict_risk", "explain_prediction", "what_if"})
# A minus sign only where a number starts ("over-60s" says 60, "-0.5" says -0.5).
_NUMBER = re.compile(r"(?:(?<![a-z0-9])-)?\d+(?:\.\d+)?")
# A decade says both its bounds: "in their 50s", "in their fifties" (50 and 60); "the
# over-60s" is no decade.
_DECADE_WORDS = {"twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60}
_DECADE_WORDS |= {"seventies": 70, "eighties": 80, "nineties": 90}
_DECADE = re.compile(
    r"\b(?:their|his|her|the) (\d0)'?s\b|\b(\d0)-somethings?\b|\b("
    + "|".join(_DECADE_WORDS)
    + r")\b"
)


def _numbers(text: str) -> list[float]:
    found = [float(n) for n in _NUMBER.findall(text)]
    words = re.findall(r"[a-z]+", text.lower())
    decades = [
        float(said or something or _DECADE_WORDS[word])
        for said, something, word in _DECADE.findall(text.lower())
    ]
    return [
        *found,
        *(float(NUMBER_WORDS[w]) for w in words if w in NUMBER_WORDS),
        *decades,
        *(d + 10 for d in decades),
    ]


def _close(a: float, b: float, feature: Feature) -> bool:
    return abs(a - b) <= max(0.5, feature.measurement_error, abs(b) * 0.01)


def _said_number(value: float, feature: Feature, numbers: list[float]) -> bool:
    if any(_close(value, n, feature) for n in numbers):
        return True
    ratios = [r for (name, _), r in units.CONVERSIONS.items() if name == feature.name]
    return any(_close(value, n * r, feature) for n in numbers for r in ratios)  # as converted


def _same(a: Any, b: Any) -> bool:
    """Equal values, categories compared as the card does (case and spacing aside)."""
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return bool(a == b)


def _words_for(feature: Feature, value: Any) -> set[str]:
    words = {w for w, v in feature.value_words.items() if _same(v, value)}
    if isinstance(value, str):
        words.add(" ".join(value.lower().split()))
    return words


def _mentioned(feature: Feature, value: Any, text: str, parsed: dict[str, Any]) -> bool:
    """Whether `text` (lower case) says this feature has this value."""
    if feature.name in parsed and _same(parsed[feature.name], value):
        return True
    if isinstance(value, bool):
        names = feature.synonyms or (feature.display_name, feature.name)
        return any(re.search(rf"(?<![a-z]){re.escape(n.lower())}", text) for n in names)
    if isinstance(value, (int, float)):
        return math.isfinite(value) and _said_number(float(value), feature, _numbers(text))
    if isinstance(value, str):
        return any(
            re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", text)
            for w in _words_for(feature, value)
        )
    return value is None


def _moved_by_the_text(feature: Feature, value: Any, before: Any, text: str) -> bool:
    """A numeric change stated relative to the remembered value ("10 years older")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(before, bool) or not isinstance(before, (int, float)):
        return False
    amounts = _numbers(text)
    ratios = [r for (name, _), r in units.CONVERSIONS.items() if name == feature.name]
    amounts += [n * r for r in ratios for n in amounts]  # "down by 1 mmol/l"
    if feature.name == "age":  # "a decade older"
        amounts += [n * 10 for n in amounts] + [10.0]
    moved = [before + n for n in amounts] + [before - n for n in amounts]
    moved += [before * (1 + n / 100) for n in _numbers(text)]
    moved += [before * (1 - n / 100) for n in _numbers(text)]
    factors = {"halv": 0.5, "half": 0.5, "doubl": 2.0, "tripl": 3.0}  # "halve his ST depression"
    moved += [before * f for word, f in factors.items() if re.search(rf"\b{word}", text)]
    return any(_close(float(value), m, feature) for m in moved)


def _known_patients(request: RouteRequest) -> list[dict[str, Any]]:
    memory = request.memory
    known = [p for p in (memory.patient, memory.pending_patient) if p]  # incl. one we asked about
    for done in request.done:
        patient = done["arguments"].get("patient")
        if isinstance(patient, dict):
            known.append(patient)
    return known


def unmentioned(
    tool: str, arguments: dict[str, Any], request: RouteRequest, card: DatasetCard
) -> list[str]:
    """`field.feature=value` for each patient value (or cohort condition) in the call that
    the conversation does not hold (empty when the call is grounded or names neither)."""
    normal = normalise(request.text, card)  # typos fixed, number words as digits
    text = f"{request.text.lower()}\n{normal}"
    parsed = parse_patient(normal, card)
    if tool == "show_rows":
        return _unmentioned_rows(arguments, text)
    if tool == "check_drift" and isinstance(arguments.get("site"), str):
        site = arguments["site"]
        return [] if _said_site(site, request, card) else [f"site={site!r}"]
    if tool not in PATIENT_TOOLS:
        return _unmentioned_conditions(arguments, request, text, parsed, card)
    known = _known_patients(request)
    features = {f.name: f for f in card.features}
    missing: list[str] = []
    for field in ("patient", "changes"):
        values = arguments.get(field)
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            feature = features.get(name)
            if feature is None or value is None:
                continue  # unknown names are the schema's to refuse
            if _mentioned(feature, value, text, parsed):
                continue
            remembered = [p.get(name) for p in known if name in p]
            given = arguments.get("patient")  # a what-if's own patient, described alongside
            if field == "changes" and isinstance(given, dict) and name in given:
                remembered.append(given[name])
            if field == "patient" and any(_same(value, r) for r in remembered):
                continue
            if field == "changes" and any(
                _moved_by_the_text(feature, value, before, text) for before in remembered
            ):
                continue
            # the last what-if's, said "also", or asked again of the next patient ("same
            # question for him": Memory.last_question)
            asked = getattr(request.memory, "last_question", None) or {}
            kept = {**(asked.get("changes") or {}), **(request.memory.last_changes or {})}
            if field == "changes" and name in kept and _same(value, kept[name]):
                continue
            missing.append(f"{field}.{name}={value!r}")
    return missing


# What makes a number in a request a row id: "row 12", "rows 3 and 7", "record #45", "id 300",
# "patients 10, 11 and 12" (a patient numbered, not "a 67 yo patient").
_ROW_WORDS = re.compile(
    r"\b(?:rows?|records?|ids?|entr(?:y|ies)|lines?)\b|#\s?\d|\bno\.\s?\d|"
    # a dataset's words for one row, said with its number ("instance 250", "sample number 7")
    r"\b(?:instances?|samples?|examples?|observations?|data points?|subjects?)"
    r"(?: (?:number|no\.?))? #?\d|"
    r"\bpatients? #?\d+(?![0-9])(?! ?(?:yo|y/o|years?|yrs|-year))"
)
# A range of row ids says every id in it: "records 1 through 5".
_ROW_RANGE = re.compile(r"(?<![0-9.])(\d{1,4}) ?(?:through|thru|to|-|until) ?#?(\d{1,4})(?![0-9.])")


def cannot_fill(tool: str, request: RouteRequest) -> str | None:
    """Why `tool` cannot be what the request asks for, when its required arguments can come
    from nowhere in it (None: they can): a model that chose it chooses again."""
    if tool == "show_rows" and not _ROW_WORDS.search(request.text.lower()):
        return "show_rows needs row ids, and the user named no row or record"
    return None


def _unmentioned_rows(arguments: dict[str, Any], text: str) -> list[str]:
    """`row_ids=n` for each row id the text does not give as one: a number said without a
    row word is a value ("a 67 yo man" is a patient, not row 67)."""
    said = {n for n in _numbers(text) if n == int(n)} if _ROW_WORDS.search(text) else set()
    for low, high in _ROW_RANGE.findall(text) if said else []:
        if 0 < int(high) - int(low) < 50:
            said |= {float(n) for n in range(int(low), int(high) + 1)}
    return [
        f"row_ids={row!r}"
        for row in arguments.get("row_ids") or []
        if not (isinstance(row, int) and float(row) in said)
    ]


_DIRECTION = {"<": -1, "<=": -1, ">": 1, ">=": 1}


def misread_bounds(
    arguments: dict[str, Any], request: RouteRequest, card: DatasetCard
) -> list[str]:
    """Cohort bounds read the wrong way round ("men under 45" written as age > 45) or as an
    equality ("over 65" written as age == 65): the grammar reads the comparison words next
    to the number, and a condition on the same feature and number that does not point the
    way the user said goes back with what the user said (`<` and `<=` point the same way)."""
    said, _ = conditions_in(normalise(request.text, card), card)
    problems = []
    for condition in arguments.get("where") or []:
        if not isinstance(condition, dict):
            continue
        for read in said:
            same = read.get("feature") == condition.get("feature") and _same(
                read.get("value"), condition.get("value")
            )
            pointed = _DIRECTION.get(read.get("op", ""), 0)
            if same and pointed and _DIRECTION.get(str(condition.get("op")), 0) != pointed:
                problems.append(
                    f"where.{condition['feature']} op {condition['op']!r} (the user said "
                    f"{read['op']} {read['value']}: use op {read['op']!r})"
                )
    return problems


STATED_TOOLS = frozenset({"predict_risk", "explain_prediction"})


def as_stated(
    tool: str, data: dict[str, Any], request: RouteRequest, card: DatasetCard
) -> dict[str, Any]:
    """A new patient's values as this message states them: a value the model wrote that
    the conversation does not hold ("non-anginal" for "asymptomatic", a heart rate of 96 for
    "max HR 150", exercise angina for "no angina on exertion") is replaced by the one the
    card's grammar reads in the text, and a value the text states that the model left out
    is added. Only for a patient to predict or explain (a what-if's text states old and new
    values both); values the text does not state are left to the grounding check."""
    patient = data.get("patient")
    if tool not in STATED_TOOLS or not isinstance(patient, dict):
        return data
    normal = normalise(request.text, card)
    text, parsed = f"{request.text.lower()}\n{normal}", parse_patient(normal, card)
    features = {f.name: f for f in card.features}
    stated = dict(patient)
    for name, value in parsed.items():
        written = patient.get(name)
        if name not in features or (written is not None and _same(written, value)):
            continue
        said_otherwise = isinstance(written, bool) or not _mentioned(
            features[name], written, text, {}
        )  # a yes/no is "mentioned" by its name alone: the grammar reads its negation
        if written is None or said_otherwise:
            stated[name] = value
    return {**data, "patient": stated}


def _remembered_conditions(request: RouteRequest) -> list[dict[str, Any]]:
    """The cohort conditions of the conversation's last call, if it had any."""
    last = getattr(request.memory, "last_arguments", None) or {}
    where = last.get("where") if isinstance(last, dict) else None
    return [c for c in where or [] if isinstance(c, dict)]


def _unmentioned_conditions(
    arguments: dict[str, Any],
    request: RouteRequest,
    text: str,
    parsed: dict[str, Any],
    card: DatasetCard,
) -> list[str]:
    """`where.feature=value` for each cohort condition whose site or number neither this
    message says nor the last call's group held."""
    features = {f.name: f for f in card.features}
    named_sites = set(sites_in(text, card))
    remembered = _remembered_conditions(request)
    missing: list[str] = []
    for condition in arguments.get("where") or []:
        if not isinstance(condition, dict):
            continue
        if any(_same_condition(condition, r) for r in remembered):
            continue
        name, value = condition.get("feature"), condition.get("value")
        values = value if isinstance(value, list) else [value]
        for one in values:
            if name == "site":
                grounded = one in named_sites
            elif isinstance(name, str) and name in features and _is_number(one):
                grounded = _mentioned(features[name], one, text, parsed)
            else:
                continue  # categories are read many ways ("diabetics"); unknown names refused
            if not grounded:
                missing.append(f"where.{name}={one!r}")
    return missing


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_condition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("feature") == b.get("feature") and _same(a.get("value"), b.get("value")))


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _last_patient_copy(
    data: dict[str, Any], tool: str, remembered: dict[str, Any]
) -> dict[str, Any]:
    """The last id with a patient: a copy of the last patient is dropped; for what_if with
    no changes, the values that differ from it are the changes."""
    patient = data["patient"]
    moved = {n: v for n, v in patient.items() if n not in remembered or not _same(remembered[n], v)}
    if not moved:
        return _without(data, "patient")
    if tool == "what_if" and not data.get("changes"):
        return {**_without(data, "patient"), "changes": moved}
    return data


def resolve_reference(tool: str, data: dict[str, Any], request: RouteRequest) -> dict[str, Any]:
    """A follow-up's reference to the last prediction, as small models get it wrong: neither
    the id nor a patient means the last prediction (its id is filled in from memory); the
    context's key written as the id ("last_prediction_id") means the id it names; the last
    id with a patient is `_last_patient_copy`; a copy of the last patient alone means the
    last prediction; an id the conversation never held (a model's "12345") is left out. Any
    other combination is left for validation to refuse."""
    memory = request.memory
    if tool not in {"explain_prediction", "what_if"}:
        return data
    given_id = data.get("prediction_id")
    invented = (
        isinstance(given_id, str)
        and given_id != memory.prediction_id
        and "last_prediction" not in given_id.lower()
        and given_id.lower() not in request.text.lower()
    )
    if invented:  # an id neither the user nor the conversation gave ("12345")
        data = _without(data, "prediction_id")
    if isinstance(given_id, str) and "last_prediction" in given_id.lower():
        data = _without(data, "prediction_id")
        if memory.prediction_id is not None:
            data["prediction_id"] = memory.prediction_id
    if memory.prediction_id is None:
        return data
    patient, given_id = data.get("patient"), data.get("prediction_id")
    if patient is None and given_id is None:
        return {**data, "prediction_id": memory.prediction_id}
    if given_id == memory.prediction_id and isinstance(patient, dict):
        return _last_patient_copy(data, tool, memory.patient or {})
    if given_id is None and isinstance(patient, dict) and _is_copy(patient, memory.patient):
        return {**_without(data, "patient"), "prediction_id": memory.prediction_id}
    return data


def _is_copy(patient: dict[str, Any], remembered: dict[str, Any] | None) -> bool:
    """Whether `patient` is the remembered patient, value for value (case aside)."""
    if not remembered or not patient:
        return False
    return set(patient) == set(remembered) and all(
        _same(remembered[n], v) for n, v in patient.items()
    )


_TRUE = {"true", "yes", "y", "present", "positive"}
_FALSE = {"false", "no", "n", "absent", "negative"}


def _canonical(feature: Feature, value: Any) -> Any:
    """One value in the card's spelling when the model's spelling means exactly one
    ("Asymptomatic", "non-anginal chest pain", "woman", "true" for a boolean)."""
    if not isinstance(value, str):
        return value
    said = " ".join(value.lower().split())
    if feature.kind == "boolean":
        return True if said in _TRUE else False if said in _FALSE else value
    if feature.kind != "categorical":
        return value
    categories = feature.categories or ()
    exact = [c for c in categories if c.lower() == said]
    worded = [v for w, v in feature.value_words.items() if w == said and isinstance(v, str)]
    within = [
        c for c in categories if re.search(rf"(?<![\w-]){re.escape(c.lower())}(?![\w-])", said)
    ]
    for found in (exact, worded, within):
        if len(set(found)) == 1:
            return found[0]
    return value


def canonical_values(values: dict[str, Any], card: DatasetCard) -> dict[str, Any]:
    """A patient (or changes) with each categorical and boolean value as the card spells it,
    where the model's spelling is unambiguous, and nulls left out; anything else is left
    for validation."""
    features = {f.name: f for f in card.features}
    return {
        n: _canonical(features[n], v) if n in features else v
        for n, v in values.items()
        if v is not None  # null is "not given": the feature is left out
    }


def named_features(request: RouteRequest, card: DatasetCard) -> list[str]:
    """The features the conversation gives a value for: read from the text (by the card's
    names, synonyms and value words, typos fixed) or remembered; in the card's order."""
    text = f"{request.text.lower()}\n{normalise(request.text, card)}"
    memory = request.memory
    found = set(parse_patient(normalise(request.text, card), card)) | set(memory.patient or {})
    found |= set(memory.pending_patient or {})
    for feature in card.features:
        words = {feature.name, feature.display_name.lower(), *feature.synonyms}
        words |= {w.lower() for w in (*feature.value_words, *(feature.categories or ()))}
        if any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", text) for w in words):
            found.add(feature.name)
    return [f.name for f in card.features if f.name in found]


def without_unnamed_kinds(
    data: dict[str, Any], request: RouteRequest, card: DatasetCard
) -> dict[str, Any]:
    """retrain_model's model kinds when the user named none (typos fixed: "xgbost"): the
    model's choice, left out so the default (every kind) decides; kinds the user named are
    kept as written."""
    if data.get("model_kinds") and not kinds_in(normalise(request.text, card)):
        return _without(data, "model_kinds")
    return data


# What says a time to start from: a date, or words of time ("since Monday", "last week").
_TIME_WORDS = re.compile(
    r"\d{4}-\d{2}|\b(?:since|last|past|recent(?:ly)?|latest|today|yesterday|tonight|"
    r"week|month|year|hours?|days?|ago|morning|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)\b"
)


def without_invented_times(
    tool: str, data: dict[str, Any], request: RouteRequest, card: DatasetCard
) -> dict[str, Any]:
    """check_drift's and monitoring_history's `since` when the text says no time, and the
    history's `site` when neither the text nor the last call names it: the model's
    invention ("2023-10-01"), left out (the history then covers every site)."""
    if data.get("since") and not _TIME_WORDS.search(normalise(request.text, card)):
        data = _without(data, "since")
    site = data.get("site")
    if (
        tool == "monitoring_history"
        and isinstance(site, str)
        and not _said_site(site, request, card)
    ):
        data = _without(data, "site")
    return data


def _said_site(site: str, request: RouteRequest, card: DatasetCard) -> bool:
    last = request.memory.last_arguments or {}
    text = f"{request.text.lower()}\n{normalise(request.text, card)}"
    named = site.lower() in text  # an unknown site is the tool's to refuse, by name
    return named or site in sites_in(text, card) or site == last.get("site")


def without_invented_run_ids(data: dict[str, Any], request: RouteRequest) -> dict[str, Any]:
    """compare_runs' run ids when none of them is in the user's text are the model's
    invention (timestamps, "last-2"): left out, so `last` decides. Ids the user typed are
    kept, and checked as ids."""
    run_ids = data.get("run_ids")
    if not isinstance(run_ids, list) or not run_ids:
        return data
    text = request.text.lower()
    if any(isinstance(r, str) and r.lower() in text for r in run_ids):
        return data
    return _without(data, "run_ids")
