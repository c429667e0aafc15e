"""The narrative verifier: faithful summaries pass, each kind of unfaithful claim is caught."""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd
import pytest

from copilot import narration
from copilot.verifier import Claims, check, claims_from
from model_service.app import ServiceConfig
from model_service.cards import DatasetCard
from tools.context import ToolContext
from tools.predictions import ExplainInput, explain_prediction

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def explanations(
    live_service: str, service_config: ServiceConfig, heart_card: DatasetCard
) -> AsyncIterator[list[dict[str, Any]]]:
    """20 real patients from all four sites (gaps and impossible zeros included)."""
    frame = heart_card.load_raw()
    rows = pd.concat([frame[frame.dataset == site].head(5) for site in heart_card.sites()])
    async with httpx.AsyncClient(base_url=live_service, timeout=30) as client:
        ctx = ToolContext(client, service_config.tracking_uri, heart_card)
        results = []
        for record in rows[heart_card.feature_names].to_dict(orient="records"):
            patient = {
                k: (None if pd.isna(v) else (int(v) if k in {"age", "ca"} else v))
                for k, v in record.items()
            }
            explained = await explain_prediction(ctx, ExplainInput(patient=patient))
            results.append(explained.model_dump(mode="json"))
        yield results


async def test_twenty_faithful_summaries_raise_no_alarm(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    assert len(explanations) == 20
    flagged = 0
    for explanation in explanations:
        text = narration.explain_prediction(explanation)
        claims = claims_from(explanation, heart_card)
        flagged += bool(claims.flagged_features)
        assert check(text, claims) == [], text
    assert flagged >= 10  # the VA and Swiss rows carry missing inputs that must be named


def _summary(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> tuple[str, Claims, dict[str, Any]]:
    explanation = explanations[0]  # a complete Cleveland patient
    return (
        narration.explain_prediction(explanation),
        claims_from(explanation, heart_card),
        explanation,
    )


async def test_a_flipped_direction_is_caught(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    text, claims, explanation = _summary(explanations, heart_card)
    top = explanation["drivers"][0]
    opposite = "lowers risk" if top["direction"] == "raises risk" else "raises risk"
    flipped = text.replace(f"{top['direction']} (", f"{opposite} (", 1)
    assert any(p.startswith(f"flipped direction: {top['feature']}") for p in check(flipped, claims))


async def test_an_invented_number_and_feature_are_caught(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    text, claims, _ = _summary(explanations, heart_card)
    problems = check(text + " A troponin of 3.7 raises risk.", claims)
    assert "unsupported number: 3.7" in problems
    assert any(p.startswith("unknown feature: 'a troponin of") for p in problems)


async def test_a_wrong_probability_is_caught(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    text, claims, explanation = _summary(explanations, heart_card)
    shown = f"{explanation['probability']:.0%}"
    wrong = f"{min(99, round(explanation['probability'] * 100) + 17)}%"
    problems = check(text.replace(f"Risk {shown}", f"Risk {wrong}", 1), claims)
    assert any(p.startswith("wrong probability") for p in problems), problems


async def test_missing_caveats_are_caught(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    text, claims, _ = _summary(explanations, heart_card)
    assert "missing caveat: the model shows association, not causation" in check(
        text.replace("association, not causation", "a strong signal"), claims
    )
    assert any(
        p.startswith("missing caveat: the model version")
        for p in check(re.sub(r"version \d+", "the current model", text), claims)
    )
    va = next(e for e in explanations if claims_from(e, heart_card).flagged_features)
    va_text = narration.explain_prediction(va)
    va_claims = claims_from(va, heart_card)
    trimmed = va_text.split(" Missing inputs")[0]
    assert any(
        p.startswith("missing caveat:") and "missing or outside" in p
        for p in check(trimmed, va_claims)
    )


async def test_a_number_with_the_wrong_unit_is_caught(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    text, claims, explanation = _summary(explanations, heart_card)
    chol = next(d for d in explanation["drivers"] if d["feature"] == "chol")["value"]
    problems = check(text + f" Cholesterol was {chol} mmol/l.", claims)
    assert f"wrong unit: {chol} mmol/l (expected mg/dl)" in problems
