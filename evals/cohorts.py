"""The cohort grader: the reply to a cohort or data question states the real numbers.

For each step marked `cohort_answer`, the grader runs the expected tool itself with the
case's expected arguments (never the transcript's) against the scratch model service, and
checks the reply states what matters in that result: counts as written numbers, shares as
a percentage (within half a point) or a decimal (within 0.0005), features by name and in
order. A counterfactual is computed for the case's patient (`metadata.patient`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_evals.evaluators import Evaluator

from evals.cases import Expect, Script
from evals.grading import Context, Results, expectations, resolve, verdict
from evals.harness import Outcome
from model_service.cards import get_card
from tools.catalog import READ_ONLY
from tools.context import ToolContext

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_DECIMAL = re.compile(r"(?<![\d.])([+-]?\d+\.\d+)")


def _count(text: str, value: int, what: str) -> list[str]:
    if re.search(rf"(?<![\d.]){value}(?![\d]|\.\d)", text):
        return []
    return [f"{what} {value} not stated"]


def _share(text: str, value: float | None, what: str) -> list[str]:
    if value is None:
        return []
    percentages = [float(p) for p in _PERCENT.findall(text)]
    decimals = [abs(float(d)) for d in _DECIMAL.findall(text)]
    if any(abs(p - value * 100) <= 0.5 + 1e-9 for p in percentages):
        return []
    if any(abs(d - abs(value)) <= 0.0005 + 1e-9 for d in decimals):
        return []
    return [f"{what} {value:.4f} not stated"]


def _in_order(text: str, names: list[str], what: str) -> list[str]:
    at = 0
    for name in names:
        found = text.find(name.lower(), at)
        if found < 0:
            return [f"{what}: {name} missing or out of order ({', '.join(names)})"]
        at = found + len(name)
    return []


def _describe(result: dict[str, Any], text: str) -> list[str]:
    cohort, balance = result["cohort"], result["label_balance"]
    return (
        _count(text, cohort["matched"], "rows matched")
        + _count(text, cohort["total"], "rows in all")
        + _count(text, balance["positive"], "rows with the outcome")
        + _share(text, result["mean_risk"], "mean risk")
    )


def _performance(result: dict[str, Any], text: str) -> list[str]:
    problems = _count(text, result["rows"], "held-out rows")
    problems += _share(text, result["roc_auc"]["value"], "ROC AUC")
    for name in ("sensitivity", "specificity"):
        problems += _count(text, result[name]["count"], f"{name} count")
        problems += _count(text, result[name]["of"], f"{name} rows")
    return problems


def _mistakes(result: dict[str, Any], text: str) -> list[str]:
    return _count(text, result["false_negatives"], "false negatives") + _count(
        text, result["false_positives"], "false positives"
    )


def _importance(result: dict[str, Any], text: str) -> list[str]:
    ranked = result["importance"]
    names = [f["display_name"] for f in ranked]
    return _in_order(text, names, "ranking") + _share(
        text, ranked[0]["mean_abs_shap"], f"{names[0]} mean |SHAP|"
    )


def _interactions(result: dict[str, Any], text: str) -> list[str]:
    pairs = result["interactions"]
    if all(p["mean_abs_interaction"] == 0 for p in pairs):
        return [] if "no feature interacts" in text else ["does not say nothing interacts"]
    return _in_order(text, pairs[0]["display_names"], "strongest pair") + _share(
        text, pairs[0]["mean_abs_interaction"], "strongest interaction"
    )


def _counterfactual(result: dict[str, Any], text: str) -> list[str]:
    if not result["found"]:
        return [] if "no change" in text else ["does not say no change is enough"]
    problems = _share(text, result["probability"], "new probability")
    for change in result["changes"]:
        problems += _in_order(text, [change["display_name"]], "changed feature")
        to = change["to_value"]
        if not isinstance(to, bool):
            problems += _count(text, int(to), f"{change['display_name']} target")
    return problems


def _what_if(result: dict[str, Any], text: str) -> list[str]:
    return (
        _count(text, result["flipped_to_negative"], "labels flipped under the threshold")
        + _count(text, result["flipped_to_positive"], "labels flipped above it")
        + _share(text, result["mean_risk_before"], "mean risk before")
        + _share(text, result["mean_risk_after"], "mean risk after")
    )


def _rows(result: dict[str, Any], text: str) -> list[str]:
    return [p for row in result["rows"] for p in _share(text, row["probability"], "row risk")]


def _definition(result: dict[str, Any], text: str) -> list[str]:
    described = result["description"].lower() in text
    return [] if described else [f"the card's description of {result['feature']} not given"]


GRADERS = {
    "describe_data": _describe,
    "model_performance": _performance,
    "model_mistakes": _mistakes,
    "feature_importance": _importance,
    "feature_interactions": _interactions,
    "counterfactual": _counterfactual,
    "cohort_what_if": _what_if,
    "show_rows": _rows,
    "define_feature": _definition,
}


@dataclass
class CohortAnswer(Evaluator[Script, Outcome, Expect]):
    """Cohort and data answers state the numbers the tool gives for the expected arguments
    (computed by the grader against the same model service)."""

    async def evaluate(self, ctx: Context) -> Results:
        expect = ctx.metadata or Expect()
        graded = [(i, w, s) for i, w, s in expectations(ctx) if w.cohort_answer]
        if not graded:
            return {}
        card = get_card(ctx.output.dataset)
        problems: list[str] = []
        async with httpx.AsyncClient(base_url=ctx.output.service_url, timeout=60) as client:
            tools = ToolContext(client, "", card)
            for index, wanted, step in graded:
                name = str(wanted.tool)
                arguments = resolve(wanted.arguments, ctx.output, index)
                if name == "counterfactual" and expect.patient is not None:
                    arguments = {"patient": expect.patient}
                tool = READ_ONLY[name]
                truth = await tool.run(tools, tool.input_model.model_validate(arguments))
                text = " ".join(step.messages).lower()
                found = GRADERS[name](truth.model_dump(mode="json"), text)
                problems.extend(f"step {index + 1}: {p}" for p in found)
        return verdict("exact_answer", problems, len(graded))
