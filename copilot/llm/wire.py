"""What goes over the wire to an OpenAI-compatible server, in the shapes such servers accept.

- The output cap goes out as `max_tokens`, which llama-cpp-python reads (it ignores
  `max_completion_tokens`, OpenAI's newer name).
- An assistant message is never sent with `"content": null`: llama.cpp's servers answer
  HTTP 500 to it (llama-cpp-python renders the chat template with the null and fails).
  `CompatibleChatModel` sends `""` instead, and a tool call the copilot recovered from the
  model's text goes back as that text, its retry as a user message (`fold_text_calls`), so
  the model sees the conversation it actually had.
- A server error whose body says the request itself was malformed is a format error, not
  an outage: it is not retried (`x-should-retry: false`, which the OpenAI client obeys) and
  is reported in plain words (`is_format_error`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import httpx2
from openai.types import chat
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.profiles.openai import OpenAIModelProfile

TEXT_CALL_PREFIX = "text_call_"  # ids of tool calls recovered from a model's text
TEXT_KEY = "copilot_text"  # where such a call keeps the text it came from
FORMAT_STATUSES = frozenset({400, 422})
# llama-cpp-python reads `max_tokens` and silently ignores OpenAI's newer
# `max_completion_tokens`: without this, a one-token warm-up generates until n_ctx.
COMPATIBLE = OpenAIModelProfile(openai_chat_supports_max_completion_tokens=False)
# What llama.cpp / llama-cpp-python / vLLM servers say when the request, not the server,
# is at fault (a template that cannot render a message, a field of the wrong type).
_FORMAT_WORDS = re.compile(
    r"NoneType|validation error|Input should|can only concatenate|not subscriptable"
    r"|has no attribute|object is not|invalid|malformed|unsupported|not supported"
    r"|jinja|template|field required|missing required|unexpected keyword|could not parse"
    r"|failed to parse|Extra inputs",
    re.I,
)


class CompatibleChatModel(OpenAIChatModel):
    """OpenAI's chat model, with assistant messages in the shape llama.cpp accepts."""

    def _map_model_response(self, message: ModelResponse) -> chat.ChatCompletionMessageParam | None:
        mapped = super()._map_model_response(message)
        if mapped is not None and mapped["role"] == "assistant" and mapped.get("content") is None:
            mapped["content"] = ""
        return mapped


def text_call(text: str, name: str, arguments: dict[str, Any], index: int) -> ToolCallPart:
    """A tool call recovered from `text`, marked so its retry can go back as text."""
    part = ToolCallPart(tool_name=name, args=arguments)
    return dataclasses.replace(
        part,
        tool_call_id=f"{TEXT_CALL_PREFIX}{index}_{part.tool_call_id}",
        provider_details={TEXT_KEY: text},
    )


def _from_text(part: ModelResponsePart) -> bool:
    return isinstance(part, ToolCallPart) and part.tool_call_id.startswith(TEXT_CALL_PREFIX)


def _as_user_text(part: ModelRequestPart) -> UserPromptPart:
    if isinstance(part, ToolReturnPart):
        return UserPromptPart(part.model_response_str(wrap_if_error=False))
    if isinstance(part, RetryPromptPart):
        return UserPromptPart(part.model_response())
    raise TypeError(f"cannot fold a {type(part).__name__} into text")


def _answers_text_call(part: ModelRequestPart) -> bool:
    return isinstance(part, (ToolReturnPart, RetryPromptPart)) and part.tool_call_id.startswith(
        TEXT_CALL_PREFIX
    )


def fold_text_calls(messages: list[ModelMessage]) -> list[ModelMessage]:
    """The history with each call recovered from text sent back as the model's own text and
    its answer (a retry, a result) as a user message: no tool ids the model never wrote."""
    folded: list[ModelMessage] = []
    for message in messages:
        if isinstance(message, ModelResponse) and any(_from_text(p) for p in message.parts):
            parts: list[ModelResponsePart] = []
            for part in message.parts:
                if isinstance(part, ToolCallPart) and _from_text(part):
                    details = part.provider_details or {}
                    text = details.get(TEXT_KEY) or json.dumps(
                        {"name": part.tool_name, "arguments": part.args_as_dict()}
                    )
                    parts.append(TextPart(str(text)))
                elif not isinstance(part, TextPart):
                    parts.append(part)
            folded.append(dataclasses.replace(message, parts=parts))
        elif isinstance(message, ModelRequest) and any(
            _answers_text_call(p) for p in message.parts
        ):
            request_parts = [
                _as_user_text(p) if _answers_text_call(p) else p for p in message.parts
            ]
            folded.append(dataclasses.replace(message, parts=request_parts))
        else:
            folded.append(message)
    return folded


def is_format_error(status: int | None, said: str) -> bool:
    """Whether an error response says the request was malformed (not a server outage)."""
    if status in FORMAT_STATUSES:
        return True
    return status is not None and status >= 500 and bool(_FORMAT_WORDS.search(said))


def server_words(body: object) -> str:
    """The server's own message in an error body ({"error": {"message": ...}} and similar)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            return str(body)
    if isinstance(body, dict):
        inner = body.get("error", body)
        said = inner.get("message", inner.get("detail")) if isinstance(inner, dict) else inner
        return "" if said is None else str(said)
    return "" if body is None else str(body)


async def _format_errors_are_final(response: httpx2.Response) -> None:
    if response.status_code < 500:
        return
    await response.aread()
    if is_format_error(response.status_code, server_words(response.content)):
        response.headers["x-should-retry"] = "false"


def http_client() -> httpx2.AsyncClient:
    """The HTTP client for an OpenAI-compatible server: format errors are not retried."""
    return httpx2.AsyncClient(event_hooks={"response": [_format_errors_are_final]})
