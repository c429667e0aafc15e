"""How the agent API reads bodies and answers failures (the model service's shapes).

Error tree (bodies are {"detail": ...}):
    401  no key, not a Bearer key, or an unknown key (with WWW-Authenticate: Bearer)
    429  too many unknown keys from the address lately (Retry-After); too many event streams
    403  wrong role; another's conversation (approvers); four-eyes rule (NotAllowed)
    404  unknown, or not visible to the caller (UnknownAction; existence is not revealed)
    409  a turn in progress (TurnInProgress); an action already decided, expired or
         refused (ActionConflict, ArgumentsTampered), with the action as `action`
    413  a body over MAX_BODY_BYTES: [{loc, field, value, rule, message}]
    422  invalid input (RequestValidationError, InvalidArguments):
         [{loc, field, value, rule, message}], naming field, value and rule
    503  /ready: the copilot database or the model service is not ready
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from copilot.actions import (
    STATE_CHANGING,
    ActionError,
    InvalidArguments,
    NotAllowed,
    PendingAction,
    UnknownAction,
)
from copilot.conversations import TurnInProgress
from model_service.schemas import ErrorItem, describe_error, field_path, json_safe

MAX_BODY_BYTES = 64 * 1024  # a message is at most 4000 characters: 16 KB of UTF-8
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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


def check_text(value: str, field: str) -> str:
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


class ErrorBody(BaseModel):
    detail: list[ErrorItem] | str


class ConflictBody(BaseModel):
    detail: str
    action: PendingAction | None = None


def documented(*codes: int, streaming: bool = False) -> dict[int | str, dict[str, Any]]:
    """Documented failures. A streaming route's own media type is text/event-stream, so its
    JSON error bodies are described explicitly (FastAPI would file them under the stream)."""
    described = {
        401: "No API key, or not a valid one",
        403: "The caller's role or account may not do this",
        404: "Not found, or not visible to the caller",
        409: "A turn is in progress, or the action was already decided or expired",
        413: f"The body exceeds {MAX_BODY_BYTES} bytes",
        422: "Invalid input: field, value and rule",
        429: "Too many unknown API keys from the address lately, or too many open event "
        "streams for the caller or the process (Retry-After says when to try again)",
        503: "Not ready: the reason",
    }
    if 401 in codes and 429 not in codes:  # a key is checked: guessing keys is throttled
        codes = (*codes, 429)
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


def describe(error: ErrorDetails, known_fields: Sequence[str] = ()) -> ErrorItem:
    """One validation error as loc, field, value, rule and a sentence naming all three."""
    return describe_error(error, known_fields)


def invalid(items: list[ErrorItem]) -> ApiError:
    return ApiError(422, [i.model_dump() for i in items])


def invalid_arguments(tool: str, arguments: dict[str, Any]) -> list[ErrorItem]:
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
            check_text(value, field_path(loc))
        except PydanticCustomError as error:
            yield ErrorItem(
                loc=list(loc),
                field=field_path(loc),
                value=json_safe(value),
                rule=error.type,
                message=error.message(),
            )


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"body: request body exceeds {max_bytes} bytes")
        self.max_bytes = max_bytes


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
            return _too_large(error.max_bytes)
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
