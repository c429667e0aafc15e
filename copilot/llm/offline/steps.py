"""Requests of several steps: "check drift at VA Long Beach and retrain if it drifted",
"predict and explain", "list the runs and then compare the last two". A request is split
into clauses where a new step's verb starts; a condition ("if it drifted", "if the risk
is high", "if so") is taken off its clause and checked against the typed facts of the
steps this turn already ran (copilot.facts.Step), never against text; "X if it drifted"
with no drift check before it gets one. Every pattern is bounded: linear."""

from __future__ import annotations

import re

from copilot.facts import Step
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import sites_in
from model_service.cards import DatasetCard

# A step of a two-step request starts with one of these ("... and explain", "... then retrain").
_STEP_VERB = (
    r"(?:predict|score|estimate|explain|why|tell me|show|list|compare|check|retrain|re-train|"
    r"refit|promote|roll ?back|revert|deploy|give me|what if|what are|what's|which|train|fit|"
    r"build|make|kick off|start|launch|ship|undo|restore|put|switch)"
)

_STEP_SPLIT = re.compile(
    rf" ?(?:;|,? ?\b(?:and then|then|and also|and|also|after that,?)\b) "
    rf"(?=(?:if so,? )?{_STEP_VERB}\b)"
)

_SO_CONDITION = re.compile(r"^if so,? |,? ?\bif so\b")

_DRIFT_CONDITION = re.compile(
    r",? ?\bif (?:it|they|there|the data|that|this|the site|[a-z ]{0,25}?) ?"
    r"(?:has|have|is|was|were)? ?(?:any )?(?:drifted|drifts|drift|shifted)\b[^,;]{0,200}"
)

_RISK_CONDITION = re.compile(
    r",? ?\bif (?:(?:his|her|their|the|its) )?(?:risk|probability) (?:is )?"
    r"(?:high|above (?:the )?threshold|over (?:the )?threshold|positive)[^,;]{0,200}"
)


# A clause that only acknowledges the last answer or agrees to what it offered ("ok, and
# why?", "thanks - and the drivers?", "yes, go ahead and explain"): no step of its own.
_ACKNOWLEDGED = re.compile(
    r"^(?:(?:ok|okay|ok then|thanks|thank you|thx|cheers|great|cool|right|alright|all right|"
    r"fine|good|got it|i see|sure|perfect|nice|understood|noted|yes|yeah|yep|yup|please|"
    r"go ahead|go on|sure thing|by all means|absolutely|of course|certainly)(?:[ ,!.-]+|$)){1,4}$"
)


# "if" after a verb of finding out is "whether" ("check if the data has shifted", "can you
# see if Hungary drifted"): the question itself, no condition on another step.
_WHETHER = re.compile(
    r"\b(?P<verb>check|checking|see|tell me|find out|confirm|verify|know|wonder|wondering|"
    r"determine|ask|look at|look into|investigate) if\b"
)


def split_clauses(lowered: str, card: DatasetCard) -> list[str]:
    """The steps of a request, in order; "X if it drifted" without a drift check first
    gets one ("check drift at <its site>"); an acknowledgement before a step is none."""
    lowered = _WHETHER.sub(r"\g<verb> whether", lowered)
    said = [c.strip(" ,.") for c in _STEP_SPLIT.split(lowered) if c.strip(" ,.")]
    clauses = _joined([c for c in said if not _ACKNOWLEDGED.match(c)] or said)
    checked = False
    steps: list[str] = []
    for clause in clauses or [lowered]:
        drifts = rx.search(r"\bdrift|\bshift", _DRIFT_CONDITION.sub("", clause))
        if _DRIFT_CONDITION.search(clause) and not checked and not drifts:
            found = sites_in(clause, card)
            steps.append(f"check drift at {found[0].lower()}" if found else "check for drift")
            checked = True
        checked = checked or bool(drifts)
        steps.append(clause)
    return steps


_STARTS_WITH_VERB = re.compile(rf"^(?:please |can you |could you )?{_STEP_VERB}\b")
_HYPOTHETICAL = re.compile(r"^(?:what if|what would|what happens if)\b")


def _joined(clauses: list[str]) -> list[str]:
    """A what-if after a bare description ("55 yo man, BP 160; what if his BP were 130?")
    is about that patient, not a step of its own: one clause."""
    joined: list[str] = []
    for clause in clauses:
        if joined and _HYPOTHETICAL.match(clause) and not _STARTS_WITH_VERB.match(joined[-1]):
            joined[-1] = f"{joined[-1]}; {clause}"
        else:
            joined.append(clause)
    return joined


def take_condition(clause: str, done: list[Step]) -> tuple[str, str | None]:
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


def why_unmet(condition: str, clause: str, done: list[Step]) -> str | None:
    """Why the condition does not hold (None when it does)."""
    what = "propose retraining" if rx.search(r"\bre-?train|\brefit", clause) else "do the rest"
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
