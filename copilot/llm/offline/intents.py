"""The offline provider's understanding: one chat turn -> one tool call, or a plain reply.

Deterministic and local (no network, no model weights). It reads requests the way people
type them (patients in free text: copilot.llm.offline.patients; words, sites, kinds and
counts: copilot.llm.offline.text), follow-ups about the last patient ("why?", "what if his
cholesterol were 180?", "and for a woman?"), run ids, site names, model kinds and numbers
of runs. What it does not understand gets "I can't do that" and the list of what it can,
never a guess at a tool.

Requests of several steps ("predict and explain", "check drift at VA Long Beach and
retrain if it drifted") are routed one step at a time: `understand` is given the steps
this turn already ran as typed facts (copilot.facts.Step, from tool results, never from
text), and the next clause runs only when its condition holds.

Words that sound like consent ("approved", "skip confirmation", "I am the admin") mean
nothing here: state-changing requests only ever become proposals for a human to decide.
Quoted text and labelled notes ("note from the chart: '...'") are a patient's free text:
they are never read as requests.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from copilot.facts import NOTHING_LEFT, Memory, Step
from copilot.llm.offline.patients import missing_required, parse_patient
from copilot.llm.offline.text import count_in, kinds_in, normalise, sites_in, without_notes
from model_service.cards import DatasetCard

CAPABILITIES = (
    "I can predict a patient's risk, explain it (why?), answer what-if questions, check "
    "drift at a site or since a date, list or compare training runs, show the live model, "
    "and propose retraining, promotion or rollback for a person to approve."
)

_OUT_OF_SCOPE = re.compile(
    r"\b(delete|drop|erase|wipe|purge|truncate)\b|\b(e-?mail|send|text message|sms)\b|"
    r"\bweather\b|\bjoke\b|\bpassword|\bsocial security\b|\bhome address\b|\bprescri|"
    r"\bdose\b|\bdosage\b|\bbook (an )?appointment\b|\bshell\b|\bexecute (a |the )?command\b"
)

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


class Intent(BaseModel):
    """One tool call with its arguments, or (tool None) a reply to give instead."""

    tool: str | None
    arguments: dict[str, Any] = {}
    reply: str | None = None


def _clarify(intent: str) -> Intent:
    return Intent(tool=None, reply=intent)


def _clauses(lowered: str, card: DatasetCard) -> list[str]:
    """The steps of a request, in order; "X if it drifted" without a drift check first
    gets one ("check drift at <its site>")."""
    clauses = [c.strip(" ,.") for c in _STEP_SPLIT.split(lowered) if c.strip(" ,.")]
    checked = False
    steps: list[str] = []
    for clause in clauses or [lowered]:
        drifts = re.search(r"\bdrift|\bshift", _DRIFT_CONDITION.sub("", clause))
        if _DRIFT_CONDITION.search(clause) and not checked and not drifts:
            sites = sites_in(clause, card)
            steps.append(f"check drift at {sites[0].lower()}" if sites else "check for drift")
            checked = True
        checked = checked or bool(drifts)
        steps.append(clause)
    return steps


def _condition(clause: str, done: list[Step]) -> tuple[str, str | None]:
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


def _unmet(condition: str, clause: str, done: list[Step]) -> str | None:
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
    done: list[Step],
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


def steps_in(text: str, card: DatasetCard) -> int:
    """How many steps the request asks for ("check drift at VA and retrain if it drifted": 2)."""
    lowered = without_notes(normalise(text, card))
    return 1 if _OUT_OF_SCOPE.search(lowered) else len(_clauses(lowered, card))


def understand(  # noqa: PLR0911
    text: str, memory: Memory, card: DatasetCard, done: list[Step] | None = None
) -> Intent:
    """The tool call (or reply) for one user turn, or for the next step of a request of
    several steps when `done` lists the steps this turn already ran."""
    request, done = text, list(done or [])
    lowered = without_notes(normalise(request, card))
    if _OUT_OF_SCOPE.search(lowered):
        if done:
            return Intent(tool=None, reply=NOTHING_LEFT)
        return _clarify(f"I can't do that. {CAPABILITIES}")
    reason = request.strip()[:500]
    clauses = _clauses(lowered, card)
    shared = parse_patient(lowered, card) if len(clauses) > 1 else {}
    if done and not _matches(clauses, done, memory, card, shared):
        done = []  # a model read the request otherwise: start from the first
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
        sites = sites_in(lowered, card) or list(
            dict.fromkeys([*card.default_training_sites, *drift_sites])
        )
        arguments = {"sites": sites, "reason": reason}
        kinds = kinds_in(lowered)
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
    sites = sites_in(lowered, card)
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
        return Intent(
            tool="compare_runs", arguments={"last": min(max(count_in(lowered) or 2, 2), 5)}
        )
    if re.search(r"\bruns?\b", lowered) and re.search(
        r"\b(list|show|recent|last|latest|history|which|what|all|past)\b", lowered
    ):
        arguments: dict[str, Any] = {"limit": min(count_in(lowered) or 5, 50)}
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
        missing = missing_required(patient, card)
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
