"""The LLM behind the router and the narrator: built-in offline, or OpenAI(-compatible).

`COPILOT_LLM=offline` runs `copilot.llm.offline.intents.understand` as a PydanticAI
`FunctionModel` (`OfflineModel`, bound to each request's typed facts), so the offline
provider goes through exactly the agent code path a real model does.

Real models are wrapped in `TolerantModel`, because small local models do not speak
OpenAI's tool-calling protocol reliably (measured on llama.cpp's server):

- a tool call written as text (bare JSON, a ```json fence, Qwen's `<tool_call>` tags) is
  turned back into a typed tool call, which PydanticAI then validates like any other (bad
  arguments and unknown tools go back to the model as a retry with the reason);
- in JSON-mode routing (`COPILOT_LLM_ROUTING=json`) the server is asked for one JSON object
  matching the output schema: `response_format: json_object` with the schema for
  `openai-compatible:` (the form llama.cpp's servers accept; llama-cpp-python refuses
  `json_schema`), OpenAI's own `json_schema` form for `openai:` (OpenAI refuses unknown
  fields). The prompt carries the schema too, so a server that ignores it still has it.

429, 5xx and timeouts are retried by the OpenAI client with exponential backoff (it honours
`Retry-After`), `COPILOT_LLM_MAX_RETRIES` times; after that the caller says so. There is
never a fallback to another provider.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
from pydantic_ai import ModelSettings
from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior
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
from copilot.settings import Settings
from model_service.cards import DatasetCard

CONTEXT_MARKER = "Conversation context (JSON):"
CONTINUATION_MARKER = "Already done for this message (JSON):"
WARM_UP_MAX_TOKENS = 1
MAX_TOOL_CALL_CHARACTERS = 20_000
OPENAI_BASE_URL = "https://api.openai.com/v1"

_RETRIED = {408, 409, 429}  # the OpenAI client retries these and every 5xx
_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.S | re.I)
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def context_block(request: RouteRequest) -> str:
    """The part of the instructions that tells any model what "him" and "it" are and, for a
    request of several steps, what this turn already did (typed facts, never tool text)."""
    memory = request.memory
    block = f"{CONTEXT_MARKER}\n" + json.dumps(
        {"last_prediction_id": memory.prediction_id, "last_patient": memory.patient}
    )
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


def _json_candidates(text: str) -> list[str]:
    """The JSON a model may have meant as a tool call: tagged, fenced, or the whole text."""
    tagged = _TOOL_CALL_TAG.findall(text)
    fenced = _FENCE.findall(text)
    return [*tagged, *fenced, text.strip()] if tagged or fenced else [text.strip()]


def _as_tool_call(data: Any) -> tuple[str, dict[str, Any]] | None:
    """(tool, arguments) from the shapes models use when they write a call as text."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("tool_calls"), list) and data["tool_calls"]:
        return _as_tool_call(data["tool_calls"][0])
    if isinstance(data.get("function"), dict):
        data = data["function"]
    name = data.get("name", data.get("tool"))
    arguments = data.get("arguments", data.get("args", data.get("parameters", {})))
    if isinstance(arguments, str):  # OpenAI's wire format carries arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return name, arguments


def recover_tool_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """A tool call written as text, or None when the text is not one."""
    if len(text) > MAX_TOOL_CALL_CHARACTERS:  # a degenerate loop, not a call
        return None
    for candidate in _json_candidates(text):
        try:
            call = _as_tool_call(json.loads(candidate))
        except (json.JSONDecodeError, RecursionError):
            continue
        if call is not None:
            return call
    return None


def _recover(response: ModelResponse, params: ModelRequestParameters) -> ModelResponse:
    """The response, with a tool call written as text turned into a real one."""
    if params.output_mode != "tool" or any(isinstance(p, ToolCallPart) for p in response.parts):
        return response
    text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
    call = recover_tool_call(text)
    if call is None:
        return response
    name, arguments = call  # an unknown name is kept: PydanticAI asks the model to retry
    parts = [p for p in response.parts if not isinstance(p, TextPart)]
    parts.append(ToolCallPart(tool_name=name, args=arguments))
    return dataclasses.replace(response, parts=parts)


class TolerantModel(WrapperModel):
    """A real model that tolerates how small models answer (see the module docstring)."""

    def __init__(self, wrapped: Model, *, json_mode: bool, openai_schema: bool = False) -> None:
        super().__init__(wrapped)
        self.json_mode = json_mode
        self.openai_schema = openai_schema  # OpenAI's json_schema form, not llama.cpp's

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        settings = model_settings
        schema = model_request_parameters.output_object
        if self.json_mode and schema is not None:
            response_format: dict[str, Any] = {"type": "json_object", "schema": schema.json_schema}
            if self.openai_schema:
                name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.name or "route")[:64]
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema.json_schema, "strict": False},
                }
            settings = {
                **(model_settings or {}),
                "extra_body": {"response_format": response_format},
            }
        response = await super().request(messages, settings, model_request_parameters)
        return _recover(response, model_request_parameters)


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
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415

    kind, _, name = settings.copilot_llm.partition(":")
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if kind == "openai-compatible":  # local servers ignore the key; some (vLLM --api-key) check it
        provider = OpenAIProvider(base_url=settings.copilot_llm_base_url, api_key=key or "local")
    else:  # explicit, so a stray OPENAI_BASE_URL cannot send patients somewhere unnamed
        base_url = settings.copilot_llm_base_url or OPENAI_BASE_URL
        provider = OpenAIProvider(base_url=base_url, api_key=key)
    model_settings = ModelSettings(
        timeout=settings.copilot_llm_timeout_seconds, max_retries=settings.copilot_llm_max_retries
    )
    return OpenAIChatModel(name, provider=provider, settings=model_settings)


def llm_model(settings: Settings, card: DatasetCard) -> Model:
    """The model `COPILOT_LLM` names, ready for the router and the narrator."""
    if settings.copilot_llm == "offline":
        return offline_model(card)
    return TolerantModel(
        _openai_model(settings),
        json_mode=settings.copilot_llm_routing == "json",
        openai_schema=settings.copilot_llm.startswith("openai:"),
    )


@dataclasses.dataclass(frozen=True)
class WarmUp:
    """The outcome of the start-up request: whether the LLM answered, and how fast."""

    ok: bool
    seconds: float
    detail: str


async def warm_up(model: Model, settings: Settings) -> WarmUp:
    """One tiny request so a local server loads its weights before the first real turn."""
    if settings.copilot_llm == "offline":
        return WarmUp(ok=True, seconds=0.0, detail="offline provider: nothing to warm up")
    started = time.perf_counter()
    try:
        await model.request(
            [ModelRequest(parts=[UserPromptPart("Reply with OK.")])],
            ModelSettings(max_tokens=WARM_UP_MAX_TOKENS, max_retries=0),
            ModelRequestParameters(),
        )
    except ModelAPIError as error:
        return WarmUp(False, time.perf_counter() - started, unavailable(settings, error))
    except UnexpectedModelBehavior as error:  # it answered, but not as an OpenAI server does
        detail = f"{llm_label(settings)} answered but not as expected: {error.message}"
        return WarmUp(False, time.perf_counter() - started, detail)
    return WarmUp(True, time.perf_counter() - started, f"{llm_label(settings)} answered")


def _server_says(error: ModelAPIError) -> str:
    """The server's own words from an error body ({"error": {"message": ...}} or similar)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        said = inner.get("message") if isinstance(inner, dict) else inner
        if said:
            return str(said)[:300].rstrip(".")
    return error.message[:300].rstrip(".")


def unavailable(settings: Settings, error: ModelAPIError) -> str:
    """What to tell a person when the configured LLM cannot be reached or refuses the
    request (never a fallback to another model)."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in _RETRIED:
        return (
            f"The language model ({llm_label(settings)}) refused the request "
            f"(HTTP {status}: {_server_says(error)}). I did not switch to another "
            "model; nothing was changed. Check the model name, key and server settings."
        )
    return (
        f"The language model ({llm_label(settings)}) is not available: "
        f"{error.message.rstrip('.')}. "
        f"I tried {settings.copilot_llm_max_retries + 1} times and did not switch to another "
        "model; nothing was changed. Try again, or check the LLM server."
    )
