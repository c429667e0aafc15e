"""Protocol text: what a model writes for the machine (tool calls, chat-template tokens, our
own retry prompts echoed back), which a person must never be shown.

Small models served by llama.cpp write tool calls as text in Qwen's wrappers (`<tool_call>`,
`<tools>`, `<function=name>`), leave chat-template tokens (`<|im_start|>`) behind, and
sometimes answer a retry by repeating it. `recover_tool_call` turns the calls back into
(tool, arguments); `recover_element_call` reads a call whose arguments are XML elements
named after the tool's fields (the 1.5B model wrote the narrator's summary as
`<tools><function>...<arguments><headline>...</headline><top_drivers><driver>...`, three
tries in a row); `looks_like_protocol` says whether a text is any of these.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

MAX_TOOL_CALL_CHARACTERS = 20_000
MAX_JSON_STARTS = 20  # candidate "{" positions tried in one text

# Phrases of the prompts the copilot itself sends a model (retries, context): a model that
# repeats them is not answering the user.
OWN_PHRASES = (
    "Fix these values",
    "That looks like a tool call",
    "Conversation context (JSON)",
    "Already done for this message",
    "were not in the conversation",
    "Validation feedback",
    "Fix the errors and try again",
    "is not an MLflow run id",
    "is not a version number",
    # how small models paraphrase them back ("provide a valid JSON object of arguments")
    "JSON object",
    "valid JSON",
    "tool call",
    "by name with",
    "to fix the issue",
    "function call",
    "prediction_id",
)
_TEMPLATE_TOKEN = re.compile(r"<\|[a-z_]+(?:\|>)?|<\|/?[a-z_]*\|>", re.I)
_TAGS = re.compile(
    r"</?(?:tool_call|tools|tool_response|function_call|retry_feedback|validation_errors)>"
    r"|<function[= ]|</function>|<parameter=",
    re.I,
)
_STARTS_LIKE_DATA = re.compile(r"^\s*(?:[{\[]|```)")
_CALL_KEYS = re.compile(r'"(?:name|tool)"\s*:\s*"[^"]*"\s*,\s*"(?:arguments|args|parameters)"')
_WRAPPED = re.compile(
    r"<(tool_call|tools|function_call)>\s*(.*?)\s*(?:</\1>|$)|```(?:json|tool_call)?\s*(.*?)```",
    re.S | re.I,
)
# <function=name>BODY</function> or <function name="name" [arguments='{...}']>BODY</function>
_FUNCTION = re.compile(
    r"<function(?:=([A-Za-z_][\w.-]*)|\s+name=[\"']([A-Za-z_][\w.-]*)[\"']"
    r"(?:\s+arguments=(['\"])(.*?)\3)?)\s*(/?)>(.*?)(?:</function>|$)",
    re.S,
)
_ARGUMENTS = re.compile(r"<arguments>\s*(.*?)\s*(?:</arguments>|$)", re.S)
_PARAMETER = re.compile(
    r"<parameter=([A-Za-z_]\w*)>\s*(.*?)\s*(?:</parameter>|(?=<parameter=)|$)", re.S
)


def without_template_tokens(text: str) -> str:
    """The text without chat-template tokens (`<|im_start|>assistant`, `<|im_end|>`)."""
    text = re.sub(r"<\|im_start\|>\s*(?:assistant|user|system|tool)?", "", text)
    return _TEMPLATE_TOKEN.sub("", text).strip()


def looks_like_protocol(text: str) -> bool:
    """Whether `text` is protocol text (a call, a template token, our own prompt), not words
    for a person."""
    if _STARTS_LIKE_DATA.search(text) or _TAGS.search(text) or _TEMPLATE_TOKEN.search(text):
        return True
    if _CALL_KEYS.search(text) or "```json" in text.lower():
        return True
    return any(phrase.lower() in text.lower() for phrase in OWN_PHRASES)


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
    arguments = data.get("arguments", data.get("args", data.get("parameters")))
    if arguments is None:  # `"arguments": null` for a tool that takes none
        arguments = {}
    if isinstance(arguments, str):  # OpenAI's wire format carries arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return name, arguments


def _json_values(text: str) -> list[Any]:
    """The JSON values in `text`: the whole of it, else each object that starts at a "{"."""
    try:
        return [json.loads(text)]
    except (json.JSONDecodeError, RecursionError):
        pass
    found: list[Any] = []
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"[{\[]", text)][:MAX_JSON_STARTS]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            continue
        found.append(value)
    return found


def _parameter_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _function_tag_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """`<function=name>{...}</function>`, `<function=name><parameter=k>v</parameter>...`,
    `<function name="name" arguments='{...}'/>` or `<function name="name"><arguments>{...}`."""
    found = _FUNCTION.search(text)
    if found is None:
        return None
    name = found.group(1) or found.group(2)
    closed = found.group(5) == "/"
    body = found.group(4) if found.group(4) is not None else "" if closed else found.group(6)
    inner = _ARGUMENTS.search(body)
    body = inner.group(1) if inner else body
    parameters = {key: _parameter_value(value) for key, value in _PARAMETER.findall(body)}
    if parameters:
        return name, parameters
    if not body.strip():
        return name, {}
    for value in _json_values(body.strip()):
        if isinstance(value, dict):
            call = _as_tool_call(value)
            return call if call is not None else (name, value)
    return None


def recover_tool_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """A tool call written as text (bare, fenced or in Qwen's tags), or None when the text
    holds none."""
    if len(text) > MAX_TOOL_CALL_CHARACTERS:  # a degenerate loop, not a call
        return None
    text = without_template_tokens(text)
    tagged = _function_tag_call(text)
    if tagged is not None:
        return tagged
    wrapped = [inner for m in _WRAPPED.finditer(text) for inner in m.groups()[1:] if inner]
    for candidate in [*wrapped, text]:
        for value in _json_values(candidate.strip()):
            call = _as_tool_call(value)
            if call is not None:
                return call
    return None


_ELEMENT = re.compile(r"<([A-Za-z_][\w-]*)>([^<]*)</\1>")
_NAME = re.compile(r"<name>\s*([A-Za-z_][\w.-]*)\s*</name>")


def _element(text: str, field: str) -> str | None:
    """The inside of `<field>...</field>` (the first one), or None."""
    opened = text.find(f"<{field}>")
    if opened < 0:
        return None
    start = opened + len(field) + 2
    closed = text.find(f"</{field}>", start)
    return None if closed < 0 else text[start:closed].strip()


def recover_element_call(
    text: str, schemas: Mapping[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]] | None:
    """A call whose arguments are XML elements named after the tool's fields, a list's items
    as elements inside its field (`<caveats><caveat>...</caveat></caveats>`), or None. The tool
    is the one its `<name>` (or `<function=...>`) names, or the only one offered (`schemas`:
    each tool's JSON schema)."""
    if len(text) > MAX_TOOL_CALL_CHARACTERS or "</" not in text:
        return None
    text = without_template_tokens(text)
    tagged = _NAME.search(text)
    function = _FUNCTION.search(text)
    name = tagged.group(1) if tagged else function and (function.group(1) or function.group(2))
    if name not in schemas:
        name = next(iter(schemas)) if len(schemas) == 1 else None
    if name is None:
        return None
    arguments: dict[str, Any] = {}
    for field, spec in schemas[name].get("properties", {}).items():
        inside = _element(text, field)
        if inside is None:
            continue
        if spec.get("type") == "array":
            items = [html.unescape(value.strip()) for _, value in _ELEMENT.findall(inside)]
            arguments[field] = items if items or not inside else [html.unescape(inside)]
        elif spec.get("type") == "string":
            arguments[field] = html.unescape(inside)
        else:
            arguments[field] = _parameter_value(html.unescape(inside))
    return (name, arguments) if arguments else None
