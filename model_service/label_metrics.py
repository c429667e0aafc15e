"""Binary performance at the model's threshold: observed from labels, or expected from the
model's own (calibrated) probabilities before labels arrive.

The expectation is confidence-based performance estimation (CBPE, as NannyML does it):
a prediction with probability p is a positive with probability p, so the confusion
matrix's expected cells are sums of p and 1 - p over the predicted classes, and the
expected AUC is the chance that a random positive outranks a random negative with each
pair weighted by p_i (1 - p_j). It is exact for calibrated probabilities, and only then.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field


class Metrics(BaseModel):
    """AUC, sensitivity, specificity and accuracy at the threshold; None when the rows
    cannot give one (no positives for sensitivity, one class only for AUC)."""

    auc: float | None = Field(description="ROC AUC.")
    sensitivity: float | None = Field(description="True positives / positives.")
    specificity: float | None = Field(description="True negatives / negatives.")
    accuracy: float | None = Field(description="Correct labels / rows.")
    positives: float = Field(description="Positives (expected: the sum of probabilities).")
    rows: int


def _ratio(top: float, bottom: float) -> float | None:
    return float(top / bottom) if bottom > 0 else None


def observed_metrics(
    labels: Sequence[int], probabilities: Sequence[float], threshold: float
) -> Metrics:
    """Metrics against observed labels (1 = outcome present)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=float)
    predicted = p >= threshold
    positives = int(y.sum())
    negatives = len(y) - positives
    true_positive = float(np.sum(predicted & (y == 1)))
    true_negative = float(np.sum(~predicted & (y == 0)))
    return Metrics(
        auc=_observed_auc(y, p) if positives and negatives else None,
        sensitivity=_ratio(true_positive, positives),
        specificity=_ratio(true_negative, negatives),
        accuracy=_ratio(true_positive + true_negative, len(y)),
        positives=positives,
        rows=len(y),
    )


def expected_metrics(probabilities: Sequence[float], threshold: float) -> Metrics:
    """Metrics the probabilities expect, if calibrated (CBPE). Summed in ascending order:
    the same numbers whatever order the rows come in (a database returns rows logged at
    the same moment in any order)."""
    p = np.sort(np.asarray(probabilities, dtype=float))
    predicted = p >= threshold
    true_positive = float(p[predicted].sum())
    false_negative = float(p[~predicted].sum())
    true_negative = float((1 - p[~predicted]).sum())
    false_positive = float((1 - p[predicted]).sum())
    positives = true_positive + false_negative
    negatives = true_negative + false_positive
    return Metrics(
        auc=_expected_auc(p),
        sensitivity=_ratio(true_positive, positives),
        specificity=_ratio(true_negative, negatives),
        accuracy=_ratio(true_positive + true_negative, len(p)),
        positives=positives,
        rows=len(p),
    )


def _observed_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney: the share of (positive, negative) pairs ranked right, ties counting half."""
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p), dtype=float)
    sorted_p = p[order]
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    positives = int(y.sum())
    negatives = len(y) - positives
    rank_sum = float(ranks[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _expected_auc(p: np.ndarray) -> float | None:
    """Sum over pairs i != j with p_i > p_j of p_i (1 - p_j) (ties counting half), over the
    sum over all pairs i != j of p_i (1 - p_j)."""
    if len(p) < 2:
        return None
    sorted_p = np.sort(p)
    _, first = np.unique(sorted_p, return_index=True)
    negative_weight = 1 - sorted_p
    below = np.concatenate(([0.0], np.cumsum(negative_weight)))[first]  # strictly lower scores
    group_negative = np.add.reduceat(negative_weight, first)
    group_positive = np.add.reduceat(sorted_p, first)
    # within a tie group: pairs i != j, half credit: p_i (1 - p_j) summed over i != j
    within = group_positive * group_negative - np.add.reduceat(sorted_p * negative_weight, first)
    numerator = float(np.sum(group_positive * below) + 0.5 * np.sum(within))
    denominator = float(p.sum() * (1 - p).sum() - np.sum(p * (1 - p)))
    return numerator / denominator if denominator > 0 else None
