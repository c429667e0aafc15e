"""Observed outcomes (POST /v1/outcomes) and performance over time (POST /v1/performance)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from model_service.cards import DatasetCard
from model_service.label_metrics import expected_metrics, observed_metrics


def site_records(card: DatasetCard, site: str) -> tuple[list[dict[str, Any]], list[int]]:
    """A site's real patients as API records (gaps as null) and their observed labels."""
    frame = card.select_sites(card.load_raw(), [site])
    records = [
        {
            str(k): (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in row.items()
            if k in card.feature_names
        }
        for row in frame.to_dict(orient="records")
    ]
    for record in records:
        for feature in card.features:
            value = record[feature.name]
            if feature.integer and value is not None:
                record[feature.name] = int(value)
    return records, card.target(frame).tolist()


def test_an_outcome_is_recorded_once_and_idempotent(
    service: TestClient, patient: dict[str, Any]
) -> None:
    prediction = service.post("/v1/predict", json=patient).json()
    body = {"prediction_id": prediction["prediction_id"], "label": 1}
    first = service.post("/v1/outcomes", json=body)
    assert first.status_code == 201, first.text
    recorded = first.json()
    assert recorded["created"] is True and recorded["label_name"] == "heart disease"
    assert recorded["predicted"]["probability"] == pytest.approx(prediction["probability"])
    again = service.post("/v1/outcomes", json=body)
    assert again.status_code == 200
    assert again.json() == {**recorded, "created": False}
    other = service.post("/v1/outcomes", json={**body, "label": 0})
    assert other.status_code == 409
    detail = other.json()["detail"]
    assert "already has the observed label 1" in detail and "refusing label 0" in detail


def test_bad_outcomes_get_clear_errors(service: TestClient, patient: dict[str, Any]) -> None:
    unknown = service.post("/v1/outcomes", json={"prediction_id": "f" * 32, "label": 1})
    assert unknown.status_code == 404 and "not found in the prediction log" in unknown.text
    prediction_id = service.post("/v1/predict", json=patient).json()["prediction_id"]
    bad = service.post("/v1/outcomes", json={"prediction_id": prediction_id, "label": 2})
    assert bad.status_code == 422
    item = bad.json()["detail"][0]
    assert (item["field"], item["value"], item["rule"]) == ("label", 2, "target_values")
    assert "is not 0 (no heart disease) or 1 (heart disease)" in item["message"]
    text = service.post("/v1/outcomes", json={"prediction_id": prediction_id, "label": "1"})
    assert text.status_code == 422 and text.json()["detail"][0]["field"] == "label"
    extra = service.post("/v1/outcomes", json={"prediction_id": prediction_id, "label": 1, "x": 1})
    assert extra.status_code == 422 and "is not a known field" in extra.text


def test_a_site_is_recorded_and_checked(service: TestClient, patient: dict[str, Any]) -> None:
    made = service.post("/v1/predict?site=Hungary", json=patient).json()
    recorded = service.post(
        "/v1/outcomes", json={"prediction_id": made["prediction_id"], "label": 0}
    ).json()
    assert recorded["predicted"]["site"] == "Hungary"
    unknown = service.post("/v1/predict?site=Atlantis", json=patient)
    assert unknown.status_code == 422
    item = unknown.json()["detail"][0]
    assert item["rule"] == "known_site" and "unknown site 'Atlantis'" in item["message"]


def test_performance_is_estimated_until_labels_arrive_then_observed(
    service: TestClient, heart_card: DatasetCard
) -> None:
    records, labels = site_records(heart_card, "Switzerland")
    since = datetime.now(UTC) - timedelta(seconds=1)
    predictions = service.post(
        "/v1/predict/batch?site=Switzerland", json={"patients": records}
    ).json()["predictions"]
    probabilities = [p["probability"] for p in predictions]
    threshold = predictions[0]["threshold"]
    window = {"since": since.isoformat(), "site": "Switzerland"}

    before = service.post("/v1/performance", json=window).json()
    (version,) = before["versions"]
    assert version["estimated"] is True and version["labels"] == 0
    assert version["predictions"] == len(records) == before["predictions"]
    expected = expected_metrics(probabilities, threshold)
    assert version["metrics"] == version["expected"] == expected.model_dump()

    for prediction, label in zip(predictions, labels, strict=True):
        answer = service.post(
            "/v1/outcomes", json={"prediction_id": prediction["prediction_id"], "label": label}
        )
        assert answer.status_code == 201
    after = service.post("/v1/performance", json={**window, "min_labels": 30}).json()
    (version,) = after["versions"]
    observed = observed_metrics(labels, probabilities, threshold)
    assert version["estimated"] is False and version["labels"] == len(labels)
    assert version["metrics"] == version["observed"] == observed.model_dump()
    assert observed.auc == pytest.approx(roc_auc_score(labels, probabilities))
    predicted = np.asarray(probabilities) >= threshold
    truth = np.asarray(labels) == 1
    assert observed.sensitivity == pytest.approx((predicted & truth).sum() / truth.sum())


def test_performance_windows_are_validated(service: TestClient) -> None:
    now = datetime.now(UTC)
    backwards = service.post(
        "/v1/performance",
        json={"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()},
    )
    assert backwards.status_code == 422
    assert 'must be after "since"' in backwards.json()["detail"][0]["message"]
    bad_site = service.post("/v1/performance", json={"since": now.isoformat(), "site": "Mars"})
    assert bad_site.status_code == 422 and "unknown site 'Mars'" in bad_site.text
    empty = service.post("/v1/performance", json={"since": now.isoformat()}).json()
    assert empty["versions"] == [] and empty["predictions"] == 0


def _aucs_of_draws(draws: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The ROC AUC of each row of `draws` (0/1 labels) against the same `scores`, all at once:
    the Mann-Whitney statistic over the scores' ranks (ties averaged, as scikit-learn does)."""
    ranks = rankdata(scores)
    positives = draws.sum(axis=1)
    negatives = draws.shape[1] - positives
    rank_sums = draws @ ranks
    result: np.ndarray = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    return result


def test_expected_metrics_match_the_average_over_outcomes_drawn_from_the_probabilities() -> None:
    rng = np.random.default_rng(7)
    probabilities = np.round(rng.random(300), 2)
    expected = expected_metrics(probabilities.tolist(), 0.5)
    draws = (rng.random((3000, 300)) < probabilities).astype(int)
    aucs = _aucs_of_draws(draws, probabilities)
    # the vectorised AUC is scikit-learn's, checked on a few draws
    for draw, auc in zip(draws[:20], aucs[:20], strict=True):
        assert auc == pytest.approx(roc_auc_score(draw, probabilities), abs=1e-12)
    accuracies = ((probabilities >= 0.5) == draws).mean(axis=1)
    assert expected.auc == pytest.approx(np.mean(aucs), abs=0.002)
    assert expected.accuracy == pytest.approx(np.mean(accuracies), abs=0.002)
    assert expected.positives == pytest.approx(probabilities.sum())


def test_drift_of_logged_predictions_from_one_site(
    service: TestClient, heart_card: DatasetCard
) -> None:
    records, _ = site_records(heart_card, "VA Long Beach")
    since = datetime.now(UTC) - timedelta(seconds=1)
    assert (
        service.post("/v1/predict/batch?site=VA Long Beach", json={"patients": records}).status_code
        == 200
    )
    report = service.post("/v1/drift", json={"since": since.isoformat(), "site": "VA Long Beach"})
    assert report.status_code == 200, report.text
    assert report.json()["current"] == {
        "rows": len(records),
        "since": since.isoformat(),
        "newest_only": False,
        "logged_site": "VA Long Beach",
    }
    too_few = service.post("/v1/drift", json={"since": since.isoformat(), "site": "Cleveland"})
    assert too_few.status_code == 422 and "only 0 predictions logged from Cleveland" in too_few.text
