"""The graph's state: plain data only (clients live in the runtime context)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from pydantic_ai import Agent

from copilot.actions import ActionStore
from copilot.facts import Step
from copilot.llm.narrator import ClinicalSummary
from copilot.llm.router import Router
from copilot.llm.verifier import Claims
from tools.context import ToolContext


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


@dataclass(frozen=True)
class ChatContext:
    """The runtime context: clients and stores, never checkpointed."""

    router: Router
    tools: ToolContext
    actions: ActionStore
    # The LLM narrators; None with the offline provider, which uses the templates.
    narrator: Agent[Claims, ClinicalSummary] | None = None
    result_narrator: Agent[Any, str] | None = None
