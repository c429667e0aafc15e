"""Turns and decisions from the chat UI, run by the one turn recipe (graphs.turns), so a
chat session, an approver deciding from another session, the terminal and the agent API
never run one conversation at once, and `GET /v1/conversations/{id}/events` follows chat
conversations too. The UI shows each event as it happens (tool calls as live steps)
through `on_event`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread

from copilot.actions import Decision, NotAllowed, PendingAction
from copilot.chat.access import Person, current_role
from copilot.conversations import OnEvent
from copilot.settings import Settings
from graphs import turns
from graphs.session import Copilot, Turn


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Copilot]:
    """The copilot with its database, tools and stores; closed on exit."""
    from copilot.deps import open_deps  # noqa: PLC0415
    from graphs.session import open_copilot  # noqa: PLC0415

    async with open_deps(settings) as deps, open_copilot(deps) as copilot:
        yield copilot


async def start_conversation(copilot: Copilot, person: Person) -> str:
    """A new conversation owned by the person's UI account."""
    store = copilot.deps.conversations
    conversation = await anyio.to_thread.run_sync(store.create, f"ui:{person.name}")
    return conversation.id


async def latest_conversation(copilot: Copilot, person: Person) -> str | None:
    """The newest conversation of the person's UI account (None: they have none yet)."""
    store = copilot.deps.conversations
    found = await anyio.to_thread.run_sync(lambda: store.recent(owner=f"ui:{person.name}", limit=1))
    return found[0].id if found else None


async def earlier_messages(copilot: Copilot, conversation_id: str) -> list[dict[str, str]]:
    """What was said in a conversation so far, user and assistant, oldest first, as its
    checkpoints hold it (the copilot's own record, not the browser's)."""
    history = await copilot.history(conversation_id)
    return [
        {"role": str(m["role"]), "content": str(m["content"])}
        for m in history["messages"]
        if m.get("role") in {"user", "assistant"}
    ]


async def send(
    copilot: Copilot, conversation_id: str, text: str, person: Person, on_event: OnEvent
) -> Turn:
    """One turn of the person's conversation (TurnInProgress while another one runs)."""
    return await turns.send(copilot, conversation_id, text, person.identity, on_event)


async def decide(
    copilot: Copilot,
    name: str,
    action_id: str,
    decision: Decision,
    arguments: dict[str, Any] | None,
    on_event: OnEvent,
    expected_sha256: str | None = None,
) -> tuple[PendingAction, Turn]:
    """Records `name`'s decision, then runs the action (if approved) in its conversation;
    `expected_sha256` is the arguments hash the card showed (other arguments: refused).

    Raises NotAllowed unless `name` holds the approver role in the configuration now (the
    session's role is never trusted), and the errors of graphs.turns.decide."""
    role = current_role(copilot.deps.settings, name)
    if role != "approver":
        raise NotAllowed(
            f"{name} has the role {role or 'none'!r}; only approvers decide actions "
            f"(action {action_id} is unchanged)"
        )
    person = Person(name, role)
    return await turns.decide(
        copilot,
        action_id,
        decision,
        person.identity,
        arguments,
        None,
        on_event,
        expected_sha256=expected_sha256,
    )
