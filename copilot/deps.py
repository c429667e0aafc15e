"""The one dependency container of a copilot process: built from Settings in one place
(never at import time), passed down explicitly. The graph runs with it as its runtime
context; the agent API, the chat and the terminal hold it through their Copilot.

`clock` is what "now" means to the stores that expire things (pending actions, turn
leases); tests set it instead of sleeping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio.to_thread
import httpx
from sqlalchemy import Engine

from copilot.actions import ActionStore
from copilot.conversations import ConversationStore
from copilot.llm.agents import Agents, build_agents
from copilot.monitoring import MonitorStore
from copilot.settings import Settings
from model_service.cards import get_card
from model_service.database import make_engine
from tools.context import ToolContext

MODEL_SERVICE_TIMEOUT_SECONDS = 60.0
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    engine: Engine
    actions: ActionStore
    conversations: ConversationStore
    monitoring: MonitorStore  # the monitor's checks, time series and alerts
    tools: ToolContext  # the tools' view: the model service client, MLflow, the card
    agents: Agents  # the router and the narrators
    clock: Clock = utc_now


def build_deps(
    settings: Settings,
    engine: Engine,
    model_service: httpx.AsyncClient,
    *,
    audit_key: bytes | None = None,
    clock: Clock = utc_now,
) -> Deps:
    """The container over an open engine and model-service client (creates missing tables)."""
    card = get_card(settings.copilot_dataset)
    monitoring = MonitorStore(engine, clock=clock)
    tools = ToolContext(model_service, settings.tracking_uri, card, history=monitoring.history)
    actions = ActionStore(  # reconciles executions whose process stopped
        engine,
        audit_key=settings.audit_key() if audit_key is None else audit_key,
        ttl_seconds=settings.copilot_action_ttl_seconds,
        four_eyes=settings.copilot_four_eyes,
        tools=tools,
        clock=clock,
    )
    return Deps(
        settings=settings,
        engine=engine,
        actions=actions,
        conversations=ConversationStore(engine, clock=clock),
        monitoring=monitoring,
        tools=tools,
        agents=build_agents(settings, card),
        clock=clock,
    )


@contextlib.asynccontextmanager
async def open_deps(settings: Settings, *, clock: Clock = utc_now) -> AsyncIterator[Deps]:
    """The database, the stores, the tools' clients and the LLM agents; closed on exit."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(
            base_url=settings.model_service_url, timeout=MODEL_SERVICE_TIMEOUT_SECONDS
        ) as client:
            yield await anyio.to_thread.run_sync(
                lambda: build_deps(settings, engine, client, clock=clock)
            )
    finally:
        engine.dispose()
