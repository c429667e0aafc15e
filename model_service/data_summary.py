"""The data itself: statistics per feature, the label balance, rows by id.

Statistics are of the card's cleaned values (an impossible 0 counts as missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from model_service.cards import DatasetCard, Feature, clean_values
from model_service.cohorts import CohortError

MAX_ROWS_SHOWN = 50


def json_value(value: Any) -> Any:
    """A cell as JSON: NaN and None as null, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return json_value(value.item())
    return value


def feature_statistics(feature: Feature, values: Sequence[Any]) -> dict[str, Any]:
    """Rows, missing share and, by kind, mean/median/range or the count of each value."""
    cleaned = clean_values(feature, list(values))
    missing = int(pd.isna(cleaned).sum())
    rows = len(cleaned)
    stats: dict[str, Any] = {
        "feature": feature.name,
        "display_name": feature.display_name,
        "kind": feature.kind,
        "unit": feature.unit,
        "rows": rows,
        "missing": missing,
        "missing_share": missing / rows if rows else 0.0,
    }
    if feature.kind == "numeric":
        present = cleaned[~np.isnan(cleaned)]
        empty = len(present) == 0
        stats |= {
            "mean": None if empty else float(present.mean()),
            "median": None if empty else float(np.median(present)),
            "std": None if empty else float(present.std()),
            "min": None if empty else float(present.min()),
            "max": None if empty else float(present.max()),
        }
    elif feature.kind == "boolean":
        present = cleaned[~np.isnan(cleaned)]
        stats["counts"] = {"yes": int((present == 1).sum()), "no": int((present == 0).sum())}
    else:
        observed = pd.Series(cleaned).dropna().value_counts()
        stats["counts"] = {level: int(observed.get(level, 0)) for level in feature.categories or ()}
    return stats


def label_balance(card: DatasetCard, frame: pd.DataFrame) -> dict[str, Any]:
    """How many rows have the outcome and how many do not."""
    y = card.target(frame)
    positives = int(y.sum())
    return {
        "outcome": card.outcome,
        "positive": positives,
        "negative": len(y) - positives,
        "positive_share": positives / len(y) if len(y) else 0.0,
    }


def rows_by_id(frame: pd.DataFrame, row_ids: Sequence[int]) -> pd.DataFrame:
    """The rows with these ids, in the order asked; `CohortError` for an unknown id."""
    if len(row_ids) > MAX_ROWS_SHOWN:
        raise CohortError(
            "row_ids",
            len(row_ids),
            "max_rows",
            f'"row_ids": {len(row_ids)} ids; at most {MAX_ROWS_SHOWN} rows at a time',
        )
    positions = []
    for index, row_id in enumerate(row_ids):
        if not 1 <= row_id <= len(frame):
            raise CohortError(
                f"row_ids[{index}]",
                row_id,
                "known_row",
                f'"row_ids[{index}]": {row_id} is not a row id; ids run from 1 to {len(frame)}',
            )
        positions.append(row_id - 1)
    return frame.iloc[positions]  # `frame` is the whole dataset: ids are positions + 1
