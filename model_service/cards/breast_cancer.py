"""Wisconsin Diagnostic Breast Cancer (scikit-learn's bundled copy): 569 aspirates, 30
nucleus features, to show that nothing is tied to one schema."""

from __future__ import annotations

import numpy as np
import pandas as pd

from model_service.cards import DatasetCard, Feature, Range


def load() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer  # noqa: PLC0415 - sklearn's bundled copy

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=_snake)
    # scikit-learn codes malignant as 0; the card's outcome is malignancy.
    frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
    return pd.DataFrame(frame.drop(columns=["target"]))


def _snake(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


_BREAST_CANCER_UNITS = {
    "radius": "mm",
    "texture": None,
    "perimeter": "mm",
    "area": "mm²",
    "smoothness": None,
    "compactness": None,
    "concavity": None,
    "concave_points": None,
    "symmetry": None,
    "fractal_dimension": None,
}


def card() -> DatasetCard:
    frame = load()
    features = []
    for column in frame.columns.drop("diagnosis"):
        if column.endswith("_error"):  # e.g. radius_error: standard error of the radius
            statistic, quantity = "standard error", column.removesuffix("_error")
        else:  # e.g. mean_radius, worst_concave_points
            statistic, _, quantity = column.partition("_")
        base_unit = _BREAST_CANCER_UNITS[quantity]
        # Cell-nucleus measurements from digitised images: never negative; the ceiling is
        # five times the largest value in the published set, far beyond any real nucleus.
        ceiling = float(np.ceil(frame[column].max() * 5 * 1000) / 1000)
        features.append(
            Feature(
                name=column,
                display_name=column.replace("_", " "),
                kind="numeric",
                unit=base_unit,
                description=f"{statistic.capitalize()} of nucleus {quantity.replace('_', ' ')} "
                "over the cells in the image",
                required=True,
                limits=Range(low=0.0, high=ceiling),
                measurement_error=float(frame[column].std() * 0.02),
            )
        )
    return DatasetCard(
        name="breast-cancer",
        title="Wisconsin Diagnostic Breast Cancer",
        description="569 fine-needle aspirates of breast masses, 30 nucleus features each.",
        source="scikit-learn's bundled copy (sklearn.datasets.load_breast_cancer)",
        model_name="breast-cancer-risk",
        target_column="diagnosis",
        target_rule="diagnosis == 'malignant'",
        outcome="malignancy",
        features=tuple(features),
        min_known_features=len(features),  # every nucleus feature is required
    )


def target(diagnosis: pd.Series) -> np.ndarray:
    """Malignant."""

    return np.asarray(diagnosis.to_numpy() == "malignant")
