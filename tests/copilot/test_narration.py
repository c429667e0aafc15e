"""The deterministic narration says what clinicians need to hear: every caveat, the inputs
the model filled in apart from the patient's own, no risk without enough information, units
and association-not-causation in what-ifs, display names and readable p-values in drift,
retrain metrics against the champion, and a proposal's preview."""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from copilot import narration
from copilot.llm.verifier import check, claims_from, unsupported_numbers
from model_service.app import ServiceConfig
from model_service.cards import DatasetCard
from tools.context import ToolContext
from tools.predictions import (
    ExplainInput,
    PredictRiskInput,
    WhatIfInput,
    explain_prediction,
    predict_risk,
    what_if,
)

pytestmark = pytest.mark.anyio

# Cleveland's first patient without the three inputs the other sites rarely record
VA_LIKE = {
    "age": 63,
    "sex": "Male",
    "cp": "asymptomatic",
    "trestbps": 140,
    "chol": 0,
    "fbs": False,
    "restecg": "st-t abnormality",
    "thalch": 112,
    "exang": True,
    "oldpeak": 3.0,
}
SPARSE = {"age": 63, "sex": "Male", "cp": "asymptomatic", "chol": 233}


@pytest.fixture
async def ctx(live_service: str, service_config: ServiceConfig) -> AsyncIterator[ToolContext]:
    async with httpx.AsyncClient(base_url=live_service, timeout=30) as client:
        yield ToolContext(client, service_config.tracking_uri, service_config.card)


async def test_every_missing_value_caveat_is_said_grouped(ctx: ToolContext) -> None:
    result = (await predict_risk(ctx, PredictRiskInput(patient=VA_LIKE))).model_dump(mode="json")
    assert len(result["warnings"]) == 4  # more than the four once shown
    text = narration.predict_risk(result)
    assert (
        "Caveats: missing, filled in by the model: ST slope, vessels coloured by fluoroscopy, "
        "thallium stress test; recorded as 0, which is impossible, so filled in by the model: "
        "serum cholesterol." in text
    )
    assert "Low confidence: 4 of 13 inputs were missing and filled in by the model." in text
    assert unsupported_numbers(text, result) == []


async def test_more_than_four_caveats_are_all_said(ctx: ToolContext) -> None:
    """Six inputs filled in (the card's minimum of 7 recorded still met): all six are named,
    not the first four."""
    seven = {k: v for k, v in VA_LIKE.items() if k not in {"fbs", "restecg"}}  # chol is 0
    result = (await predict_risk(ctx, PredictRiskInput(patient=seven))).model_dump(mode="json")
    filled = [
        w["display_name"] for w in result["warnings"] if w["code"] != "outside_training_range"
    ]
    assert len(filled) > 4 and result["information"]["confidence"] == "low"
    text = narration.predict_risk(result)
    caveats = text[text.index("Caveats: ") :]
    assert [name for name in filled if name not in caveats] == []
    assert f"Low confidence: {result['information']['missing']} of 13 inputs" in text


def test_values_outside_the_training_range_are_said_with_their_range() -> None:
    warnings = [
        {
            "feature": f"f{i}",
            "display_name": f"feature {i}",
            "code": "missing_imputed",
            "message": f"feature {i} missing; imputed as 1 (the training median)",
        }
        for i in range(6)
    ] + [
        {
            "feature": "chol",
            "display_name": "serum cholesterol",
            "code": "outside_training_range",
            "message": "serum cholesterol 650 mg/dl is outside the training range 126-564 "
            "mg/dl; low confidence",
        }
    ]
    assert narration.caveats(warnings) == [
        "missing, filled in by the model: " + ", ".join(f"feature {i}" for i in range(6)),
        "serum cholesterol 650 mg/dl is outside the training range 126-564 mg/dl",
    ]


async def test_no_risk_without_the_minimum_information(
    ctx: ToolContext, heart_card: DatasetCard
) -> None:
    prediction = await predict_risk(ctx, PredictRiskInput(patient=SPARSE))
    text = narration.predict_risk(prediction.model_dump(mode="json"))
    assert text.startswith(
        "Not enough information for a risk: only 4 of 13 inputs are recorded, and at least 7 "
        "are needed; the model would have to fill in the rest. Missing: resting blood pressure, "
        "fasting blood sugar > 120 mg/dl, resting ECG, maximum heart rate,"
    )
    assert "%" not in text
    for tool, arguments in [
        (explain_prediction, ExplainInput(prediction_id=prediction.prediction_id)),
        (what_if, WhatIfInput(patient=SPARSE, changes={"trestbps": 120})),
    ]:
        result = (await tool(ctx, arguments)).model_dump(mode="json")
        said = narration.NARRATORS[tool.__name__](result)
        assert said.startswith("Not enough information for a risk: only 4 of 13")
        assert "%" not in said
        assert narration.focused_answer(tool.__name__, result, None) is None


async def test_explanations_show_the_filled_in_inputs_apart(
    ctx: ToolContext, heart_card: DatasetCard
) -> None:
    result = (await explain_prediction(ctx, ExplainInput(patient=VA_LIKE))).model_dump(mode="json")
    text = narration.explain_prediction(result)
    own, _, filled = text.partition(" 4 of 13 inputs were missing and filled in by the model")
    assert "Largest drivers among the patient's own values: " in own
    for name in ("vessels coloured by fluoroscopy", "thallium stress test", "ST slope"):
        assert name not in own and name in filled  # never among the patient's own reasons
    assert ", so these effects rest on the values it filled in: " in filled
    assert re.search(r"; together they (raise|lower|do not change) the risk\.", filled)
    # as faithful as before: every number, direction and caveat checks out
    assert check(text, claims_from(result, heart_card)) == []
    assert unsupported_numbers(text, result) == []
    focused = narration.top_drivers(result, 3)
    assert " 4 of 13 inputs were missing and filled in by the model: " in focused


async def test_what_if_says_units_and_association_not_causation(
    ctx: ToolContext, patient: dict[str, Any]
) -> None:
    result = (
        await what_if(
            ctx,
            WhatIfInput(
                patient={k: v for k, v in patient.items() if k != "thalch"},
                changes={"chol": 180, "thalch": 150, "exang": True},
            ),
        )
    ).model_dump(mode="json")
    text = narration.what_if(result)
    assert text.startswith(
        "With serum cholesterol 233 mg/dl -> 180 mg/dl, maximum heart rate missing (filled in "
        "by the model) -> 150 bpm, exercise-induced angina no -> yes, the risk "
    )
    assert text.endswith(
        "The model shows association, not causation: it does not say that changing this in "
        "the patient would change their risk."
    )
    assert unsupported_numbers(text, result) == []
    impossible = (
        await what_if(ctx, WhatIfInput(patient={**patient, "chol": 0}, changes={"chol": 240}))
    ).model_dump(mode="json")
    assert narration.what_if(impossible).startswith(
        "With serum cholesterol missing (filled in by the model) -> 240 mg/dl, the risk "
    )


def test_drift_is_told_with_display_names_and_readable_p_values() -> None:
    result = {
        "drift_detected": True,
        "features_drifted": 2,
        "features_tested": 10,
        "drifted": [
            {"display_name": "resting ECG", "p_value_adjusted": 0.0},
            {"display_name": "maximum heart rate", "p_value_adjusted": 0.0004},
            {"display_name": "resting blood pressure", "p_value_adjusted": 0.031},
        ],
        "data_quality": [
            {
                "feature": "trestbps",
                "display_name": "resting blood pressure",
                "detail": "missing in 28% of rows against 0% in the reference",
            }
        ]
        * 5,
        "current": {"site": "VA Long Beach"},
        "report_url": "http://host/v1/drift/r1",
    }
    text = narration.check_drift(result)
    assert (
        "e.g. resting ECG (adjusted p < 0.001), maximum heart rate (adjusted p < 0.001), "
        "resting blood pressure (adjusted p 0.031)." in text
    )
    assert (
        "Data quality: resting blood pressure: missing in 28% of rows against 0% in the "
        "reference;" in text
    )
    assert "trestbps" not in text
    assert "The other data-quality findings are in the table and the report." in text


EVALUATION_SET = {
    "rows": 184,
    "positives": 102,
    "sites": {"Cleveland": 61, "Hungary": 58, "Switzerland": 25, "VA Long Beach": 40},
    "digest": "f0b1b9a43f2c13a8",
}
SHARED = "184 rows (Cleveland 61, Hungary 58, Switzerland 25, VA Long Beach 40)"


def _retrained(champion: bool) -> dict[str, Any]:
    metrics = {"holdout_roc_auc": 0.871, "holdout_brier": 0.121}
    theirs = {"holdout_roc_auc": 0.85, "holdout_brier": 0.13}
    return {
        "id": "a1",
        "tool": "retrain_model",
        "status": "executed",
        "summary": "train logistic_regression on Cleveland + Hungary and register the best as "
        "@challenger (the champion is not changed)",
        "decided_by": "bob via ui:bob",
        "result": {
            "run_id": "0123456789abcdef",
            "version": "3",
            "alias": "challenger",
            "sites": ["Cleveland", "Hungary"],
            "best_kind": "logistic_regression",
            "metrics": metrics,
            "evaluation_set": EVALUATION_SET,
            "candidates": {"logistic_regression": 0.86},
            "champion_version": "1" if champion else None,
            "against_champion": [
                {"metric": k, "new": v, "champion": theirs[k], "change": v - theirs[k]}
                for k, v in metrics.items()
            ]
            if champion
            else [],
        },
    }


def test_a_retrain_is_told_against_the_champion() -> None:
    action = _retrained(champion=True)
    text = narration.action_outcome(action)
    assert text.startswith("Done: train logistic_regression on Cleveland + Hungary")
    assert (
        "New version 3 (@challenger): logistic_regression on Cleveland + Hungary, run "
        f"01234567. Against the champion, version 1, on the same evaluation set, {SHARED}, "
        "which neither trained on: ROC AUC 0.871 against 0.850 (+0.021); Brier score (lower "
        "is better) 0.121 against 0.130 (-0.009)." in text
    )
    assert unsupported_numbers(text, action) == []
    alone = narration.action_outcome(_retrained(champion=False))
    assert (
        f"On the evaluation set, {SHARED}: ROC AUC 0.871, Brier score (lower is better) "
        "0.121; there is no champion" in alone
    )


def _comparison(shared: bool) -> dict[str, Any]:
    runs = [
        {"run_id": "aaaaaaaa11", "sites": ["Cleveland"]},
        {"run_id": "bbbbbbbb22", "sites": ["Cleveland", "Hungary"]},
    ]
    return {
        "runs": runs,
        "evaluation_set": EVALUATION_SET if shared else None,
        "metrics": [
            {
                "metric": "holdout_roc_auc",
                "higher_is_better": True,
                "values": {"aaaaaaaa11": 0.881, "bbbbbbbb22": 0.892},
                "best_run": "bbbbbbbb22",
                "delta": 0.011,
            }
        ],
        "params_differing": {},
    }


def test_a_run_comparison_names_the_rows_both_were_measured_on() -> None:
    text = narration.compare_runs(_comparison(shared=True))
    assert text.startswith(
        f"Runs compared (holdout metrics on the same evaluation set, {SHARED}, which neither "
        "run trained on; cv_ metrics on each run's own training rows):\n"
    )
    assert "- holdout_roc_auc: aaaaaaaa (Cleveland) 0.881, bbbbbbbb (Cleveland + Hungary) " in text
    apart = narration.compare_runs(_comparison(shared=False))
    assert "they were not measured on the same rows, so their holdout metrics are left out" in (
        apart
    )


def test_a_promotion_is_told_with_the_gate_it_passed() -> None:
    detail = (
        "version 2: 0.892 against champion version 1: 0.881 on the shared evaluation set, "
        f"{SHARED} (margin 0.02)"
    )
    action = {
        "id": "a3",
        "tool": "promote_model",
        "status": "executed",
        "summary": "make the @challenger the @champion",
        "decided_by": "ann via ui:ann",
        "result": {
            "champion": "2",
            "previous_champion": "1",
            "forced": False,
            "checks": [{"name": "holdout_roc_auc", "passed": True, "detail": detail}],
            "serving": "2",
        },
    }
    text = narration.action_outcome(action)
    assert text == (
        "Done: make the @challenger the @champion (approved by ann via ui:ann). Version 2 is "
        "the @champion; version 1 is kept as @previous-champion. Gate: holdout_roc_auc "
        f"passed: {detail}. The model service now scores with version 2."
    )
    assert unsupported_numbers(text, action) == []


def test_a_proposal_says_before_approval_that_it_will_be_refused() -> None:
    action = {
        "id": "a2",
        "summary": "make the @challenger the @champion that scores patients, if it passes the "
        "promotion gate",
        "expires_at": "2026-01-01T00:15:00Z",
        "preview": {
            "will_fail": True,
            "note": "the promotion gate refuses version 2: holdout_roc_auc: version 2: 0.800 "
            "against champion version 1: 0.850 (margin 0.02)",
        },
    }
    text = narration.action_proposed(action)
    assert (
        "gate. It will be refused as things stand: the promotion gate refuses version 2: "
        "holdout_roc_auc: version 2: 0.800 against champion version 1: 0.850 (margin 0.02). "
        "Nothing has changed yet" in text
    )
    action["preview"] = {"will_fail": False, "note": "version 1 would be the @champion again"}
    assert "As things stand: version 1 would be the @champion again." in (
        narration.action_proposed(action)
    )
    assert "things stand" not in narration.action_proposed({**action, "preview": None})
