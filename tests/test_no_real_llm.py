"""Tests never reach a real LLM, whatever the shell's COPILOT_LLM / OPENAI_API_KEY say."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import respx
from pydantic_ai import Agent, models
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from copilot.facts import RouteRequest
from copilot.llm.agents import build_agents
from copilot.llm.router import route
from copilot.settings import Settings
from model_service.cards import get_card
from tests.conftest import SHELL_LLM_VARIABLES


def test_the_shells_llm_settings_are_dropped_for_the_session(tmp_path: Path) -> None:
    assert [name for name in SHELL_LLM_VARIABLES if name in os.environ] == []
    settings = Settings(copilot_home=tmp_path)
    assert settings.copilot_llm == "offline" and settings.openai_api_key is None


@pytest.mark.anyio
async def test_a_real_model_request_is_refused_before_any_http() -> None:
    assert models.ALLOW_MODEL_REQUESTS is False
    model = OpenAIChatModel(
        "gpt-4.1-mini",
        provider=OpenAIProvider(base_url="https://llm.invalid/v1", api_key="sk-from-the-shell"),
    )
    with respx.mock(assert_all_called=False) as server:
        sent = server.route(host="llm.invalid").mock(return_value=httpx.Response(500))
        with pytest.raises(RuntimeError, match="ALLOW_MODEL_REQUESTS is False"):
            await Agent(model).run("hello")
    assert sent.call_count == 0


@pytest.mark.anyio
async def test_the_fixtures_agents_route_offline(tmp_path: Path) -> None:
    card = get_card("heart-disease")
    agents = build_agents(Settings(copilot_home=tmp_path), card)
    decided = await route(agents.router, RouteRequest("has VA Long Beach drifted?"))
    assert decided.tool == "check_drift" and decided.arguments == {"site": "VA Long Beach"}
    assert agents.narrator is None
