"""The router: PydanticAI agents that turn one user turn into one typed tool call.

Every tool is named as docs/interfaces.md names it, with the tool's input model as its schema and
its docstring as its description. Three ways to ask (`COPILOT_LLM_ROUTING`):

- `tools`: each tool is an output tool and plain text is a reply;
- `json`: all of them (and `reply`) are one JSON schema the model fills in;
- `two-step`: first the tool from a short enum, then only its arguments (`two_step`).

Whatever the way, a call goes back to the model as a retry with the reason when its
arguments fail validation (the card's rules, with what is allowed), name an unknown tool,
carry a patient value the conversation does not hold (`grounding`), or an id that cannot be
one (an MLflow run id is 32 hex characters, a version a number). A reply that is still
protocol text (a call, template tokens, our own retry prompt) is never shown: the person
gets a plain request to rephrase, counted in the usage as `protocol_text_replaced`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel, create_model
from pydantic_ai import (
    Agent,
    AgentRunResult,
    ModelRetry,
    ModelSettings,
    PromptedOutput,
    RunContext,
    ToolOutput,
)
from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError, UnexpectedModelBehavior
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from copilot.actions import STATE_CHANGING
from copilot.facts import NOTHING_LEFT, Focus, PendingPatient, RouteRequest
from copilot.llm.feedback import id_problems, patient_problems
from copilot.llm.grounding import PATIENT_TOOLS, cannot_fill, misread_bounds, unmentioned
from copilot.llm.hint import Hint, read_hint
from copilot.llm.offline.focus import question_focus
from copilot.llm.offline.inputs import unknown_inputs
from copilot.llm.offline.intents import pending_request, steps_in
from copilot.llm.offline.patients import parse_patient
from copilot.llm.offline.text import normalise
from copilot.llm.protocol import looks_like_protocol
from copilot.llm.providers import OfflineModel, TolerantModel, context_block, json_format
from copilot.llm.shown import shown
from copilot.llm.two_step import (
    FILL_RETRIES,
    OVERRULE_AT,
    REPLY,
    ROUTING_TEMPERATURE,
    VERDICT_LOGPROBS,
    TwoStep,
    build_two_step,
    choice_probability,
    wrong_probability,
)
from copilot.llm.wire import is_format_error, server_words
from copilot.settings import Routing
from copilot.units import UnitConversion, conversions_in
from model_service.cards import DatasetCard
from prompts import load
from tools.catalog import READ_ONLY

ROUTER_RETRIES = 2
ROUTE_MAX_TOKENS = 300  # a call with a full patient fits; a model rambling is cut short
NOT_UNDERSTOOD = (
    "I could not understand the model's answer; please rephrase (for example, name what "
    "you want: a risk prediction, an explanation, drift, runs or the model)."
)

T = TypeVar("T")
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
    conversions: list[UnitConversion] = []  # values the call took in another unit, to say
    not_in_model: list[str] = []  # things the user named that are no input of the model
    usage: dict[str, Any] = {}  # model, requests, input/output tokens, seconds


class Reply(BaseModel):
    """Answer in words when no tool fits (out of scope, or a question about the copilot)."""

    text: str


def _tools(card: DatasetCard | None = None) -> dict[str, tuple[type[BaseModel], str]]:
    """Each tool's input model as a model is shown it (`shown`), and its description."""
    described = {name: (tool.input_model, tool.description) for name, tool in READ_ONLY.items()}
    for name, spec in STATE_CHANGING.items():
        described[name] = (
            spec.input_model,
            f"Propose to {spec.name.replace('_', ' ')} "
            "(a person approves before anything changes).",
        )
    return {
        name: (shown(input_model, name, description, card), description)
        for name, (input_model, description) in described.items()
    }


@dataclass(frozen=True)
class Router:
    """The routing agent and how to read its outputs back as tool names."""

    agent: Agent[RouteRequest, Any]
    names: dict[type[BaseModel], str]
    model_name: str
    unavailable: Callable[[ModelAPIError], str] | None  # what to tell people when it is down
    card: DatasetCard | None = None  # how requests are read (steps, explanation focus)
    two_step: TwoStep | None = None  # COPILOT_LLM_ROUTING=two-step
    reader_hint: bool = False  # offer the grammar's reading to the model (`hint`)


def _checks(card: DatasetCard | None) -> Callable[[str, BaseModel, RouteRequest], list[str]]:
    """Every reason a call cannot be run as the model wrote it (empty: it can)."""
    problems = patient_problems(card) if card is not None else None

    def check(tool: str, output: BaseModel, request: RouteRequest) -> list[str]:
        arguments = output.model_dump(mode="json", exclude_none=True)
        found = id_problems(tool, arguments)
        if problems is None or card is None:
            return found
        found += problems(output, parse_patient(request.text.lower(), card))
        found += misread_bounds(arguments, request, card)
        ungrounded = unmentioned(tool, arguments, request, card)
        if ungrounded:
            fields = sorted({u.split("=")[0] for u in ungrounded})
            found.append(
                "these values were not in the conversation: "
                + ", ".join(ungrounded)
                + f"; send the call again without {', '.join(fields)} (only what the user "
                "said; for a follow-up, the prediction_id from the conversation context)"
            )
        return found

    return check


def build_router(
    model: Model,
    *,
    card: DatasetCard | None = None,
    json_mode: bool = False,
    routing: Routing | None = None,
    unavailable: Callable[[ModelAPIError], str] | None = None,
    reader_hint: bool = False,
) -> Router:
    """The routing agent over `model` (offline or a real LLM); with `card`, patients in
    tool calls are checked against it and against the conversation, and sent back to the
    model when invalid. `routing` (else `json_mode`) picks the way to ask; the offline
    model always routes with tools. `reader_hint` (a real model and a card): each request
    goes to the model with the offline grammar's reading of it to check (`hint`)."""
    way: Routing = routing or ("json" if json_mode else "tools")
    if isinstance(model, OfflineModel):
        way = "tools"
    check = _checks(card)
    tools = _tools(card)
    router = _build(model, tools, json_mode=way == "json", unavailable=unavailable)
    hinted = reader_hint and card is not None and not isinstance(model, OfflineModel)
    router = dataclasses.replace(router, card=card, reader_hint=hinted)
    if way == "two-step":
        form = model.json_format if isinstance(model, TolerantModel) else _llama_cpp_format
        router = dataclasses.replace(
            router,
            two_step=build_two_step(
                model,
                tools,
                instructions=load("router"),
                json_format=form,
                card=card,
                check=check,
            ),
        )

    @router.agent.output_validator
    def valid_calls(ctx: RunContext[RouteRequest], output: Any) -> Any:
        if isinstance(output, str) or router.names.get(type(output)) in {None, REPLY}:
            return output
        found = check(router.names[type(output)], output, ctx.deps)
        if found:
            raise ModelRetry("Fix these values: " + "; ".join(found))
        return output

    return router


def _request(ctx: RunContext[RouteRequest]) -> RouteRequest:
    """What tool arguments are validated against: the turn's request (its memory)."""
    return ctx.deps


def _llama_cpp_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return json_format(schema, name, openai_schema=False)


def _build(
    model: Model,
    tools: dict[str, tuple[type[BaseModel], str]],
    *,
    json_mode: bool,
    unavailable: Callable[[ModelAPIError], str] | None,
) -> Router:
    instructions = load("router")
    settings = ModelSettings(max_tokens=ROUTE_MAX_TOKENS, temperature=ROUTING_TEMPERATURE)
    if not json_mode:
        outputs: list[Any] = [
            ToolOutput(input_model, name=name, description=description)
            for name, (input_model, description) in tools.items()
        ]
        agent: Agent[RouteRequest, Any] = Agent(
            model,
            output_type=[*outputs, str],
            deps_type=RouteRequest,
            validation_context=_request,
            instructions=instructions,
            retries=ROUTER_RETRIES,
            model_settings=settings,
        )

        @agent.output_validator
        def words_not_broken_calls(output: Any) -> Any:
            if isinstance(output, str) and looks_like_protocol(output):
                raise ModelRetry(
                    "That looks like a tool call I could not read. Answer with only "
                    '{"name": "<tool>", "arguments": {<its arguments>}}, or answer the user '
                    "in plain words."
                )
            return output

        names = {input_model: name for name, (input_model, _) in tools.items()}
        return Router(agent, names, model.model_name, unavailable)
    # One schema, {"result": {"kind": <tool name>, "data": <its arguments>}}: the kinds are
    # the tool names (each shown input model is a subclass named after its tool).
    named: dict[type[BaseModel], str] = {
        input_model: name for name, (input_model, _) in tools.items()
    }
    named[create_model(REPLY, __base__=Reply, __doc__=Reply.__doc__)] = REPLY
    agent = Agent(
        model,
        output_type=PromptedOutput(list(named), name="route", description="The tool to call."),
        deps_type=RouteRequest,
        validation_context=_request,
        instructions=instructions,
        retries=ROUTER_RETRIES,
        model_settings=settings,
    )
    return Router(agent, named, model.model_name, unavailable)


async def _decide(router: Router, request: RouteRequest, spent: RunUsage) -> tuple[str | None, Any]:
    """(tool, its typed arguments), or (None, the reply in words)."""
    model = router.agent.model
    bound = model.for_request(request) if isinstance(model, OfflineModel) else None
    said = context_block(request)

    def context() -> str:
        """The turn's context as a dynamic instruction: PydanticAI puts it after every static
        part (instructions, the JSON schema), so a local server reuses its cached prefix
        from turn to turn instead of reading the whole schema again."""
        return said

    hint = (
        await anyio.to_thread.run_sync(read_hint, request, router.card)
        if router.reader_hint and router.card is not None
        else None
    )
    if hint is not None and hint.declines:
        return None, hint.reply  # out of scope by the card's categories: not the model's call
    if router.two_step is None:
        shown = hint.for_call() if hint is not None else ""
        result = await router.agent.run(
            request.text,
            deps=request,
            instructions=[context, shown] if shown else context,
            usage=spent,
            model=bound,
        )
        output = result.output
        if isinstance(output, str):
            return None, output
        name = router.names[type(output)]
        return (None, output.text) if name == REPLY else (name, output)
    steps = router.two_step
    confirmed = (  # one reading to confirm (likely readings are chosen among)
        hint is not None
        and not hint.unsure
        and await _confirmed(steps, request, context, hint, spent)
    )
    tool: str | None
    if hint is not None and confirmed:
        tool = hint.tool
    elif hint is not None and hint.unsure:  # the grammar was unsure: the model, if sure
        tool = await _sure_choice(steps, request, context, hint, spent)
    else:  # no reading, or a reading judged wrong: the model chooses
        tool = await _choose(steps, request, context, spent)
    if tool is None:  # the grammar's question back (its readings, when unsure), or nothing left
        return None, hint.reply if hint is not None else None
    try:
        filled = await _fill(steps, tool, request, context, hint, spent, adopt=confirmed)
    except UnexpectedModelBehavior:  # no call of that tool fits: it was the wrong tool
        if tool == REPLY:
            raise
        tries = FILL_RETRIES + 1
        unfit = f"its arguments could not be filled from what the user said in {tries} tries"
        failed, tool = (
            tool,
            await _choose(steps, request, context, spent, (tool, unfit)),
        )
        if tool == failed:
            raise
        filled = await _fill(steps, tool, request, context, hint, spent, adopt=confirmed)
    if tool == REPLY:
        return None, getattr(filled, "text", "")
    return tool, filled


async def _confirmed(
    steps: TwoStep,
    request: RouteRequest,
    context: Callable[[], str],
    hint: Hint,
    spent: RunUsage,
) -> bool:
    """Step one with a reading: whether the model judges the grammar's reading right (a small
    model checks a reading more reliably than it chooses among twenty tools; a large one
    overrules a misreading). With log-probabilities, "wrong" needs the model to be sure
    (`OVERRULE_AT`); without (a server that sends none, or refuses to), its answer decides.
    An answer that never parses counts as a no."""
    reading = f"The reader's reading: {hint.for_confirm(steps.summaries)}."
    try:
        verdict = await _with_logprobs(steps.confirm, request, [context, reading], spent)
    except UnexpectedModelBehavior:
        return False
    wrong = wrong_probability(verdict.response)
    return verdict.output if wrong is None else wrong < OVERRULE_AT


async def _with_logprobs(
    agent: Agent[RouteRequest, T], request: RouteRequest, said: list[Any], spent: RunUsage
) -> AgentRunResult[T]:
    """One step asked with the server's log-probabilities (how sure the model is); a server
    that refuses them (a format error, e.g. a model that takes no `logprobs`) is asked
    again plainly, and its answer comes without them."""
    try:
        return await agent.run(
            request.text,
            deps=request,
            instructions=said,
            usage=spent,
            model_settings=VERDICT_LOGPROBS,
        )
    except ModelHTTPError as error:
        if not is_format_error(error.status_code, server_words(error.body)):
            raise
        log.info("asked again without log-probabilities: %s", error)
        return await agent.run(request.text, deps=request, instructions=said, usage=spent)


async def _sure_choice(
    steps: TwoStep,
    request: RouteRequest,
    context: Callable[[], str],
    hint: Hint,
    spent: RunUsage,
) -> str | None:
    """Step one on a request the grammar was unsure about: the model's choice among its likely
    readings, another tool or reply, taken only when the model is sure of it (a probability
    of at least `OVERRULE_AT` by its log-probabilities, as for overruling a reading); None
    otherwise, and the grammar's question back with its readings is the answer (a small
    model picks a tool for a request that says too little to pick one). A server that sends
    no log-probabilities, or refuses them, gives its plain choice."""
    offered = hint.for_choice()
    said: list[Any] = [context, offered] if offered else [context]
    choice = await _with_logprobs(steps.choose, request, said, spent)
    sure = choice_probability(choice.response, {*steps.summaries, REPLY})
    if sure is not None and sure < OVERRULE_AT:
        return None
    reason = cannot_fill(choice.output, request)
    if reason is None:
        return choice.output
    return await _choose(steps, request, context, spent, (choice.output, reason), offered=offered)


async def _choose(
    steps: TwoStep,
    request: RouteRequest,
    context: Callable[[], str],
    spent: RunUsage,
    unfit: tuple[str, str] | None = None,
    *,
    offered: str | None = None,
) -> str:
    """Step one without a reading to confirm: the tool (`offered`: the grammar's likely
    readings, when it was unsure). A tool whose required arguments can come from nowhere
    in the request (`cannot_fill`), or (`unfit`) that could not be filled, is chosen again
    once, with the reason."""
    said: list[Any] = [context, offered] if offered else [context]
    if unfit is not None:
        said.append(f"Not {unfit[0]}: {unfit[1]}. Choose another tool, or reply.")
    choice = await steps.choose.run(request.text, deps=request, instructions=said, usage=spent)
    reason = cannot_fill(choice.output, request) if unfit is None else None
    if reason is None:
        return choice.output
    return await _choose(steps, request, context, spent, (choice.output, reason))


async def _fill(
    steps: TwoStep,
    tool: str,
    request: RouteRequest,
    context: Callable[[], str],
    hint: Hint | None,
    spent: RunUsage,
    *,
    adopt: bool,
) -> Any:
    """Step two: the chosen tool's arguments. When the model confirmed the grammar's
    reading (`adopt`), the grammar's arguments, if they pass every check a model's do (a
    small model copies a draft worse than the grammar reads it: it drops values); otherwise
    the model fills them, given the patient features the request names and, when it chose
    the tool the grammar read (a reading judged wrong but its tool chosen again: the
    arguments may be what was wrong), the grammar's arguments as a draft to correct."""
    if adopt and hint is not None and hint.tool == tool:
        adopted = await anyio.to_thread.run_sync(steps.adopt, tool, hint.arguments, request)
        if adopted is not None:
            return adopted
    narrowed = steps.narrowed(tool, request)
    features, settings = narrowed if narrowed else ("", None)
    draft = hint.for_arguments(tool) if hint else ""
    filled = await steps.fill[tool].run(
        request.text,
        deps=request,
        instructions=[part for part in (features, context, draft) if part],
        usage=spent,
        model_settings=settings,
    )
    return filled.output


async def route(router: Router, request: RouteRequest) -> Route:
    """The tool call (or reply) for one user turn, or for the next step of a request of
    several steps (`request.done`: the steps this turn already ran)."""
    started, spent = time.perf_counter(), RunUsage()
    try:
        tool, output = await _decide(router, request, spent)
    except UnexpectedModelBehavior as error:  # retries used up: say so instead of failing
        log.info("router gave up: %s", error)
        gave_up = (
            f"I could not turn that into a valid request after {ROUTER_RETRIES + 1} tries "
            "(the model's answers did not fit any tool). Please rephrase, or name the tool."
        )
        return Route(tool=None, reply=gave_up, usage=_measured(router, spent, started))
    except ModelAPIError as error:  # down, refusing, or timing out after the retries
        down = router.unavailable(error) if router.unavailable else str(error)
        return Route(tool=None, reply=down, usage=_measured(router, spent, started))
    measured = _measured(router, spent, started)
    if tool is None:
        reply: str | None = str(output)
        if request.done and (reply or "").strip().strip(".").upper() in {"", NOTHING_LEFT}:
            reply = None  # nothing left of a request of several steps
        elif looks_like_protocol(reply or ""):
            log.warning("router reply was protocol text, not shown: %.200r", reply)
            reply = NOT_UNDERSTOOD
            measured["protocol_text_replaced"] = 1
        pending = await anyio.to_thread.run_sync(_pending, router, request)
        return Route(tool=None, reply=reply, pending=pending, usage=measured)
    more, focus = await anyio.to_thread.run_sync(_shape, router, request)
    arguments = output.model_dump(mode="json", exclude_none=True)
    converted = conversions_in(request.text, arguments, router.card) if router.card else []
    unknown = (
        unknown_inputs(normalise(request.text, router.card), router.card)
        if router.card is not None and tool in _SAYS_UNUSED_INPUTS
        else []
    )
    return Route(
        tool=tool,
        arguments=arguments,
        more=more,
        focus=focus,
        conversions=converted,
        not_in_model=unknown,
        usage=measured,
    )


# Tools whose request may name inputs the model lacks beside the ones used ("what if everyone
# over 60 lost 5 kg and had their BP 10 lower"): those are said after the answer, not used.
_SAYS_UNUSED_INPUTS = PATIENT_TOOLS | {"cohort_what_if"}


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
    found = pending_request(request.text, request.memory, router.card)
    if found is None:
        return None
    return PendingPatient(
        patient=found.pending or {}, asked_for=found.asked_for, tool=found.pending_tool
    )


def _measured(router: Router, spent: RunUsage, started: float) -> dict[str, Any]:
    return {
        "model": router.model_name,
        "requests": spent.requests,
        "input_tokens": spent.input_tokens,
        "output_tokens": spent.output_tokens,
        "seconds": round(time.perf_counter() - started, 4),
    }
