"""Turns and decisions from the chat UI, run the way the agent API runs them.

Each runs as its conversation's only turn (the lease in the copilot database), so a chat
session, an approver deciding from another session and the agent API never run one
conversation at once; and each publishes its events, so `GET /v1/conversations/{id}/events`
follows chat conversations too. The UI gets the same events as they happen (to show tool
calls as steps while they run) through `on_event`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from copilot.actions import ActionConflict, Decision, NotAllowed, PendingAction
from copilot.chat.access import Person, current_role
from copilot.conversations import ConversationStore, OnEvent, TurnEvents, relay, run_turn
from copilot.settings import Settings
from graphs.session import Copilot, Turn

DECISION_WAIT_SECONDS = 30.0  # a decision waits this long for a running turn of its conversation


@dataclass(frozen=True)
class ChatRuntime:
    """What the chat process needs to run turns (opened once per process)."""

    settings: Settings
    copilot: Copilot
    conversations: ConversationStore


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[ChatRuntime]:
    """The copilot with its database, tools and conversation store; closed on exit."""
    from copilot.deps import open_deps  # noqa: PLC0415
    from graphs.session import open_copilot  # noqa: PLC0415

    async with open_deps(settings) as deps, open_copilot(deps) as copilot:
        conversations = await anyio.to_thread.run_sync(ConversationStore, deps.engine)
        yield ChatRuntime(settings, copilot, conversations)


async def start_conversation(runtime: ChatRuntime, person: Person) -> str:
    """A new conversation owned by the person's UI account."""
    conversation = await anyio.to_thread.run_sync(runtime.conversations.create, f"ui:{person.name}")
    return conversation.id


async def send(
    runtime: ChatRuntime, conversation_id: str, text: str, person: Person, on_event: OnEvent
) -> Turn:
    """One turn of the person's conversation (TurnInProgress while another one runs)."""

    async def work(events: TurnEvents) -> Turn:
        await events.publish(
            "turn_started", {"kind": "message", "by": person.identity, "text": text}
        )
        stream = runtime.copilot.stream(conversation_id, text, person.identity)
        return Turn.model_validate(await relay(events, stream, on_event))

    return await run_turn(runtime.conversations, conversation_id, "message", work)


async def decide(
    runtime: ChatRuntime,
    name: str,
    action_id: str,
    decision: Decision,
    arguments: dict[str, Any] | None,
    on_event: OnEvent,
) -> tuple[PendingAction, Turn]:
    """Records `name`'s decision, then runs the action (if approved) in its conversation.

    Raises NotAllowed unless `name` holds the approver role in the configuration now (the
    session's role is never trusted), and the action store's errors: InvalidArguments for
    a bad edit (the action stays pending), ActionConflict when it is decided or expired."""
    role = current_role(runtime.settings, name)
    if role != "approver":
        raise NotAllowed(
            f"{name} has the role {role or 'none'!r}; only approvers decide actions "
            f"(action {action_id} is unchanged)"
        )
    person = Person(name, role)
    store = runtime.copilot.deps.actions
    action = await anyio.to_thread.run_sync(store.get, action_id)

    async def work(events: TurnEvents) -> Turn:
        current = await anyio.to_thread.run_sync(store.get, action_id)
        if current.status != "pending":  # a second click, or decided elsewhere meanwhile
            raise ActionConflict(
                f"action {action_id} is already {current.status}"
                + (f" (by {current.decided_by})" if current.decided_by else "")
                + "; nothing more was done"
            )
        await anyio.to_thread.run_sync(
            lambda: store.decide(action_id, decision, person.identity, arguments)
        )
        await events.publish(
            "turn_started",
            {
                "kind": "decision",
                "by": person.identity,
                "action_id": action_id,
                "decision": decision,
            },
        )
        stream = runtime.copilot.stream_after_decision(action_id)
        return Turn.model_validate(await relay(events, stream, on_event))

    turn = await run_turn(
        runtime.conversations,
        action.conversation_id,
        "decision",
        work,
        wait_seconds=DECISION_WAIT_SECONDS,
    )
    return await anyio.to_thread.run_sync(store.get, action_id), turn
