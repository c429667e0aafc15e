"""The LLM behind the router: the built-in offline model, or an OpenAI(-compatible) one.

`COPILOT_LLM=offline` runs `copilot.offline.understand` as a PydanticAI `FunctionModel`,
so the offline provider goes through exactly the agent code path a real model does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from copilot.offline import Memory, understand
from copilot.settings import Settings
from model_service.cards import DatasetCard

CONTEXT_MARKER = "Conversation context (JSON):"


def context_block(memory: Memory) -> str:
    """The part of the instructions that tells any model what "him" and "it" are."""
    return f"{CONTEXT_MARKER}\n" + json.dumps(
        {"last_prediction_id": memory.prediction_id, "last_patient": memory.patient}
    )


def _memory(instructions: str | None) -> Memory:
    found = re.search(re.escape(CONTEXT_MARKER) + r"\s*(\{.*\})", instructions or "", re.S)
    if found is None:
        return Memory()
    context = json.loads(found.group(1))
    return Memory(
        patient=context.get("last_patient"), prediction_id=context.get("last_prediction_id")
    )


def _last_user_text(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def offline_model(card: DatasetCard) -> FunctionModel:
    """The deterministic built-in model: no network, no weights."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1] if messages else None
        if isinstance(last, ModelRequest) and not any(
            isinstance(p, UserPromptPart) for p in last.parts
        ):  # our last answer was refused (validation or retry): say so, do not repeat it
            reasons = "; ".join(
                p.model_response() if isinstance(p, RetryPromptPart) else str(p.content)
                for p in last.parts
                if isinstance(p, (RetryPromptPart, ToolReturnPart))
            )
            return ModelResponse(parts=[TextPart(f"I could not use those values: {reasons}")])
        intent = understand(_last_user_text(messages), _memory(info.instructions), card)
        names = {tool.name for tool in info.output_tools}
        if intent.tool is None or intent.tool not in names:
            return ModelResponse(parts=[TextPart(intent.reply or "I can't do that.")])
        return ModelResponse(parts=[ToolCallPart(tool_name=intent.tool, args=intent.arguments)])

    return FunctionModel(respond, model_name="offline")


def router_model(settings: Settings, card: DatasetCard) -> Model | Any:
    """The model `COPILOT_LLM` names."""
    if settings.copilot_llm == "offline":
        return offline_model(card)
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415

    kind, _, name = settings.copilot_llm.partition(":")
    if kind == "openai-compatible":
        provider = OpenAIProvider(base_url=settings.copilot_llm_base_url, api_key="not-needed")
        return OpenAIChatModel(name, provider=provider)
    return OpenAIChatModel(name, provider=OpenAIProvider())
