"""The agent API (FastAPI): conversations, their turns and events, and decisions on pending
actions, for other systems (docs/interfaces.md, "Agent API"). OpenAPI docs at /docs.

Keys and roles: copilot.api.auth. A `user` sees its own conversations and their actions;
an `approver` sees all of them and decides actions. /health, /ready and the docs need no
key. Failures and their bodies: copilot.api.errors.

One turn at a time per conversation, across replicas (a lease row in the copilot
database, see copilot.conversations): a message while a turn runs gets 409 at once; a
decision waits up to graphs.turns.DECISION_WAIT_SECONDS for the running turn, then 409 (nothing is
decided). Turn events are rows in the same database, so GET .../events streams a turn
posted to any replica.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
import httpx
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from copilot.actions import (
    AlreadyDecided,
    ArgumentsChanged,
    ArgumentsTampered,
    PendingAction,
    UnknownAction,
)
from copilot.api.auth import ApiConfigError, ApproverDep, Caller, CallerDep, check_keys
from copilot.api.errors import (
    MAX_BODY_BYTES,
    ApiError,
    BodyLimit,
    check_text,
    documented,
    install_error_handlers,
    invalid,
    invalid_arguments,
)
from copilot.conversations import MAX_MESSAGE_CHARS, Conversation, ConversationStore
from copilot.deps import Deps, open_deps
from copilot.settings import Settings
from copilot.throttle import FailureThrottle
from graphs import turns
from graphs.session import Copilot, Turn, open_copilot
from model_service.http_limits import BodyTimeout
from model_service.schemas import ErrorItem

__all__ = ["ApiConfigError", "create_api"]

MAX_COMMENT_CHARS = 2000
EVENT_POLL_SECONDS = 0.25
# An event stream holds a connection and polls the database: each account may keep a few
# open, the process a bounded number, and none lasts for ever (clients resume with
# Last-Event-ID, as browsers' EventSource does by itself).
STREAMS_PER_ACCOUNT = 8
STREAMS_PER_PROCESS = 256
STREAM_MAX_SECONDS = 3600.0
READY_TIMEOUT_SECONDS = 5.0
BODY_TIMEOUT_SECONDS = 30.0
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


# ---- request and response bodies -------------------------------------------------------


def _content(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("not_blank", '"content" must not be empty or blank', {})
    return check_text(value, "content")


def _comment(value: str | None) -> str | None:
    return None if value is None else check_text(value, "comment")


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Annotated[
        str,
        Field(max_length=MAX_MESSAGE_CHARS, description="What the caller says this turn."),
        AfterValidator(_content),
    ]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "edit", "reject"]
    arguments: dict[str, Any] | None = Field(
        default=None, description="The new arguments (decision 'edit' only)."
    )
    arguments_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The action's arguments hash the decider saw; a decision on other "
        "arguments (e.g. the action was edited since) is refused with 409.",
    )
    comment: Annotated[
        str | None,
        Field(max_length=MAX_COMMENT_CHARS, description="Why; kept with the decision."),
        AfterValidator(_comment),
    ] = None


class ConversationInfo(BaseModel):
    id: str
    owner: str = Field(description="The account that created it, e.g. api-key:ann.")
    created_at: datetime


class ConversationView(ConversationInfo):
    messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    actions: list[PendingAction]
    turn_in_progress: bool


class DecidedAction(PendingAction):
    follow_up: Turn = Field(description="What the decision added to the conversation.")


# ---- state and visibility --------------------------------------------------------------


@dataclass
class StreamSlots:
    """Open event streams per account (one process; each replica bounds its own)."""

    per_account: int = STREAMS_PER_ACCOUNT
    per_process: int = STREAMS_PER_PROCESS
    open: collections.Counter[str] = field(default_factory=collections.Counter)

    def take(self, account: str) -> None:
        if self.open[account] >= self.per_account:
            raise ApiError(
                429,
                f"{account} already has {self.open[account]} open event streams (the limit is "
                f"{self.per_account}); close one, then resume with Last-Event-ID",
                headers={"Retry-After": "5"},
            )
        if self.open.total() >= self.per_process:
            raise ApiError(
                429,
                f"this server already streams to {self.per_process} clients (its limit); "
                "try again shortly, resuming with Last-Event-ID",
                headers={"Retry-After": "5"},
            )
        self.open[account] += 1

    def give_back(self, account: str) -> None:
        self.open[account] -= 1
        if self.open[account] <= 0:
            del self.open[account]


@dataclass(frozen=True)
class ApiState:
    """The process's copilot (its deps hold the stores) and its open event streams."""

    copilot: Copilot
    streams: StreamSlots = field(default_factory=StreamSlots)

    @property
    def deps(self) -> Deps:
        return self.copilot.deps

    @property
    def conversations(self) -> ConversationStore:
        return self.copilot.deps.conversations


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(_state)]
ConversationId = Annotated[
    str, Path(pattern=ID_PATTERN, description="A conversation id from POST /v1/conversations.")
]
ActionId = Annotated[str, Path(pattern=ID_PATTERN, description="A pending action's id.")]


async def _readable(state: ApiState, caller: Caller, conversation_id: str) -> Conversation:
    """The conversation if the caller may read it (its owner, or an approver), else 404."""
    conversation = await anyio.to_thread.run_sync(state.conversations.get, conversation_id)
    if conversation is None or (caller.role != "approver" and conversation.owner != caller.account):
        raise ApiError(404, f"conversation {conversation_id!r} not found")
    return conversation


async def _visible_action(state: ApiState, caller: Caller, action_id: str) -> PendingAction:
    """The action if the caller may see it (in its own conversation, or an approver)."""
    try:
        action = await anyio.to_thread.run_sync(state.deps.actions.get, action_id)
    except UnknownAction:
        action = None
    if action is not None and caller.role != "approver":
        owned = await anyio.to_thread.run_sync(state.conversations.get, action.conversation_id)
        if owned is None or owned.owner != caller.account:
            action = None
    if action is None:
        raise ApiError(404, f"action {action_id!r} not found")
    return action


@dataclass(frozen=True)
class StreamStart:
    conversation: Conversation
    cursor: int


async def _stream_start(
    conversation_id: ConversationId,
    caller: CallerDep,
    state: StateDep,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=2**63 - 1,  # a database integer
            description="Resume after this event id (browsers send it on reconnect).",
        ),
    ] = None,
) -> AsyncIterator[StreamStart]:
    # Resolved before the response starts, so a turn posted right after the stream opens
    # is never missed and a 404 is a real 404 (not a broken stream).
    conversation = await _readable(state, caller, conversation_id)
    cursor = await anyio.to_thread.run_sync(
        state.conversations.stream_start, conversation.id, last_event_id
    )
    state.streams.take(caller.account)
    try:  # given back once the stream has ended (FastAPI ends this after the response)
        yield StreamStart(conversation, cursor)
    finally:
        state.streams.give_back(caller.account)


# ---- turns -----------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


async def _readiness(state: ApiState) -> list[str]:
    """Why the API is not ready (empty when it is)."""
    problems = []

    def ping() -> None:
        with state.deps.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await anyio.to_thread.run_sync(ping)
    except SQLAlchemyError as error:
        problems.append(f"copilot database unreachable: {_first_line(error)}")
    client = state.deps.tools.model_service
    try:
        response = await client.get("/ready", timeout=READY_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        problems.append(f"model service at {client.base_url} unreachable: {_first_line(error)}")
    else:
        if response.status_code != 200:
            try:
                reason = response.json().get("detail")
            except ValueError:
                reason = None
            problems.append(
                f"model service at {client.base_url} not ready "
                f"(HTTP {response.status_code}: {reason or response.text[:200]})"
            )
    return problems


def create_api(settings: Settings) -> FastAPI:  # noqa: PLR0915 - the routes live here
    """The agent API; refuses to start without COPILOT_API_KEYS (ApiConfigError)."""
    keys = check_keys(settings.api_keys())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_deps(settings) as deps, open_copilot(deps) as copilot:
            app.state.api = ApiState(copilot)
            yield

    app = FastAPI(
        title="mlops-copilot agent API",
        version="1",
        summary="Conversations with the MLOps copilot; state changes wait for an approver.",
        lifespan=lifespan,
    )
    app.state.api_keys = keys  # read by copilot.api.auth; set now, the docs need no lifespan
    app.state.key_throttle = FailureThrottle()
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(BodyTimeout, seconds=BODY_TIMEOUT_SECONDS)  # slow bodies: 408
    install_error_handlers(app)
    v1 = documented(401, 422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @app.get("/ready", responses=documented(503))
    async def ready(state: StateDep) -> dict[str, str]:
        """200 when the copilot database and the model service are ready, else 503 and why."""
        problems = await _readiness(state)
        if problems:
            raise ApiError(503, "; ".join(problems))
        return {"status": "ready"}

    @app.post(
        "/v1/conversations",
        status_code=201,
        response_model=ConversationInfo,
        responses=documented(401, 413, 422),
    )
    async def create_conversation(
        caller: CallerDep,
        state: StateDep,
        _: Annotated[NewConversation | None, Body()] = None,
    ) -> ConversationInfo:
        """A new conversation owned by the caller."""
        created = await anyio.to_thread.run_sync(state.conversations.create, caller.account)
        return ConversationInfo.model_validate(created.model_dump())

    @app.get("/v1/conversations", response_model=list[ConversationInfo], responses=v1)
    async def list_conversations(caller: CallerDep, state: StateDep) -> list[ConversationInfo]:
        """The caller's conversations (an approver's: everyone's), newest first (100)."""
        owner = None if caller.role == "approver" else caller.account
        found = await anyio.to_thread.run_sync(state.conversations.recent, owner)
        return [ConversationInfo.model_validate(c.model_dump()) for c in found]

    @app.get(
        "/v1/conversations/{conversation_id}",
        response_model=ConversationView,
        responses=documented(401, 404, 422),
    )
    async def get_conversation(
        conversation_id: ConversationId, caller: CallerDep, state: StateDep
    ) -> ConversationView:
        """The conversation: messages, tool calls and actions."""
        conversation = await _readable(state, caller, conversation_id)
        history = await state.copilot.history(conversation.id)
        running = await anyio.to_thread.run_sync(
            state.conversations.turn_in_progress, conversation.id
        )
        return ConversationView(
            **conversation.model_dump(),
            messages=history["messages"],
            tool_calls=history["tool_calls"],
            actions=history["actions"],
            turn_in_progress=running is not None,
        )

    @app.post(
        "/v1/conversations/{conversation_id}/messages",
        response_model=Turn,
        responses=documented(401, 403, 404, 409, 413, 422),
    )
    async def post_message(
        conversation_id: ConversationId, body: NewMessage, caller: CallerDep, state: StateDep
    ) -> Turn:
        """One turn: the assistant's new messages, tool calls and the pending actions.
        Words never approve anything; 409 while another turn of it runs."""
        conversation = await _readable(state, caller, conversation_id)
        if conversation.owner != caller.account:
            raise ApiError(
                403,
                f"conversation {conversation.id} belongs to {conversation.owner}; only its "
                "owner sends messages to it",
            )

        return await turns.send(state.copilot, conversation.id, body.content, caller.identity)

    @app.get(
        "/v1/conversations/{conversation_id}/events",
        response_class=EventSourceResponse,
        responses=documented(401, 404, 422, 429, streaming=True),
    )
    async def conversation_events(
        start: Annotated[StreamStart, Depends(_stream_start)],
        state: StateDep,
        follow: Annotated[
            bool,
            Query(description="Keep streaming later turns (false: end when no turn runs)."),
        ] = True,
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events of the turn in progress (from its start) and of later turns:
        turn_started, tool_started, tool_finished, action_proposed, message, turn_finished
        or turn_failed; `id` is the event's id (send it back as Last-Event-ID). A following
        stream with nothing to send yet says so first, in an SSE comment (": waiting for the
        next turn ..."). A stream ends after an hour; resume it with Last-Event-ID."""
        store, conversation_id, cursor = state.conversations, start.conversation.id, start.cursor
        ends = time.monotonic() + STREAM_MAX_SECONDS
        waiting_said = False
        while time.monotonic() < ends:
            batch = await anyio.to_thread.run_sync(store.events_after, conversation_id, cursor)
            for event in batch:
                cursor = event.id
                yield ServerSentEvent(event=event.event, id=str(event.id), data=event.data)
            if batch:
                continue
            if follow and not waiting_said:  # a reader opened between turns hears at once
                waiting_said = True
                yield ServerSentEvent(
                    comment=f"waiting for the next turn of conversation {conversation_id}"
                )
            if not follow:
                running = await anyio.to_thread.run_sync(store.turn_in_progress, conversation_id)
                if running is None:
                    for event in await anyio.to_thread.run_sync(
                        store.events_after, conversation_id, cursor
                    ):  # written while we looked
                        yield ServerSentEvent(event=event.event, id=str(event.id), data=event.data)
                    return
            await anyio.sleep(EVENT_POLL_SECONDS)

    @app.get("/v1/actions", response_model=list[PendingAction], responses=v1)
    async def list_actions(
        caller: CallerDep,
        state: StateDep,
        status: Annotated[
            Literal["pending", "approved", "rejected", "expired", "executed", "failed", "all"],
            Query(description="Which actions (default: pending)."),
        ] = "pending",
        conversation_id: Annotated[
            str | None, Query(pattern=ID_PATTERN, description="Only this conversation's.")
        ] = None,
    ) -> list[PendingAction]:
        """Actions visible to the caller (its conversations'; an approver's: all), newest first."""
        owned: list[str] | None = None
        if caller.role != "approver":
            owned = await anyio.to_thread.run_sync(state.conversations.ids_owned_by, caller.account)
        if conversation_id is not None:
            owned = [conversation_id] if owned is None or conversation_id in owned else []
        wanted = None if status == "all" else status
        return await anyio.to_thread.run_sync(
            lambda: state.deps.actions.list(wanted, conversation_ids=owned)
        )

    @app.get(
        "/v1/actions/{action_id}",
        response_model=PendingAction,
        responses=documented(401, 404, 422),
    )
    async def get_action(action_id: ActionId, caller: CallerDep, state: StateDep) -> PendingAction:
        """One action."""
        return await _visible_action(state, caller, action_id)

    @app.post(
        "/v1/actions/{action_id}/decision",
        response_model=DecidedAction,
        responses=documented(401, 403, 404, 409, 413, 422),
    )
    async def decide(
        action_id: ActionId, body: DecisionRequest, caller: ApproverDep, state: StateDep
    ) -> DecidedAction:
        """Approve, edit or reject (approver role). An edit never approves: the action stays
        pending with the new arguments, to be approved as a separate decision. Returns the
        action after the decision, with the execution result on approval, and what the
        conversation was told."""
        action = await _visible_action(state, caller, action_id)
        if body.decision == "edit":
            if body.arguments is None:
                raise invalid(
                    [
                        ErrorItem(
                            loc=["body", "arguments"],
                            field="arguments",
                            value=None,
                            rule="required_for_edit",
                            message='"arguments" is required when "decision" is "edit"',
                        )
                    ]
                )
            problems = invalid_arguments(action.tool, body.arguments)
            if problems:
                raise invalid(problems)
        elif body.arguments:
            raise invalid(
                [
                    ErrorItem(
                        loc=["body", "arguments"],
                        field="arguments",
                        value=None,
                        rule="edit_only",
                        message=f'"arguments" are taken only with "decision": "edit" '
                        f'(got "{body.decision}")',
                    )
                ]
            )
        try:
            final, turn = await turns.decide(
                state.copilot,
                action_id,
                body.decision,
                caller.identity,
                body.arguments,
                body.comment,
                expected_sha256=body.arguments_sha256,
            )
        except (AlreadyDecided, ArgumentsChanged) as error:
            raise ApiError(
                409, str(error), extra={"action": error.action.model_dump(mode="json")}
            ) from None
        except ArgumentsTampered as error:
            current = await anyio.to_thread.run_sync(state.copilot.deps.actions.get, action_id)
            raise ApiError(
                409, str(error), extra={"action": current.model_dump(mode="json")}
            ) from None
        return DecidedAction(**final.model_dump(), follow_up=turn)

    return app
