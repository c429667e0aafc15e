"""The clinical narrator: a PydanticAI agent whose every statement is verified.

It is handed claims computed in code (values with units, directions in words, ranks,
probability, caveats) and writes a `ClinicalSummary`. An output validator runs the
verifier over the rendered text; an unsupported number, unknown feature, flipped
direction, wrong probability or missing caveat goes back to the model as `ModelRetry`
with the reasons (a summary whose only fault is a caveat left out gets that caveat's
checked sentence appended instead: `with_missing_caveats`). After the retries the
deterministic template is used, marked as such. The offline provider uses the template
directly.

Other tools' results (drift, run comparisons, retrain / promote / rollback outcomes) are
narrated by a second agent under the same rule: every number the text shows must be in the
tool result (`verifier.unsupported_numbers`), else a retry with the reasons, else the
template, marked.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry, ModelSettings, RunContext
from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior
from pydantic_ai.usage import RunUsage

from copilot import narration
from copilot.llm.verifier import Claims, check, claims_from, unsupported_numbers
from model_service.cards import DatasetCard
from prompts import load

NARRATOR_RETRIES = 2
NARRATIVE_MAX_TOKENS = 600  # a short summary; also bounds what the verifier must read
TEMPLATE_MARK = "(template summary)"
# Results the LLM retells in words; the rest read best as the template's plain facts.
RETOLD = frozenset(
    {
        "check_drift",
        "compare_runs",
        "retrain_model",
        "promote_model",
        "rollback_model",
        "describe_data",
        "model_performance",
        "model_mistakes",
        "feature_importance",
        "feature_interactions",
        "counterfactual",
        "cohort_what_if",
    }
)


class ClinicalSummary(BaseModel):
    """A short summary of one prediction for the people who run the model."""

    headline: str = Field(description="One sentence: the risk and what it rests on.")
    risk_statement: str = Field(description="The probability and the baseline, as given.")
    top_drivers: list[str] = Field(
        description="One sentence per driver: value, unit, "
        "and 'raises risk' or 'lowers risk' exactly as given."
    )
    caveats: list[str] = Field(
        description="Association not causation; missing or "
        "out-of-range inputs by name; the model version."
    )

    def render(self) -> str:
        return " ".join([self.headline, self.risk_statement, *self.top_drivers, *self.caveats])


def build_narrator(model: Any) -> Agent[Claims, ClinicalSummary]:
    agent: Agent[Claims, ClinicalSummary] = Agent(
        model,
        output_type=ClinicalSummary,
        deps_type=Claims,
        instructions=load("narrator"),
        retries=NARRATOR_RETRIES,
        model_settings=ModelSettings(max_tokens=NARRATIVE_MAX_TOKENS),
    )

    @agent.output_validator
    def verified(ctx: RunContext[Claims], summary: ClinicalSummary) -> ClinicalSummary:
        problems = check(summary.render(), ctx.deps)
        completed = with_missing_caveats(summary, ctx.deps) if problems else summary
        if problems and not check(completed.render(), ctx.deps):
            return completed  # only caveats were left out: added from the checked sentences
        if problems:
            raise ModelRetry(
                "These statements are not supported by the facts: "
                + "; ".join(problems)
                + ". Rewrite the summary from the facts."
            )
        return summary

    return agent


def with_missing_caveats(summary: ClinicalSummary, claims: Claims) -> ClinicalSummary:
    """The summary with each checked caveat sentence it does not already hold appended (a
    small model often leaves one out: the 1.5B model dropped "Model version 1." and was
    otherwise right). Only sentences built from the claims are added, never the model's own
    words; whatever else the model got wrong still fails the check."""
    written = summary.render()
    missing = [c for c in checked_sentences(claims)["caveats"] if c not in written]
    return summary.model_copy(update={"caveats": [*summary.caveats, *missing]})


def _shown(value: Any) -> str:
    """A feature's value as a sentence shows it (a flag as yes / no)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def checked_sentences(claims: Claims) -> dict[str, Any]:
    """Sentences that state the claims the way the verifier reads them: a small model that
    uses them as written cannot misstate a number, a unit, a direction or a caveat (each is
    still checked with the rest of its summary)."""
    names = {d.feature: d.display_name for d in claims.drivers}
    drivers = []
    for driver in claims.drivers[:5]:
        value = _shown(driver.value)
        unit = f" {driver.unit}" if driver.unit and driver.value is not None else ""
        shown = f" ({value}{unit})" if driver.value is not None else " (not recorded)"
        drivers.append(f"{driver.display_name}{shown} {driver.direction}.")
    return {
        "risk": (
            f"The predicted risk is {round(claims.probability * 100)}%, against a baseline "
            f"of {round(claims.base_probability * 100)}%."
        ),
        "drivers": drivers,
        "caveats": [
            "The model shows association, not causation.",
            *(
                f"{names.get(feature, feature)} was missing or outside the training range."
                for feature in claims.flagged_features
            ),
            f"Model version {claims.model_version}.",
        ],
    }


def facts(explanation: dict[str, Any], claims: Claims) -> str:
    """The prompt: the claims, with directions spelled out in words and no signed numbers,
    and sentences already checked against them (`use_these_sentences`)."""
    drivers = [
        {
            "rank": d.rank,
            "feature": d.display_name,
            "value": d.value,
            "unit": d.unit,
            "effect": d.direction,  # in words: small models flip signs
        }
        for d in claims.drivers[:5]
    ]
    return json.dumps(
        {
            "probability_percent": round(claims.probability * 100),
            "baseline_percent": round(claims.base_probability * 100),
            "top_drivers": drivers,
            "missing_or_out_of_range_inputs": claims.flagged_features,
            "model": f"{explanation['model']['name']} version {claims.model_version}",
            "use_these_sentences": checked_sentences(claims),
        }
    )


async def narrate(
    agent: Agent[Claims, ClinicalSummary] | None,
    explanation: dict[str, Any],
    card: DatasetCard,
    usage: RunUsage | None = None,
) -> tuple[str, bool]:
    """(summary, verified by the LLM path). Without an agent, or when every try failed the
    verifier (or the LLM could not be reached), the deterministic template, marked as such.
    Tokens spent are added to `usage`."""
    claims = claims_from(explanation, card)
    template = narration.explain_prediction(explanation)
    if agent is None:
        return template, False
    try:
        result = await agent.run(facts(explanation, claims), deps=claims, usage=usage)
    except (UnexpectedModelBehavior, ModelAPIError):
        return f"{template} {TEMPLATE_MARK}", False
    return result.output.render(), True


def build_result_narrator(model: Any) -> Agent[Any, str]:
    """The agent that retells a tool result; every number must be in the result."""
    agent: Agent[Any, str] = Agent(
        model,
        output_type=str,
        deps_type=dict,
        instructions=load("results"),
        retries=NARRATOR_RETRIES,
        model_settings=ModelSettings(max_tokens=NARRATIVE_MAX_TOKENS),
    )

    @agent.output_validator
    def numbers_from_result(ctx: RunContext[Any], text: str) -> str:
        problems = unsupported_numbers(text, ctx.deps)
        if problems:
            raise ModelRetry(
                "Every number must come from the result: "
                + "; ".join(problems)
                + ". Rewrite using only the result's numbers."
            )
        return text

    return agent


async def retell(
    agent: Agent[Any, str] | None,
    result: dict[str, Any],
    template: str,
    usage: RunUsage | None = None,
) -> str:
    """A tool result in words: the LLM's verified text, or the template (marked when every
    try failed the check or the LLM could not be reached). Tokens are added to `usage`."""
    if agent is None:
        return template
    try:
        told = await agent.run(json.dumps(result, default=str), deps=result, usage=usage)
    except (UnexpectedModelBehavior, ModelAPIError):
        return f"{template} {TEMPLATE_MARK}"
    return told.output
