"""What a copilot process needs, built from Settings in one place (never at import time)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from copilot.actions import ActionStore
from copilot.settings import Settings
from model_service.cards import get_card
from model_service.database import make_engine
from tools.context import ToolContext

MODEL_SERVICE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Deps:
    settings: Settings
    engine: Engine
    actions: ActionStore
    tools: ToolContext


@contextlib.asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """The database, the action store and the tools' clients; closed on exit."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(
            base_url=settings.model_service_url, timeout=MODEL_SERVICE_TIMEOUT_SECONDS
        ) as client:
            tools = ToolContext(client, settings.tracking_uri, get_card(settings.copilot_dataset))
            actions = ActionStore(  # reconciles executions whose process stopped
                engine,
                audit_key=settings.audit_key(),
                ttl_seconds=settings.copilot_action_ttl_seconds,
                four_eyes=settings.copilot_four_eyes,
                tools=tools,
            )
            yield Deps(settings, engine, actions, tools)
    finally:
        engine.dispose()
