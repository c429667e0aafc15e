"""The clinical graders: exact answers against the real model's numbers for the case's
patient (the grader asks the model service itself, never the transcript), narrative
faithfulness of every narrated prediction, explanation and what-if, and the verifier's
canaries."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_evals.evaluators import Evaluator

from copilot.llm.verifier import check, claims_from
from evals.cases import Answer, Expect, Script
from evals.grading import Context, Results, expectations, verdict
from evals.harness import Outcome
from model_service.cards import DatasetCard, get_card
from tools.context import ToolContext
from tools.predictions import ExplainInput, WhatIfInput, explain_prediction, what_if

PERCENT = r"([+-−]?\d+(?:\.\d+)?)\s*%"


def _tool_context(client: httpx.AsyncClient, card: DatasetCard) -> ToolContext:
    return ToolContext(client, "", card)


def _names(card: DatasetCard, feature: str) -> list[str]:
    found = card.feature(feature)
    names = {found.display_name, found.name, *found.synonyms}
    return sorted((n.lower() for n in names), key=len, reverse=True)


def _find(text: str, card: DatasetCard, feature: str, start: int = 0) -> int:
    """Where `text` first names `feature` at or after `start` (-1: nowhere)."""
    positions = [
        m.start()
        for name in _names(card, feature)
        for m in [re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])").search(text, start)]
        if m
    ]
    return min(positions, default=-1)


def _percentages(text: str) -> list[float]:
    return [float(m.replace("−", "-")) for m in re.findall(PERCENT, text)]


def _near(value: float, targets: list[float], tolerance: float) -> bool:
    return any(abs(value - t) <= tolerance + 1e-9 for t in targets)


async def _truth(client: httpx.AsyncClient, card: DatasetCard, patient: dict[str, Any]) -> Any:
    return await explain_prediction(_tool_context(client, card), ExplainInput(patient=patient))


def _top(text: str, card: DatasetCard, drivers: list[Any], count: int) -> list[str]:
    problems, at = [], 0
    for driver in drivers[:count]:
        found = _find(text, card, driver.feature, at)
        if found < 0:
            problems.append(f"rank {driver.rank} {driver.display_name} missing or out of order")
            continue
        others = [d for d in drivers[:count] if d.feature != driver.feature]
        following = [_find(text, card, d.feature, found + 1) for d in others]
        end = min([f for f in following if f > found] or [len(text)])
        if driver.direction != "no effect" and driver.direction not in text[found:end]:
            problems.append(f"{driver.display_name}: not said that it {driver.direction}")
        at = found + 1
    return problems


def _rank(text: str, card: DatasetCard, drivers: list[Any], feature: str) -> list[str]:
    driver = next(d for d in drivers if d.feature == feature)
    acceptable = {
        d.rank for d in drivers if math.isclose(abs(d.contribution), abs(driver.contribution))
    }
    found = _find(text, card, feature)
    if found < 0:
        return [f"{driver.display_name} is not named"]
    stated = re.search(
        r"\brank(?:s|ed)?\s+(?:#\s*|number\s+|no\.\s*)?(\d+)|\b(\d+)(?:st|nd|rd|th)\b", text[found:]
    )
    if stated is None:
        return [f"no rank stated for {driver.display_name}"]
    rank = int(stated.group(1) or stated.group(2))
    problems = [] if rank in acceptable else [f"rank {rank}, the model says {driver.rank}"]
    total = re.search(r"\bof (\d+)\b", text[found + stated.start() :])
    if total and int(total.group(1)) != len(drivers):
        problems.append(f"of {total.group(1)}, the model has {len(drivers)} features")
    return problems


def _direction(text: str, card: DatasetCard, drivers: list[Any], feature: str) -> list[str]:
    driver = next(d for d in drivers if d.feature == feature)
    found = _find(text, card, feature)
    if found < 0:
        return [f"{driver.display_name} is not named"]
    sentence = re.split(r"(?<!\d)\.(?!\d)", text[found:])[0]
    opposite = "lowers risk" if driver.direction == "raises risk" else "raises risk"
    if driver.direction not in sentence or opposite in sentence:
        return [f"{driver.display_name} {driver.direction}; the answer says otherwise"]
    return []


def _compare(text: str, drivers: list[Any], answer: Answer) -> list[str]:
    first, second = (next(d for d in drivers if d.feature == f) for f in answer.features)
    a, b = abs(first.contribution), abs(second.contribution)
    if math.isclose(a, b):
        return []
    truth = a > b if answer.relation == "more" else a < b
    said = re.match(r"\s*(yes|no)\b", text)
    if said is None:
        return ["the answer does not start with yes or no"]
    if (said.group(1) == "yes") != truth:
        return [f"said {said.group(1)}; |{first.feature}| {a:.3f} vs |{second.feature}| {b:.3f}"]
    return []


def _what_if(text: str, before: float, after: float) -> list[str]:
    delta = (after - before) * 100
    points = re.findall(r"([+-−]?\d+(?:\.\d+)?)\s*(?:%|percent(?:age)?)\s*points?", text)
    problems = []
    stated = [float(p.replace("−", "-")) for p in points]
    if not any(abs(p - delta) <= 0.05 + 1e-9 for p in stated):
        problems.append(f"change {stated or 'not stated'}, the model says {delta:+.2f} points")
    shown = _percentages(re.sub(r"[+-−]?\d+(?:\.\d+)?\s*%\s*points?", "", text))
    for name, value in (("before", before), ("after", after)):
        if not _near(value * 100, shown, 0.5):
            problems.append(f"{name} {value:.1%} not stated ({shown})")
    return problems


async def _answer_problems(  # noqa: PLR0911 - one per kind
    client: httpx.AsyncClient, card: DatasetCard, text: str, patient: dict[str, Any], answer: Answer
) -> list[str]:
    """Problems with an answer against the model's own numbers for the case's patient."""
    if answer.kind == "what_if":
        before = await _truth(client, card, patient)
        after = await _truth(client, card, {**patient, **answer.changes})
        return _what_if(text, before.probability, after.probability)
    explanation = await _truth(client, card, patient)
    drivers = explanation.drivers
    if answer.kind == "probability":
        if _near(explanation.probability * 100, _percentages(text), 0.5):
            return []
        return [f"probability {explanation.probability:.1%} not stated"]
    if answer.kind == "top":
        return _top(text, card, drivers, answer.count)
    if answer.kind == "rank":
        return _rank(text, card, drivers, answer.features[0])
    if answer.kind == "direction":
        return _direction(text, card, drivers, answer.features[0])
    return _compare(text, drivers, answer)


@dataclass
class ExactAnswer(Evaluator[Script, Outcome, Expect]):
    """Clinical answers state the real model's numbers for the case's patient: the top
    drivers in order, a feature's rank, a direction, which of two matters more, a what-if
    change in percentage points (one decimal). The grader asks the model service."""

    async def evaluate(self, ctx: Context) -> Results:
        expect = ctx.metadata or Expect()
        graded = [(i, w, s) for i, w, s in expectations(ctx) if w.answer is not None]
        if not graded:
            return {}
        if expect.patient is None:
            return verdict("exact_answer", ["the case names no patient"], 1)
        card = get_card(ctx.output.dataset)
        problems: list[str] = []
        async with httpx.AsyncClient(base_url=ctx.output.service_url, timeout=60) as client:
            for index, wanted, step in graded:
                assert wanted.answer is not None
                text = " ".join(step.messages).lower()
                found = await _answer_problems(client, card, text, expect.patient, wanted.answer)
                problems.extend(f"step {index + 1}: {p}" for p in found)
        return verdict("exact_answer", problems, len(graded))


def _refusal_problems(lowered: str) -> list[str]:
    """Too little of the patient recorded: the answer says so and gives no risk."""
    problems = [f"a risk of {p:g}% given without enough information" for p in _percentages(lowered)]
    if "not enough information" not in lowered:
        problems.append("does not say there is not enough information for a risk")
    return problems


async def _call_problems(  # noqa: PLR0911 - one per tool, and the refusals
    client: httpx.AsyncClient, card: DatasetCard, tool: str, arguments: dict[str, Any], text: str
) -> list[str] | None:
    """What a narration says that the model's numbers for the same request do not support
    (None: a tool whose narration is not graded). A patient with fewer inputs recorded than
    the card's minimum gets no risk: the answer must say so instead."""
    ctx = _tool_context(client, card)
    lowered = text.lower()
    if tool == "explain_prediction":
        fresh = await explain_prediction(ctx, ExplainInput.model_validate(arguments))
        if fresh.information.confidence == "insufficient":
            return _refusal_problems(lowered)
        return check(text, claims_from(fresh.model_dump(mode="json"), card))
    if tool == "predict_risk":
        response = await client.post("/v1/predict", json=arguments.get("patient"))
        fresh = response.json()
        if fresh["confidence"] == "insufficient":
            return _refusal_problems(lowered)
        allowed = [fresh["probability"] * 100, fresh["threshold"] * 100]
        problems = [
            f"unsupported {p:g}%" for p in _percentages(lowered) if not _near(p, allowed, 0.6)
        ]
        if not _near(allowed[0], _percentages(lowered), 0.6):
            problems.append(f"probability {fresh['probability']:.1%} not stated")
        if f"version {fresh['model']['version']}" not in lowered:
            problems.append(f"model version {fresh['model']['version']} not stated")
        return problems
    if tool == "what_if":
        changed = await what_if(ctx, WhatIfInput.model_validate(arguments))
        if changed.information.confidence == "insufficient":
            return _refusal_problems(lowered)
        return _what_if(lowered, changed.probability_before, changed.probability_after)
    return None


@dataclass
class Faithful(Evaluator[Script, Outcome, Expect]):
    """Every narrated prediction, explanation and what-if says only what the model says for
    the same request (explanations: the narrative verifier against freshly computed
    claims)."""

    async def evaluate(self, ctx: Context) -> Results:
        if ctx.inputs.canary is not None:
            return {}
        card = get_card(ctx.output.dataset)
        problems: list[str] = []
        narrated = 0
        async with httpx.AsyncClient(base_url=ctx.output.service_url, timeout=60) as client:
            for index, step in enumerate(ctx.output.steps):
                for position, call in enumerate(step.calls):
                    if position >= len(step.messages) or not isinstance(call.result, dict):
                        continue
                    found = await _call_problems(
                        client, card, call.tool, call.arguments, step.messages[position]
                    )
                    if found is None:
                        continue
                    narrated += 1
                    problems.extend(f"step {index + 1} {call.tool}: {p}" for p in found)
        if not narrated:
            return {}
        unfaithful = len({p.split(":")[0] for p in problems})
        return {
            "narrated_calls": narrated,
            "faithful_calls": narrated - unfaithful,
            **verdict("faithful", problems, narrated),
        }


@dataclass
class CanaryCaught(Evaluator[Script, Outcome, Expect]):
    """The verifier reports the planted problem (or nothing, for a faithful control)."""

    def evaluate(self, ctx: Context) -> Results:
        record = ctx.output.canary
        wanted = (ctx.metadata or Expect()).flags
        if record is None or wanted is None:
            return {}
        if wanted == "":
            problems = (
                [f"a faithful narrative was flagged: {record.problems}"] if record.problems else []
            )
        elif not any(p.startswith(wanted) for p in record.problems):
            problems = [f"not flagged as {wanted!r}: {record.problems}"]
        else:
            problems = []
        return verdict("canary", problems, 1)
