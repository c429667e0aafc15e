"""How good a candidate is: discrimination, calibration, the operating point, robustness, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from model_service.cards import DatasetCard, clean_values
from model_service.risk_model import Columns, RiskModel

CALIBRATION_BINS = 10
NOISE_REPEATS = 20


def youden_threshold(y: np.ndarray, probability: np.ndarray) -> float:
    """The probability cut that maximises sensitivity + specificity - 1 (Youden's J)."""
    fpr, tpr, thresholds = roc_curve(y, probability)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def expected_calibration_error(y: np.ndarray, probability: np.ndarray) -> float:
    """Mean |observed rate - mean predicted| over equal-width bins, weighted by bin size."""
    bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    error = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        error += in_bin.mean() * abs(y[in_bin].mean() - probability[in_bin].mean())
    return float(error)


def classification_metrics(
    y: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, float]:
    """Discrimination, calibration and the confusion-matrix rates at `threshold`."""
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(roc_auc_score(y, probability)),
        "pr_auc": float(average_precision_score(y, probability)),
        "brier": float(brier_score_loss(y, probability)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else 0.0,
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "calibration_error": expected_calibration_error(y, probability),
    }


def noise_flip_rate(model: RiskModel, columns: Columns, seed: int) -> float:
    """Share of rows whose predicted label flips under at least one of `NOISE_REPEATS`
    perturbations of the numeric inputs, each uniform within the card's measurement error."""
    rng = np.random.default_rng(seed)
    card: DatasetCard = model.card
    cleaned = {f.name: clean_values(f, list(columns[f.name])) for f in card.features}
    baseline = model.probabilities(cleaned) >= model.threshold
    flipped = np.zeros(len(baseline), dtype=bool)
    noisy_features = [f for f in card.features if f.kind == "numeric" and f.measurement_error > 0]
    for _ in range(NOISE_REPEATS):
        perturbed = dict(cleaned)
        for feature in noisy_features:
            values = cleaned[feature.name]
            noise = rng.uniform(-feature.measurement_error, feature.measurement_error, len(values))
            perturbed[feature.name] = values + noise  # NaN (missing) stays NaN
        flipped |= (model.probabilities(perturbed) >= model.threshold) != baseline
    return float(flipped.mean())


def save_plots(
    directory: Path,
    y: np.ndarray,
    probabilities: dict[str, np.ndarray],
    best: str,
    threshold: float,
) -> list[Path]:
    """ROC and calibration curves of every candidate, and the best one's confusion matrix."""
    import matplotlib  # noqa: PLC0415 - plotting is only needed while training

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, probability in probabilities.items():
        fpr, tpr, _ = roc_curve(y, probability)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, probability):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, holdout")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, directory / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, probability in probabilities.items():
        bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        present = np.unique(bins)
        predicted = [probability[bins == b].mean() for b in present]
        observed = [y[bins == b].mean() for b in present]
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="mean predicted risk", ylabel="observed rate", title="Calibration, holdout")
    ax.legend(loc="upper left", fontsize=8)
    paths.append(_save(fig, directory / "calibration.png"))

    matrix = confusion_matrix(y, probabilities[best] >= threshold, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["no", "yes"],
        yticklabels=["no", "yes"],
        xlabel="predicted",
        ylabel="actual",
        title=f"{best} at threshold {threshold:.2f}",
    )
    paths.append(_save(fig, directory / "confusion_matrix.png"))
    plt.close("all")
    return paths


def _save(fig: object, path: Path) -> Path:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
    return path
