"""Drift checks against the champion's reference, on the real site batches."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from model_service.cards import DatasetCard
from model_service.drift import MAX_REPORTS, _prune_reports, check_drift, new_report_id


def _findings(report: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(f["feature"], f["issue"]): f["count"] for f in report["data_quality"]}


def test_va_long_beach_drifts_with_its_real_data_quality_problems(service: TestClient) -> None:
    response = service.post("/v1/drift", json={"site": "VA Long Beach"})
    assert response.status_code == 200
    report = response.json()
    assert report["drift_detected"] is True and report["current"] == {
        "rows": 200,
        "site": "VA Long Beach",
    }
    assert report["reference"]["sites"] == ["Cleveland"] and report["reference"]["rows"] == 243
    findings = _findings(report)
    assert findings[("chol", "recorded_as_zero")] == 49
    assert findings[("trestbps", "recorded_as_zero")] == 1
    assert findings[("ca", "missing_rate_jump")] == 198
    assert findings[("thal", "missing_rate_jump")] == 166
    features = {f["feature"]: f for f in report["features"]}
    age = features["age"]
    assert age["method"] == "ks" and age["drifted"] and 0 < age["statistic"] <= 1
    assert age["p_value"] <= age["p_value_adjusted"] < 0.05  # Benjamini-Hochberg never lowers p
    assert age["effect_size_method"] == "wasserstein_sd" and age["effect_size"] > 0
    assert (
        features["sex"]["method"] == "chisquare"
        and features["sex"]["effect_size_method"] == "jensen_shannon"
    )
    assert features["ca"]["tested"] is False and features["ca"]["drifted"] is False
    tested = [f for f in report["features"] if f["tested"]]
    assert report["share_drifted"] == sum(f["drifted"] for f in tested) / len(tested)


def test_swiss_cholesterol_is_all_zero_and_not_tested(service: TestClient) -> None:
    report = service.post("/v1/drift", json={"site": "Switzerland"}).json()
    assert _findings(report)[("chol", "recorded_as_zero")] == 123
    assert _findings(report)[("chol", "missing_rate_jump")] == 123
    chol = next(f for f in report["features"] if f["feature"] == "chol")
    assert chol["tested"] is False and "fewer than 10 recorded values" in chol["note"]


def test_the_training_site_itself_does_not_drift(service: TestClient) -> None:
    report = service.post("/v1/drift", json={"site": "Cleveland"}).json()
    assert report["drift_detected"] is False
    assert all(f["p_value_adjusted"] > 0.05 for f in report["features"] if f["tested"])


def test_the_evidently_html_report_is_saved_and_served(service: TestClient) -> None:
    report = service.post("/v1/drift", json={"site": "Hungary"}).json()
    page = service.get(report["report_url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Drifted Columns" in page.text and "thalch" in page.text  # Evidently's drift report
    assert service.get("/v1/drift/drift-20260101T000000Z-deadbeef").status_code == 404
    assert service.get("/v1/drift/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_drift_of_posted_patients_and_of_the_prediction_log(
    service: TestClient, heart_card: DatasetCard
) -> None:
    frame = heart_card.select_sites(heart_card.load_raw(), ["Hungary"]).head(60)
    patients = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in frame[heart_card.feature_names].to_dict(orient="records")
    ]
    start = datetime.now(UTC) - timedelta(seconds=1)
    posted = service.post("/v1/drift", json={"patients": patients})
    assert posted.status_code == 200 and posted.json()["current"] == {"rows": 60, "patients": 60}
    assert service.post("/v1/predict/batch", json={"patients": patients}).status_code == 200
    logged = service.post("/v1/drift", json={"since": start.isoformat()})
    assert logged.status_code == 200 and logged.json()["current"]["rows"] == 60
    assert _findings(logged.json()) == _findings(posted.json())


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return dict(error)


def test_drift_refuses_what_it_cannot_compare(service: TestClient, patient: dict[str, Any]) -> None:
    few = _error(service.post("/v1/drift", json={"patients": [patient] * 5}))
    assert (few["field"], few["rule"]) == ("patients", "min_rows")
    assert "at least 30 rows" in few["message"]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    none = _error(service.post("/v1/drift", json={"since": later}))
    assert none["field"] == "since" and "only 0 predictions logged since" in none["message"]
    unknown = _error(service.post("/v1/drift", json={"site": "Mars"}))
    assert (unknown["field"], unknown["value"]) == ("site", "Mars")
    assert "unknown site 'Mars'" in unknown["message"]
    # "since" with "site": the predictions logged from that site (none here)
    from_site = _error(service.post("/v1/drift", json={"site": "Hungary", "since": later}))
    assert "only 0 predictions logged from Hungary since" in from_site["message"]
    both = _error(service.post("/v1/drift", json={"site": "Hungary", "patients": [patient] * 30}))
    assert "got patients, site" in both["message"]
    extra = _error(service.post("/v1/drift", json={"site": "Hungary", "x": 1}))
    assert extra["message"] == (
        '"x" is not a known field; known fields: patients, site, since, report'
    )
    for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"):
        far = _error(service.post("/v1/drift", json={"since": edge}))
        assert (
            far["rule"] == "datetime_range" and "outside the range of UTC times" in far["message"]
        )


def test_columns_constant_in_both_batches_are_not_drift(
    heart_card: DatasetCard, tmp_path: Path
) -> None:
    frame = heart_card.select_sites(heart_card.load_raw(), ["Cleveland"])
    reference = frame.assign(fbs=False)
    current = frame.head(80).assign(fbs=False)
    features, _ = check_drift(heart_card, reference, current, tmp_path, new_report_id())
    fbs = next(f for f in features if f.feature == "fbs")
    assert fbs.p_value == 1.0 and fbs.drifted is False


def test_only_the_newest_reports_are_kept(tmp_path: Path) -> None:
    for second in range(MAX_REPORTS + 5):
        (tmp_path / f"drift-20260101T0000{second // 60:02d}Z-{second:08x}.html").write_text("x")
    _prune_reports(tmp_path)
    kept = sorted(path.name for path in tmp_path.glob("*.html"))
    assert len(kept) == MAX_REPORTS and kept[0] == "drift-20260101T000000Z-00000005.html"
