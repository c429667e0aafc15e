"""The graph's state: plain data only (clients live in the runtime context, copilot.deps.Deps)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from copilot.facts import Step


class ChatState(TypedDict, total=False):
    conversation_id: str
    user: str  # who speaks this turn (recorded as the requester of proposals)
    text: str  # this turn's message
    messages: Annotated[list[dict[str, Any]], operator.add]  # {"role", "content"}
    tool_calls: Annotated[list[dict[str, Any]], operator.add]  # {"tool", "arguments", "result"}
    memory: dict[str, Any]  # copilot.facts.Memory as a dict: what "him" and "it" refer to
    route: dict[str, Any]  # this turn's Route (copilot.llm.router), as a dict
    action_id: str | None  # the action this turn proposed
    steps: list[Step]  # this turn's read-only steps, with typed facts from their results
    usage: Annotated[list[dict[str, Any]], operator.add]  # per LLM agent: tokens, seconds
