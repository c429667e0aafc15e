"""Importance and interactions over cohorts: every row's SHAP values logged at training
time are the model's own, and interaction values computed for a cohort's rows and kept are
those of computing on the cohort alone."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model_service import registry
from model_service.cards import DatasetCard
from model_service.importance import (
    COHORT_SHAP_ARTIFACT,
    chunked,
    interaction_values,
    interactions,
    read_dataset_shap,
    shap_values,
)
from model_service.risk_model import columns_from_frame
from tests.conftest import TrainedRegistry


@pytest.mark.parametrize("version", ["1", "2"])
def test_the_logged_shap_values_are_the_served_models(
    version: str, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    loaded = registry.load_version(
        trained_registry.tracking_uri, heart_card.model_name, version, None
    )
    raw = heart_card.load_raw()
    content = registry.run_artifact(
        trained_registry.tracking_uri, loaded.run_id, COHORT_SHAP_ARTIFACT
    )
    assert content is not None
    stored = read_dataset_shap(content, heart_card, raw)
    assert stored is not None and stored.shape == (920, len(heart_card.features))
    computed = shap_values(loaded.model, columns_from_frame(loaded.model.card, raw))
    np.testing.assert_allclose(stored, computed, rtol=0, atol=1e-12)
    # in chunks (the GIL is let go between them) the values are the same
    rows = np.arange(len(raw))
    columns = columns_from_frame(loaded.model.card, raw)
    chunks = chunked(shap_values, loaded.model, columns, rows, 100)
    np.testing.assert_allclose(chunks, computed, rtol=0, atol=1e-12)


def test_values_for_other_rows_are_not_used(
    trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    run_id = trained_registry.champion.run_id
    content = registry.run_artifact(trained_registry.tracking_uri, run_id, COHORT_SHAP_ARTIFACT)
    assert content is not None
    raw = heart_card.load_raw()
    changed = raw.copy()
    changed.loc[3, "chol"] = 321
    assert read_dataset_shap(content, heart_card, changed) is None
    assert read_dataset_shap(content, heart_card, raw.iloc[:-1]) is None
    assert registry.run_artifact(trained_registry.tracking_uri, run_id, "no/such.npz") is None


def test_interactions_of_overlapping_cohorts_are_computed_once_per_row(
    service: TestClient, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    small = [
        {"feature": "site", "value": "Switzerland"},
        {"feature": "sex", "value": "female"},
    ]
    large = [{"feature": "site", "value": "Switzerland"}]
    model = registry.load_version(
        trained_registry.tracking_uri, heart_card.model_name, "1", None
    ).model
    raw = heart_card.load_raw()
    for where in (small, large):  # the large cohort reuses the small one's rows
        answer = service.post(
            "/v1/cohort/importance", json={"where": where, "top": 4, "interactions": True}
        ).json()
        mask = raw.dataset == "Switzerland"
        if where is small:
            mask &= raw.sex == "Female"
        assert answer["cohort"]["matched"] == int(mask.sum()) > 0
        alone = interaction_values(model, columns_from_frame(model.card, raw[mask]))
        expected = interactions(heart_card, alone, 4)
        assert [p["features"] for p in answer["interactions"]] == [p["features"] for p in expected]
        for ours, theirs in zip(answer["interactions"], expected, strict=True):
            assert ours["mean_abs_interaction"] == pytest.approx(
                theirs["mean_abs_interaction"], rel=1e-9, abs=1e-12
            )
