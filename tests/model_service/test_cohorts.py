"""Cohort routes of the model service: filters, data, held-out performance, mistakes,
importance, interactions, what-if and counterfactuals, computed from the real model."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import roc_auc_score

from model_service.cards import DatasetCard
from model_service.cohorts import training_mask, with_row_ids
from model_service.registry import load_version
from model_service.risk_model import columns_from_frame
from model_service.training import evaluation_mask
from tests.conftest import TrainedRegistry

WOMEN_OVER_60_HUNGARY = [
    {"feature": "sex", "op": "==", "value": "female"},
    {"feature": "age", "op": ">", "value": 60},
    {"feature": "site", "op": "==", "value": "Hungary"},
]


def _problem(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert response.status_code == 422, body  # type: ignore[attr-defined]
    detail: dict[str, object] = body["detail"][0]
    return detail


def test_a_cohort_says_how_many_rows_matched_of_how_many(
    service: TestClient, heart_card: DatasetCard
) -> None:
    answer = service.post("/v1/cohort/summary", json={"where": WOMEN_OVER_60_HUNGARY}).json()
    raw = heart_card.load_raw()
    expected = raw[(raw.sex == "Female") & (raw.age > 60) & (raw.dataset == "Hungary")]
    assert answer["cohort"]["matched"] == len(expected) > 0
    assert answer["cohort"]["total"] == 920
    assert answer["cohort"]["description"] == "sex Female, age > 60, site Hungary"
    balance = answer["label_balance"]
    assert balance["positive"] == int((expected.num > 0).sum())
    age = next(f for f in answer["features"] if f["feature"] == "age")
    assert age["mean"] == pytest.approx(expected.age.mean())
    assert age["median"] == pytest.approx(expected.age.median())
    chol = next(f for f in answer["features"] if f["feature"] == "chol")
    assert chol["missing"] == int(((expected.chol == 0) | expected.chol.isna()).sum())


def test_exercise_angina_and_oldpeak_over_2(service: TestClient, heart_card: DatasetCard) -> None:
    where = [
        {"feature": "exang", "op": "==", "value": True},
        {"feature": "oldpeak", "op": ">", "value": 2},
    ]
    answer = service.post("/v1/cohort/summary", json={"where": where, "features": ["cp"]}).json()
    raw = heart_card.load_raw()
    expected = raw[(raw.exang == True) & (raw.oldpeak > 2)]  # noqa: E712
    assert answer["cohort"]["matched"] == len(expected)
    assert answer["cohort"]["description"] == "exang yes, oldpeak > 2"
    assert sum(answer["features"][0]["counts"].values()) == len(expected)


@pytest.mark.parametrize(
    ("where", "field", "rule", "words"),
    [
        ([{"feature": "bmi", "value": 30}], "where[0].feature", "known_feature", "'bmi'"),
        ([{"feature": "sex", "value": "other"}], "where[0].value", "known_category", "Female"),
        ([{"feature": "site", "value": "Boston"}], "where[0].value", "known_category", "Hungary"),
        (
            [{"feature": "cp", "op": ">", "value": "typical"}],
            "where[0].op",
            "operator_for_kind",
            ">",
        ),
        ([{"feature": "age", "op": ">", "value": 200}], "where", "empty_cohort", "0 of 920"),
    ],
)
def test_bad_filters_name_field_value_and_rule(
    service: TestClient, where: list[dict[str, object]], field: str, rule: str, words: str
) -> None:
    problem = _problem(service.post("/v1/cohort/summary", json={"where": where}))
    assert problem["field"] == field
    assert problem["rule"] == rule
    assert words in str(problem["message"])


def test_rows_by_id_and_unknown_ids(service: TestClient) -> None:
    answer = service.post("/v1/cohort/rows", json={"row_ids": [1, 920]}).json()
    first, last = answer["rows"]
    assert first["row_id"] == 1 and first["values"]["age"] == 63 and first["site"] == "Cleveland"
    assert last["row_id"] == 920 and last["site"] == "VA Long Beach" and last["outcome"] == 1
    assert 0 < first["probability"] < 1
    problem = _problem(service.post("/v1/cohort/rows", json={"row_ids": [921]}))
    assert problem["field"] == "row_ids[0]" and problem["rule"] == "known_row"


def test_performance_is_on_rows_the_champion_never_saw(
    service: TestClient, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    loaded = load_version(trained_registry.tracking_uri, heart_card.model_name, "1", None)
    frame = with_row_ids(heart_card.load_raw())
    trained = training_mask(heart_card, frame, loaded)
    assert trained.sum() == trained_registry.champion.rows_train
    # the shared evaluation set is held out, and the run's holdout metrics were measured on it
    evaluation = evaluation_mask(heart_card, heart_card.load_raw())
    assert evaluation.sum() == trained_registry.champion.rows_holdout
    assert not (evaluation & trained).any()
    held = frame[evaluation]
    p = loaded.model.probabilities(columns_from_frame(heart_card, held))
    assert roc_auc_score(heart_card.target(held), p) == pytest.approx(
        trained_registry.champion.metrics["holdout_roc_auc"]
    )
    # the champion trained on Cleveland: its held-out Cleveland rows are its evaluation rows
    cleveland = frame.dataset.to_numpy() == "Cleveland"
    assert ((cleveland & ~trained) == (cleveland & evaluation)).all()
    holdout = frame[cleveland & ~trained]
    p = loaded.model.probabilities(columns_from_frame(heart_card, holdout))
    threshold = loaded.model.threshold
    y = heart_card.target(holdout)

    where = [{"feature": "site", "value": "Cleveland"}]
    answer = service.post("/v1/cohort/performance", json={"where": where}).json()
    assert answer["rows"] == len(holdout)
    assert answer["cohort"]["training_rows_excluded"] == trained_registry.champion.rows_train
    auc = answer["roc_auc"]
    assert auc["value"] == pytest.approx(roc_auc_score(y, p))
    assert auc["ci_low"] < auc["value"] < auc["ci_high"]
    positives = y == 1
    assert answer["sensitivity"]["value"] == pytest.approx(
        float((p[positives] >= threshold).mean())
    )
    women = service.post(
        "/v1/cohort/performance", json={"where": [{"feature": "sex", "value": "Female"}]}
    ).json()
    assert women["rows"] == int(((frame.sex == "Female").to_numpy() & ~trained).sum())


def test_mistakes_are_counted_and_listed(service: TestClient) -> None:
    answer = service.post("/v1/cohort/mistakes", json={"limit": 3}).json()
    assert answer["false_negatives"] == sum(s["false_negatives"] for s in answer["by_site"])
    assert len(answer["false_negative_rows"]) == min(3, answer["false_negatives"])
    threshold = answer["threshold"]
    assert all(
        r["probability"] < threshold and r["outcome"] == 1 for r in answer["false_negative_rows"]
    )
    assert all(
        r["probability"] >= threshold and r["outcome"] == 0 for r in answer["false_positive_rows"]
    )
    performance = service.post("/v1/cohort/performance", json={}).json()
    assert performance["false_negatives"] == answer["false_negatives"]


def test_importance_is_mean_absolute_shap_and_interactions_are_exact(
    service: TestClient, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    answer = service.post("/v1/cohort/importance", json={"top": 3, "interactions": True}).json()
    assert answer["cohort"]["matched"] == 920
    loaded = load_version(trained_registry.tracking_uri, heart_card.model_name, "1", None)
    _, contributions, _ = loaded.model.explain(
        columns_from_frame(heart_card, heart_card.load_raw())
    )
    mean_abs = np.abs(contributions).mean(axis=0)
    top = np.argsort(-mean_abs)[:3]
    assert [r["feature"] for r in answer["importance"]] == [
        heart_card.features[i].name for i in top
    ]
    assert answer["importance"][0]["mean_abs_shap"] == pytest.approx(mean_abs[top[0]])
    assert len(answer["interactions"]) == 3
    if answer["kind"] == "logistic_regression":
        assert all(pair["mean_abs_interaction"] == 0 for pair in answer["interactions"])


def test_cohort_what_if_flips_labels(service: TestClient) -> None:
    body = {
        "where": [{"feature": "site", "value": "Cleveland"}],
        "changes": [{"feature": "chol", "op": "add", "value": -20}],
    }
    answer = service.post("/v1/cohort/what-if", json=body).json()
    assert answer["rows"] == 304
    assert answer["mean_change"] == pytest.approx(
        answer["mean_risk_after"] - answer["mean_risk_before"]
    )
    assert (
        answer["predicted_positive_after"]
        == answer["predicted_positive_before"]
        + answer["flipped_to_positive"]
        - answer["flipped_to_negative"]
    )
    bad = {"changes": [{"feature": "cp", "op": "add", "value": 1}]}
    assert _problem(service.post("/v1/cohort/what-if", json=bad))["rule"] == "known_category"


def test_counterfactual_brings_the_risk_under_the_threshold_without_age_or_sex(
    service: TestClient, heart_card: DatasetCard
) -> None:
    assert not heart_card.feature("age").actionable and not heart_card.feature("sex").actionable
    found = None
    for row_id in range(1, 60):
        answer = service.post("/v1/counterfactual", json={"row_id": row_id}).json()
        if answer["found"] and answer["changes"]:
            found = answer
            break
    assert found is not None
    assert found["original_probability"] >= found["threshold"] > found["probability"]
    changed = {c["feature"] for c in found["changes"]}
    assert changed <= {"trestbps", "chol", "fbs"}
    checked = service.post(
        "/v1/predict",
        json={**found["patient"], **{c["feature"]: c["to_value"] for c in found["changes"]}},
    ).json()
    assert checked["probability"] == pytest.approx(found["probability"])
    problem = _problem(service.post("/v1/counterfactual", json={}))
    assert problem["rule"] == "one_of"


def test_tree_interactions_of_a_cohort_are_the_mean_of_its_rows(
    trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    from model_service.importance import interaction_values, interactions, shap_values

    xgb = load_version(trained_registry.tracking_uri, heart_card.model_name, "2", None).model
    assert xgb.kind == "xgboost"
    raw = heart_card.load_raw()
    rows = np.flatnonzero((raw.sex == "Female").to_numpy())[:40]
    cohort = raw.iloc[rows]
    grouped = interaction_values(xgb, columns_from_frame(heart_card, cohort))
    # the interactions of a row add up to its SHAP values (the interaction matrix's rows)
    contributions = shap_values(xgb, columns_from_frame(heart_card, cohort))
    np.testing.assert_allclose(grouped.sum(axis=2), contributions, atol=1e-4)
    everyone = interaction_values(xgb, columns_from_frame(heart_card, raw))
    np.testing.assert_allclose(everyone[rows], grouped, atol=1e-6)  # per row: cacheable
    strongest = interactions(heart_card, grouped, 3)
    assert [p["rank"] for p in strongest] == [1, 2, 3]
    first = heart_card.feature_names.index(strongest[0]["features"][0])
    second = heart_card.feature_names.index(strongest[0]["features"][1])
    pair = np.abs(grouped[:, first, second] + grouped[:, second, first]).mean()
    assert strongest[0]["mean_abs_interaction"] == pytest.approx(pair)
