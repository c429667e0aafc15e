"""The Chainlit chat, loaded by `copilot serve ui` (see copilot/chat/server.py).

Thin glue: turns and decisions run through copilot/chat/turns.py, sign-in and visibility
come from copilot/chat/access.py, cards and pictures from copilot/chat/views.py. Approval cards are
rendered from the persisted action, never from a wait inside the websocket, so a refreshed
page or a new session shows them again and they can still be decided. A refreshed or
reopened page continues the person's newest conversation, its earlier messages shown again
from the copilot's own store; "New Chat" starts a new one.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec

import anyio.to_thread
import chainlit as cl
from chainlit.utils import utc_now

from copilot import narration
from copilot.actions import ActionError, Decision, PendingAction
from copilot.chat import views as ui_views
from copilot.chat.access import (
    SIGN_IN_SOURCE,
    KeyWithdrawn,
    Person,
    current_person,
    key_fingerprint,
    parse_arguments,
    throttled_sign_in,
    visible_pending,
)
from copilot.chat.turns import (
    decide,
    earlier_messages,
    latest_conversation,
    open_runtime,
    send,
    start_conversation,
)
from copilot.conversations import ConversationError
from copilot.settings import Settings
from copilot.throttle import FailureThrottle
from graphs.session import Copilot, Turn
from tools.errors import ToolError
from tools.predictions import ExplainInput, explain_prediction

EDIT_TIMEOUT_SECONDS = 600
MAX_SUGGESTION_CHARACTERS = 200  # as long as a reading the copilot offers can be
P = ParamSpec("P")


class _Process:
    """What this process serves: opened when the app starts, closed at shutdown."""

    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.runtime: Copilot | None = None
        self.sign_ins = FailureThrottle()
        # people who pressed "New Chat": their next page starts a new conversation
        self.new_chat_asked: set[str] = set()

    def ready(self) -> Copilot:
        if self.runtime is None:
            raise RuntimeError("the copilot is not open yet (the app has not started)")
        return self.runtime


_process = _Process()


@cl.on_app_startup
async def _open() -> None:
    _process.runtime = await _process.stack.enter_async_context(open_runtime(Settings()))


@cl.on_app_shutdown
async def _close() -> None:
    await _process.stack.aclose()


def _secret() -> str:
    return os.environ["CHAINLIT_AUTH_SECRET"]  # set by copilot.chat.server before start


@cl.password_auth_callback
async def _sign_in(username: str, password: str) -> cl.User | None:
    settings, source = _process.ready().deps.settings, SIGN_IN_SOURCE.get()
    person = throttled_sign_in(settings, _process.sign_ins, source, username, password)
    if person is None:
        return None
    return cl.User(
        identifier=person.name,
        display_name=f"{person.name} ({person.role})",
        metadata={
            "role": person.role,
            "provider": "credentials",
            "key_fingerprint": key_fingerprint(_secret(), password),
        },
    )


def _person() -> Person:
    """The signed-in person with the role the configuration gives them now (KeyWithdrawn
    when their key was removed since they signed in)."""
    user = cl.user_session.get("user")
    name = str(user.identifier) if user is not None else ""
    fingerprint = (user.metadata or {}).get("key_fingerprint") if user is not None else None
    return current_person(_process.ready().deps.settings, name, fingerprint, _secret())


def _current_keys_only(
    handler: Callable[P, Awaitable[None]],
) -> Callable[P, Awaitable[None]]:
    """Runs a chat handler only for a person who still has a key (else says so)."""

    @functools.wraps(handler)
    async def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await handler(*args, **kwargs)
        except KeyWithdrawn as error:
            await _refused("Signed out", error)

    return checked


def _cards() -> dict[str, cl.Message]:
    cards: dict[str, cl.Message] | None = cl.user_session.get("cards")
    if cards is None:
        cards = {}
        cl.user_session.set("cards", cards)
    return cards


def _buttons(action: PendingAction) -> list[cl.Action]:
    """The card's buttons, for the arguments it shows: a decision made on them is refused
    once they were edited (the card then shows the new ones with new buttons)."""
    payload = ui_views.decision_payload(action)
    return [
        cl.Action(name="approve", payload=payload, label="Approve", icon="check"),
        cl.Action(name="edit", payload=payload, label="Edit", icon="pencil"),
        cl.Action(name="reject", payload=payload, label="Reject", icon="x"),
    ]


async def _show_card(action: PendingAction) -> None:
    person = _person()
    decidable = person.can_decide and action.status == "pending"
    message = cl.Message(
        ui_views.approval_card(
            action, can_decide=person.can_decide, four_eyes=_process.ready().deps.actions.four_eyes
        ),
        actions=_buttons(action) if decidable else [],
    )
    await message.send()
    _cards()[action.id] = message


async def _refresh_card(action: PendingAction) -> None:
    """Shows the action's new state on its card: the buttons go once it is decided, and
    after an edit they are for the new arguments."""
    message = _cards().get(action.id)
    if message is None:
        return
    can_decide = _person().can_decide
    four_eyes = _process.ready().deps.actions.four_eyes
    message.content = ui_views.approval_card(action, can_decide=can_decide, four_eyes=four_eyes)
    await message.remove_actions()
    message.actions = _buttons(action) if can_decide and action.status == "pending" else []
    await message.update()


def _suggested(suggestions: list[str]) -> list[cl.Action]:
    """One button per reading the answer offers; clicking it sends that request."""
    return [
        cl.Action(name="suggestion", payload={"text": text}, label=text, icon="message-circle")
        for text in suggestions
    ]


def _step(tool: str) -> cl.Step:
    """A tool step opened by hand, under the running message like `async with` would."""
    parent = cl.context.current_step
    return cl.Step(name=tool, type="tool", parent_id=parent.id if parent else None)


class _LiveSteps:
    """A turn's tool calls as steps, opened when a tool starts and closed when it ends."""

    def __init__(self) -> None:
        self.running: cl.Step | None = None

    async def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "tool_started":
            self.running = _step(data["tool"])
            self.running.input = data["arguments"]
            self.running.start = utc_now()
            await self.running.send()
        elif event == "tool_finished":
            step, self.running = self.running, None
            if step is None:
                step = _step(data["tool"])
                step.input = data["arguments"]
                await step.send()
            step.output = data["error"] if data.get("error") else data["result"]
            step.is_error = bool(data.get("error"))
            step.end = utc_now()
            await step.update()
        elif event == "action_proposed":
            action = data["action"]
            async with cl.Step(name=action["tool"], type="tool") as step:
                step.input = action["arguments"]
                step.output = {"action_id": action["id"], "status": action["status"]}


async def _explanation(call: dict[str, Any]) -> dict[str, Any] | None:
    """The SHAP explanation behind a prediction or an explanation, for the chart."""
    result = call.get("result")
    if not isinstance(result, dict) or narration.insufficient(result):
        return None  # no risk for too little information: no chart of one either
    if call["tool"] == "explain_prediction":
        return result
    if call["tool"] != "predict_risk":
        return None
    # People would rather look at a risk's reasons than ask "why?": the chart is drawn for
    # them here, a read-only call the conversation's history does not need to keep
    arguments = ExplainInput(prediction_id=result["prediction_id"])
    async with cl.Step(name="explain_prediction", type="tool") as step:
        step.input = arguments.model_dump(mode="json", exclude_none=True)
        try:
            explanation = await explain_prediction(_process.ready().deps.tools, arguments)
        except ToolError as error:  # the answer stands without its chart
            step.output = f"no chart: {error}"
            step.is_error = True
            return None
        shown = explanation.model_dump(mode="json")
        step.output = shown
    return shown


async def _show_turn(turn: Turn) -> None:
    """The answer with its chart and tables, then cards for newly proposed actions."""
    tables: list[str] = []
    elements: list[cl.Image] = []
    for call in turn.tool_calls:
        table = ui_views.table_for(call)
        if table:
            tables.append(table)
        if call["tool"] == "monitoring_history" and isinstance(call.get("result"), dict):
            history_png = ui_views.history_chart_png(call["result"])
            if history_png is not None:
                elements.append(
                    cl.Image(
                        name="monitoring-history",
                        content=history_png,
                        mime="image/png",
                        display="inline",
                        size="large",
                    )
                )
        explanation = await _explanation(call)
        if explanation is not None:
            png = ui_views.shap_chart_png(explanation)
            elements.append(
                cl.Image(
                    name="risk-explanation",
                    content=png,
                    mime="image/png",
                    display="inline",
                    size="large",
                )
            )
    text = "\n\n".join([ui_views.message_text(m["content"]) for m in turn.messages] + tables)
    if text or elements:
        await cl.Message(text, elements=elements, actions=_suggested(turn.suggestions)).send()
    shown = _cards()
    for action in turn.pending_actions:
        if action["id"] not in shown:
            await _show_card(PendingAction.model_validate(action))


async def _refused(what: str, error: Exception) -> None:
    await cl.ErrorMessage(f"{what}: {ui_views.escape(error)}").send()


@cl.set_starters
async def _starters(user: cl.User | None = None) -> list[cl.Starter]:
    return [cl.Starter(label=label, message=text) for label, text in ui_views.STARTERS]


async def _restore_conversation(person: Person) -> None:
    """Continues the person's newest conversation, showing what was said in it (unless they
    asked for a new chat)."""
    if person.name in _process.new_chat_asked:
        _process.new_chat_asked.discard(person.name)
        return
    runtime = _process.ready()
    conversation_id = await latest_conversation(runtime, person)
    if conversation_id is None:
        return
    cl.user_session.set("conversation_id", conversation_id)
    for message in await earlier_messages(runtime, conversation_id):
        if message["role"] == "user":
            await cl.Message(message["content"], author=person.name, type="user_message").send()
        else:
            await cl.Message(ui_views.message_text(message["content"])).send()


@cl.on_chat_end
async def _on_chat_end() -> None:
    """A page closed by "New Chat" (not a refresh): the next page starts afresh."""
    user = cl.user_session.get("user")
    if user is not None and getattr(cl.context.session, "to_clear", False):
        _process.new_chat_asked.add(str(user.identifier))


@cl.on_chat_start
@_current_keys_only
async def _on_chat_start() -> None:
    """The person's conversation so far; pending actions outlive pages and sessions: show
    the person those they may see."""
    await _restore_conversation(_person())
    waiting = await visible_pending(_process.ready(), _person())
    if waiting:
        await cl.Message(f"{len(waiting)} action(s) waiting for a decision:").send()
    for action in reversed(waiting):  # oldest first, like the chat
        await _show_card(action)


@cl.on_message
@_current_keys_only
async def _on_message(message: cl.Message) -> None:
    await _converse(message.content)


@cl.action_callback("suggestion")
@_current_keys_only
async def _suggestion(button: cl.Action) -> None:
    """A clicked reading is sent as the person's own message (shown as theirs)."""
    text = str(button.payload.get("text", ""))[:MAX_SUGGESTION_CHARACTERS]
    if not text:
        return
    await button.remove()  # the other readings stay; this one is now said
    await cl.Message(text, author=_person().name, type="user_message").send()
    async with _busy():
        await _converse(text)


async def _converse(text: str) -> None:
    runtime, person = _process.ready(), _person()
    conversation_id: str | None = cl.user_session.get("conversation_id")
    if conversation_id is None:
        conversation_id = await start_conversation(runtime, person)
        cl.user_session.set("conversation_id", conversation_id)
    try:
        turn = await send(runtime, conversation_id, text, person, _LiveSteps())
    except ConversationError as error:
        await _refused("Not sent", error)
        return
    await _show_turn(turn)


async def _decide(button: cl.Action, decision: Decision, arguments: Any = None) -> None:
    runtime = _process.ready()
    action_id = str(button.payload.get("action_id", ""))
    seen = button.payload.get("arguments_sha256")  # the arguments the card showed
    try:  # the role is checked again in chat.turns.decide: buttons are only a convenience
        action, turn = await decide(
            runtime,
            _person().name,
            action_id,
            decision,
            arguments,
            _LiveSteps(),
            expected_sha256=str(seen) if seen else None,
        )
    except (ActionError, ConversationError) as error:
        await _refused("Not decided", error)
        with contextlib.suppress(ActionError):
            current = await anyio.to_thread.run_sync(runtime.deps.actions.get, action_id)
            await _refresh_card(current)
        return
    await _refresh_card(action)
    await _show_turn(turn)


@contextlib.asynccontextmanager
async def _busy() -> AsyncIterator[None]:
    """Shows the chat as busy while a button's work runs (Chainlit does this for messages
    only; an AskUserMessage inside ends and restarts it, so the two must pair up)."""
    await cl.context.emitter.task_start()
    try:
        yield
    finally:
        await cl.context.emitter.task_end()


@cl.action_callback("approve")
@_current_keys_only
async def _approve(button: cl.Action) -> None:
    async with _busy():
        await _decide(button, "approve")


@cl.action_callback("reject")
@_current_keys_only
async def _reject(button: cl.Action) -> None:
    async with _busy():
        await _decide(button, "reject")


@cl.action_callback("edit")
@_current_keys_only
async def _edit(button: cl.Action) -> None:
    async with _busy():
        await _ask_and_edit(button)


async def _ask_and_edit(button: cl.Action) -> None:
    """Asks for the new arguments as JSON; bad JSON or arguments leave the action pending,
    and so do valid ones: the card then shows them, to be approved as a separate step."""
    runtime, person = _process.ready(), _person()
    action_id = str(button.payload.get("action_id", ""))
    if not person.can_decide:
        await _decide(button, "edit")  # refused there, with the reason
        return
    try:
        action = await anyio.to_thread.run_sync(runtime.deps.actions.get, action_id)
    except ActionError as error:
        await _refused("Not decided", error)
        return
    answer = await cl.AskUserMessage(
        f"New arguments for `{action.tool}` as one JSON object (they replace all of them). "
        "Editing does not approve: the action stays pending, and its card then shows the "
        "new arguments to approve (a separate step"
        + (", by someone else under the four-eyes rule" if runtime.deps.actions.four_eyes else "")
        + "). Now:\n\n"
        + ui_views.json_block(action.arguments),
        timeout=EDIT_TIMEOUT_SECONDS,
    ).send()
    if answer is None:
        await cl.Message(f"No new arguments arrived; action {action_id} is still pending.").send()
        return
    try:
        arguments = parse_arguments(action.tool, str(answer["output"]))
    except ActionError as error:
        await _refused("Not decided", error)
        return
    await _decide(button, "edit", arguments)
