"""Conversations over the graph, as the chat CLI, the agent API and the UI use them.

Checkpoints live with the copilot database (PostgreSQL: the same database; SQLite: a file
beside it), so a conversation and its pending action survive restarts of every process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command
from pydantic import BaseModel

from copilot import narration
from copilot.actions import ActionConflict
from copilot.deps import Deps
from copilot.providers import router_model
from copilot.router import build_router
from graphs.graph import build_graph
from graphs.state import ChatContext


class Turn(BaseModel):
    """What one turn added (the same shape as the agent API's answer)."""

    conversation_id: str
    messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    pending_actions: list[dict[str, Any]]


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

    def __init__(self, deps: Deps, graph: Any, context: ChatContext) -> None:
        self.deps = deps
        self.graph = graph
        self.context = context

    def _config(self, conversation_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": conversation_id}}

    async def _values(self, conversation_id: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state(self._config(conversation_id))
        return dict(snapshot.values or {})

    async def _since(self, conversation_id: str, before: dict[str, Any]) -> Turn:
        after = await self._values(conversation_id)
        pending = self.deps.actions.list("pending", conversation_ids=[conversation_id])
        return Turn(
            conversation_id=conversation_id,
            messages=[
                m
                for m in after.get("messages", [])[len(before.get("messages", [])) :]
                if m["role"] == "assistant"
            ],
            tool_calls=after.get("tool_calls", [])[len(before.get("tool_calls", [])) :],
            pending_actions=[a.model_dump(mode="json") for a in pending],
        )

    async def send(self, conversation_id: str, text: str, user: str) -> Turn:
        """One user turn. Text never decides a pending action, whatever it says."""
        before = await self._values(conversation_id)
        await self.graph.ainvoke(
            {
                "conversation_id": conversation_id,
                "user": user,
                "text": text,
                "memory": before.get("memory", {}),
            },
            self._config(conversation_id),
            context=self.context,
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
            await self.graph.ainvoke(
                Command(resume={"action_id": action_id}),
                self._config(conversation_id),
                context=self.context,
            )
            return await self._since(conversation_id, before)
        if action.status == "pending":
            raise ActionConflict(f"action {action_id} is still pending; decide it first")
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


@contextlib.asynccontextmanager
async def open_copilot(deps: Deps) -> AsyncIterator[Copilot]:
    """The graph with checkpoints in the copilot database, and its runtime context."""
    router = build_router(router_model(deps.settings, deps.tools.card))
    async with _checkpointer(deps.settings.database_url) as saver:
        context = ChatContext(router=router, tools=deps.tools, actions=deps.actions)
        yield Copilot(deps, build_graph(saver), context)
