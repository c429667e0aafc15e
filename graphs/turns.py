"""One turn of a conversation, as every surface runs it (the agent API, the chat, the
terminal): the same lease, the same events, the same checks.

* A turn runs as its conversation's only turn (a lease in the copilot database, see
  copilot.conversations), so two surfaces or two replicas never run one conversation at
  once; a message while a turn runs is refused at once (TurnInProgress).
* Its events are published as they happen (GET /v1/conversations/{id}/events follows any
  surface) and handed to the surface too (`on_event`, e.g. the chat's live steps).
* A decision waits up to DECISION_WAIT_SECONDS for a running turn of its conversation,
  then checks again that the action is still pending: one decided while we waited is
  refused (AlreadyDecided) and nothing more runs; one edited since the decider saw it
  (`expected_sha256`) is refused too (ArgumentsChanged).
* An edit runs nothing: the turn after it says what changed and that the edited action
  waits for approval (a separate decision).

Errors: those of copilot.conversations (TurnInProgress, MessageTooLong) and copilot.actions
(UnknownAction, InvalidArguments, NotAllowed, ActionConflict, AlreadyDecided,
ArgumentsChanged, ArgumentsTampered), for the surface to answer in its own words.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from copilot.actions import (
    ActionConflict,
    AlreadyDecided,
    ArgumentsChanged,
    Decision,
    PendingAction,
)
from copilot.conversations import (
    MAX_MESSAGE_CHARS,
    MessageTooLong,
    OnEvent,
    TurnEvents,
    relay,
    run_turn,
)
from graphs.session import Copilot, Turn

DECISION_WAIT_SECONDS = 30.0


async def send(
    copilot: Copilot, conversation_id: str, text: str, by: str, on_event: OnEvent | None = None
) -> Turn:
    """One turn of `by`'s message in the conversation (MessageTooLong over
    MAX_MESSAGE_CHARS, before anything runs)."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise MessageTooLong(len(text))

    async def work(events: TurnEvents) -> Turn:
        await events.publish("turn_started", {"kind": "message", "by": by, "text": text})
        stream = copilot.stream(conversation_id, text, by)
        return Turn.model_validate(await relay(events, stream, on_event))

    return await run_turn(copilot.deps.conversations, conversation_id, "message", work)


async def decide(
    copilot: Copilot,
    action_id: str,
    decision: Decision,
    by: str,
    arguments: dict[str, Any] | None = None,
    comment: str | None = None,
    on_event: OnEvent | None = None,
    expected_sha256: str | None = None,
) -> tuple[PendingAction, Turn]:
    """Records `by`'s decision, then runs what follows in the action's conversation (the
    approved action, the assistant saying it was rejected, or the edited arguments waiting
    for approval); returns the action after it and the turn. `expected_sha256`: the
    arguments hash the decider saw (a decision on other arguments is refused)."""
    store = copilot.deps.actions
    action = await anyio.to_thread.run_sync(store.get, action_id)
    if action.status != "pending":
        raise AlreadyDecided(action)

    async def work(events: TurnEvents) -> Turn:
        current = await anyio.to_thread.run_sync(store.get, action_id)
        if current.status != "pending":  # decided while we waited for the running turn
            raise AlreadyDecided(current)
        try:
            await anyio.to_thread.run_sync(
                lambda: store.decide(action_id, decision, by, arguments, comment, expected_sha256)
            )
        except ArgumentsChanged:  # edited since the decider saw it: they review it again
            raise
        except ActionConflict:  # decided or expired at this very moment
            raise AlreadyDecided(await anyio.to_thread.run_sync(store.get, action_id)) from None
        started = {"kind": "decision", "by": by, "action_id": action_id, "decision": decision}
        await events.publish("turn_started", started)
        stream = copilot.stream_after_decision(action_id)
        return Turn.model_validate(await relay(events, stream, on_event))

    turn = await run_turn(
        copilot.deps.conversations,
        action.conversation_id,
        "decision",
        work,
        wait_seconds=DECISION_WAIT_SECONDS,
    )
    return await anyio.to_thread.run_sync(store.get, action_id), turn
