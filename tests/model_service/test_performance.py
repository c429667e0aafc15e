"""Performance metrics with confidence intervals, checked against known values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model_service.performance import performance, roc_auc_interval, wilson_interval


def test_wilson_interval_matches_the_textbook_value() -> None:
    # 8 of 10: Wilson 95% interval 0.4902 to 0.9433 (Newcombe 1998)
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_performance_counts_the_confusion_matrix_at_the_threshold() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.8])
    result = performance(y, p, 0.5)
    assert result["rows"] == 8
    assert result["sensitivity"]["count"] == 3 and result["sensitivity"]["of"] == 4
    assert result["specificity"]["count"] == 3 and result["specificity"]["of"] == 4
    assert result["accuracy"]["value"] == 6 / 8
    assert result["false_negatives"] == 1 and result["false_positives"] == 1
    assert result["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))
    assert result["roc_auc"]["ci_low"] <= result["roc_auc"]["value"] <= result["roc_auc"]["ci_high"]
    assert sum(b["rows"] for b in result["calibration"]) == 8


def test_the_bootstrap_is_reproducible_and_one_class_gives_no_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    assert roc_auc_interval(y, p) == roc_auc_interval(y, p)
    only_positive = performance(np.ones(5, int), np.full(5, 0.7), 0.5)
    assert only_positive["roc_auc"]["value"] is None
    assert only_positive["specificity"]["value"] is None
    assert only_positive["sensitivity"]["value"] == 1.0


def test_the_bootstrap_interval_agrees_with_scikit_learn_per_resample() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    p = np.round(np.clip(y * 0.2 + rng.uniform(0, 0.8, 60), 0, 1), 1)  # ties on purpose
    picks = np.random.default_rng(7).integers(0, 60, size=(1000, 60))
    slow = [roc_auc_score(y[k], p[k]) for k in picks if 0 < y[k].sum() < 60]
    low, high = roc_auc_interval(y, p, seed=7)  # type: ignore[misc]
    assert (low, high) == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])))
