"""The read-only tools against a real model service over loopback HTTP and a real MLflow."""

import math
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from model_service import registry
from model_service.app import ServiceConfig
from model_service.training import EVALUATION_SET_TAG
from tests.conftest import TrainedRegistry
from tools.context import ToolContext
from tools.drift import CheckDriftInput, check_drift
from tools.errors import InvalidToolInput, ModelServiceUnreachable, NotFound
from tools.predictions import (
    ExplainInput,
    PredictRiskInput,
    WhatIfInput,
    explain_prediction,
    predict_risk,
    what_if,
)
from tools.runs import CompareRunsInput, ListRunsInput, compare_runs, list_runs, model_info

pytestmark = pytest.mark.anyio


@pytest.fixture
async def ctx(live_service: str, service_config: ServiceConfig) -> AsyncIterator[ToolContext]:
    async with httpx.AsyncClient(base_url=live_service, timeout=30) as client:
        yield ToolContext(client, service_config.tracking_uri, service_config.card)


async def test_predict_then_explain_by_id(ctx: ToolContext, patient: dict[str, Any]) -> None:
    prediction = await predict_risk(ctx, PredictRiskInput(patient=patient))
    assert prediction.model.version == "1" and 0 < prediction.probability < 1
    explanation = await explain_prediction(
        ctx, ExplainInput(prediction_id=prediction.prediction_id)
    )
    assert explanation.probability == pytest.approx(prediction.probability, abs=1e-12)
    assert [d.rank for d in explanation.drivers] == list(range(1, 14))
    total = explanation.base_value + sum(d.contribution for d in explanation.drivers)
    assert total == pytest.approx(explanation.log_odds, abs=1e-9)
    assert explanation.base_probability == pytest.approx(
        1 / (1 + math.exp(-explanation.base_value))
    )
    for driver in explanation.drivers:
        expected = "raises risk" if driver.contribution > 0 else "lowers risk"
        assert driver.direction == expected or abs(driver.contribution) < 1e-9
    chol = next(d for d in explanation.drivers if d.feature == "chol")
    assert (chol.display_name, chol.unit, chol.value) == ("serum cholesterol", "mg/dl", 233)


async def test_the_services_validation_reaches_the_caller(
    ctx: ToolContext, patient: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToolInput) as raised:
        await predict_risk(ctx, PredictRiskInput(patient={**patient, "chol": 9000, "sex": "x"}))
    assert raised.value.problems == [
        "\"sex\": \"x\" is not one of 'Male', 'Female'",
        '"chol": 9000 exceeds the physiological limit 700 mg/dl',
    ]
    with pytest.raises(NotFound, match="not found in the prediction log"):
        await explain_prediction(ctx, ExplainInput(prediction_id="f" * 32))
    with pytest.raises(ValidationError, match="exactly one of prediction_id or patient"):
        ExplainInput()


async def test_what_if_moves_the_risk_through_the_changed_features(
    ctx: ToolContext, patient: dict[str, Any]
) -> None:
    prediction = await predict_risk(ctx, PredictRiskInput(patient=patient))
    result = await what_if(
        ctx,
        WhatIfInput(prediction_id=prediction.prediction_id, changes={"chol": 180, "sex": "Female"}),
    )
    assert result.probability_before == pytest.approx(prediction.probability, abs=1e-12)
    assert result.delta == pytest.approx(result.probability_after - result.probability_before)
    direct = await predict_risk(
        ctx, PredictRiskInput(patient={**patient, "chol": 180, "sex": "Female"})
    )
    assert result.probability_after == pytest.approx(direct.probability, abs=1e-12)
    assert [(c.feature, c.before, c.after) for c in result.changes] == [
        ("chol", 233, 180),
        ("sex", "Male", "Female"),
    ]
    log_odds = math.log(result.probability_after / (1 - result.probability_after)) - math.log(
        result.probability_before / (1 - result.probability_before)
    )
    moved = sum(c.contribution_after - c.contribution_before for c in result.changes)
    assert moved + result.other_features_shift == pytest.approx(log_odds, abs=1e-6)
    assert result.label_after == int(result.probability_after >= result.threshold)
    with pytest.raises(InvalidToolInput, match='"cholesterol" is not a feature of heart-disease'):
        await what_if(ctx, WhatIfInput(patient=patient, changes={"cholesterol": 180}))


async def test_too_little_information_gives_no_risk_and_names_what_is_missing(
    ctx: ToolContext, patient: dict[str, Any]
) -> None:
    """Below the card's minimum (7 of 13 inputs recorded) no risk is given; between it and
    complete the answer is low confidence; with everything recorded, high."""
    sparse = {"age": 63, "sex": "Male", "cp": "asymptomatic", "chol": 233}
    refused = await predict_risk(ctx, PredictRiskInput(patient=sparse))
    assert (refused.probability, refused.label, refused.label_name) == (None, None, None)
    known = refused.information
    assert known.confidence == "insufficient"
    assert (known.recorded, known.missing, known.total, known.needed) == (4, 9, 13, 7)
    assert known.filled_in[:2] == ["resting blood pressure", "fasting blood sugar > 120 mg/dl"]
    assert refused.prediction_id and refused.outcome == "heart disease"
    explained = await explain_prediction(ctx, ExplainInput(prediction_id=refused.prediction_id))
    assert explained.information.confidence == "insufficient"
    changed = await what_if(ctx, WhatIfInput(patient=sparse, changes={"trestbps": 120}))
    assert changed.information.confidence == "insufficient"
    assert changed.information.recorded == 4  # the less informed side: before the change

    some = await predict_risk(
        ctx, PredictRiskInput(patient={**patient, "ca": None, "thal": None, "chol": 0})
    )
    assert some.probability is not None and some.information.confidence == "low"
    assert (some.information.missing, some.information.recorded) == (3, 10)
    assert [w.display_name for w in some.warnings if w.feature == "chol"] == ["serum cholesterol"]
    full = await predict_risk(ctx, PredictRiskInput(patient=patient))
    assert full.information.confidence == "high" and full.information.filled_in == []


async def test_drift_at_va_long_beach(ctx: ToolContext) -> None:
    summary = await check_drift(ctx, CheckDriftInput(site="VA Long Beach"))
    assert summary.drift_detected and summary.drifted
    p_values = [f.p_value_adjusted for f in summary.drifted]
    assert p_values == sorted(p_values) and all(p < 0.05 for p in p_values)
    for drifted in summary.drifted:  # shown as people read them
        small = drifted.p_value_adjusted < 0.001
        assert (drifted.p_value_shown == "< 0.001") is small
    assert summary.display_names["trestbps"] == "resting blood pressure"
    assert {q.display_name for q in summary.data_quality if q.feature == "chol"} == {
        "serum cholesterol"
    }
    assert "ca" in summary.untested
    assert any(
        f.feature == "chol" and f.issue == "recorded_as_zero" and f.count == 49
        for f in summary.data_quality
    )
    assert summary.report_url.startswith(str(ctx.model_service.base_url).rstrip("/") + "/v1/drift/")
    assert (await ctx.model_service.get(summary.report_url)).status_code == 200
    with pytest.raises(InvalidToolInput, match="unknown site 'Narnia'"):
        await check_drift(ctx, CheckDriftInput(site="Narnia"))
    with pytest.raises(ValidationError, match="exactly one of site, since or patients"):
        CheckDriftInput()


async def test_model_info_and_runs(ctx: ToolContext, trained_registry: TrainedRegistry) -> None:
    info = await model_info(ctx)
    assert (info.version, info.alias, info.run_id) == (
        "1",
        "champion",
        trained_registry.champion.run_id,
    )
    runs = (await list_runs(ctx, ListRunsInput())).runs
    assert [r.run_id for r in runs] == [
        trained_registry.challenger.run_id,
        trained_registry.champion.run_id,
    ]
    assert runs[0].aliases == ["challenger"] and runs[1].aliases == ["champion"]
    assert runs[0].sites == ["Cleveland", "Hungary"] and runs[0].version == "2"
    assert runs[1].reason == "test champion" and "holdout_roc_auc" in runs[1].metrics
    hungary = (await list_runs(ctx, ListRunsInput(site="Hungary"))).runs
    assert [r.run_id for r in hungary] == [trained_registry.challenger.run_id]
    with pytest.raises(InvalidToolInput, match="unknown site 'Mars'"):
        await list_runs(ctx, ListRunsInput(site="Mars"))


async def test_compare_the_last_two_runs(
    ctx: ToolContext, trained_registry: TrainedRegistry
) -> None:
    comparison = await compare_runs(ctx, CompareRunsInput())
    first, second = trained_registry.champion.run_id, trained_registry.challenger.run_id
    assert [r.run_id for r in comparison.runs] == [first, second]  # oldest first
    auc = next(m for m in comparison.metrics if m.metric == "holdout_roc_auc")
    assert auc.delta == pytest.approx(auc.values[second] - auc.values[first])
    assert auc.best_run == max(auc.values, key=auc.values.__getitem__)
    brier = next(m for m in comparison.metrics if m.metric == "holdout_brier")
    assert not brier.higher_is_better and brier.best_run == min(
        brier.values, key=brier.values.__getitem__
    )
    assert comparison.params_differing["sites"] == {first: "Cleveland", second: "Cleveland,Hungary"}
    # both judged on the same rows (all four sites), said in the result
    shared = trained_registry.champion.evaluation_set
    assert comparison.evaluation_set == shared == trained_registry.challenger.evaluation_set
    assert [r.evaluation_set for r in comparison.runs] == [shared, shared]
    assert auc.values == {
        first: trained_registry.champion.metrics["holdout_roc_auc"],
        second: trained_registry.challenger.metrics["holdout_roc_auc"],
    }
    explicit = await compare_runs(ctx, CompareRunsInput(run_ids=[second, first]))
    assert [r.run_id for r in explicit.runs] == [second, first]
    with pytest.raises(NotFound, match="run 'nope' does not exist"):
        await compare_runs(ctx, CompareRunsInput(run_ids=[first, "nope"]))
    with pytest.raises(ValidationError, match="must be different runs"):
        CompareRunsInput(run_ids=[first, first])


async def test_runs_measured_on_different_rows_are_not_compared_on_them(
    ctx: ToolContext, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    """A run from before the shared evaluation set (its own holdout) is not comparable."""
    uri = trained_registry.copy(tmp_path)
    client = registry.client(uri)
    client.delete_tag(trained_registry.champion.run_id, EVALUATION_SET_TAG)
    older = ToolContext(ctx.model_service, uri, ctx.card)
    comparison = await compare_runs(older, CompareRunsInput())
    assert comparison.evaluation_set is None
    assert comparison.runs[0].evaluation_set is None
    names = [m.metric for m in comparison.metrics]
    assert "cv_roc_auc" in names and not [n for n in names if n.startswith("holdout_")]


async def test_an_unreachable_model_service_is_named(
    service_config: ServiceConfig, patient: dict[str, Any]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        ctx = ToolContext(client, service_config.tracking_uri, service_config.card)
        with pytest.raises(ModelServiceUnreachable, match=f"127.0.0.1:{port}.* is unreachable"):
            await predict_risk(ctx, PredictRiskInput(patient=patient))
