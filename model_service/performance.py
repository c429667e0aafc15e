"""How well a model did on labelled rows: discrimination, the operating point, calibration,
each with its row count and a 95% confidence interval.

Free of the service and of any model: give it the labels, the predicted probabilities and
the threshold (e.g. one site's rows, or one week of logged predictions with their outcomes).
Proportions (sensitivity, specificity, accuracy) get Wilson score intervals; ROC AUC gets a
percentile bootstrap with a fixed seed, so the same rows always give the same interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from model_service.evaluation import CALIBRATION_BINS, expected_calibration_error

CONFIDENCE_LEVEL = 0.95
Z_95 = 1.959963984540054  # the normal quantile for CONFIDENCE_LEVEL
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20260101


def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion; None with no trials."""
    if trials == 0:
        return None
    share = successes / trials
    denominator = 1 + Z_95**2 / trials
    centre = (share + Z_95**2 / (2 * trials)) / denominator
    half = Z_95 * math.sqrt(share * (1 - share) / trials + Z_95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_auc_interval(
    y: np.ndarray, probability: np.ndarray, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """The 95% percentile-bootstrap interval of ROC AUC (resamples holding one class only
    are skipped); None when the rows hold one class only."""
    if len(np.unique(y)) < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(y), size=(BOOTSTRAP_RESAMPLES, len(y)))
    labels, scores = y[picks], probability[picks]
    positives = labels.sum(axis=1)
    negatives = len(y) - positives
    usable = (positives > 0) & (negatives > 0)
    # Mann-Whitney: AUC from the ranks of the positives (ties get mid-ranks), all at once.
    ranks = rankdata(scores[usable], axis=1)
    n_pos, n_neg = positives[usable], negatives[usable]
    rank_sum = (ranks * labels[usable]).sum(axis=1)
    aucs = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def _rate(successes: int, trials: int) -> dict[str, Any]:
    interval = wilson_interval(successes, trials)
    return {
        "value": successes / trials if trials else None,
        "count": successes,
        "of": trials,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def calibration_bins(y: np.ndarray, probability: np.ndarray) -> list[dict[str, Any]]:
    """Equal-width bins of predicted risk: rows, mean predicted risk and observed rate."""
    bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    return [
        {
            "low": b / CALIBRATION_BINS,
            "high": (b + 1) / CALIBRATION_BINS,
            "rows": int((bins == b).sum()),
            "mean_predicted": float(probability[bins == b].mean()),
            "observed_rate": float(y[bins == b].mean()),
        }
        for b in np.unique(bins).tolist()
    ]


def performance(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC AUC, sensitivity, specificity and accuracy at `threshold`, Brier score and
    calibration, each with the rows it rests on. A metric the rows cannot give (AUC with
    one class, sensitivity without positives) is None."""
    y = np.asarray(y, dtype=int)
    probability = np.asarray(probability, dtype=float)
    predicted = probability >= threshold
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    true_positives = int((predicted & (y == 1)).sum())
    true_negatives = int((~predicted & (y == 0)).sum())
    both_classes = positives > 0 and negatives > 0
    auc_interval = roc_auc_interval(y, probability)
    return {
        "rows": len(y),
        "positives": positives,
        "negatives": negatives,
        "threshold": threshold,
        "confidence_level": CONFIDENCE_LEVEL,
        "roc_auc": {
            "value": float(roc_auc_score(y, probability)) if both_classes else None,
            "ci_low": auc_interval[0] if auc_interval else None,
            "ci_high": auc_interval[1] if auc_interval else None,
            "method": f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples",
        },
        "sensitivity": _rate(true_positives, positives),
        "specificity": _rate(true_negatives, negatives),
        "accuracy": _rate(true_positives + true_negatives, len(y)),
        "false_negatives": positives - true_positives,
        "false_positives": negatives - true_negatives,
        "brier": float(np.mean((probability - y) ** 2)) if len(y) else None,
        "calibration_error": expected_calibration_error(y, probability) if len(y) else None,
        "mean_predicted": float(probability.mean()) if len(y) else None,
        "observed_rate": positives / len(y) if len(y) else None,
        "calibration": calibration_bins(y, probability) if len(y) else [],
    }
