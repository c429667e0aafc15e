"""The LLM behind the router and the narrator: built-in offline, or OpenAI(-compatible).

`COPILOT_LLM=offline` runs `copilot.llm.offline.intents.understand` as a PydanticAI
`FunctionModel` (`OfflineModel`, bound to each request's typed facts), so the offline
provider goes through exactly the agent code path a real model does.

Real models are wrapped in `TolerantModel`, because small local models do not speak
OpenAI's tool-calling protocol reliably (measured on llama.cpp's server):

- a tool call written as text (bare JSON, a ```json fence, Qwen's `<tool_call>`, `<tools>`
  or `<function=...>` wrappers, arguments as XML elements named after the tool's fields;
  `copilot.llm.protocol`) is turned back into a typed tool
  call, which PydanticAI then validates like any other (bad arguments and unknown tools go
  back to the model as a retry with the reason); the retry shows the model its own text,
  never a tool call id it did not write, and no assistant message goes out with
  `"content": null`, which llama.cpp answers with HTTP 500 (`copilot.llm.wire`);
- in JSON-mode routing (`COPILOT_LLM_ROUTING=json`) the server is asked for one JSON object
  matching the output schema: `response_format: json_object` with the schema for
  `openai-compatible:` (the form llama.cpp's servers accept; llama-cpp-python refuses
  `json_schema`), OpenAI's own `json_schema` form for `openai:` (OpenAI refuses unknown
  fields). The prompt carries the schema too, so a server that ignores it still has it.

Each request has one deadline, `COPILOT_LLM_TIMEOUT_SECONDS` (300 s for local servers, 60
for OpenAI), covering its retries; then it is cancelled. Requests to openai-compatible
servers are streamed, because llama-cpp-python stops generating only when a streamed
request's connection closes (measured: a plain request abandoned after 3 s kept the server
busy 70 s; a streamed one freed it at once), except a request that asks for
log-probabilities (two-step's verdict, at most 16 tokens): llama-cpp-python 0.3.36 ends such
a stream after its first chunk, with no answer. llama-cpp-python sends no token counts in a
stream (servers that honour `stream_options.include_usage` do). 429 and 5xx are retried by
the OpenAI client with exponential backoff (it honours `Retry-After`),
`COPILOT_LLM_MAX_RETRIES` times; a format error (the server says the request is malformed)
is not retried and is not called an outage. There is never a fallback to another provider.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
from pydantic_ai import ModelSettings
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelRequestTimeout,
    ModelTimeoutError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.wrapper import WrapperModel

from copilot.facts import NOTHING_LEFT, RouteRequest
from copilot.llm.offline.intents import understand
from copilot.llm.protocol import recover_element_call, recover_tool_call
from copilot.llm.warm_cache import remember_warm, warmed_seconds_ago
from copilot.llm.wire import (
    COMPATIBLE,
    CompatibleChatModel,
    fold_text_calls,
    http_client,
    is_format_error,
    server_words,
    text_call,
)
from copilot.settings import Settings
from model_service.cards import DatasetCard

__all__ = ["recover_tool_call"]  # re-exported: where callers have always found it

CONTEXT_MARKER = "Conversation context (JSON):"
CONTINUATION_MARKER = "Already done for this message (JSON):"
WARM_UP_MAX_TOKENS = 1
OPENAI_BASE_URL = "https://api.openai.com/v1"
ATTEMPT_GRACE_SECONDS = 5.0  # one attempt may outlast the request deadline by this much
SHORT_MESSAGE = 160  # characters of a server's message shown to a person

_RETRIED = {408, 409, 429}  # the OpenAI client retries these and every 5xx
log = logging.getLogger(__name__)


def context_block(request: RouteRequest) -> str:
    """The part of the instructions that tells any model what "him" and "it" are and, for a
    request of several steps, what this turn already did (typed facts, never tool text)."""
    memory = request.memory
    context: dict[str, object] = {
        "last_prediction_id": memory.prediction_id,
        "last_patient": memory.patient,
    }
    if memory.last_tool and memory.last_arguments is not None:  # "and for Hungary?"
        context["last_call"] = {"tool": memory.last_tool, "arguments": memory.last_arguments}
    if memory.pending_patient:  # we asked for more: the answer completes this patient
        context["patient_being_described"] = memory.pending_patient
        context["we_asked_for"] = list(memory.asked_for)
    if memory.pending_tool:  # we asked which patient: the answer's patient is for this tool
        context["patient_wanted_for"] = memory.pending_tool
    block = f"{CONTEXT_MARKER}\n" + json.dumps(context)
    if request.done:
        block += (
            f"\n{CONTINUATION_MARKER} {json.dumps(request.done, sort_keys=True)}\n"
            "Do the next part of the user's request that is not done yet with one tool, or "
            f"reply {NOTHING_LEFT} if nothing is left."
        )
    return block


def _last_user_text(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


class OfflineModel(FunctionModel):
    """The deterministic built-in model: no network, no weights. `for_request` binds it to
    one request's typed facts (what "him" is, the steps this turn already ran)."""

    def __init__(self, card: DatasetCard, request: RouteRequest | None = None) -> None:
        self.card = card
        self.bound = request
        super().__init__(self._respond_off_loop, model_name="offline")

    def for_request(self, request: RouteRequest) -> OfflineModel:
        return OfflineModel(self.card, request)

    async def _respond_off_loop(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> ModelResponse:
        """Reading a request is CPU work: it runs in a worker thread, so a long or hostile
        message never holds up the other requests of the process."""
        return await anyio.to_thread.run_sync(self._respond, messages, info)

    def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1] if messages else None
        if isinstance(last, ModelRequest) and not any(
            isinstance(p, UserPromptPart) for p in last.parts
        ):  # our last answer was refused (validation or retry): say so, do not repeat it
            reasons = "; ".join(
                p.model_response() if isinstance(p, RetryPromptPart) else str(p.content)
                for p in last.parts
                if isinstance(p, (RetryPromptPart, ToolReturnPart))
            )
            return ModelResponse(parts=[TextPart(f"I could not use those values: {reasons}")])
        request = self.bound or RouteRequest(_last_user_text(messages))
        intent = understand(request.text, request.memory, self.card, request.done)
        names = {tool.name for tool in info.output_tools}
        if intent.tool is None or intent.tool not in names:
            return ModelResponse(parts=[TextPart(intent.reply or "I can't do that.")])
        return ModelResponse(parts=[ToolCallPart(tool_name=intent.tool, args=intent.arguments)])


def offline_model(card: DatasetCard) -> OfflineModel:
    """The deterministic built-in model: no network, no weights."""
    return OfflineModel(card)


def _recover(response: ModelResponse, params: ModelRequestParameters) -> ModelResponse:
    """The response, with a tool call written as text turned into a real one (marked, so a
    retry goes back to the model as text: `wire.fold_text_calls`). Also in PydanticAI's
    "auto" output mode, where a structured output (the narrator's summary) is asked for as
    the `final_result` tool: small models write that call as text too."""
    calls_expected = params.output_mode == "tool" or (
        params.output_mode == "auto" and bool(params.output_tools)
    )
    if not calls_expected or any(isinstance(p, ToolCallPart) for p in response.parts):
        return response
    text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
    offered = [*params.output_tools, *params.function_tools]
    call = recover_tool_call(text) or recover_element_call(
        text, {tool.name: tool.parameters_json_schema for tool in offered}
    )
    if call is None:
        return response
    name, arguments = call  # an unknown name is kept: PydanticAI asks the model to retry
    parts = [p for p in response.parts if not isinstance(p, TextPart)]
    parts.append(text_call(text, name, arguments, len(parts)))
    return dataclasses.replace(response, parts=parts)


def json_format(schema: dict[str, Any], name: str, *, openai_schema: bool) -> dict[str, Any]:
    """`response_format` asking for one JSON object matching `schema`: llama.cpp's form
    (json_object with the schema), or OpenAI's json_schema form (`openai_schema`)."""
    if not openai_schema:
        return {"type": "json_object", "schema": schema}
    named = re.sub(r"[^A-Za-z0-9_-]", "_", name or "route")[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": named, "schema": schema, "strict": False},
    }


class TolerantModel(WrapperModel):
    """A real model that tolerates how small models answer (see the module docstring)."""

    def __init__(
        self,
        wrapped: Model,
        *,
        json_mode: bool,
        openai_schema: bool = False,
        stream: bool = False,
    ) -> None:
        super().__init__(wrapped)
        self.json_mode = json_mode
        self.openai_schema = openai_schema  # OpenAI's json_schema form, not llama.cpp's
        self.stream = stream  # so a cancelled request closes a stream the server watches

    def json_format(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        """`response_format` for one JSON object matching `schema`, as this server takes it."""
        return json_format(schema, name, openai_schema=self.openai_schema)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        settings = model_settings
        schema = model_request_parameters.output_object
        if self.json_mode and schema is not None:
            response_format = self.json_format(schema.json_schema, schema.name or "route")
            settings = {
                **(model_settings or {}),
                "extra_body": {"response_format": response_format},
            }
        messages = fold_text_calls(messages)
        # llama-cpp-python 0.3.36 ends a stream that asks for log-probabilities right after
        # its first (role) chunk: such a request (a verdict, a few tokens) is asked plainly.
        if self.stream and not (settings or {}).get("openai_logprobs"):
            response = await self._streamed(messages, settings, model_request_parameters)
        else:
            response = await super().request(messages, settings, model_request_parameters)
        return _recover(response, model_request_parameters)

    async def _streamed(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        """One request read as a stream: llama-cpp-python stops generating when a streamed
        request's connection closes (a timeout, a cancel), never for a plain one."""
        async with self.wrapped.request_stream(messages, settings, params) as stream:
            async for _ in stream:
                pass
            return stream.get()


def llm_label(settings: Settings) -> str:
    """How the configured LLM is named to people ("openai-compatible:qwen at http://...");
    credentials in the URL are left out."""
    if settings.copilot_llm_base_url is None:
        return settings.copilot_llm
    parts = urlsplit(settings.copilot_llm_base_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{settings.copilot_llm} at {urlunsplit(parts._replace(netloc=netloc))}"


def _openai_model(settings: Settings) -> Model:
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415

    name = settings.copilot_llm.partition(":")[2]
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    deadline = settings.llm_timeout_seconds
    model_settings = ModelSettings(
        request_timeout=deadline,  # every attempt included; then cancelled, connection closed
        timeout=deadline + ATTEMPT_GRACE_SECONDS,  # so the deadline, never a retry, ends it
        max_retries=settings.copilot_llm_max_retries,
    )
    if settings.llm_kind == "openai-compatible":  # local servers ignore the key; vLLM may not
        provider = OpenAIProvider(
            base_url=settings.copilot_llm_base_url,
            api_key=key or "local",
            http_client=http_client(),
        )
        return CompatibleChatModel(
            name, provider=provider, settings=model_settings, profile=COMPATIBLE
        )
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415

    # explicit, so a stray OPENAI_BASE_URL cannot send patients somewhere unnamed
    base_url = settings.copilot_llm_base_url or OPENAI_BASE_URL
    provider = OpenAIProvider(base_url=base_url, api_key=key)
    return OpenAIChatModel(name, provider=provider, settings=model_settings)


def llm_model(settings: Settings, card: DatasetCard) -> Model:
    """The model `COPILOT_LLM` names, ready for the router and the narrator."""
    if settings.copilot_llm == "offline":
        return offline_model(card)
    compatible = settings.llm_kind == "openai-compatible"
    return TolerantModel(
        _openai_model(settings),
        json_mode=settings.llm_routing == "json",
        openai_schema=not compatible,
        stream=compatible,
    )


@dataclasses.dataclass(frozen=True)
class WarmUp:
    """The outcome of the start-up request: whether the LLM answered, and how fast."""

    ok: bool
    seconds: float
    detail: str


def warm_up_key(settings: Settings) -> str:
    """What a warm-up is remembered by: the server and the model."""
    return f"{settings.copilot_llm_base_url or OPENAI_BASE_URL} {settings.copilot_llm}"


async def warm_up(model: Model, settings: Settings) -> WarmUp:
    """One tiny request so a local server loads its weights before the first real turn;
    skipped when another process warmed the same server and model up minutes ago."""
    if settings.copilot_llm == "offline":
        return WarmUp(ok=True, seconds=0.0, detail="offline provider: nothing to warm up")
    ago = warmed_seconds_ago(settings.home, warm_up_key(settings))
    if ago is not None:
        detail = f"{llm_label(settings)} answered a warm-up {ago:.0f} s ago; not asked again"
        return WarmUp(ok=True, seconds=0.0, detail=detail)
    started = time.perf_counter()
    try:
        with anyio.fail_after(settings.llm_timeout_seconds):
            await model.request(
                [ModelRequest(parts=[UserPromptPart("Reply with OK.")])],
                ModelSettings(max_tokens=WARM_UP_MAX_TOKENS, max_retries=0),
                ModelRequestParameters(),
            )
    except TimeoutError:
        detail = unavailable(
            settings, ModelRequestTimeout(model.model_name, settings.llm_timeout_seconds)
        )
        return WarmUp(False, time.perf_counter() - started, detail)
    except ModelAPIError as error:
        return WarmUp(False, time.perf_counter() - started, unavailable(settings, error))
    except UnexpectedModelBehavior as error:  # it answered, but not as an OpenAI server does
        detail = f"{llm_label(settings)} answered but not as expected: {error.message}"
        return WarmUp(False, time.perf_counter() - started, detail)
    remember_warm(settings.home, warm_up_key(settings))
    return WarmUp(True, time.perf_counter() - started, f"{llm_label(settings)} answered")


def _short(said: str) -> str:
    """A server's message cut to one plain line (no bodies, no tracebacks)."""
    line = " ".join(said.split())
    return line if len(line) <= SHORT_MESSAGE else line[: SHORT_MESSAGE - 3] + "..."


def _outage(error: ModelAPIError) -> str:
    """What went wrong, in a few words, for a server that is down or too slow."""
    if isinstance(error, ModelRequestTimeout):
        return f"it did not answer within {error.timeout:g} s (the request was cancelled)"
    if isinstance(error, ModelTimeoutError):
        return "it did not answer in time"
    if isinstance(error, ModelConnectionError):
        return "it could not be reached (connection failed)"
    status = getattr(error, "status_code", None)
    said = _short(server_words(error.body)) or "no reason given"
    return f"HTTP {status}: {said}" if isinstance(status, int) else said


def unavailable(settings: Settings, error: ModelAPIError) -> str:
    """What to tell a person when the configured LLM cannot be reached, refuses the request,
    or cannot read it (never a fallback to another model, never a raw error body)."""
    status = getattr(error, "status_code", None)
    said = server_words(error.body) or error.message
    if is_format_error(status if isinstance(status, int) else None, said):
        log.warning("LLM format error (HTTP %s): %s", status, _short(said))
        return (
            f"The language model ({llm_label(settings)}) could not read the request the "
            f"copilot sent it (HTTP {status}: the server reported a problem with the request's "
            "format; it is running, this is not an outage). Nothing was changed, and I did not "
            "switch to another model. Try rephrasing; if it happens again, report it with the "
            "server's log."
        )
    if isinstance(status, int) and 400 <= status < 500 and status not in _RETRIED:
        return (
            f"The language model ({llm_label(settings)}) refused the request "
            f"(HTTP {status}: {_short(said).rstrip('.')}). I did not switch to another "
            "model; nothing was changed. Check the model name, key and server settings."
        )
    if isinstance(error, ModelRequestTimeout):
        return (
            f"The language model ({llm_label(settings)}) is not available: {_outage(error)}. "
            "I did not switch to another model; nothing was changed. Try again, or check the "
            "LLM server (COPILOT_LLM_TIMEOUT_SECONDS sets how long to wait)."
        )
    return (
        f"The language model ({llm_label(settings)}) is not available: {_outage(error)}. "
        f"I tried {settings.copilot_llm_max_retries + 1} times and did not switch to another "
        "model; nothing was changed. Try again, or check the LLM server."
    )
