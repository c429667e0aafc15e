"""The trained model as the service holds it: card-driven encoding, an estimator, and a link.

Every model kind exposes an additive score that exact SHAP explains (the margin of a
logistic regression or of XGBoost, the vote share of a random forest). The served log-odds
are `slope * score + intercept` (Platt scaling when calibration helped, the identity
otherwise), so the contributions scaled by `slope` sum exactly to the served log-odds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from model_service.cards import DatasetCard, clean_values

ModelKind = Literal["logistic_regression", "random_forest", "xgboost"]
MODEL_KINDS: tuple[ModelKind, ...] = ("logistic_regression", "random_forest", "xgboost")

Columns = Mapping[str, Sequence[object] | np.ndarray]


class FeatureEncoder:
    """Turns card features into a numeric matrix: imputation (median / most frequent),
    a missing-value indicator for every feature that had gaps in training, one-hot
    categories, and optional standardisation of numeric values (for linear models)."""

    def __init__(self, card: DatasetCard, *, standardize: bool) -> None:
        self.card = card
        self.standardize = standardize
        self.fill: dict[str, Any] = {}
        self.has_missing: dict[str, bool] = {}
        self.center: dict[str, float] = {}
        self.scale: dict[str, float] = {}
        self.output_owner: list[int] = []
        self.output_names: list[str] = []

    def fit(self, columns: Columns) -> FeatureEncoder:
        for index, feature in enumerate(self.card.features):
            values = clean_values(feature, list(columns[feature.name]))
            if feature.kind == "categorical":
                observed = pd.Series(values).dropna()
                missing = values == None  # noqa: E711 - elementwise comparison on an object array
                self.fill[feature.name] = (
                    observed.mode().iloc[0] if len(observed) else feature.categories[0]  # type: ignore[index]
                )
                self.has_missing[feature.name] = bool(missing.any())
                names = [f"{feature.name}={level}" for level in feature.categories or ()]
            else:
                missing = np.isnan(values)
                observed_floats = values[~missing]
                if feature.kind == "boolean":
                    fill = float(np.round(observed_floats.mean())) if len(observed_floats) else 0.0
                else:
                    fill = float(np.median(observed_floats)) if len(observed_floats) else 0.0
                self.fill[feature.name] = fill
                self.has_missing[feature.name] = bool(missing.any())
                filled = np.where(missing, fill, values)
                scaled = self.standardize and feature.kind == "numeric"
                self.center[feature.name] = float(filled.mean()) if scaled else 0.0
                self.scale[feature.name] = float(filled.std() or 1.0) if scaled else 1.0
                names = [feature.name]
            if self.has_missing[feature.name]:
                names.append(f"{feature.name}=missing")
            self.output_names.extend(names)
            self.output_owner.extend([index] * len(names))
        return self

    def transform(self, columns: Columns) -> np.ndarray:
        """The encoded matrix, one row per input row."""
        n_rows = len(next(iter(columns.values()))) if columns else 0
        blocks: list[np.ndarray] = []
        for feature in self.card.features:
            raw = columns.get(feature.name)
            values = clean_values(feature, list(raw) if raw is not None else [None] * n_rows)
            if feature.kind == "categorical":
                levels = feature.categories or ()
                known = np.isin(values, levels)
                filled = np.where(known, values, self.fill[feature.name])
                missing = ~known
                block = (filled[:, None] == np.array(levels, dtype=object)[None, :]).astype(float)
            else:
                missing = np.isnan(values)
                filled = np.where(missing, self.fill[feature.name], values)
                standardized = (filled - self.center[feature.name]) / self.scale[feature.name]
                block = standardized[:, None]
            blocks.append(block)
            if self.has_missing[feature.name]:
                blocks.append(missing.astype(float)[:, None])
        return np.hstack(blocks) if blocks else np.empty((n_rows, 0))

    def group(self, per_column: np.ndarray) -> np.ndarray:
        """Sums per-output-column values (e.g. SHAP) into one value per card feature."""
        grouped = np.zeros((per_column.shape[0], len(self.card.features)))
        np.add.at(grouped.T, np.array(self.output_owner), per_column.T)
        return grouped


def columns_from_records(card: DatasetCard, records: Sequence[Mapping[str, object]]) -> Columns:
    return {name: [record.get(name) for record in records] for name in card.feature_names}


def columns_from_frame(card: DatasetCard, frame: pd.DataFrame) -> Columns:
    return {
        name: frame[name].tolist() if name in frame else [None] * len(frame)
        for name in card.feature_names
    }


class RiskModel:
    """A fitted risk model: `predict_proba` for MLflow, `logits` and `explain` for the service."""

    def __init__(
        self,
        *,
        card: DatasetCard,
        kind: ModelKind,
        encoder: FeatureEncoder,
        estimator: Any,
        background_mean: np.ndarray,
        slope: float = 1.0,
        intercept: float = 0.0,
        threshold: float = 0.5,
    ) -> None:
        self.card = card
        self.kind = kind
        self.encoder = encoder
        self.estimator = estimator
        self.background_mean = background_mean
        self.slope = slope
        self.intercept = intercept
        self.threshold = threshold
        self._tree_explainer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tree_explainer"] = None  # rebuilt on first use; not worth pickling
        return state

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """The additive score before the link (margin, or vote share for a forest)."""
        if self.kind == "logistic_regression":
            coef = self.estimator.coef_[0]
            return np.asarray(matrix @ coef + float(self.estimator.intercept_[0]), float)
        if self.kind == "xgboost":
            booster = self.estimator.get_booster()
            return np.asarray(booster.inplace_predict(matrix, predict_type="margin"), float)
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], float)

    def logits(self, columns: Columns) -> np.ndarray:
        return self.slope * self.score(self.encoder.transform(columns)) + self.intercept

    def probabilities(self, columns: Columns) -> np.ndarray:
        return sigmoid(self.logits(columns))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """scikit-learn's interface, used by MLflow's pyfunc flavour and its scoring server."""
        positive = self.probabilities(columns_from_frame(self.card, frame))
        return np.column_stack([1.0 - positive, positive])

    def explain(self, columns: Columns) -> tuple[float, np.ndarray, np.ndarray]:
        """Exact SHAP values in log-odds: (base value, contributions per card feature, logits).

        `base + contributions.sum(axis=1) == logits` up to floating-point error.
        """
        matrix = self.encoder.transform(columns)
        base, per_column = self._shap(matrix)
        contributions = self.encoder.group(per_column) * self.slope
        base_value = self.slope * base + self.intercept
        return base_value, contributions, self.slope * self.score(matrix) + self.intercept

    def _shap(self, matrix: np.ndarray) -> tuple[float, np.ndarray]:
        if self.kind == "logistic_regression":
            # Exact interventional SHAP for a linear model: w_j * (x_j - E[x_j]).
            coef = self.estimator.coef_[0]
            base = float(self.background_mean @ coef + self.estimator.intercept_[0])
            return base, (matrix - self.background_mean) * coef
        if self.kind == "xgboost":
            import xgboost  # noqa: PLC0415 - only tree models need it at explain time

            booster = self.estimator.get_booster()
            contribs = booster.predict(xgboost.DMatrix(matrix), pred_contribs=True)
            return float(contribs[0, -1]), np.asarray(contribs[:, :-1], float)
        if self._tree_explainer is None:
            import shap  # noqa: PLC0415 - slow import (numba); only forests need it

            self._tree_explainer = shap.TreeExplainer(self.estimator)
        values = np.asarray(self._tree_explainer.shap_values(matrix, check_additivity=False))
        expected = np.atleast_1d(self._tree_explainer.expected_value)
        if values.ndim == 3:  # (rows, columns, classes)
            return float(expected[-1]), values[:, :, -1]
        return float(expected[-1]), values


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, stable for any log-odds (no overflow at the extremes)."""
    return np.asarray(expit(logits), float)


def logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))
