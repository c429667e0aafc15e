"""The router: a PydanticAI agent that turns one user turn into one typed tool call.

Every tool is an output named as docs/interfaces.md names it, with the tool's input model as its
schema and its docstring as its description. With tool calling (the default) each is an
output tool and plain text is a reply; in JSON mode all of them (and `reply`) are one
JSON schema the model fills in. Either way arguments that fail validation, and unknown
tools, go back to the model as a retry with the reason, and the answer is a typed `Route`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model
from pydantic_ai import Agent, ModelRetry, PromptedOutput, ToolOutput
from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from copilot.actions import STATE_CHANGING
from copilot.facts import NOTHING_LEFT, Focus, PendingPatient, RouteRequest
from copilot.llm.offline.focus import question_focus
from copilot.llm.offline.intents import pending_after, steps_in
from copilot.llm.providers import OfflineModel, context_block
from model_service.cards import DatasetCard
from model_service.schemas import describe_error, patient_model
from prompts import load
from tools.catalog import READ_ONLY

ROUTER_RETRIES = 2
# Text that starts like JSON or a tagged call: a call gone wrong (truncated, null arguments,
# two calls), never an answer for a person.
_LOOKS_LIKE_A_CALL = re.compile(r"^\s*(?:[{\[]|```|<tool_call>)|<tool_call>|```json", re.I)

log = logging.getLogger(__name__)


class Route(BaseModel):
    """What to do with a turn: call `tool` with `arguments`, or say `reply` (tool and reply
    both None: a request of several steps has nothing left to do)."""

    tool: str | None
    arguments: dict[str, Any] = {}
    reply: str | None = None
    more: bool = False  # the request asks for another step after this one
    focus: Focus | None = None  # what a question about an explanation asks for
    pending: PendingPatient | None = None  # a patient this reply asks more about
    usage: dict[str, Any] = {}  # model, requests, input/output tokens, seconds


class Reply(BaseModel):
    """Answer in words when no tool fits (out of scope, or a question about the copilot)."""

    text: str


def _tools() -> dict[str, tuple[type[BaseModel], str]]:
    described = {name: (tool.input_model, tool.description) for name, tool in READ_ONLY.items()}
    for name, spec in STATE_CHANGING.items():
        described[name] = (
            spec.input_model,
            f"Propose to {spec.name.replace('_', ' ')} "
            "(a person approves before anything changes).",
        )
    return described


@dataclass(frozen=True)
class Router:
    """The routing agent and how to read its outputs back as tool names."""

    agent: Agent[None, Any]
    names: dict[type[BaseModel], str]
    model_name: str
    unavailable: Callable[[ModelAPIError], str] | None  # what to tell people when it is down
    card: DatasetCard | None = None  # how requests are read (steps, explanation focus)


def _patient_problems(card: DatasetCard) -> Callable[[Any], list[str]]:
    """What is wrong with the patients in a tool call, by the card's rules (the model
    service's own validation, so a bad value goes back to the LLM before any call)."""
    patient = TypeAdapter(patient_model(card))
    names = [f.name for f in card.features]
    units = {f.name: f.unit for f in card.features}

    def problems(output: Any) -> list[str]:
        found: list[str] = []
        for field, partial in (("patient", False), ("changes", True)):
            values = getattr(output, field, None)
            if not isinstance(values, dict):
                continue
            try:
                patient.validate_python(values)
            except ValidationError as error:
                found.extend(
                    f"{field}: {describe_error(detail, names, units).message}"
                    for detail in error.errors()
                    if not (partial and detail["type"] == "missing")
                )
        return found

    return problems


def build_router(
    model: Model,
    *,
    card: DatasetCard | None = None,
    json_mode: bool = False,
    unavailable: Callable[[ModelAPIError], str] | None = None,
) -> Router:
    """The routing agent over `model` (offline or a real LLM); with `card`, patients in
    tool calls are checked against it and sent back to the model when invalid."""
    router = _build(model, json_mode=json_mode, unavailable=unavailable)
    if card is not None:
        router = dataclasses.replace(router, card=card)
        problems = _patient_problems(card)

        @router.agent.output_validator
        def valid_patients(output: Any) -> Any:
            found = [] if isinstance(output, str) else problems(output)
            if found:
                raise ModelRetry("Fix these values: " + "; ".join(found))
            return output

    return router


def _build(
    model: Model, *, json_mode: bool, unavailable: Callable[[ModelAPIError], str] | None
) -> Router:
    instructions = load("router")
    if not json_mode:
        outputs: list[Any] = [
            ToolOutput(input_model, name=name, description=description)
            for name, (input_model, description) in _tools().items()
        ]
        agent: Agent[None, Any] = Agent(
            model, output_type=[*outputs, str], instructions=instructions, retries=ROUTER_RETRIES
        )

        @agent.output_validator
        def words_not_broken_calls(output: Any) -> Any:
            if isinstance(output, str) and _LOOKS_LIKE_A_CALL.search(output):
                raise ModelRetry(
                    "That looks like a tool call I could not read. Call one of the tools by "
                    "name with a JSON object of arguments, or answer in plain words."
                )
            return output

        names = {input_model: name for name, (input_model, _) in _tools().items()}
        return Router(agent, names, model.model_name, unavailable)
    # One schema, {"result": {"kind": <tool name>, "data": <its arguments>}}: the kinds are
    # the tool names, so each input model gets a subclass named after its tool.
    named: dict[type[BaseModel], str] = {
        create_model(name, __base__=input_model, __doc__=description): name
        for name, (input_model, description) in _tools().items()
    }
    named[create_model("reply", __base__=Reply, __doc__=Reply.__doc__)] = "reply"
    agent = Agent(
        model,
        output_type=PromptedOutput(list(named), name="route", description="The tool to call."),
        instructions=instructions,
        retries=ROUTER_RETRIES,
    )
    return Router(agent, named, model.model_name, unavailable)


async def route(router: Router, request: RouteRequest) -> Route:
    """The tool call (or reply) for one user turn, or for the next step of a request of
    several steps (`request.done`: the steps this turn already ran)."""
    started, spent = time.perf_counter(), RunUsage()
    model = router.agent.model
    bound = model.for_request(request) if isinstance(model, OfflineModel) else None
    try:
        result = await router.agent.run(
            request.text, instructions=context_block(request), usage=spent, model=bound
        )
    except UnexpectedModelBehavior as error:  # retries used up: say so instead of failing
        log.info("router gave up: %s", error)
        gave_up = (
            f"I could not turn that into a valid request after {ROUTER_RETRIES + 1} tries "
            "(the model's answers did not fit any tool). Please rephrase, or name the tool."
        )
        return Route(tool=None, reply=gave_up, usage=_measured(router, spent, started))
    except ModelAPIError as error:  # down, rate-limited or timing out after the retries
        down = router.unavailable(error) if router.unavailable else str(error)
        return Route(tool=None, reply=down, usage=_measured(router, spent, started))
    measured = _measured(router, spent, started)
    output = result.output
    reply: str | None = output if isinstance(output, str) else None
    if reply is None and router.names[type(output)] == "reply":
        reply = output.text
    if reply is not None:
        if request.done and reply.strip().strip(".").upper() in {"", NOTHING_LEFT}:
            reply = None  # nothing left of a request of several steps
        pending = await anyio.to_thread.run_sync(_pending, router, request)
        return Route(tool=None, reply=reply, pending=pending, usage=measured)
    more, focus = await anyio.to_thread.run_sync(_shape, router, request)
    return Route(
        tool=router.names[type(output)],
        arguments=output.model_dump(mode="json", exclude_none=True),
        more=more,
        focus=focus,
        usage=measured,
    )


def _shape(router: Router, request: RouteRequest) -> tuple[bool, Focus | None]:
    """Whether the request has steps after this one, and what an explanation question
    asks for (CPU work: run in a worker thread)."""
    card = router.card
    if card is None:
        return False, None
    more = steps_in(request.text, card) > len(request.done) + 1
    return more, question_focus(request.text, card)


def _pending(router: Router, request: RouteRequest) -> PendingPatient | None:
    """The patient a reply to a first step asks more about, read from the request (the
    same reading for every provider; never parsed back from the reply's words)."""
    if router.card is None or request.done:
        return None
    found = pending_after(request.text, request.memory, router.card)
    return None if found is None else PendingPatient(patient=found[0], asked_for=found[1])


def _measured(router: Router, spent: RunUsage, started: float) -> dict[str, Any]:
    return {
        "model": router.model_name,
        "requests": spent.requests,
        "input_tokens": spent.input_tokens,
        "output_tokens": spent.output_tokens,
        "seconds": round(time.perf_counter() - started, 4),
    }
