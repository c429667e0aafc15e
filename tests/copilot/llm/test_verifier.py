"""The narrative verifier: faithful summaries pass, each kind of unfaithful claim is caught."""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd
import pytest

from copilot import narration
from copilot.llm.verifier import Claims, check, claims_from
from model_service.app import ServiceConfig
from model_service.cards import DatasetCard
from tools.context import ToolContext
from tools.predictions import ExplainInput, explain_prediction

pytestmark = pytest.mark.anyio


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
    trimmed = re.sub(r" \d+ of \d+ inputs were missing and filled in.*?(?= From )", "", va_text)
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


def _faithful(claims: Claims, flip: bool = False) -> dict[str, Any]:
    drivers = []
    for index, driver in enumerate(claims.drivers[:3]):
        direction = driver.direction
        if flip and index == 0:
            direction = "lowers risk" if direction == "raises risk" else "raises risk"
        value = f"{driver.value} {driver.unit}" if driver.unit else str(driver.value)
        drivers.append(f"{driver.display_name} ({value}) {direction}.")
    caveats = [
        "The model shows association, not causation.",
        f"Scored by model version {claims.model_version}.",
    ]
    if claims.flagged_features:
        names = [d.display_name for d in claims.drivers if d.feature in claims.flagged_features]
        caveats.append(f"Missing or out-of-range inputs: {', '.join(names)}.")
    return {
        "headline": f"Predicted risk {claims.probability:.0%}.",
        "risk_statement": f"The baseline is {claims.base_probability:.0%}.",
        "top_drivers": drivers,
        "caveats": caveats,
    }


def _scripted(responses: list[str]) -> Any:
    """A FunctionModel that answers from a script: 'faithful' or 'flipped' per call."""
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    calls: list[list[Any]] = []

    def respond(messages: list[Any], info: AgentInfo) -> ModelResponse:
        from copilot.llm.verifier import Claims as ClaimsModel

        claims = ClaimsModel.model_validate(respond.claims)  # type: ignore[attr-defined]
        kind = responses[min(len(calls), len(responses) - 1)]
        calls.append(messages)
        return ModelResponse(
            parts=[
                ToolCallPart(info.output_tools[0].name, _faithful(claims, flip=kind == "flipped"))
            ]
        )

    model = FunctionModel(respond)
    return model, respond, calls


async def test_the_narrator_keeps_a_faithful_summary(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    from copilot.llm.narrator import build_narrator, narrate

    explanation = explanations[15]  # a VA Long Beach patient with gaps
    model, respond, calls = _scripted(["faithful"])
    respond.claims = claims_from(explanation, heart_card).model_dump()
    text, verified = await narrate(build_narrator(model), explanation, heart_card)
    assert verified and len(calls) == 1 and "association, not causation" in text


async def test_the_narrator_retries_with_the_reasons_then_accepts_the_fix(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    from copilot.llm.narrator import build_narrator, narrate

    explanation = explanations[0]
    model, respond, calls = _scripted(["flipped", "faithful"])
    respond.claims = claims_from(explanation, heart_card).model_dump()
    text, verified = await narrate(build_narrator(model), explanation, heart_card)
    assert verified and len(calls) == 2
    last_request = calls[1][-1]  # what the model was told after its first answer
    assert any("flipped direction" in str(getattr(p, "content", "")) for p in last_request.parts)
    assert check(text, claims_from(explanation, heart_card)) == []


async def test_the_narrator_falls_back_to_the_marked_template(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    from copilot.llm.narrator import TEMPLATE_MARK, build_narrator, narrate

    explanation = explanations[0]
    model, respond, calls = _scripted(["flipped"])
    respond.claims = claims_from(explanation, heart_card).model_dump()
    text, verified = await narrate(build_narrator(model), explanation, heart_card)
    assert not verified and text.endswith(TEMPLATE_MARK) and len(calls) == 3
    assert check(text.removesuffix(TEMPLATE_MARK), claims_from(explanation, heart_card)) == []
    offline_text, offline_verified = await narrate(None, explanation, heart_card)
    assert not offline_verified and TEMPLATE_MARK not in offline_text


def _claims() -> Claims:
    from copilot.llm.verifier import DriverClaim

    def driver(feature: str, names: list[str], value: Any, unit: str | None, up: bool) -> Any:
        return DriverClaim(
            feature=feature,
            display_name=names[0],
            names=names,
            value=value,
            unit=unit,
            direction="raises risk" if up else "lowers risk",
            contribution=0.3 if up else -0.1,
            rank=1,
        )

    return Claims(
        probability=0.44,
        threshold=0.49,
        base_probability=0.30,
        drivers=[
            driver("chol", ["serum cholesterol", "cholesterol", "chol"], 233, "mg/dl", True),
            driver("age", ["age"], 63, "years", True),
            driver("trestbps", ["resting blood pressure", "trestbps"], 120, "mmHg", False),
            driver("fbs", ["fasting blood sugar > 120 mg/dl", "fbs"], True, None, False),
        ],
        model_version="3",
        flagged_features=[],
    )


FAITHFUL = (
    "Predicted risk 44% against a baseline of 30% (threshold 49%). Serum cholesterol of "
    "233 mg/dl raises risk. Age 63 years raises risk. Resting blood pressure 120 mmHg "
    "lowers risk; it lowers risk less than the others. Fasting blood sugar > 120 mg/dl "
    "(yes) lowers risk. The model shows association, not causation. Model version 3."
)


def test_a_faithful_summary_with_numbers_inside_feature_names_passes() -> None:
    assert check(FAITHFUL, _claims()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("Age 63 years raises risk.", "Cholesterol and age lower risk."),
            "flipped direction: age",
        ),
        (("Serum cholesterol of 233 mg/dl raises", "Cholesterol does not raise"), "negated"),
        (("Age 63 years", "Age of 233 years"), "wrong value: age is 63"),
        (
            ("risk 44% against a baseline of 30%", "risk 30% against a baseline of 44%"),
            "wrong probability: 30%",
        ),
        (("(threshold 49%)", "(threshold 44%)"), "wrong threshold: 44%"),
        (("Model version 3.", "Model version 3, AUC .99."), "unsupported number: .99"),
        (
            ("Age 63 years raises risk.", "Age is associated with lower risk."),
            "flipped direction: age",
        ),
    ],
)
def test_reworded_unfaithful_claims_are_caught(change: tuple[str, str], problem: str) -> None:
    old, new = change
    assert old in FAITHFUL
    problems = check(FAITHFUL.replace(old, new), _claims())
    assert any(problem in p for p in problems), problems


def test_overlong_text_is_refused_quickly() -> None:
    assert check("cholesterol raises " * 2000, _claims())[0].startswith("too long")


async def test_the_checked_sentences_pass_the_verifier_for_every_patient(
    explanations: list[dict[str, Any]], heart_card: DatasetCard
) -> None:
    from copilot.llm.narrator import ClinicalSummary, checked_sentences

    for explanation in explanations:
        claims = claims_from(explanation, heart_card)
        sentences = checked_sentences(claims)
        summary = ClinicalSummary(
            headline=f"{claims.drivers[0].display_name} matters most for this patient.",
            risk_statement=sentences["risk"],
            top_drivers=sentences["drivers"],
            caveats=sentences["caveats"],
        )
        assert check(summary.render(), claims) == [], summary.render()
        assert len(sentences["caveats"]) == 2 + len(claims.flagged_features)


@pytest.mark.usefixtures("allow_model_requests")
async def test_a_small_model_copying_the_checked_sentences_is_verified_first_time(
    explanations: list[dict[str, Any]],
    heart_card: DatasetCard,
    tmp_path: Any,
    httpx2_mock: Any,
) -> None:
    """llama.cpp's wire shape: the summary comes back as Qwen's `<tool_call>` text, streamed
    with no usage; the sentences it copies are those the request carried."""
    import json

    from copilot.llm.narrator import build_narrator, narrate
    from copilot.llm.providers import llm_model
    from copilot.settings import Settings
    from tests.copilot.llm.llama_cpp import BASE_URL, COMPLETIONS, streamed

    explanation = explanations[15]  # a VA Long Beach patient with gaps
    settings = Settings(
        copilot_llm="openai-compatible:qwen2.5-coder-1.5b",
        copilot_llm_base_url=BASE_URL,
        copilot_home=tmp_path,
    )
    bodies: list[dict[str, Any]] = []

    def copy_the_sentences(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        facts = json.loads(next(m["content"] for m in body["messages"] if m["role"] == "user"))
        given = facts["use_these_sentences"]
        summary = {
            "headline": "A high risk, led by the chest pain type.",
            "risk_statement": given["risk"],
            "top_drivers": given["drivers"][:3],
            "caveats": given["caveats"],
        }
        call = {"name": "final_result", "arguments": summary}
        return streamed(f"<tool_call>\n{json.dumps(call)}\n</tool_call>")

    httpx2_mock.post(COMPLETIONS).mock(side_effect=copy_the_sentences)
    narrator = build_narrator(llm_model(settings, heart_card))
    text, verified = await narrate(narrator, explanation, heart_card)
    assert verified and len(bodies) == 1, bodies[-1]["messages"][-1]["content"][:1500]  # no retry
    claims = claims_from(explanation, heart_card)
    assert claims.flagged_features and check(text, claims) == []
    assert "association, not causation" in text and f"version {claims.model_version}" in text


@pytest.mark.parametrize("flip", [False, True], ids=["only-left-out", "and-a-flipped-direction"])
async def test_a_caveat_left_out_is_added_from_the_checked_sentences(
    explanations: list[dict[str, Any]], heart_card: DatasetCard, flip: bool
) -> None:
    """What the 1.5B model wrote: everything right but "Model version 1." left out. The
    checked sentence is appended and the summary passes at once; a summary that is also
    wrong elsewhere still goes back with the reasons."""
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from copilot.llm.narrator import build_narrator, checked_sentences, narrate

    explanation = explanations[15]  # a VA Long Beach patient with gaps
    claims = claims_from(explanation, heart_card)
    calls: list[Any] = []

    def leave_out_the_version(messages: list[Any], info: AgentInfo) -> ModelResponse:
        calls.append(messages)
        summary = _faithful(claims, flip=flip and len(calls) == 1)
        summary["caveats"] = [c for c in summary["caveats"] if "version" not in c.lower()]
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, summary)])

    text, verified = await narrate(
        build_narrator(FunctionModel(leave_out_the_version)), explanation, heart_card
    )
    assert verified and len(calls) == (2 if flip else 1)
    assert check(text, claims) == [] and checked_sentences(claims)["caveats"][-1] in text
    if flip:
        told = str(calls[1][-1].parts)
        assert "flipped direction" in told and "missing caveat" in told
