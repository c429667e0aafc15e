"""Typed facts that pass between the steps of a turn and between turns: what "him" and "it"
refer to, what the earlier steps of this turn did, and what a question about one
explanation asks for. They come from tool results and the router's typed output, never
from what a user typed, so no text can claim that a step ran or what it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from pydantic import BaseModel

# What a router answers when a request of several steps has nothing left to do.
NOTHING_LEFT = "DONE"


@dataclass(frozen=True)
class Memory:
    """What the conversation so far says about "him", "it" and "the last run"."""

    patient: dict[str, Any] | None = None
    prediction_id: str | None = None
    # A patient still being described: the values so far (the card's names and units) and
    # the features the copilot asked for, so that "asymptomatic" completes it next turn.
    pending_patient: dict[str, Any] | None = None
    asked_for: tuple[str, ...] = ()
    # What that patient is for, when the copilot asked which patient a request is about
    # ("explain a prediction" -> "which patient?"): the tool the answer goes to (None: a risk).
    pending_tool: str | None = None
    # The last tool that ran ("what about Switzerland?" after list_runs lists Switzerland's
    # runs), and the changes of the last what-if on `prediction_id` ("and if he were also
    # 10 years younger?" keeps them).
    last_tool: str | None = None
    last_changes: dict[str, Any] | None = None
    # The last read-only tool's arguments, so that a follow-up that changes one of them
    # ("and for Hungary?", "same for women") repeats that call with the rest kept.
    last_arguments: dict[str, Any] | None = None
    # The last question asked about a patient ({"tool": "explain_prediction"}, or a what-if
    # with its "changes"), kept when the next patient is scored, so that "now for her" or
    # "same question for him" asks it of the new one.
    last_question: dict[str, Any] | None = None


class StepFacts(TypedDict, total=False):
    """What a later step may know of an earlier one: typed values from its result."""

    failed: bool
    insufficient: bool  # too little of the patient recorded: no risk was given
    drift_detected: bool
    label: int
    prediction_id: str


class Step(TypedDict):
    """A read-only step this turn has run."""

    tool: str
    arguments: dict[str, Any]
    facts: StepFacts


STEP_FACTS = ("drift_detected", "label", "prediction_id")


def step(tool: str, arguments: dict[str, Any], result: dict[str, Any] | None) -> Step:
    """The step record of a tool call (`result` None: the tool failed)."""
    facts: StepFacts = {"failed": True} if result is None else {}
    for key in STEP_FACTS:
        if result is not None and result.get(key) is not None:
            facts[key] = result[key]  # type: ignore[literal-required]
    if result is not None and (result.get("information") or {}).get("confidence") == "insufficient":
        facts["insufficient"] = True
    return {"tool": tool, "arguments": arguments, "facts": facts}


@dataclass(frozen=True)
class RouteRequest:
    """What a router decides on: the user's words and the typed facts around them."""

    text: str
    memory: Memory = Memory()
    done: list[Step] = field(default_factory=list)  # this turn's steps so far


class PendingPatient(BaseModel):
    """A patient the copilot asked more about this turn: the values so far, and what for."""

    patient: dict[str, Any]
    asked_for: list[str]
    tool: str | None = None  # the tool the patient is for (None: predict_risk)


class Focus(BaseModel):
    """What a question about one explanation asks for."""

    kind: Literal["top", "rank", "direction", "compare"]
    features: list[str] = []  # by the card's names: one for rank/direction, two for compare
    count: int = 3  # how many drivers, for "top"
    relation: Literal["more", "less"] = "more"  # compare: "is A more (less) important than B"
