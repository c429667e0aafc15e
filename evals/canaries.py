"""The narrative verifier's canaries: a faithful template narrative of a real explanation,
corrupted one way (a flipped direction, an invented number, an unknown feature, a wrong
probability, a missing caveat, a wrong unit), then checked by the verifier."""

from __future__ import annotations

import re
from typing import Any

from copilot import narration
from copilot.llm.verifier import check, claims_from
from evals.cases import Canary
from evals.environment import Environment
from evals.harness import CanaryRecord, Outcome
from tools.context import ToolContext
from tools.predictions import ExplainInput, explain_prediction


async def canary(env: Environment, spec: Canary) -> Outcome:
    """A faithful narrative of a real explanation, corrupted as the case says, checked."""
    ctx = ToolContext(env.client, "", env.card)
    explained = await explain_prediction(ctx, ExplainInput(patient=spec.patient))
    explanation = explained.model_dump(mode="json")
    text = corrupt(narration.explain_prediction(explanation), explanation, spec)
    problems = check(text, claims_from(explanation, env.card))
    return Outcome(
        service_url=env.service_url,
        dataset=env.card.name,
        canary=CanaryRecord(text=text, problems=problems),
    )


def _flipped(text: str, explanation: dict[str, Any]) -> str:
    top = explanation["drivers"][0]
    opposite = "lowers risk" if top["direction"] == "raises risk" else "raises risk"
    return text.replace(f"{top['direction']} (", f"{opposite} (", 1)


def _wrong_probability(text: str, explanation: dict[str, Any]) -> str:
    shown = f"{explanation['probability']:.0%}"
    wrong = f"{(round(explanation['probability'] * 100) + 17) % 100}%"
    return text.replace(f"Risk {shown}", f"Risk {wrong}", 1)


def _wrong_unit(text: str, explanation: dict[str, Any]) -> str:
    measured = next(
        d
        for d in explanation["drivers"]
        if d["unit"] == "mg/dl" and isinstance(d["value"], (int, float))
    )
    return text + f" {measured['display_name'].capitalize()} was {measured['value']} mmol/l."


def _without_caveat(text: str, caveat: str | None) -> str:
    if caveat == "association":
        return text.replace("association, not causation", "a strong signal")
    if caveat == "version":
        return re.sub(r"version \d+", "the current model", text)
    # the inputs the model filled in are told apart from the patient's own values, in a
    # sentence before the model's name; values outside the training range come last
    without = re.sub(
        r" \d+ of \d+ inputs were missing and filled in by the model.*?(?= From )", "", text
    )
    return without.split(" Outside the training range", 1)[0]


def corrupt(text: str, explanation: dict[str, Any], spec: Canary) -> str:
    """The narrative with one unfaithful statement, of the kind the case names."""
    corruptions = {
        "none": lambda: text,
        "flipped_direction": lambda: _flipped(text, explanation),
        "invented_number": lambda: text + " Its score was 987.6 on the day.",
        "unknown_feature": lambda: text + " Troponin raises risk.",
        "wrong_probability": lambda: _wrong_probability(text, explanation),
        "wrong_unit": lambda: _wrong_unit(text, explanation),
        "missing_caveat": lambda: _without_caveat(text, spec.caveat),
    }
    return corruptions[spec.corruption]()
