"""Exact SHAP in log-odds for every model kind, checked against the shap library."""

import numpy as np
import pytest

from model_service.cards import DatasetCard
from model_service.risk_model import MODEL_KINDS, ModelKind, RiskModel, columns_from_frame
from model_service.training import _fit


@pytest.fixture(scope="module")
def cleveland(heart_card: DatasetCard):  # type: ignore[no-untyped-def]
    frame = heart_card.select_sites(heart_card.load_raw(), ["Cleveland", "VA Long Beach"])
    return frame, heart_card.target(frame)


def _model(kind: ModelKind, card: DatasetCard, frame, y) -> RiskModel:  # type: ignore[no-untyped-def]
    model = _fit(kind, card.with_training_ranges(frame), frame, y, seed=0)
    model.slope, model.intercept = 0.8, -0.3  # a Platt link must keep additivity exact
    return model


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_contributions_sum_to_the_served_log_odds(
    kind: ModelKind, heart_card: DatasetCard, cleveland
) -> None:  # type: ignore[no-untyped-def]
    frame, y = cleveland
    model = _model(kind, heart_card, frame, y)
    columns = columns_from_frame(heart_card, frame.sample(60, random_state=1))
    base, contributions, logits = model.explain(columns)
    assert contributions.shape == (60, len(heart_card.features))
    np.testing.assert_allclose(base + contributions.sum(axis=1), logits, atol=1e-4)
    probability = model.probabilities(columns)
    np.testing.assert_allclose(np.log(probability / (1 - probability)), logits, atol=1e-9)


@pytest.mark.parametrize("kind", ["xgboost", "random_forest"])
def test_tree_contributions_match_shap_tree_explainer(
    kind: ModelKind, heart_card: DatasetCard, cleveland
) -> None:  # type: ignore[no-untyped-def]
    import shap

    frame, y = cleveland
    model = _model(kind, heart_card, frame, y)
    matrix = model.encoder.transform(columns_from_frame(heart_card, frame.head(20)))
    reference = np.asarray(shap.TreeExplainer(model.estimator).shap_values(matrix))
    if reference.ndim == 3:
        reference = reference[:, :, 1]
    _, contributions, _ = model.explain(columns_from_frame(heart_card, frame.head(20)))
    np.testing.assert_allclose(
        contributions, model.encoder.group(reference) * model.slope, atol=1e-5
    )


def test_linear_contributions_match_shap_linear_explainer(
    heart_card: DatasetCard, cleveland
) -> None:  # type: ignore[no-untyped-def]
    import shap

    frame, y = cleveland
    model = _model("logistic_regression", heart_card, frame, y)
    background = model.encoder.transform(columns_from_frame(heart_card, frame))
    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.LinearExplainer(model.estimator, masker)
    matrix = background[:20]
    expected = model.encoder.group(np.asarray(explainer.shap_values(matrix))) * model.slope
    _, contributions, _ = model.explain(columns_from_frame(heart_card, frame.head(20)))
    np.testing.assert_allclose(contributions, expected, atol=1e-8)


def test_missing_and_unknown_inputs_are_imputed_not_crashing(
    heart_card: DatasetCard, cleveland
) -> None:  # type: ignore[no-untyped-def]
    frame, y = cleveland
    model = _model("logistic_regression", heart_card, frame, y)
    records = {name: [None] for name in heart_card.feature_names}
    records |= {"age": [50], "sex": ["Female"], "cp": ["not a category"], "chol": [0]}
    probability = model.probabilities(records)
    assert probability.shape == (1,) and 0 < probability[0] < 1
