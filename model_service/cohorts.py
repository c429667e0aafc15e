"""Cohorts: the card's rows filtered by typed conditions, and the rows a model never saw.

A condition is (feature, op, value) over the card's features or its site column (`site`).
Every condition is checked against the card before any row is read: an unknown feature or
category, an operator that does not fit the feature's kind, or a filter that leaves no row
raises `CohortError` naming the field, the value and the rule. Values are compared after
the card's cleaning (`chol == 0` is "not recorded", so it matches no numeric condition);
a row whose value is missing matches no condition on that feature.

Rows carry `row_id`: their 1-based position in the dataset as shipped (for heart disease,
the CSV's own `id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from model_service.cards import DatasetCard, clean_values
from model_service.errors import ModelServiceError
from model_service.registry import LoadedModel

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in"]
Scalar = float | bool | str
MAX_CONDITIONS = 10
MAX_VALUES = 20
SITE = "site"
ROW_ID = "row_id"

_ORDERED = frozenset({"<", "<=", ">", ">="})
_WORDS = {"==": "", "!=": "not ", "<": "< ", "<=": "<= ", ">": "> ", ">=": ">= ", "in": "in "}


class CohortError(ModelServiceError, ValueError):
    """A cohort condition the card cannot answer, or a cohort with no rows."""

    def __init__(self, field: str, value: Any, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.value, self.rule, self.message = field, value, rule, message


class Condition(BaseModel):
    """One filter on the rows: `feature op value`. `feature` is a card feature's name or
    `site`; `in` takes a list of values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(max_length=40)
    op: Operator = "=="
    value: Scalar | list[Scalar] = Field(
        description="A number, a category, true/false, or a list of them for `in`."
    )


class Cohort(BaseModel):
    """Which rows a request covers: its conditions, in words, and how many rows matched."""

    conditions: list[Condition]
    description: str
    matched: int
    total: int


def with_row_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """The dataset's rows with `row_id` (1-based position) as the first column."""
    return frame.reset_index(drop=True).assign(**{ROW_ID: np.arange(1, len(frame) + 1)})


def _category(card: DatasetCard, field: str, allowed: Sequence[str], value: Any) -> str:
    for known in allowed:
        if isinstance(value, str) and value.strip().lower() == known.lower():
            return known
    raise CohortError(
        field,
        value,
        "known_category",
        f'"{field}": {value!r} is not an allowed value; allowed: {", ".join(allowed)}',
    )


def _boolean(field: str, value: Any) -> float:
    words = {"true": 1.0, "yes": 1.0, "1": 1.0, "false": 0.0, "no": 0.0, "0": 0.0}
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise CohortError(field, value, "boolean", f'"{field}": {value!r} is not true or false')


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise CohortError(field, value, "number", f'"{field}": {value!r} is not a number')
    return float(value)


def check(
    card: DatasetCard, conditions: Sequence[Condition], sites: Sequence[str] | None = None
) -> list[Condition]:
    """The conditions with the card's spelling of each value (`female` -> `Female`); a
    `CohortError` for the first one the card cannot answer. `sites`: the card's sites
    (read from its data when not given)."""
    if len(conditions) > MAX_CONDITIONS:
        raise CohortError(
            "where",
            len(conditions),
            "max_conditions",
            f'"where": {len(conditions)} conditions; at most {MAX_CONDITIONS}',
        )
    checked = []
    for index, condition in enumerate(conditions):
        field = f"where[{index}].value"
        name = condition.feature.strip()
        values = condition.value if isinstance(condition.value, list) else [condition.value]
        if condition.op == "in" and not isinstance(condition.value, list):
            values = [condition.value]
        if isinstance(condition.value, list) and condition.op != "in":
            raise CohortError(
                f"where[{index}].op",
                condition.op,
                "list_needs_in",
                f'"where[{index}].op": a list of values needs the operator "in", not '
                f'"{condition.op}"',
            )
        if not values or len(values) > MAX_VALUES:
            raise CohortError(
                field,
                condition.value,
                "values_count",
                f'"{field}": give 1 to {MAX_VALUES} values',
            )
        if name.lower() in {SITE, card.site_column or SITE} and card.site_column:
            allowed: Sequence[str] | None = card.sites() if sites is None else sites
            name = SITE
            kind = "categorical"
        else:
            known = {f.name.lower(): f for f in card.features}
            feature = known.get(name.lower())
            if feature is None:
                choices = [*card.feature_names, *([SITE] if card.site_column else [])]
                raise CohortError(
                    f"where[{index}].feature",
                    condition.feature,
                    "known_feature",
                    f'"where[{index}].feature": {condition.feature!r} is not a feature of '
                    f"{card.name}; known: {', '.join(choices)}",
                )
            name, kind, allowed = feature.name, feature.kind, feature.categories
        if kind != "numeric" and condition.op in _ORDERED:
            raise CohortError(
                f"where[{index}].op",
                condition.op,
                "operator_for_kind",
                f'"where[{index}].op": {condition.op!r} does not apply to {kind} feature '
                f"{name!r}; use ==, != or in",
            )
        if kind == "categorical":
            cleaned: list[Scalar] = [_category(card, field, allowed or (), v) for v in values]
        elif kind == "boolean":
            cleaned = [_boolean(field, v) for v in values]
        else:
            cleaned = [_number(field, v) for v in values]
        value: Scalar | list[Scalar] = cleaned if condition.op == "in" else cleaned[0]
        checked.append(Condition(feature=name, op=condition.op, value=value))
    return checked


def _column(card: DatasetCard, frame: pd.DataFrame, name: str) -> np.ndarray:
    if name == SITE:
        return frame[card.site_column].to_numpy(dtype=object)
    return clean_values(card.feature(name), frame[name].tolist())


def mask(card: DatasetCard, frame: pd.DataFrame, conditions: Sequence[Condition]) -> np.ndarray:
    """Which rows match every (checked) condition."""
    keep = np.ones(len(frame), dtype=bool)
    for condition in conditions:
        column = _column(card, frame, condition.feature)
        value = condition.value
        if condition.op == "in":
            keep &= np.isin(column, np.array(value, dtype=column.dtype))
        elif column.dtype == object:
            present = pd.notna(column)
            equal = present & (column == value)
            keep &= equal if condition.op == "==" else present & ~equal
        else:
            with np.errstate(invalid="ignore"):
                compare = {
                    "==": np.equal,
                    "!=": np.not_equal,
                    "<": np.less,
                    "<=": np.less_equal,
                    ">": np.greater,
                    ">=": np.greater_equal,
                }[condition.op]
                keep &= compare(column, value) & ~np.isnan(column)
    return keep


def describe(card: DatasetCard, conditions: Sequence[Condition]) -> str:
    """The conditions in words: `sex Female, age > 60, site Hungary` (all rows: `all rows`)."""
    if not conditions:
        return "all rows"
    parts = []
    for condition in conditions:
        value = condition.value
        if isinstance(value, list):
            shown = "[" + ", ".join(_shown(card, condition.feature, v) for v in value) + "]"
        else:
            shown = _shown(card, condition.feature, value)
        parts.append(f"{condition.feature} {_WORDS[condition.op]}{shown}")
    return ", ".join(parts)


def _shown(card: DatasetCard, name: str, value: Scalar) -> str:
    if name != SITE and card.feature(name).kind == "boolean":
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select(
    card: DatasetCard,
    frame: pd.DataFrame,
    conditions: Sequence[Condition],
    of: str = "rows",
    sites: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, Cohort]:
    """The rows of `frame` matching the conditions, and the cohort that says how many of
    how many; `CohortError` when none match (`of` names what was filtered, `sites` are the
    card's)."""
    checked = check(card, conditions, sites)
    selected = frame[mask(card, frame, checked)]
    cohort = Cohort(
        conditions=checked,
        description=describe(card, checked),
        matched=len(selected),
        total=len(frame),
    )
    if selected.empty:
        raise CohortError(
            "where",
            [c.model_dump() for c in checked],
            "empty_cohort",
            f'"where": no {of} match {cohort.description} (0 of {len(frame)}); widen the filter',
        )
    return selected, cohort


def training_mask(card: DatasetCard, frame: pd.DataFrame, loaded: LoadedModel) -> np.ndarray:
    """Which rows of the dataset (`frame`: all rows, as shipped) the model trained on: its
    run's recorded sites, less the shared evaluation set, as training chose them. Raises
    `CohortError` when the run does not record them or the split does not reproduce."""
    from model_service.training import evaluation_mask  # noqa: PLC0415 - training is heavy

    params = loaded.params
    if "sites" not in params:
        raise CohortError(
            "model",
            loaded.version,
            "recorded_split",
            f"model version {loaded.version} does not record its training sites; "
            "its held-out rows are unknown",
        )
    sites = [s for s in params["sites"].split(",") if s]
    trained = ~evaluation_mask(card, frame.drop(columns=[ROW_ID], errors="ignore"))
    if sites and card.site_column:
        trained &= frame[card.site_column].isin(sites).to_numpy()
    if int(trained.sum()) != len(loaded.reference):
        raise CohortError(
            "model",
            loaded.version,
            "recorded_split",
            f"model version {loaded.version} trained on {len(loaded.reference)} rows, but its "
            f"recorded sites give {int(trained.sum())} outside the shared evaluation set; "
            "its held-out rows are unknown",
        )
    return trained
