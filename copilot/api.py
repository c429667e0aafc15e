"""The agent API (FastAPI): conversations, their turns and events, and decisions on pending
actions, for other systems (CONTRACTS.md, "Agent API"). OpenAPI docs at /docs.

Auth: `Authorization: Bearer <key>` with a key from COPILOT_API_KEYS, compared in constant
time. A `user` sees its own conversations and their actions; an `approver` sees all of
them and decides actions. The caller is recorded as "NAME via api-key:NAME" (the four-eyes
rule compares the account). /health, /ready and the docs need no key.

One turn at a time per conversation, across replicas (a lease row in the copilot
database, see copilot.conversations): a message while a turn runs gets 409 at once; a
decision waits up to DECISION_WAIT_SECONDS for the running turn, then 409 (nothing is
decided). Turn events are rows in the same database, so GET .../events streams a turn
posted to any replica.

Error tree (bodies are {"detail": ...}):
    401  no key, not a Bearer key, or an unknown key (with WWW-Authenticate: Bearer)
    403  wrong role; another's conversation (approvers); four-eyes rule
    404  unknown, or not visible to the caller (existence is not revealed)
    409  a turn in progress; an action already decided or expired (with the action)
    422  [{loc, field, value, rule, message}], as the model service answers
    503  /ready: the copilot database or the model service is not ready
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import contextlib
import hmac
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
import httpx
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from copilot.actions import (
    STATE_CHANGING,
    ActionConflict,
    ActionError,
    ArgumentsTampered,
    InvalidArguments,
    NotAllowed,
    PendingAction,
    UnknownAction,
)
from copilot.conversations import (
    Conversation,
    ConversationStore,
    TurnEvents,
    TurnInProgress,
    run_turn,
)
from copilot.deps import Deps, open_deps
from copilot.settings import ApiKey, Settings
from graphs.session import Copilot, Turn, TurnEvent, open_copilot
from model_service.schemas import ErrorItem

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000
MAX_COMMENT_CHARS = 2000
DECISION_WAIT_SECONDS = 30.0
EVENT_POLL_SECONDS = 0.25
READY_TIMEOUT_SECONDS = 5.0
MAX_BODY_BYTES = 64 * 1024  # a message is at most 4000 characters: 16 KB of UTF-8
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ACCOUNT_KIND = "api-key"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ApiConfigError(ValueError):
    """The API cannot start with this configuration; the message says what to set."""


class ApiError(Exception):
    """An expected failure with its status, message and any extra body fields."""

    def __init__(
        self,
        status: int,
        detail: str | list[dict[str, Any]],
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}


# ---- request and response bodies -------------------------------------------------------


def _text(value: str, field: str) -> str:
    """Text a person wrote: no control characters (PostgreSQL cannot store NUL) and valid
    Unicode (a lone surrogate cannot be stored or sent back)."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_characters",
            '"{field}" contains control characters (only tab and newlines are allowed)',
            {"field": field},
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "valid_unicode", '"{field}" is not valid Unicode text', {"field": field}
        ) from None
    return value


def _content(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("not_blank", '"content" must not be empty or blank', {})
    return _text(value, "content")


def _comment(value: str | None) -> str | None:
    return None if value is None else _text(value, "comment")


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


class ErrorBody(BaseModel):
    detail: list[ErrorItem] | str


class ConflictBody(BaseModel):
    detail: str
    action: PendingAction | None = None


def _errors(*codes: int, streaming: bool = False) -> dict[int | str, dict[str, Any]]:
    """Documented failures. A streaming route's own media type is text/event-stream, so its
    JSON error bodies are described explicitly (FastAPI would file them under the stream)."""
    described = {
        401: "No API key, or not a valid one",
        403: "The caller's role or account may not do this",
        404: "Not found, or not visible to the caller",
        409: "A turn is in progress, or the action was already decided or expired",
        413: f"The body exceeds {MAX_BODY_BYTES} bytes",
        422: "Invalid input: field, value and rule",
        503: "Not ready: the reason",
    }
    if streaming:
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        return {
            code: {"description": described[code], "content": {"application/json": {"schema": ref}}}
            for code in codes
        }
    return {
        code: {"model": ConflictBody if code == 409 else ErrorBody, "description": described[code]}
        for code in codes
    }


# ---- callers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    role: Literal["user", "approver"]

    @property
    def account(self) -> str:
        return f"{ACCOUNT_KIND}:{self.name}"

    @property
    def identity(self) -> str:
        """As recorded in actions and the audit log ("NAME via api-key:NAME")."""
        return f"{self.name} via {self.account}"


@dataclass(frozen=True)
class ApiState:
    keys: tuple[ApiKey, ...]
    deps: Deps
    copilot: Copilot
    conversations: ConversationStore


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(_state)]
_bearer = HTTPBearer(
    auto_error=False, scheme_name="api-key", description="A key from COPILOT_API_KEYS."
)


def _unauthorized(detail: str, error: str | None = None) -> ApiError:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return ApiError(401, detail, headers={"WWW-Authenticate": challenge})


def _match(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """The key equal to `presented`; every key is compared, each in constant time."""
    found = None
    candidate = presented.encode()
    for key in keys:
        if hmac.compare_digest(key.key.encode(), candidate):
            found = key
    return found


async def _caller(
    request: Request,
    state: StateDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "missing Authorization header: send 'Authorization: Bearer <key>' with a key "
            "from COPILOT_API_KEYS"
        )
    scheme, _sep, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized(
            f"Authorization header must be 'Bearer <key>' (got scheme {scheme[:20]!r})",
            "invalid_request",
        )
    key = _match(state.keys, presented.strip())
    if key is None:
        raise _unauthorized(
            "the API key is not valid (not one of COPILOT_API_KEYS)", "invalid_token"
        )
    return Caller(key.name, key.role)


CallerDep = Annotated[Caller, Depends(_caller)]


async def _approver(request: Request, caller: CallerDep) -> Caller:
    if caller.role != "approver":
        raise ApiError(
            403,
            f"{request.method} {request.url.path} needs the approver role; key "
            f"{caller.name!r} has the {caller.role} role",
        )
    return caller


ApproverDep = Annotated[Caller, Depends(_approver)]
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
            description="Resume after this event id (browsers send it on reconnect).",
        ),
    ] = None,
) -> StreamStart:
    # Resolved before the response starts, so a turn posted right after the stream opens
    # is never missed and a 404 is a real 404 (not a broken stream).
    conversation = await _readable(state, caller, conversation_id)
    cursor = await anyio.to_thread.run_sync(
        state.conversations.stream_start, conversation.id, last_event_id
    )
    return StreamStart(conversation, cursor)


# ---- errors ----------------------------------------------------------------------------


def _field(loc: Sequence[str | int]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in {"body", "query", "path", "header"} else list(loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _shown(value: Any) -> Any:
    """The offending value, short enough to send back (objects are not echoed)."""
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace").decode()
        return value if len(value) <= 80 else value[:77] + "..."
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:80]


_RULE_MESSAGES = {
    "string_type": "is not a string",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "dict_type": "is not a JSON object",
    "model_type": "is not a JSON object",
    "model_attributes_type": "is not a JSON object",
    "list_type": "is not a JSON array",
}


def describe(error: ErrorDetails, known_fields: Sequence[str] = ()) -> ErrorItem:
    """One validation error as loc, field, value, rule and a sentence naming all three."""
    loc, rule, value = list(error["loc"]), error["type"], error.get("input")
    field = _field(loc)
    if rule == "json_invalid":
        position = loc[1] if len(loc) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        message = f"body: malformed JSON at character {position} ({reason})"
        return ErrorItem(loc=["body"], field="body", value=None, rule=rule, message=message)
    if rule == "missing":
        return ErrorItem(loc=loc, field=field, rule=rule, message=f'"{field}" is required')
    if rule in _RULE_MESSAGES and isinstance(value, (bytes, dict, list)):
        # a body that is not JSON, or an object where a value belongs: nothing to echo
        message = f'"{field}" {_RULE_MESSAGES[rule]}'
        if isinstance(value, bytes):
            message += " (send a JSON object with Content-Type: application/json)"
        return ErrorItem(loc=loc, field=field, value=None, rule=rule, message=message)
    shown = _shown(value)
    message = _sentence(error, field, shown, known_fields)
    return ErrorItem(loc=loc, field=field, value=shown, rule=rule, message=message)


def _sentence(  # noqa: PLR0911 - one return per kind of error reads best
    error: ErrorDetails, field: str, shown: Any, known_fields: Sequence[str]
) -> str:
    rule, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    quoted = _quoted(shown)
    if rule == "extra_forbidden":
        known = f"; known fields: {', '.join(known_fields)}" if known_fields else ""
        return f'"{field}" is not a known field{known}'
    if rule == "string_too_long":
        length = len(value) if isinstance(value, str) else "?"
        return f'"{field}": {length} characters exceed the limit of {context["max_length"]}'
    if rule == "string_too_short":
        return f'"{field}" must not be empty'
    if rule == "string_pattern_mismatch":
        return f'"{field}": {quoted} does not match the pattern {context["pattern"]}'
    if rule in {"literal_error", "enum"}:
        return f'"{field}": {quoted} is not one of {context.get("expected", "?")}'
    if rule in {"greater_than_equal", "less_than_equal"}:
        bound = context.get("ge", context.get("le"))
        relation = "is below the minimum" if rule == "greater_than_equal" else "exceeds the maximum"
        return f'"{field}": {quoted} {relation} {bound}'
    if rule in {"not_blank", "control_characters", "valid_unicode"}:
        return error["msg"]  # our own rules already name the field
    if rule in _RULE_MESSAGES:
        return f'"{field}": {quoted} {_RULE_MESSAGES[rule]}'
    return f'"{field}": {quoted}: {error["msg"]}'


def _quoted(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _invalid(items: list[ErrorItem]) -> ApiError:
    return ApiError(422, [i.model_dump() for i in items])


def _invalid_arguments(tool: str, arguments: dict[str, Any]) -> list[ErrorItem]:
    """The edit's arguments checked against the tool's input model (empty when valid)."""
    model = STATE_CHANGING[tool].input_model
    try:
        model.model_validate(arguments)
    except ValidationError as error:
        known = list(model.model_fields)
        return [
            describe({**e, "loc": ("body", "arguments", *e["loc"])}, known) for e in error.errors()
        ]
    return list(_json_text_problems(arguments, ("body", "arguments")))


def _json_text_problems(value: Any, loc: tuple[str | int, ...]) -> Iterable[ErrorItem]:
    """Strings the database cannot store (NUL, lone surrogates) anywhere in `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_text_problems(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_text_problems(item, (*loc, index))
    elif isinstance(value, str):
        try:
            _text(value, _field(loc))
        except PydanticCustomError as error:
            yield ErrorItem(
                loc=list(loc),
                field=_field(loc),
                value=_shown(value),
                rule=error.type,
                message=error.message(),
            )


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"body: request body exceeds {max_bytes} bytes")


def _too_large(max_bytes: int) -> JSONResponse:
    item = ErrorItem(
        loc=["body"],
        field="body",
        value=None,
        rule="body_size",
        message=f"body: request body exceeds {max_bytes} bytes",
    )
    return JSONResponse({"detail": [item.model_dump()]}, status_code=413)


class BodyLimit:
    """Refuses bodies over `max_bytes` with a 413 in the shape of every other error: at once
    when Content-Length says so, else when the bytes read pass the limit (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        total = 0

        async def counted() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI passes HTTP errors on
            return message

        await self.app(scope, counted, send)


BODY_FIELDS = {
    "/messages": ["content"],
    "/decision": ["decision", "arguments", "comment"],
}


def install_error_handlers(app: FastAPI) -> None:
    """Every expected failure answers with its status and a body that says what is wrong."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        body = {"detail": error.detail, **error.extra}
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        path = request.url.path
        known = next((f for suffix, f in BODY_FIELDS.items() if path.endswith(suffix)), [])
        items = [describe(e, known) for e in error.errors()]
        return JSONResponse({"detail": [i.model_dump() for i in items]}, status_code=422)

    @app.exception_handler(TurnInProgress)
    async def turn_in_progress(_: Request, error: TurnInProgress) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(ActionError)
    async def action_error(_: Request, error: ActionError) -> JSONResponse:
        if isinstance(error, InvalidArguments):
            items = [
                ErrorItem(
                    loc=["body", "arguments"],
                    field="arguments",
                    value=None,
                    rule="tool_input",
                    message=problem,
                ).model_dump()
                for problem in error.problems
            ]
            return JSONResponse({"detail": items}, status_code=422)
        status = {UnknownAction: 404, NotAllowed: 403}.get(type(error), 409)
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error, BodyTooLarge):
            return _too_large(MAX_BODY_BYTES)
        if error.status_code == 400:  # the body could not be read at all
            item = ErrorItem(
                loc=["body"],
                field="body",
                value=None,
                rule="json_invalid",
                message="body: not readable as JSON (send UTF-8 encoded JSON)",
            )
            return JSONResponse({"detail": [item.model_dump()]}, status_code=422)
        return JSONResponse(
            {"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )


# ---- turns -----------------------------------------------------------------------------


async def _relay(events: TurnEvents, stream: AsyncIterator[TurnEvent]) -> dict[str, Any]:
    """Publishes a turn's events as they happen; returns its turn_finished data."""
    finished: dict[str, Any] | None = None
    try:
        async for name, data in stream:
            await events.publish(name, data)
            if name == "turn_finished":
                finished = data
    finally:
        if isinstance(stream, AsyncGenerator):  # closed now, not by the GC, if publishing fails
            await stream.aclose()
    if finished is None:
        raise RuntimeError("the turn ended without turn_finished")
    return finished


def _conflict(action: PendingAction) -> ApiError:
    if action.status == "expired":
        detail = f"action {action.id} expired at {action.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    else:
        by = f" by {action.decided_by}" if action.decided_by else ""
        detail = f"action {action.id} is already {action.status}{by}; nothing more runs"
    return ApiError(409, detail, extra={"action": action.model_dump(mode="json")})


def _check_keys(keys: list[ApiKey]) -> tuple[ApiKey, ...]:
    if not keys:
        raise ApiConfigError(
            "COPILOT_API_KEYS is not set: the agent API does not start without keys "
            "(name:role:key,... with role user or approver; `copilot up` makes a local one)"
        )
    names = [k.name for k in keys]
    for name in names:
        if names.count(name) > 1:
            raise ApiConfigError(f"COPILOT_API_KEYS names {name!r} more than once")
    if len({k.key for k in keys}) < len(keys):
        raise ApiConfigError("COPILOT_API_KEYS gives the same key to two names")
    return tuple(keys)


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
    keys = _check_keys(settings.api_keys())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_deps(settings) as deps, open_copilot(deps) as copilot:
            conversations = await anyio.to_thread.run_sync(ConversationStore, deps.engine)
            app.state.api = ApiState(keys, deps, copilot, conversations)
            yield

    app = FastAPI(
        title="mlops-copilot agent API",
        version="1",
        summary="Conversations with the MLOps copilot; state changes wait for an approver.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    install_error_handlers(app)
    v1 = _errors(401, 422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @app.get("/ready", responses=_errors(503))
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
        responses=_errors(401, 413, 422),
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
        responses=_errors(401, 404, 422),
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
        responses=_errors(401, 403, 404, 409, 413, 422),
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

        async def work(events: TurnEvents) -> dict[str, Any]:
            await events.publish(
                "turn_started", {"kind": "message", "by": caller.identity, "text": body.content}
            )
            turn = state.copilot.stream(conversation.id, body.content, caller.identity)
            return await _relay(events, turn)

        finished = await run_turn(state.conversations, conversation.id, "message", work)
        return Turn.model_validate(finished)

    @app.get(
        "/v1/conversations/{conversation_id}/events",
        response_class=EventSourceResponse,
        responses=_errors(401, 404, 422, streaming=True),
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
        or turn_failed; `id` is the event's id (send it back as Last-Event-ID)."""
        store, conversation_id, cursor = state.conversations, start.conversation.id, start.cursor
        while True:
            batch = await anyio.to_thread.run_sync(store.events_after, conversation_id, cursor)
            for event in batch:
                cursor = event.id
                yield ServerSentEvent(event=event.event, id=str(event.id), data=event.data)
            if batch:
                continue
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
        responses=_errors(401, 404, 422),
    )
    async def get_action(action_id: ActionId, caller: CallerDep, state: StateDep) -> PendingAction:
        """One action."""
        return await _visible_action(state, caller, action_id)

    @app.post(
        "/v1/actions/{action_id}/decision",
        response_model=DecidedAction,
        responses=_errors(401, 403, 404, 409, 413, 422),
    )
    async def decide(
        action_id: ActionId, body: DecisionRequest, caller: ApproverDep, state: StateDep
    ) -> DecidedAction:
        """Approve, edit (approve with new arguments) or reject (approver role). Returns the
        action after the decision, with the execution result on approval, and what the
        conversation was told."""
        actions = state.deps.actions
        action = await _visible_action(state, caller, action_id)
        if body.decision == "edit":
            if body.arguments is None:
                raise _invalid(
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
            problems = _invalid_arguments(action.tool, body.arguments)
            if problems:
                raise _invalid(problems)
        elif body.arguments:
            raise _invalid(
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
        if action.status != "pending":
            raise _conflict(action)

        async def work(events: TurnEvents) -> dict[str, Any]:
            current = await anyio.to_thread.run_sync(actions.get, action_id)
            if current.status != "pending":  # decided while we waited for the turn
                raise _conflict(current)
            try:
                await anyio.to_thread.run_sync(
                    lambda: actions.decide(
                        action_id, body.decision, caller.identity, body.arguments, body.comment
                    )
                )
            except ActionConflict:
                raise _conflict(await anyio.to_thread.run_sync(actions.get, action_id)) from None
            await events.publish(
                "turn_started",
                {
                    "kind": "decision",
                    "by": caller.identity,
                    "action_id": action_id,
                    "decision": body.decision,
                },
            )
            return await _relay(events, state.copilot.stream_after_decision(action_id))

        try:
            finished = await run_turn(
                state.conversations,
                action.conversation_id,
                "decision",
                work,
                wait_seconds=DECISION_WAIT_SECONDS,
            )
        except ArgumentsTampered as error:
            current = await anyio.to_thread.run_sync(actions.get, action_id)
            raise ApiError(
                409, str(error), extra={"action": current.model_dump(mode="json")}
            ) from None
        final = await anyio.to_thread.run_sync(actions.get, action_id)
        return DecidedAction(**final.model_dump(), follow_up=Turn.model_validate(finished))

    return app
