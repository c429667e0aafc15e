"""Changes, not to one patient's stated values but searched for or applied to many.

- `counterfactual`: the smallest change to the card's actionable features (each within its
  plausible range, `Feature.actionable`) that brings one patient's risk under the threshold.
  Only actionable features ever change (the card never marks age or sex actionable). The
  search is exhaustive over a grid: for each actionable numeric feature the patient's
  value and `GRID_STEPS + 1` evenly spaced values across the plausible range, for each
  boolean both values; every combination is scored in one batch. A change's size is the
  sum over features of |new - old| / (width of the plausible range), a boolean flip
  counting 1; ties go to fewer features changed, then the lower risk.
- `cohort_what_if`: every row of a cohort with some values changed (`chol - 20`): the mean
  change in risk and how many predicted labels flip.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_service.cards import DatasetCard, Feature, clean_values
from model_service.cohorts import CohortError
from model_service.risk_model import Columns, RiskModel

GRID_STEPS = 36
MAX_CHANGES = 5


def _grid(feature: Feature, current: float) -> np.ndarray:
    assert feature.actionable is not None  # only actionable features are searched
    low, high = feature.actionable.low, feature.actionable.high
    if feature.kind == "boolean":
        return np.array([current, 1.0 - current])
    values = np.linspace(low, high, GRID_STEPS + 1)
    if feature.integer:
        values = np.round(values)
    return np.unique(np.concatenate([[current], values]))


def counterfactual(
    model: RiskModel, card: DatasetCard, record: Mapping[str, Any]
) -> dict[str, Any]:
    """The smallest change to actionable features that brings the risk under the threshold
    (see the module docstring); `found` false when no combination in the ranges does."""
    columns = {f.name: [record.get(f.name)] for f in model.card.features}
    original = float(model.probabilities(columns)[0])
    threshold = model.threshold
    searched: list[Feature] = []
    for feature in card.features:
        if feature.actionable is None:
            continue
        value = clean_values(feature, [record.get(feature.name)])[0]
        if not np.isnan(value):  # a value not recorded is not something to change
            searched.append(feature)
    current = {f.name: float(clean_values(f, [record.get(f.name)])[0]) for f in searched}
    ranges = [
        {
            "feature": f.name,
            "display_name": f.display_name,
            "unit": f.unit,
            "low": f.actionable.low if f.actionable else None,
            "high": f.actionable.high if f.actionable else None,
        }
        for f in searched
    ]
    answer: dict[str, Any] = {
        "original_probability": original,
        "threshold": threshold,
        "searched": ranges,
        "combinations": 1,
    }
    if original < threshold:
        return answer | {"found": True, "changes": [], "probability": original, "size": 0.0}
    grids = [_grid(f, current[f.name]) for f in searched]
    combos = np.array(list(itertools.product(*grids)), float) if grids else np.empty((0, 0))
    if len(combos) == 0:
        return answer | {"found": False, "changes": [], "probability": None, "size": None}
    batch: Columns = {f.name: [record.get(f.name)] * len(combos) for f in model.card.features}
    for index, feature in enumerate(searched):
        batch = {**batch, feature.name: combos[:, index]}
    probabilities = model.probabilities(batch)
    widths = np.array(
        [
            1.0
            if f.kind == "boolean" or f.actionable is None
            else f.actionable.high - f.actionable.low
            for f in searched
        ]
    )
    moved = np.abs(combos - np.array([current[f.name] for f in searched]))
    size = (moved / widths).sum(axis=1)
    changed = (moved > 0).sum(axis=1)
    below = np.flatnonzero(probabilities < threshold)
    answer["combinations"] = len(combos)
    if len(below) == 0:
        return answer | {"found": False, "changes": [], "probability": None, "size": None}
    best = below[np.lexsort((probabilities[below], changed[below], np.round(size[below], 9)))[0]]
    changes = [
        {
            "feature": f.name,
            "display_name": f.display_name,
            "unit": f.unit,
            "from_value": _shown(f, current[f.name]),
            "to_value": _shown(f, float(combos[best, i])),
        }
        for i, f in enumerate(searched)
        if moved[best, i] > 0
    ]
    return answer | {
        "found": True,
        "changes": changes,
        "probability": float(probabilities[best]),
        "size": float(size[best]),
    }


def _shown(feature: Feature, value: float) -> float | int | bool:
    if feature.kind == "boolean":
        return bool(value)
    return int(value) if feature.integer or float(value).is_integer() else round(value, 4)


class Change(BaseModel):
    """One change to every row of a cohort: `add` a number to a numeric feature (negative to
    lower it), or `set` a feature to a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(max_length=40)
    op: Literal["add", "set"] = "add"
    value: float | bool | str


def _changed_column(
    feature: Feature, values: np.ndarray, change: Change, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """(new values, which rows changed) for one change; rows whose value is missing, or
    whose new value would fall outside the physiological limits, keep their value."""
    if feature.kind == "categorical":
        allowed = feature.categories or ()
        match = [
            c
            for c in allowed
            if isinstance(change.value, str) and c.lower() == change.value.lower()
        ]
        if change.op != "set" or not match:
            raise CohortError(
                field,
                change.value,
                "known_category",
                f'"{field}": {feature.name} takes "set" with one of: {", ".join(allowed)}',
            )
        new = np.full(len(values), match[0], dtype=object)
        return new, values != new
    if feature.kind == "boolean":
        if change.op != "set" or not isinstance(change.value, bool):
            raise CohortError(
                field,
                change.value,
                "boolean",
                f'"{field}": {feature.name} takes "set" true or false',
            )
        new = np.full(len(values), float(change.value))
        return new, values != new
    if isinstance(change.value, (bool, str)):
        raise CohortError(
            field, change.value, "number", f'"{field}": {change.value!r} is not a number'
        )
    candidate = values + change.value if change.op == "add" else np.full(len(values), change.value)
    if change.op == "add":
        candidate = np.where(np.isnan(values), np.nan, candidate)
    inside = ~np.isnan(candidate)
    if feature.limits is not None:
        inside &= (candidate >= feature.limits.low) & (candidate <= feature.limits.high)
    new = np.where(inside, candidate, values)
    return new, inside & (new != values)


def cohort_what_if(
    model: RiskModel, card: DatasetCard, columns: Columns, changes: Sequence[Change]
) -> dict[str, Any]:
    """Every row re-scored with the changes: the risk before and after, the mean change, and
    how many predicted labels flip each way."""
    if not 1 <= len(changes) <= MAX_CHANGES:
        raise CohortError(
            "changes", len(changes), "changes_count", f'"changes": give 1 to {MAX_CHANGES} changes'
        )
    cleaned = {f.name: clean_values(f, list(columns[f.name])) for f in card.features}
    after = dict(cleaned)
    rows = len(next(iter(cleaned.values())))
    changed_any = np.zeros(rows, dtype=bool)
    described = []
    for index, change in enumerate(changes):
        field = f"changes[{index}]"
        known = {f.name.lower(): f for f in card.features}
        feature = known.get(change.feature.strip().lower())
        if feature is None:
            raise CohortError(
                f"{field}.feature",
                change.feature,
                "known_feature",
                f'"{field}.feature": {change.feature!r} is not a feature of {card.name}; '
                f"known: {', '.join(card.feature_names)}",
            )
        new, changed = _changed_column(feature, after[feature.name], change, f"{field}.value")
        after[feature.name] = new
        changed_any |= changed
        described.append(
            {
                "feature": feature.name,
                "display_name": feature.display_name,
                "unit": feature.unit,
                "op": change.op,
                "value": change.value,
                "rows_changed": int(changed.sum()),
            }
        )
    before_p = model.probabilities(cleaned)
    after_p = model.probabilities(after)
    threshold = model.threshold
    before_label, after_label = before_p >= threshold, after_p >= threshold
    return {
        "changes": described,
        "rows": rows,
        "rows_changed": int(changed_any.sum()),
        "mean_risk_before": float(before_p.mean()),
        "mean_risk_after": float(after_p.mean()),
        "mean_change": float((after_p - before_p).mean()),
        "predicted_positive_before": int(before_label.sum()),
        "predicted_positive_after": int(after_label.sum()),
        "flipped_to_positive": int((~before_label & after_label).sum()),
        "flipped_to_negative": int((before_label & ~after_label).sum()),
        "threshold": threshold,
    }
