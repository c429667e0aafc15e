"""The LLM agents of a process, built once from Settings: the router and, with a real LLM,
the narrators (the offline provider narrates with the templates in copilot.narration)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.models import Model

from copilot.llm.narrator import ClinicalSummary, build_narrator, build_result_narrator
from copilot.llm.providers import llm_model, unavailable
from copilot.llm.router import Router, build_router
from copilot.llm.verifier import Claims
from copilot.settings import Settings
from model_service.cards import DatasetCard


@dataclass(frozen=True)
class Agents:
    router: Router
    model: Model  # what the router and the narrators run on
    # The LLM narrators; None with the offline provider, which uses the templates.
    narrator: Agent[Claims, ClinicalSummary] | None = None
    result_narrator: Agent[Any, str] | None = None


def build_agents(settings: Settings, card: DatasetCard) -> Agents:
    """The router over the model `COPILOT_LLM` names, and its narrators."""
    model = llm_model(settings, card)
    router = build_router(
        model,
        card=card,
        routing=settings.llm_routing,
        reader_hint=settings.copilot_llm_reader_hint,
        unavailable=functools.partial(unavailable, settings),
    )
    if settings.copilot_llm == "offline":
        return Agents(router, model)
    return Agents(router, model, build_narrator(model), build_result_narrator(model))
