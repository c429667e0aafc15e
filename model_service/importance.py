"""Global importance and interactions over a cohort, exact, in log-odds.

Importance is the mean |SHAP| per card feature over the cohort's rows, from the same exact
SHAP values as `/v1/explain` (`RiskModel.explain`). Interactions are SHAP interaction
values: xgboost's own (`pred_interactions`), shap's TreeExplainer for a forest, and exactly
zero for a logistic regression (an additive model has no interactions). A pair's strength
is the mean over rows of |phi_ij + phi_ji| (the pair's whole interaction effect), summed
over the encoded columns each feature owns and scaled by the served link's slope.

Per-row values are exact per row, so a cohort's answer is their mean over its rows, which
is exactly what computing on the cohort alone would give. The service keeps them per model
version: the SHAP values of every row of the dataset are computed at training time and
logged with the run (`COHORT_SHAP_ARTIFACT`, with the digest of the rows they are for), so
the first importance question reads them instead of spending a forest's second on them;
interaction values (a forest's take about 20 ms a row) are computed for the rows a question
needs, in chunks, and kept.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from model_service.cards import DatasetCard
from model_service.risk_model import Columns, RiskModel, columns_from_frame

MAX_TOP = 50
COHORT_SHAP_ARTIFACT = "cohort/shap_values.npz"
# Rows per call into shap for a forest: its C code holds the GIL, so the service's other
# requests wait at most one chunk (SHAP values ~1 ms a row, interactions ~20 ms a row).
SHAP_CHUNK_ROWS = 64
INTERACTION_CHUNK_ROWS = 8


def shap_values(model: RiskModel, columns: Columns) -> np.ndarray:
    """Exact SHAP values per row and card feature, log-odds: (rows, features)."""
    _, contributions, _ = model.explain(columns)
    return contributions


def chunked(
    compute: Callable[[RiskModel, Columns], np.ndarray],
    model: RiskModel,
    columns: Columns,
    rows: np.ndarray,
    size: int,
) -> np.ndarray:
    """`compute(model, columns)` for the rows at positions `rows`, `size` rows per call."""
    arrays = {name: np.asarray(values, object) for name, values in columns.items()}
    parts = [
        compute(model, {name: values[rows[i : i + size]] for name, values in arrays.items()})
        for i in range(0, len(rows), size)
    ]
    return np.concatenate(parts)


def dataset_digest(card: DatasetCard, frame: pd.DataFrame) -> str:
    """The digest of the card's feature values of `frame`'s rows (what SHAP values depend on)."""
    return card.digest(frame[list(card.feature_names)].reset_index(drop=True))


def dataset_shap_artifact(model: RiskModel, frame: pd.DataFrame) -> bytes:
    """The SHAP values of every row of `frame` with their digest, as `.npz` bytes."""
    values = shap_values(model, columns_from_frame(model.card, frame))
    buffer = io.BytesIO()
    np.savez(buffer, values=values, digest=np.array(dataset_digest(model.card, frame)))
    return buffer.getvalue()


def read_dataset_shap(content: bytes, card: DatasetCard, frame: pd.DataFrame) -> np.ndarray | None:
    """The values of a `dataset_shap_artifact` when they are for exactly `frame`'s rows and
    the card's features, else None (the caller computes them)."""
    with np.load(io.BytesIO(content), allow_pickle=False) as stored:
        values, digest = np.asarray(stored["values"], float), str(stored["digest"])
    if digest != dataset_digest(card, frame) or values.shape != (len(frame), len(card.features)):
        return None
    return values if np.isfinite(values).all() else None


def importance(card: DatasetCard, contributions: np.ndarray, top: int) -> list[dict[str, Any]]:
    """The `top` features by mean |SHAP| over the rows, largest first, with the mean signed
    contribution (its usual direction)."""
    mean_abs = np.abs(contributions).mean(axis=0)
    mean_signed = contributions.mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:top]
    features = card.features
    return [
        {
            "rank": rank,
            "feature": features[i].name,
            "display_name": features[i].display_name,
            "mean_abs_shap": float(mean_abs[i]),
            "mean_shap": float(mean_signed[i]),
        }
        for rank, i in enumerate(order.tolist(), start=1)
    ]


def _interaction_matrix(model: RiskModel, matrix: np.ndarray) -> np.ndarray:
    """Per row, SHAP interaction values between encoded columns: (rows, cols, cols)."""
    columns = matrix.shape[1]
    if model.kind == "logistic_regression":
        return np.zeros((len(matrix), columns, columns))
    if model.kind == "xgboost":
        import xgboost  # noqa: PLC0415

        booster = model.estimator.get_booster()
        values = booster.predict(xgboost.DMatrix(matrix), pred_interactions=True)
        return np.asarray(values, float)[:, :columns, :columns]
    import shap  # noqa: PLC0415 - slow import (numba); only forests need it

    explainer = model._tree_explainer or shap.TreeExplainer(model.estimator)
    raw = explainer.shap_interaction_values(matrix)
    values = np.asarray(raw[-1] if isinstance(raw, list) else raw, float)
    return values[..., -1] if values.ndim == 4 else values  # (rows, cols, cols, classes)


def interaction_values(model: RiskModel, columns: Columns) -> np.ndarray:
    """Per row, SHAP interaction values between card features, log-odds: (rows, f, f)."""
    matrix = model.encoder.transform(columns)
    per_column = _interaction_matrix(model, matrix) * model.slope
    owner = np.array(model.encoder.output_owner)
    membership = np.zeros((len(owner), len(model.card.features)))
    membership[np.arange(len(owner)), owner] = 1.0
    # grouped[r, a, b] = sum of phi over the columns owned by feature a and feature b
    grouped: np.ndarray = membership.T[None] @ per_column @ membership[None]
    return grouped


def interactions(card: DatasetCard, grouped: np.ndarray, top: int) -> list[dict[str, Any]]:
    """The `top` feature pairs by mean |phi_ab + phi_ba| over the rows, strongest first."""
    count = len(card.features)
    pairs = []
    for a in range(count):
        for b in range(a + 1, count):
            strength = float(np.abs(grouped[:, a, b] + grouped[:, b, a]).mean())
            pairs.append((strength, a, b))
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    features = card.features
    return [
        {
            "rank": rank,
            "features": [features[a].name, features[b].name],
            "display_names": [features[a].display_name, features[b].display_name],
            "mean_abs_interaction": strength,
        }
        for rank, (strength, a, b) in enumerate(pairs[:top], start=1)
    ]
