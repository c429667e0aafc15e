"""Two-step JSON routing (`COPILOT_LLM_ROUTING=two-step`), for small models.

Step one asks only which tool: one JSON object `{"tool": <name>}` with the name from a short
enum. Step two asks only for that tool's arguments, as one JSON object matching its schema,
patients constrained by the dataset card (categories, ranges). Both are constrained JSON
(`response_format`: llama.cpp's json_object with a schema, or OpenAI's json_schema). An
answer that does not validate goes back with the field, the bad value and what is allowed.

With the reader hint, step one is a verdict on the grammar's reading instead (`confirm`):
asked with the server's log-probabilities, the model overrules the reading only when it is
sure (`OVERRULE_AT`); a server that sends none gives its plain answer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_ai import Agent, ModelRetry, ModelSettings, RunContext, TextOutput
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModelSettings

from copilot.facts import RouteRequest
from copilot.llm.feedback import feature_rule, validation_feedback
from copilot.llm.grounding import PATIENT_TOOLS, named_features
from copilot.llm.protocol import recover_tool_call, without_template_tokens
from model_service.cards import DatasetCard
from model_service.schemas import patient_model

REPLY = "reply"
CHOICE_MAX_TOKENS = 32
VERDICT_MAX_TOKENS = 16
ARGUMENTS_MAX_TOKENS = 400
FILL_RETRIES = 2  # a fill's answers after its first, before the router chooses again
# The model overrules the grammar's reading when it gives "wrong" at least this probability
# against "right". The grammar reads 85-90% of held-out requests right: with those prior odds,
# a verdict moves the odds to "wrong" only past 0.85 (a 1.5B model answered "wrong" at 0.56
# about a plainly right reading; greedy decoding took that coin flip as a no).
OVERRULE_AT = 0.85
# Routing is reading, not writing: the likeliest answer, every time (servers sample at their
# own default otherwise: llama-cpp-python 0.8, OpenAI 1.0; measured with the 1.5B model, a
# verdict at P(wrong) = 0.21 came back "wrong"). Reasoning models take no temperature:
# PydanticAI leaves it out for them.
ROUTING_TEMPERATURE = 0.0
# How a verdict is asked for with its log-probabilities (the 5 likeliest tokens at each step).
VERDICT_LOGPROBS = OpenAIChatModelSettings(openai_logprobs=True, openai_top_logprobs=5)
# Both steps start with the same text (the router prompt and the tool list), so a server
# that reuses the longest cached prompt prefix (llama.cpp) evaluates only what differs.
_TOOLS = """Tools:
{tools}
- reply: answer in words (out of scope, a question about the copilot, nothing left to do)."""
_CHOOSE = """Now choose the one tool for the user's request, or reply. Answer with one JSON
object: {"tool": "<name>"}."""
_CONFIRM = """Now check a rule-based reader's reading of the user's request (given below),
against this message and the conversation context. It is usually right about plain requests
and can misread unusual wording. If the reading is right, answer {"right": true}; if it is
wrong, answer {"right": false}. One JSON object only."""
_FILL = """Now fill in the arguments of {name} for the user's request, as one JSON object.
Use only values the user gave in this message or the conversation context; leave out
anything they did not give.
Arguments:
{arguments}"""
_REPLY_FILL = """No tool fits the user's request. Answer it in one or two plain sentences,
as one JSON object: {"text": "<your answer>"}."""


class Choice(BaseModel):
    """Which tool (or "reply")."""

    tool: str


class Verdict(BaseModel):
    """Whether the reader's reading is what the user asks for."""

    right: bool


def wrong_probability(response: ModelResponse) -> float | None:
    """How sure the model was that the reading is wrong: P(false) / (P(true) + P(false)) at the
    token that decided its verdict, from the log-probabilities the server sent with it (raw:
    before any grammar constraint); None when it sent none."""
    for token in (response.provider_details or {}).get("logprobs") or []:
        if _boolean(token.get("token")) is None:
            continue
        said = {"true": 0.0, "false": 0.0}
        for alternative in token.get("top_logprobs") or [token]:
            word = _boolean(alternative.get("token"))
            if word is not None:
                said[word] += math.exp(float(alternative.get("logprob", -math.inf)))
        total = said["true"] + said["false"]
        return said["false"] / total if total > 0 else None
    return None


_NAME_STARTS = re.compile(r'\{\s*"tool"\s*:\s*"')


def choice_probability(response: ModelResponse, names: Collection[str]) -> float | None:
    """How sure the model was of the tool it chose: over the tokens that spell the name, the
    product of each token's probability against the alternatives the server listed that
    still spell one of `names` (raw log-probabilities, before any grammar constraint: a
    token that spells no name is no alternative); None when it sent none."""
    tokens = (response.provider_details or {}).get("logprobs") or []
    if not tokens:
        return None
    said, sure = "", 1.0
    for token in tokens:
        before, text = said, str(token.get("token") or "")
        said += text
        if _NAME_STARTS.search(said) is None:
            continue
        start = _NAME_STARTS.search(before)
        if start is not None and '"' in before[start.end() :]:
            break  # the name is closed
        chosen = math.exp(float(token.get("logprob", -math.inf)))
        others = sum(
            math.exp(float(a.get("logprob", -math.inf)))
            for a in token.get("top_logprobs") or []
            if a.get("token") != text and _spells_a_name(before + str(a.get("token") or ""), names)
        )
        if chosen + others > 0:
            sure *= chosen / (chosen + others)
    return sure


def _spells_a_name(text: str, names: Collection[str]) -> bool:
    """Whether the answer so far is still on its way to one of `names` (or has not begun
    the name yet)."""
    start = _NAME_STARTS.search(text)
    if start is None:
        return True
    name = text[start.end() :]
    if '"' in name:
        return name[: name.index('"')] in names
    return any(n.startswith(name) for n in names)


def _boolean(token: object) -> str | None:
    word = token.strip() if isinstance(token, str) else ""
    return word if word in {"true", "false"} else None


class Reply(BaseModel):
    """Words for the user when no tool fits."""

    text: str


Check = Callable[[str, BaseModel, RouteRequest], list[str]]
T = TypeVar("T")


@dataclass(frozen=True)
class TwoStep:
    """The agent that chooses a tool and one agent per tool that fills its arguments;
    `confirm` asks whether a reading (the grammar's, `hint`) is right, `summaries` says each
    tool in one line; `narrowed` gives a patient tool's request its own schema and feature
    list; `adopt` reads arguments written in code (the grammar's) as a fill's answer is
    read, None when they would have gone back to the model."""

    choose: Agent[RouteRequest, str]
    confirm: Agent[RouteRequest, bool]
    summaries: dict[str, str]
    fill: dict[str, Agent[RouteRequest, BaseModel]]
    narrowed: Callable[[str, RouteRequest], tuple[str, ModelSettings] | None]
    adopt: Callable[[str, dict[str, Any], RouteRequest], BaseModel | None]


def _summary(description: str) -> str:
    """A tool's first sentence and its "Use for ..." hint, on one line."""
    paragraphs = [" ".join(p.split()) for p in description.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return ""
    first = paragraphs[0].split(". ")[0].rstrip(".") + "."
    hints = [p for p in paragraphs[1:] if p.startswith("Use ")]
    return " ".join([first, *hints[:1]])


def _json_object(text: str) -> dict[str, Any]:
    """The one JSON object in a model's answer (fences and chat-template tokens allowed)."""
    cleaned = without_template_tokens(text)
    try:
        data = json.loads(cleaned)
    except json.JSONDecodeError:
        call = recover_tool_call(cleaned)  # {"name": ..., "arguments": {...}} and wrappers
        data = {"tool": call[0], **call[1]} if call else None
    if not isinstance(data, dict):
        raise ModelRetry("Answer with one JSON object only, no other text.")
    return data


def _open_patients(
    schema: dict[str, Any], card: DatasetCard, features: list[str] | None = None
) -> dict[str, Any]:
    """A tool's argument schema with its patient fields as the card's patient (categories,
    ranges), nothing required: grammar-constrained decoding must never force a guess. With
    `features`, only those: the grammar then cannot write a value nobody gave."""
    patient = TypeAdapter(patient_model(card)).json_schema()
    patient.pop("required", None)
    patient.pop("title", None)
    if features is not None:
        patient["properties"] = {
            n: v for n, v in patient["properties"].items() if n in set(features)
        }
    properties = dict(schema.get("properties", {}))
    for field in ("patient", "changes"):
        if field in properties:
            described = {"description": properties[field].get("description", "")}
            nullable = field == "patient" and "default" in properties[field]
            shape = {"anyOf": [patient, {"type": "null"}]} if nullable else patient
            properties[field] = {**shape, **described}
    return {**schema, "properties": properties}


def _kind(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null alternative of an optional field's schema."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    return (
        {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}} if options else schema
    )


def _argument_line(name: str, schema: dict[str, Any], required: bool) -> str:
    kind = _kind(schema)
    text = f"- {name} ({kind.get('type', 'value')}{', required' if required else ''})"
    if kind.get("description"):
        text += f": {' '.join(str(kind['description']).split())}"
    allowed = kind.get("enum") or kind.get("items", {}).get("enum")
    if allowed:
        text += f" One of: {', '.join(map(str, allowed))}."
    if "minimum" in kind or "maximum" in kind:
        text += f" From {kind.get('minimum', '-')} to {kind.get('maximum', '-')}."
    return text


def arguments_text(schema: dict[str, Any]) -> str:
    """A tool's arguments in a few lines (a JSON schema costs a small model many tokens)."""
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    lines = [_argument_line(n, p, n in required) for n, p in properties.items()]
    return "\n".join(lines) or "none: answer {}"


def features_text(card: DatasetCard, features: list[str]) -> str:
    """The patient features this request gives, by the card's rules."""
    if not features:
        return "Patient features: the user gave none; give no patient values."
    lines = [f"  - {feature_rule(card.feature(n))}" for n in features]
    return "Patient features the user gave (give only these):\n" + "\n".join(lines)


def _narrower(
    tools: dict[str, tuple[type[BaseModel], str]],
    card: DatasetCard | None,
    json_format: Callable[[dict[str, Any], str], dict[str, Any]],
) -> Callable[[str, RouteRequest], tuple[str, ModelSettings] | None]:
    def narrowed(tool: str, request: RouteRequest) -> tuple[str, ModelSettings] | None:
        if card is None or tool not in PATIENT_TOOLS:
            return None
        features = named_features(request, card)
        schema = _open_patients(tools[tool][0].model_json_schema(), card, features)
        settings = ModelSettings(extra_body={"response_format": json_format(schema, tool)})
        return features_text(card, features), settings

    return narrowed


def _exactly_one_hint(tool: str, request: RouteRequest) -> str:
    if tool not in {"explain_prediction", "what_if"}:
        return ""
    last = request.memory.prediction_id
    follow_up = f'prediction_id "{last}" for the last prediction' if last else "prediction_id"
    return f" Give {follow_up}, or patient only for a new patient described in this message."


def _filler(
    tool: str, input_model: type[BaseModel], card: DatasetCard | None, check: Check
) -> Callable[[RunContext[RouteRequest], str], BaseModel]:
    def fill(ctx: RunContext[RouteRequest], text: str) -> BaseModel:
        data = _json_object(text)
        data.pop("tool", None)
        try:
            output = input_model.model_validate(data, context=ctx.deps)
        except ValidationError as error:
            lines = validation_feedback(error, card)
            raise ModelRetry(
                "Fix these values: " + "; ".join(lines) + "." + _exactly_one_hint(tool, ctx.deps)
            ) from None
        problems = check(tool, output, ctx.deps)
        if problems:
            raise ModelRetry("Fix these values: " + "; ".join(problems) + ".")
        return output

    return fill


def build_two_step(
    model: Model,
    tools: dict[str, tuple[type[BaseModel], str]],
    *,
    instructions: str,
    json_format: Callable[[dict[str, Any], str], dict[str, Any]],
    card: DatasetCard | None,
    check: Check,
) -> TwoStep:
    """The agents of two-step routing over `tools` (name -> (input model, description))."""
    names = [*tools, REPLY]
    choice_schema = {
        "type": "object",
        "properties": {"tool": {"type": "string", "enum": names}},
        "required": ["tool"],
    }
    summaries = {name: _summary(d) for name, (_, d) in tools.items()}
    shared = [
        instructions,
        _TOOLS.format(tools="\n".join(f"- {name}: {line}" for name, line in summaries.items())),
    ]

    def chosen(text: str) -> str:
        tool = _json_object(text).get("tool")
        if tool not in names:
            raise ModelRetry(f'"tool": {tool!r} is not one of: {", ".join(names)}.')
        return str(tool)

    def short_answer(
        read: Callable[[str], T], prompt: str, schema: dict[str, Any], name: str, most: int
    ) -> Agent[RouteRequest, T]:
        """An agent whose answer is one small constrained JSON object (a choice, a verdict)."""
        return Agent(
            model,
            output_type=TextOutput(read),
            deps_type=RouteRequest,
            instructions=[*shared, prompt],
            retries=2,
            model_settings=ModelSettings(
                max_tokens=most,
                temperature=ROUTING_TEMPERATURE,
                extra_body={"response_format": json_format(schema, name)},
            ),
        )

    choose = short_answer(chosen, _CHOOSE, choice_schema, "choice", CHOICE_MAX_TOKENS)
    verdict_schema = Verdict.model_json_schema()
    verdict_schema.pop("title", None)

    def judged(text: str) -> bool:
        try:
            return Verdict.model_validate(_json_object(text)).right
        except ValidationError:
            raise ModelRetry('Answer {"right": true} or {"right": false}, nothing else.') from None

    confirm = short_answer(judged, _CONFIRM, verdict_schema, "verdict", VERDICT_MAX_TOKENS)
    fill: dict[str, Agent[RouteRequest, BaseModel]] = {}
    described: dict[str, tuple[type[BaseModel], str]] = {
        **tools,
        REPLY: (Reply, "Answer in words."),
    }
    for name, (input_model, _) in described.items():
        schema = input_model.model_json_schema()
        if card is not None:
            schema = _open_patients(schema, card)
        prompt = (
            _REPLY_FILL
            if name == REPLY
            else _FILL.format(name=name, arguments=arguments_text(schema))
        )
        fill[name] = Agent(
            model,
            output_type=TextOutput(_filler(name, input_model, card, check)),
            deps_type=RouteRequest,
            instructions=[*shared, prompt],
            retries=FILL_RETRIES,
            model_settings=ModelSettings(
                max_tokens=ARGUMENTS_MAX_TOKENS,
                temperature=ROUTING_TEMPERATURE,
                extra_body={"response_format": json_format(schema, name)},
            ),
        )

    def adopt(tool: str, data: dict[str, Any], request: RouteRequest) -> BaseModel | None:
        try:
            output = tools[tool][0].model_validate(data, context=request)
        except ValidationError:
            return None
        return None if check(tool, output, request) else output

    return TwoStep(choose, confirm, summaries, fill, _narrower(tools, card, json_format), adopt)
