"""Conversations over the graph, as the chat CLI, the agent API and the UI use them.

Checkpoints live with the copilot database (PostgreSQL: the same database; SQLite: a file
beside it), so a conversation and its pending action survive restarts of every process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command
from pydantic import BaseModel

from copilot import narration
from copilot.actions import PendingAction
from copilot.deps import Deps
from copilot.llm.providers import WarmUp, warm_up
from copilot.suggestions import suggestions_in
from copilot.traces import enable_traces, turn_span
from graphs.graph import build_graph

log = logging.getLogger(__name__)


# (name, data): tool_started, tool_finished, action_proposed, message, turn_finished
TurnEvent = tuple[str, dict[str, Any]]


class Turn(BaseModel):
    """What one turn added (the same shape as the agent API's answer)."""

    conversation_id: str
    messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    pending_actions: list[dict[str, Any]]
    usage: list[dict[str, Any]] = []  # per LLM agent this turn: model, tokens, seconds
    # Readings of an unclear request its last answer offers: requests to send as they are.
    suggestions: list[str] = []


@contextlib.asynccontextmanager
async def _checkpointer(database_url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if database_url.startswith("sqlite:///"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: PLC0415

        # SQLite has one writer lock per file; the checkpointer's own connection holds it
        # across a graph step, so its tables live in a file next to the copilot database.
        path = Path(database_url.removeprefix("sqlite:///"))
        checkpoints = path.with_name(f"{path.stem}-checkpoints{path.suffix}")
        async with AsyncSqliteSaver.from_conn_string(str(checkpoints)) as saver:
            yield saver
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: PLC0415

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        await saver.setup()
        yield saver


class Copilot:
    """Turns in, answers out; decisions on pending actions applied to their conversation."""

    def __init__(self, deps: Deps, graph: Any) -> None:
        self.deps = deps
        self.graph = graph
        self.warm_up: WarmUp | None = None  # the LLM's start-up check (None: not made)
        self.traces_to: str | None = None  # the MLflow experiment turns are traced to

    def _config(self, conversation_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": conversation_id}}

    async def _values(self, conversation_id: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state(self._config(conversation_id))
        return dict(snapshot.values or {})

    async def _since(self, conversation_id: str, before: dict[str, Any]) -> Turn:
        after = await self._values(conversation_id)
        pending = self.deps.actions.list("pending", conversation_ids=[conversation_id])
        said = [
            m
            for m in after.get("messages", [])[len(before.get("messages", [])) :]
            if m["role"] == "assistant"
        ]
        last = said[-1]["content"] if said else ""
        return Turn(
            conversation_id=conversation_id,
            messages=said,
            suggestions=suggestions_in(last) if isinstance(last, str) else [],
            tool_calls=after.get("tool_calls", [])[len(before.get("tool_calls", [])) :],
            pending_actions=[a.model_dump(mode="json") for a in pending],
            usage=after.get("usage", [])[len(before.get("usage", [])) :],
        )

    async def send(self, conversation_id: str, text: str, user: str) -> Turn:
        """One user turn. Text never decides a pending action, whatever it says."""
        before = await self._values(conversation_id)
        with turn_span(self.traces_to, conversation_id, "message"):
            await self.graph.ainvoke(
                {
                    "conversation_id": conversation_id,
                    "user": user,
                    "text": text,
                    "memory": before.get("memory", {}),
                },
                self._config(conversation_id),
                context=self.deps,
            )
        return await self._since(conversation_id, before)

    async def waiting_on(self, conversation_id: str) -> str | None:
        """The action the conversation's graph is paused on, if any."""
        snapshot = await self.graph.aget_state(self._config(conversation_id))
        for interrupt in snapshot.interrupts or ():
            return str(interrupt.value["action_id"])
        return None

    async def continue_after_decision(self, action_id: str) -> Turn:
        """After a decision in the action store: run it (if approved) and tell the
        conversation. Resumes the graph when it waits on this action; otherwise executes
        through the store and adds the outcome to the conversation."""
        action = self.deps.actions.get(action_id)
        conversation_id = action.conversation_id
        before = await self._values(conversation_id)
        if await self.waiting_on(conversation_id) == action_id:
            with turn_span(self.traces_to, conversation_id, "decision"):
                await self.graph.ainvoke(
                    Command(resume={"action_id": action_id}),
                    self._config(conversation_id),
                    context=self.deps,
                )
            return await self._since(conversation_id, before)
        if action.status == "pending":  # edited: nothing runs until it is approved
            told = narration.action_edited(
                action.model_dump(mode="json"), four_eyes=self.deps.actions.four_eyes
            )
            await self.graph.aupdate_state(
                self._config(conversation_id),
                {"messages": [{"role": "assistant", "content": told}]},
            )
            return await self._since(conversation_id, before)
        if action.status == "approved":
            action = await self.deps.actions.execute(action_id, self.deps.tools)
        update: dict[str, Any] = {
            "messages": [
                {
                    "role": "assistant",
                    "content": narration.action_outcome(action.model_dump(mode="json")),
                }
            ]
        }
        if action.status in {"executed", "failed"}:
            update["tool_calls"] = [
                {"tool": action.tool, "arguments": action.arguments, "result": action.result}
            ]
        await self.graph.aupdate_state(self._config(conversation_id), update)
        return await self._since(conversation_id, before)

    async def history(self, conversation_id: str) -> dict[str, Any]:
        values = await self._values(conversation_id)
        actions = self.deps.actions.list(None, conversation_ids=[conversation_id])
        return {
            "id": conversation_id,
            "messages": values.get("messages", []),
            "tool_calls": values.get("tool_calls", []),
            "actions": [a.model_dump(mode="json") for a in actions],
        }

    async def stream(self, conversation_id: str, text: str, user: str) -> AsyncIterator[TurnEvent]:
        """`send` as events while it runs, ending with ("turn_finished", the Turn as JSON)."""
        before = await self._values(conversation_id)
        graph_input = {
            "conversation_id": conversation_id,
            "user": user,
            "text": text,
            "memory": before.get("memory", {}),
        }
        async for event in self._events(graph_input, conversation_id):
            yield event
        turn = await self._since(conversation_id, before)
        yield "turn_finished", turn.model_dump(mode="json")

    async def stream_after_decision(self, action_id: str) -> AsyncIterator[TurnEvent]:
        """`continue_after_decision` as events, ending with ("turn_finished", the Turn)."""
        action = self.deps.actions.get(action_id)
        conversation_id = action.conversation_id
        if await self.waiting_on(conversation_id) == action_id:
            before = await self._values(conversation_id)
            resume: Command[Any] = Command(resume={"action_id": action_id})
            async for event in self._events(resume, conversation_id):
                yield event
            turn = await self._since(conversation_id, before)
        else:  # the graph moved on (or never paused): the store runs it, the turn tells
            if action.status == "approved":
                yield "tool_started", _started_action(action)
            turn = await self.continue_after_decision(action_id)
            for call in turn.tool_calls:
                yield "tool_finished", call
            for message in turn.messages:
                yield "message", message
        yield "turn_finished", turn.model_dump(mode="json")

    async def _events(self, graph_input: Any, conversation_id: str) -> AsyncIterator[TurnEvent]:
        """A graph run as events: tool_started and tool_finished (read-only tools and approved
        actions; a failed tool finishes with `error`), action_proposed, message."""
        started: dict[str, Any] = {}
        async for part in self.graph.astream(
            graph_input,
            self._config(conversation_id),
            context=self.deps,
            stream_mode=["tasks", "updates"],
            version="v2",
        ):
            data = part["data"]
            if part["type"] == "tasks":
                if "input" in data and data["name"] == "run_tool":
                    route = data["input"]["route"]
                    started = {"tool": route["tool"], "arguments": route["arguments"]}
                    yield "tool_started", started
                elif "input" in data and data["name"] == "execute":
                    action = self.deps.actions.get(data["input"]["action_id"])
                    started = _started_action(action)
                    yield "tool_started", started
                continue
            for node, update in data.items():
                if node.startswith("__") or not update:
                    continue
                calls = update.get("tool_calls", [])
                messages = [m for m in update.get("messages", []) if m["role"] == "assistant"]
                if node == "propose" and update.get("action_id"):
                    action = self.deps.actions.get(update["action_id"])
                    yield "action_proposed", {"action": action.model_dump(mode="json")}
                elif node in {"run_tool", "execute"}:
                    for call in calls:
                        yield "tool_finished", call
                    if not calls and started:
                        error = messages[0]["content"] if messages else "the tool failed"
                        yield "tool_finished", {**started, "result": None, "error": error}
                for message in messages:
                    yield "message", message


def _started_action(action: PendingAction) -> dict[str, Any]:
    return {"tool": action.tool, "arguments": action.arguments, "action_id": action.id}


@contextlib.asynccontextmanager
async def open_copilot(deps: Deps, *, warm: bool = True) -> AsyncIterator[Copilot]:
    """The graph with checkpoints in the copilot database, over `deps`. A local LLM server
    gets a warm-up request first (`warm`)."""
    settings = deps.settings
    traces_to = enable_traces(settings) if settings.copilot_traces else None
    async with _checkpointer(settings.database_url) as saver:
        copilot = Copilot(deps, build_graph(saver))
        copilot.traces_to = traces_to
        if warm and settings.copilot_llm.startswith("openai-compatible:"):  # local servers
            copilot.warm_up = await warm_up(deps.agents.model, settings)
            log.log(
                logging.INFO if copilot.warm_up.ok else logging.WARNING,
                "LLM warm-up: %s (%.1f s)",
                copilot.warm_up.detail,
                copilot.warm_up.seconds,
            )
        yield copilot
