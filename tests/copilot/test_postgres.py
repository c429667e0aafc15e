"""The prediction log and the service on PostgreSQL (COPILOT_TEST_POSTGRES_URL)."""

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from model_service.app import ServiceConfig
from model_service.database import make_engine
from model_service.predictions import PredictionBatch, PredictionLog
from model_service.serving import new_ids
from tests.conftest import POSTGRES_SKIPPED, service_client

POSTGRES_URL = os.environ.get("COPILOT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIPPED)


@pytest.fixture(scope="module")
def pg_service(service_config: ServiceConfig) -> Iterator[TestClient]:
    assert POSTGRES_URL is not None
    with service_client(replace(service_config, database_url=POSTGRES_URL)) as client:
        yield client


def test_predictions_are_logged_and_explained_on_postgres(
    pg_service: TestClient, patient: dict[str, Any]
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    batch = [
        {**patient, "age": 40 + i % 30, "chol": 0 if i % 4 == 0 else 200 + i} for i in range(40)
    ]
    predictions = pg_service.post("/v1/predict/batch", json={"patients": batch}).json()[
        "predictions"
    ]
    first = predictions[0]
    pg_service.app.state.log.flush()  # type: ignore[attr-defined]
    explained = pg_service.post(
        "/v1/explain", json={"prediction_id": first["prediction_id"]}
    ).json()
    assert explained["probability"] == pytest.approx(first["probability"], abs=1e-12)
    report = pg_service.post("/v1/drift", json={"since": start.isoformat()}).json()
    assert report["current"]["rows"] >= 40
    zeros = {(f["feature"], f["issue"]): f["count"] for f in report["data_quality"]}
    assert zeros[("chol", "recorded_as_zero")] >= 10


def test_prediction_log_reads_its_own_writes(patient: dict[str, Any]) -> None:
    assert POSTGRES_URL is not None
    engine = make_engine(POSTGRES_URL)
    log = PredictionLog(engine)
    try:
        batch = PredictionBatch(
            ids=new_ids(2),
            created_at=datetime.now(UTC),
            dataset="heart-disease",
            model_name="m",
            model_version="9",
            threshold=0.5,
            probabilities=[0.25, 0.75],
            labels=[0, 1],
            records=[patient, {**patient, "chol": 0}],
        )
        log.append(batch)
        log.flush()
        log._pending.clear()  # force the reads to come from PostgreSQL
        first, second = (log.get(prediction_id) for prediction_id in batch.ids)
        assert first is not None and first["features"] == patient
        assert first["model_version"] == "9" and first["created_at"].tzinfo is not None
        assert second is not None and second["features"]["chol"] == 0 and second["label"] == 1
    finally:
        log.close()
        engine.dispose()
