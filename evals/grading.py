"""What every grader shares: the case's step expectations next to what the steps did,
verdicts, placeholders in expected arguments, and "expected is part of actual"."""

from __future__ import annotations

import math
from typing import Any

from pydantic_evals.evaluators import EvaluationReason, EvaluatorContext

from evals.cases import Expect, Script, StepExpect
from evals.harness import Outcome, StepRecord

Context = EvaluatorContext[Script, Outcome, Expect]
Results = dict[str, EvaluationReason | bool | int | float]


def expectations(ctx: Context) -> list[tuple[int, StepExpect, StepRecord]]:
    """(index, expectation, record) of every step the case has an expectation for."""
    expect = ctx.metadata or Expect()
    steps = ctx.output.steps
    return [
        (index, wanted, steps[index])
        for index, wanted in enumerate(expect.steps)
        if wanted is not None and index < len(steps)
    ]


def verdict(name: str, problems: list[str], graded: int) -> Results:
    """One assertion: passed when nothing is wrong (none at all when nothing was graded)."""
    if not graded:
        return {}
    return {name: EvaluationReason(value=not problems, reason="; ".join(problems) or None)}


def resolve(value: Any, outcome: Outcome, before: int) -> Any:
    """Placeholders in expected arguments: $prediction (the newest prediction before the
    step), $run:<alias>, $version:<alias>."""
    if isinstance(value, dict):
        return {k: resolve(v, outcome, before) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outcome, before) for v in value]
    if value == "$prediction":
        for step in reversed(outcome.steps[:before]):
            for call in reversed(step.calls):
                if call.tool == "predict_risk" and isinstance(call.result, dict):
                    return call.result.get("prediction_id")
        return None
    if isinstance(value, str) and value.startswith("$"):
        return outcome.placeholders.get(value, value)
    return value


EXACT = frozenset({"patient", "changes"})  # a patient's values: no more, no fewer
# Sets written as lists: a cohort's conditions are a conjunction ("Hungarian women" is the
# same cohort whichever condition is listed first), and a retrain's sites and model kinds
# are each given once, in no meaningful order ("add VA to Cleveland" trains on both).
UNORDERED = frozenset({"where", "sites", "model_kinds"})


def contains(actual: Any, expected: Any) -> bool:
    """`expected` is part of `actual`: dict keys recursively (all keys for a patient or
    its changes), lists item by item (the sets of `UNORDERED` in any order), numbers within
    1e-6."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual
            and (
                _same_items(actual[k], v)
                if k in UNORDERED and isinstance(v, list)
                else contains(actual[k], v)
            )
            and (k not in EXACT or not isinstance(v, dict) or set(actual[k]) == set(v))
            for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(actual), float(expected), abs_tol=1e-6)
    return bool(actual == expected)


def _same_items(actual: Any, expected: list[Any]) -> bool:
    """The same items in any order: each expected item contained in its own actual item."""
    if not isinstance(actual, list) or len(actual) != len(expected):
        return False
    left = list(actual)
    for wanted in expected:
        match = next((i for i, item in enumerate(left) if contains(item, wanted)), None)
        if match is None:
            return False
        left.pop(match)
    return True
