"""The model service over HTTP (in process, lifespan included) on the shared registry."""

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from model_service import registry
from model_service.app import ServiceConfig
from model_service.schemas import MAX_BATCH_ROWS
from tests.conftest import TrainedRegistry, service_client, wait_until


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_health_ready_and_model_info(
    service: TestClient, trained_registry: TrainedRegistry
) -> None:
    assert service.get("/health").json() == {"status": "ok"}
    ready = service.get("/ready").json()
    assert ready["model"] == {"name": "heart-disease-risk", "version": "1", "alias": "champion"}
    info = service.get("/v1/model").json()
    assert info["run_id"] == trained_registry.champion.run_id
    assert (
        info["metrics"]["holdout_roc_auc"] == trained_registry.champion.metrics["holdout_roc_auc"]
    )
    chol = next(f for f in info["features"] if f["name"] == "chol")
    assert chol["unit"] == "mg/dl" and chol["limits"] == {"low": 40, "high": 700}
    assert chol["training_range"] == {"low": 131, "high": 564}
    assert next(f for f in info["features"] if f["name"] == "cp")["allowed"][3] == "asymptomatic"


def test_predict_returns_the_contract_fields(service: TestClient, patient: dict[str, Any]) -> None:
    response = service.post("/v1/predict", json=patient, headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-123"
    assert response.headers["server-timing"].startswith("app;dur=")
    body = response.json()
    assert set(body) == {
        "prediction_id",
        "probability",
        "label",
        "label_name",
        "threshold",
        "model",
        "warnings",
        "confidence",
    }
    assert 0 < body["probability"] < 1 and body["label"] == int(
        body["probability"] >= body["threshold"]
    )
    assert body["model"] == {"name": "heart-disease-risk", "version": "1", "alias": "champion"}
    assert body["warnings"] == []
    assert body["confidence"] == "high"


def test_confidence_says_whether_the_card_minimum_information_is_there(
    service: TestClient, patient: dict[str, Any]
) -> None:
    """Every patient is scored; below the card's minimum (7 of 13 inputs recorded) the
    prediction is marked insufficient, between it and complete it is low confidence."""
    sparse = {"age": 63, "sex": "Male", "cp": "asymptomatic", "chol": 233, "trestbps": 0}
    some = {k: v for k, v in patient.items() if k not in {"ca", "thal", "slope"}}
    answers = [service.post("/v1/predict", json=body).json() for body in (sparse, some, patient)]
    assert [a["confidence"] for a in answers] == ["insufficient", "low", "high"]
    assert all(0 < a["probability"] < 1 for a in answers)  # scored all the same
    explained = service.post("/v1/explain", json={"patient": sparse}).json()
    assert explained["confidence"] == "insufficient"
    batch = service.post("/v1/predict/batch", json={"patients": [sparse, patient]}).json()
    assert [p["confidence"] for p in batch["predictions"]] == ["insufficient", "high"]


def test_optional_features_may_be_absent_or_null_and_are_flagged(service: TestClient) -> None:
    body = service.post(
        "/v1/predict",
        json={
            "age": 63,
            "sex": "male",
            "cp": "Asymptomatic",
            "trestbps": 145,
            "chol": 0,
            "thal": None,
        },
    ).json()
    codes = {(w["feature"], w["code"]) for w in body["warnings"]}
    assert ("chol", "zero_read_as_missing") in codes
    assert ("thal", "missing_imputed") in codes and ("exang", "missing_imputed") in codes
    chol = next(w for w in body["warnings"] if w["feature"] == "chol")
    assert "recorded as 0" in chol["message"] and "mg/dl" in chol["message"]


def test_out_of_training_range_is_scored_with_a_warning(
    service: TestClient, patient: dict[str, Any]
) -> None:
    response = service.post("/v1/predict", json={**patient, "chol": 650, "age": 90})
    assert response.status_code == 200
    warnings = {w["feature"]: w for w in response.json()["warnings"]}
    assert warnings["chol"]["code"] == "outside_training_range"
    assert "650 mg/dl is outside the training range 131-564 mg/dl" in warnings["chol"]["message"]
    assert warnings["age"]["code"] == "outside_training_range"


@pytest.mark.parametrize(
    ("change", "field", "rule", "message"),
    [
        (
            {"chol": 9000},
            "chol",
            "physiological_limit",
            '"chol": 9000 exceeds the physiological limit 700 mg/dl',
        ),
        (
            {"trestbps": 20},
            "trestbps",
            "physiological_limit",
            '"trestbps": 20 is below the physiological limit 50 mmHg',
        ),
        (
            {"cholesterol": 200},
            "cholesterol",
            "extra_forbidden",
            '"cholesterol" is not a known field; known fields: age, sex',
        ),
        (
            {"sex": "robot"},
            "sex",
            "allowed_categories",
            "\"sex\": \"robot\" is not one of 'Male', 'Female'",
        ),
        ({"chol": "high"}, "chol", "float_type", '"chol": "high" is not a number'),
        ({"fbs": "yes"}, "fbs", "bool_type", '"fbs": "yes" is not true or false'),
        ({"ca": 1.5}, "ca", "whole_number", '"ca": 1.5 must be a whole number'),
        ({"age": None}, "age", "float_type", '"age": null is not a number'),
        ({"slope": []}, "slope", "string_type", '"slope": [] is not a string'),
        ({"thal": {"x": 1}}, "thal", "string_type", '"thal": {"x": 1} is not a string'),
    ],
)
def test_bad_values_get_422_naming_field_value_and_rule(
    service: TestClient,
    patient: dict[str, Any],
    change: dict[str, Any],
    field: str,
    rule: str,
    message: str,
) -> None:
    response = service.post("/v1/predict", json={**patient, **change})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["field"], error["rule"]) == (field, rule)
    assert error["message"].startswith(message)


def test_missing_required_fields_and_malformed_json(service: TestClient) -> None:
    body = service.post("/v1/predict", json={"age": 50}).json()["detail"]
    assert {e["message"] for e in body} == {'"sex" is required', '"cp" is required'}
    response = service.post(
        "/v1/predict", content=b'{"age": 50,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["message"].startswith("body: malformed JSON at character")
    response = service.post(
        "/v1/predict",
        content=b'{"age": NaN, "sex": "Male", "cp": "asymptomatic"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422  # NaN is not JSON
    assert response.json()["detail"][0]["message"].startswith("body: malformed JSON")
    assert service.post("/v1/predict", json=[1, 2]).status_code == 422


def test_batch_keeps_order_and_matches_single_predictions(
    service: TestClient, patient: dict[str, Any]
) -> None:
    patients = [{**patient, "age": age} for age in (35, 50, 65, 80)]
    predictions = service.post("/v1/predict/batch", json={"patients": patients}).json()[
        "predictions"
    ]
    assert len(predictions) == 4 and len({p["prediction_id"] for p in predictions}) == 4
    single = [service.post("/v1/predict", json=p).json()["probability"] for p in patients]
    assert [p["probability"] for p in predictions] == pytest.approx(single, abs=1e-12)


def test_batch_limits(service: TestClient, patient: dict[str, Any]) -> None:
    empty = service.post("/v1/predict/batch", json={"patients": []})
    assert (
        empty.status_code == 422
        and empty.json()["detail"][0]["message"] == '"patients" must not be empty'
    )
    too_many = service.post(
        "/v1/predict/batch", json={"patients": [patient] * (MAX_BATCH_ROWS + 1)}
    )
    assert too_many.status_code == 413
    assert "more than 10000 rows" in too_many.json()["detail"][0]["message"]
    bad_row = service.post(
        "/v1/predict/batch", json={"patients": [patient, {**patient, "chol": -5}]}
    )
    assert bad_row.status_code == 422
    assert bad_row.json()["detail"][0]["field"] == "patients[1].chol"


def test_explain_is_exact_and_additive(service: TestClient, patient: dict[str, Any]) -> None:
    explanation = service.post("/v1/explain", json={"patient": patient}).json()
    assert explanation["scale"] == "log-odds" and explanation["prediction_id"] is None
    total = explanation["base_value"] + sum(c["contribution"] for c in explanation["contributions"])
    assert total == pytest.approx(explanation["log_odds"], abs=1e-9)
    assert total == pytest.approx(_logit(explanation["probability"]), abs=1e-4)
    assert [c["feature"] for c in explanation["contributions"]] != []
    magnitudes = [abs(c["contribution"]) for c in explanation["contributions"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    values = {c["feature"]: c["value"] for c in explanation["contributions"]}
    assert values["chol"] == 233 and values["cp"] == "typical angina"
    predicted = service.post("/v1/predict", json=patient).json()["probability"]
    assert explanation["probability"] == pytest.approx(predicted, abs=1e-12)


def test_explain_by_prediction_id_and_unknown_ids(
    service: TestClient, patient: dict[str, Any]
) -> None:
    prediction = service.post("/v1/predict", json=patient).json()
    by_id = service.post("/v1/explain", json={"prediction_id": prediction["prediction_id"]}).json()
    assert by_id["prediction_id"] == prediction["prediction_id"]
    assert by_id["probability"] == pytest.approx(prediction["probability"], abs=1e-12)
    missing = service.post("/v1/explain", json={"prediction_id": "0" * 32})
    assert (
        missing.status_code == 404
        and "'00000000000000000000000000000000' not found" in missing.json()["detail"]
    )
    both = service.post("/v1/explain", json={"patient": patient, "prediction_id": "x"})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"][0]["message"]


def test_predictions_are_logged_with_their_inputs(
    service: TestClient, service_config: ServiceConfig, patient: dict[str, Any]
) -> None:
    prediction = service.post("/v1/predict", json={**patient, "chol": 0}).json()
    log = service.app.state.log  # type: ignore[attr-defined]
    log.flush()
    engine = create_engine(service_config.database_url)
    with engine.connect() as connection:
        row = (
            connection.execute(
                text("SELECT * FROM prediction_log WHERE prediction_id = :id"),
                {"id": prediction["prediction_id"]},
            )
            .mappings()
            .one()
        )
    engine.dispose()
    features = row["features"] if isinstance(row["features"], dict) else json.loads(row["features"])
    assert features["chol"] == 0 and features["sex"] == "Male"
    assert row["model_version"] == "1" and row["probability"] == pytest.approx(
        prediction["probability"]
    )


def test_metrics_count_requests_predictions_and_the_served_version(
    service: TestClient, patient: dict[str, Any]
) -> None:
    service.post("/v1/predict", json=patient)
    service.post("/v1/predict", json={**patient, "chol": 9000})
    text_ = service.get("/metrics").text
    assert (
        'model_service_requests_total{endpoint="/v1/predict",method="POST",status="200"}' in text_
    )
    assert (
        'model_service_requests_total{endpoint="/v1/predict",method="POST",status="422"}' in text_
    )
    assert "model_service_predictions_total{label=" in text_
    assert (
        'model_service_model_info{alias="champion",name="heart-disease-risk",version="1"} 1.0'
        in text_
    )
    assert 'model_service_request_duration_seconds_bucket{endpoint="/v1/predict"' in text_


def test_access_logs_are_json_ready_and_carry_no_patient_values(
    service: TestClient, patient: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from model_service.observability import JsonFormatter

    odd = {**patient, "chol": 287, "age": 71, "trestbps": 163}
    with caplog.at_level(logging.INFO, logger="model_service.access"):
        service.post("/v1/predict", json=odd)
        service.post("/v1/predict", json={**odd, "chol": 9123})
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "model_service.access"]
    assert len(lines) == 2
    entries = [json.loads(line) for line in lines]
    assert [e["status"] for e in entries] == [200, 422]
    assert entries[0]["endpoint"] == "/v1/predict" and entries[0]["model_version"] == "1"
    for entry in entries:  # these fields and no others: nowhere for a patient value to go
        assert set(entry) == {
            "ts",
            "level",
            "logger",
            "message",
            "request_id",
            "method",
            "endpoint",
            "status",
            "duration_ms",
            "model_version",
        }
    for line in lines:
        for value in ("9123", "Male", "typical angina"):
            assert value not in line


def test_body_size_limit(service: TestClient) -> None:
    from model_service.observability import MAX_BODY_BYTES

    response = service.post(
        "/v1/predict/batch",
        content=b" " * (MAX_BODY_BYTES + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["detail"][0]["rule"] == "body_size"


def test_not_ready_without_a_champion(
    tmp_path: Path, service_config: ServiceConfig, patient: dict[str, Any]
) -> None:
    config = replace(
        service_config,
        tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}",
        database_url=f"sqlite:///{tmp_path / 'copilot.db'}",
    )
    with service_client(config, wait_ready=False) as client:
        wait_until(lambda: "@champion" in client.get("/ready").text, what="the not-ready reason")
        response = client.get("/ready")
        assert response.status_code == 503
        assert (
            "no version of model 'heart-disease-risk' has the alias @champion"
            in response.json()["detail"]
        )
        assert "copilot train" in response.json()["detail"]
        assert client.post("/v1/predict", json=patient).status_code == 503
        assert client.get("/health").status_code == 200


def test_a_moved_champion_is_served_without_restart(
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    service_config: ServiceConfig,
    patient: dict[str, Any],
) -> None:
    uri = trained_registry.copy(tmp_path)
    config = replace(
        service_config, tracking_uri=uri, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    with service_client(config) as client:
        before = client.post("/v1/predict", json=patient).json()
        assert before["model"]["version"] == "1"
        registry.client(uri).set_registered_model_alias("heart-disease-risk", "champion", "2")
        wait_until(lambda: client.get("/ready").json()["model"]["version"] == "2", what="version 2")
        after = client.post("/v1/predict", json=patient).json()
        assert after["model"] == {"name": "heart-disease-risk", "version": "2", "alias": "champion"}
        assert after["probability"] != before["probability"]
        assert client.get("/v1/model").json()["kind"] == "xgboost"
        # the old prediction is still explained by the version that made it
        old = client.post("/v1/explain", json={"prediction_id": before["prediction_id"]}).json()
        assert old["model"]["version"] == "1"
        assert old["probability"] == pytest.approx(before["probability"], abs=1e-12)
        assert 'version="2"' in client.get("/metrics").text


def test_explaining_a_prediction_whose_version_was_deleted(
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    service_config: ServiceConfig,
    patient: dict[str, Any],
) -> None:
    uri = trained_registry.copy(tmp_path)
    client = registry.client(uri)
    config = replace(
        service_config, tracking_uri=uri, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    with service_client(config) as service_:
        old = service_.post("/v1/predict", json=patient).json()
        client.set_registered_model_alias("heart-disease-risk", "champion", "2")
        wait_until(lambda: service_.get("/ready").json()["model"]["version"] == "2", what="v2")
        explained = service_.post(
            "/v1/explain", json={"prediction_id": old["prediction_id"]}
        ).json()
        assert explained["model"] == {"name": "heart-disease-risk", "version": "1", "alias": None}
        # roll back: the version from the cache is the champion again, alias and all
        client.set_registered_model_alias("heart-disease-risk", "champion", "1")
        wait_until(lambda: service_.get("/ready").json()["model"]["version"] == "1", what="v1")
        assert service_.post("/v1/predict", json=patient).json()["model"]["alias"] == "champion"
        assert service_.get("/v1/model").json()["alias"] == "champion"
        newer = service_.post("/v1/predict", json=patient).json()
        client.set_registered_model_alias("heart-disease-risk", "champion", "2")
        wait_until(lambda: service_.get("/ready").json()["model"]["version"] == "2", what="v2")
        service_.app.state.holder._cache.clear()  # type: ignore[attr-defined]
        client.delete_model_version("heart-disease-risk", "1")
        gone = service_.post("/v1/explain", json={"prediction_id": newer["prediction_id"]})
        assert gone.status_code == 404
        assert (
            "version 1 of 'heart-disease-risk', which is no longer in the registry"
            in gone.json()["detail"]
        )


def test_a_champion_that_cannot_load_is_reported(
    tmp_path: Path, trained_registry: TrainedRegistry, service_config: ServiceConfig
) -> None:
    uri = trained_registry.copy(tmp_path)
    client = registry.client(uri)
    broken = client.create_model_version(
        "heart-disease-risk",
        source=str(tmp_path / "no-such-model"),
        run_id=trained_registry.champion.run_id,
    )
    client.set_registered_model_alias("heart-disease-risk", "champion", broken.version)
    config = replace(
        service_config, tracking_uri=uri, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    with service_client(config, wait_ready=False) as service_:
        wait_until(lambda: "failed to load" in service_.get("/ready").text, what="the load failure")
        detail = service_.get("/ready").json()["detail"]
        assert f"champion version {broken.version} of 'heart-disease-risk' failed to load" in detail


def test_an_unexpected_error_is_a_500_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.routing import Route, Router

    from model_service.observability import JsonFormatter, RequestMiddleware, ServiceMetrics

    def broken(_: object) -> None:
        chol = 280 + 7  # a patient value, known only at run time
        raise RuntimeError(f"chol={chol}")

    # A bare router: in the service, exceptions reach this middleware the same way.
    wrapped = RequestMiddleware(
        Router(routes=[Route("/boom", broken)]), ServiceMetrics(), lambda: "7"
    )  # type: ignore[arg-type]
    with TestClient(wrapped, raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        response = client.get("/boom", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "trace-1"
    assert "trace-1" in response.json()["detail"]
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged and logged[0].error_type == "RuntimeError"  # type: ignore[attr-defined]
    line = JsonFormatter().format(logged[0])
    assert "RuntimeError" in line and "chol=287" not in line  # the stack, never the message


def test_an_oversized_chunked_body_is_413(service: TestClient) -> None:
    from model_service.observability import MAX_BODY_BYTES

    def chunks() -> Iterator[bytes]:
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    response = service.post(
        "/v1/predict/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["detail"][0]["rule"] == "body_size"
