"""The real LLM path against the wire shapes a real llama.cpp server sends and refuses
(`tests/llama_cpp.py`, captured from llama-cpp-python 0.3.36 with Qwen2.5-Coder-1.5B).
No real LLM, no network."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse

from copilot.facts import Memory, RouteRequest
from copilot.llm.agents import build_agents
from copilot.llm.hint import Hint
from copilot.llm.narrator import ClinicalSummary
from copilot.llm.protocol import recover_element_call
from copilot.llm.providers import CONTEXT_MARKER, llm_model, unavailable, warm_up
from copilot.llm.router import NOT_UNDERSTOOD, Route, _tools, build_router, route
from copilot.llm.two_step import choice_probability
from copilot.llm.warm_cache import WARM_FOR_SECONDS, remember_warm, warmed_seconds_ago
from copilot.settings import Settings
from copilot.suggestions import suggestions_in
from model_service.cards import get_card
from tests.copilot.llm.llama_cpp import (
    BASE_URL,
    CAPTURED_NULL_CONTENT_500,
    CAPTURED_NULL_CONTENT_MESSAGE,
    COMPLETIONS,
    LlamaCppServer,
    choice_logprobs,
    null_content_error,
    streamed,
)

# respx is the server: model requests are allowed, and never reach the network
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("allow_model_requests")]
PATIENT = {"age": 63, "sex": "Male", "cp": "asymptomatic", "trestbps": 145, "chol": 233}
PATIENT_TEXT = "63 yo man, asymptomatic chest pain, BP 145, chol 233"
LAST = "7f3c2a9e51d04b8c9a6e2f1d3b4c5a6e"
REMEMBERED = Memory(patient=PATIENT, prediction_id=LAST)


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "copilot_llm": "openai-compatible:qwen2.5-coder-1.5b",
        "copilot_llm_base_url": BASE_URL,
        "copilot_llm_max_retries": 2,
        "copilot_llm_routing": "tools",
        "copilot_home": tmp_path,
        **overrides,
    }
    return Settings(**values)


async def route_with(
    tmp_path: Path,
    text: str,
    memory: Memory | None = None,
    *,
    reader_hint: bool = False,
    **overrides: Any,
) -> Route:
    configured = settings(tmp_path, **overrides)
    card = get_card("heart-disease")
    router = build_router(
        llm_model(configured, card),
        card=card,
        routing=configured.llm_routing,
        unavailable=lambda error: unavailable(configured, error),
        reader_hint=reader_hint,
    )
    return await route(router, RouteRequest(text, memory or Memory()))


def call(name: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def test_the_mock_refuses_content_null_exactly_as_the_real_server_did() -> None:
    assert null_content_error(2, CAPTURED_NULL_CONTENT_MESSAGE) == CAPTURED_NULL_CONTENT_500


# 1. A retry never sends `"content": null`; a format error is not an outage.


async def test_a_retry_after_a_text_call_sends_the_text_back_not_content_null(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    bad = call("predict_risk", {"patient": {**PATIENT, "chol": 9000}})
    server = LlamaCppServer(
        httpx2_mock, f"<tool_call>\n{bad}\n</tool_call>", call("predict_risk", {"patient": PATIENT})
    )
    decided = await route_with(tmp_path, PATIENT_TEXT)
    assert server.refused == 0
    assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
    retry = server.messages(1)
    assert retry[1] == {"role": "assistant", "content": f"<tool_call>\n{bad}\n</tool_call>"}
    assert retry[2]["role"] == "user" and "chol" in retry[2]["content"]
    assert "from 40 to 700" in retry[2]["content"]  # what is allowed, from the card
    assert all(m["role"] != "tool" for m in retry)


async def test_a_native_tool_call_retry_sends_empty_content(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """A server that fills `tool_calls` gets them back, with content "" (never null)."""
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if any(m["role"] == "assistant" and m.get("content") is None for m in body["messages"]):
            return httpx.Response(500, json=CAPTURED_NULL_CONTENT_500)
        arguments = {"run_ids": ["yesterday", "today"]} if len(bodies) == 1 else {"last": 2}
        delta = {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "compare_runs", "arguments": json.dumps(arguments)},
                }
            ]
        }
        chunks = [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": "tool_calls"}],
            }
        ]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)

    httpx2_mock.post(COMPLETIONS).mock(side_effect=answer)
    decided = await route_with(tmp_path, "compare the runs yesterday and today")
    assert (decided.tool, decided.arguments) == ("compare_runs", {"last": 2})
    assistant = next(m for m in bodies[-1]["messages"] if m["role"] == "assistant")
    assert assistant["content"] == "" and assistant["tool_calls"][0]["id"] == "call_1"


async def test_a_format_error_is_said_plainly_not_retried_not_an_outage(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    httpx2_mock.post(COMPLETIONS).mock(
        return_value=httpx.Response(500, json=CAPTURED_NULL_CONTENT_500)
    )
    decided = await route_with(tmp_path, "which model is live?")
    assert len(httpx2_mock.calls) == 1  # a malformed request is not sent again
    reply = decided.reply or ""
    assert "could not read the request the copilot sent it" in reply
    assert "not an outage" in reply and "not available" not in reply
    for dump in ("validation error", "literal_error", "File ", "status_code", "body:", "{"):
        assert dump not in reply


async def test_an_outage_is_said_in_a_few_words_without_the_body(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    httpx2_mock.post(COMPLETIONS).mock(
        return_value=httpx.Response(
            503, headers={"retry-after-ms": "5"}, json={"error": {"message": "loading model"}}
        )
    )
    decided = await route_with(tmp_path, "which model is live?")
    assert len(httpx2_mock.calls) == 3
    reply = decided.reply or ""
    assert "is not available: HTTP 503: loading model." in reply
    assert "status_code" not in reply and "body" not in reply and "{" not in reply


# 2. Protocol text is recovered or retried, never shown.


@pytest.mark.parametrize(
    "text",
    [
        '<tools>\n{"name": "check_drift", "arguments": {"site": "Hungary"}}\n</tools>',
        '<function=check_drift>{"site": "Hungary"}</function>',
        "<function=check_drift>\n<parameter=site>\nHungary\n</parameter>\n</function>",
        '<|im_start|>assistant\n<tool_call>\n{"name": "check_drift", "arguments": '
        '{"site": "Hungary"}}\n</tool_call><|im_end|>',
        'I will check it. {"name": "check_drift", "arguments": {"site": "Hungary"}} Done.',
    ],
    ids=["tools-tags", "function-json", "function-parameters", "template-tokens", "in-words"],
)
async def test_qwen_wrappers_are_recovered_as_calls(
    httpx2_mock: respx.Router, tmp_path: Path, text: str
) -> None:
    LlamaCppServer(httpx2_mock, text)
    decided = await route_with(tmp_path, "check drift for Hungary")
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "Hungary"})


async def test_an_echoed_retry_prompt_is_retried_not_shown(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        "Fix these values: site: 'Atlantis' is not a known site.",
        call("check_drift", {"site": "Hungary"}),
    )
    decided = await route_with(tmp_path, "check drift for Hungary")
    assert decided.tool == "check_drift" and decided.reply is None
    assert "could not read" in server.messages(1)[-1]["content"]


async def test_protocol_text_that_survives_is_replaced_and_counted(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    echoed = "That looks like a tool call I could not read. <|im_end|>"
    answer = {"result": {"kind": "reply", "data": {"text": echoed}}}
    LlamaCppServer(httpx2_mock, json.dumps(answer))
    decided = await route_with(tmp_path, "hello", copilot_llm_routing="json")
    assert decided.reply == NOT_UNDERSTOOD
    assert decided.usage["protocol_text_replaced"] == 1


async def test_protocol_text_to_the_end_is_a_plain_failure_not_a_dump(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    LlamaCppServer(httpx2_mock, *["<tool_call>\n{broken"] * 3)
    decided = await route_with(tmp_path, "check drift")
    assert decided.tool is None and "<tool_call>" not in (decided.reply or "")


# 3. No example values; a patient must come from the conversation.


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [str(k), *_strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [str(node)]


async def test_no_schema_a_model_sees_carries_example_values(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(httpx2_mock, "Hello.")
    await route_with(tmp_path, "hello")
    shown = " ".join(_strings(server.bodies[0]["tools"]))
    for example in ("e.g.", "examples", "for example", "233", "145", "180"):
        assert example not in shown
    for input_model, _ in _tools(get_card("heart-disease")).values():
        assert "e.g." not in json.dumps(input_model.model_json_schema())


async def test_a_patient_the_user_never_gave_goes_back_to_the_model(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    copied = {"age": 54, "sex": "Female", "cp": "typical angina"}
    server = LlamaCppServer(
        httpx2_mock,
        call("explain_prediction", {"patient": copied}),
        call("explain_prediction", {"prediction_id": LAST}),
    )
    decided = await route_with(tmp_path, "why?", REMEMBERED)
    assert decided.arguments == {"prediction_id": LAST}
    retry = server.messages(1)[-1]["content"]
    assert "were not in the conversation" in retry
    assert "patient.age=54" in retry and "patient.cp='typical angina'" in retry


async def test_the_remembered_patient_and_stated_changes_are_grounded(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    arguments = {"patient": PATIENT, "changes": {"age": 73, "chol": 180}}
    LlamaCppServer(httpx2_mock, call("what_if", arguments))
    decided = await route_with(
        tmp_path, "what if he were 10 years older, with cholesterol 4.65 mmol/l", REMEMBERED
    )
    expected = {"prediction_id": LAST, "changes": arguments["changes"]}  # a copy: the last one
    assert (decided.tool, decided.arguments) == ("what_if", expected)


async def test_both_the_last_id_and_its_patient_mean_that_prediction(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    LlamaCppServer(
        httpx2_mock, call("explain_prediction", {"prediction_id": LAST, "patient": PATIENT})
    )
    decided = await route_with(tmp_path, "why?", REMEMBERED)
    assert decided.arguments == {"prediction_id": LAST}


# 6. Run ids and versions are checked before any tool runs.


async def test_a_timestamp_as_a_run_id_is_sent_back_with_the_rule(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        call("compare_runs", {"run_ids": ["2026-11-30T10:00:00", "2026-11-29T09:00:00"]}),
        call("compare_runs", {"last": 2}),
    )
    decided = await route_with(tmp_path, "compare runs 2026-11-30T10:00:00 and 2026-11-29T09:00:00")
    assert (decided.tool, decided.arguments) == ("compare_runs", {"last": 2})
    retry = server.messages(1)[-1]["content"]
    assert "'2026-11-30T10:00:00' is not an MLflow run id (32 hex characters" in retry


async def test_run_ids_nobody_typed_are_left_out(httpx2_mock: respx.Router, tmp_path: Path) -> None:
    """What the real model wrote for "compare the last 3 training runs"."""
    invented = ["2023-10-05T14:00:00Z", "2023-10-06T14:00:00Z", "2023-10-07T14:00:00Z"]
    LlamaCppServer(httpx2_mock, call("compare_runs", {"run_ids": invented, "last": 3}))
    decided = await route_with(tmp_path, "compare the last 3 training runs")
    assert (decided.tool, decided.arguments) == ("compare_runs", {"last": 3})


async def test_an_alias_as_a_version_is_sent_back_at_proposal(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        call("promote_model", {"version": "@challenger", "reason": "better AUC"}),
        call("promote_model", {"reason": "better AUC"}),
    )
    decided = await route_with(tmp_path, "promote the challenger, better AUC")
    assert (decided.tool, decided.arguments) == (
        "promote_model",
        {"force": False, "reason": "better AUC"},
    )
    assert "@challenger" in (sent := server.messages(1)[-1]["content"])
    assert "is not a version number" in sent


# 5. Two-step routing: the tool from a short enum, then only its arguments.


async def test_two_step_asks_for_the_tool_then_its_arguments(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "predict_risk"}',
        json.dumps({"patient": {**PATIENT, "thalch": "normal"}}),
        json.dumps({"patient": PATIENT}),
    )
    decided = await route_with(tmp_path, PATIENT_TEXT, copilot_llm_routing="two-step")
    assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
    assert decided.usage["requests"] == 3
    choose, fill = server.bodies[0], server.bodies[1]
    assert "tools" not in choose and "tools" not in fill
    assert (
        choose["max_tokens"] == 32
        and "max_completion_tokens" not in choose
        and choose["stream"] is True
    )
    assert choose["response_format"] == {
        "type": "json_object",
        "schema": {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": [*_tools(), "reply"]}},
            "required": ["tool"],
        },
    }
    schema = fill["response_format"]["schema"]
    assert fill["response_format"]["type"] == "json_object"
    patient = schema["properties"]["patient"]
    assert list(patient["properties"]) == list(PATIENT)  # only what the user gave
    assert patient["properties"]["sex"]["enum"] == ["Male", "Female"]
    assert patient["properties"]["trestbps"]["anyOf"][0]["anyOf"][0]["maximum"] == 300
    assert "required" not in patient  # constrained decoding must never force a guess
    prompt = " ".join(m["content"] for m in fill["messages"] if m["role"] == "system")
    assert "trestbps (resting blood pressure): a number of mmHg from 50 to 300" in prompt
    assert "thalch (maximum heart rate)" not in prompt
    retry = server.messages(2)[-1]["content"]
    assert "thalch" in retry and "'normal'" in retry and "from 40 to 250" in retry


async def test_numbers_copied_in_the_users_units_are_converted_not_sent_back(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote for a pressure in kPa and cholesterol in mmol/l: the numbers
    as said. They are converted by the units table; the model is not asked again (the
    feedback "below the physiological limit" once made it drop every value but three)."""
    text = "Woman, 61, typical angina, BP 17.3 kPa, cholesterol 6.1 mmol/l, max HR 131. Risk?"
    copied = {"age": 61, "sex": "Female", "cp": "typical angina", "trestbps": 17.3}
    copied |= {"chol": 6.1, "thalch": 131}
    server = LlamaCppServer(
        httpx2_mock, '{"tool": "predict_risk"}', json.dumps({"patient": copied})
    )
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    assert decided.tool == "predict_risk" and decided.usage["requests"] == 2
    assert decided.arguments["patient"] == copied | {"trestbps": 130, "chol": 236}
    assert [c.said() for c in decided.conversions] == [
        "serum cholesterol 6.1 mmol/l -> 236 mg/dl",
        "resting blood pressure 17.3 kPa -> 130 mmHg",
    ]
    assert len(server.bodies) == 2


async def test_two_step_leaves_out_optional_fields_written_empty(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What llama.cpp's grammar made the real model write for "Has VA drifted?"."""
    answer = '{"site": "VA Long Beach", "since": null, "patients": []}'
    LlamaCppServer(httpx2_mock, '{"tool": "check_drift"}', answer)
    decided = await route_with(
        tmp_path, "Has the data from VA Long Beach drifted?", copilot_llm_routing="two-step"
    )
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "VA Long Beach"})


async def test_two_step_fills_in_the_last_prediction_for_a_follow_up(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    LlamaCppServer(httpx2_mock, '{"tool": "what_if"}', '{"changes": {"sex": "Female"}}')
    decided = await route_with(
        tmp_path, "and for a woman?", REMEMBERED, copilot_llm_routing="two-step"
    )
    assert decided.arguments == {"prediction_id": LAST, "changes": {"sex": "Female"}}


async def test_two_step_reply_and_an_unknown_tool(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "delete_records"}',
        '{"tool": "reply"}',
        '{"text": "I can\'t delete records; I can predict, explain and check drift."}',
    )
    decided = await route_with(tmp_path, "delete all records", copilot_llm_routing="two-step")
    assert decided.tool is None and (decided.reply or "").startswith("I can't delete records")
    assert "'delete_records' is not one of" in server.messages(1)[-1]["content"]


async def test_two_step_with_openai_uses_json_schema(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    bodies: list[dict[str, Any]] = []
    answers = ['{"tool": "model_info"}', "{}"]

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4.1-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answers.pop(0)},
                    }
                ],
            },
        )

    httpx2_mock.post("https://api.openai.com/v1/chat/completions").mock(side_effect=answer)
    decided = await route_with(
        tmp_path,
        "which model is live?",
        copilot_llm="openai:gpt-4.1-mini",
        copilot_llm_base_url=None,
        openai_api_key="sk-test",
        copilot_llm_routing="two-step",
    )
    assert decided.tool == "model_info"
    assert [b["response_format"]["type"] for b in bodies] == ["json_schema", "json_schema"]
    assert bodies[0]["response_format"]["json_schema"]["name"] == "choice"
    assert "stream" not in bodies[0] or bodies[0]["stream"] is False


def test_streamed_answers_have_the_servers_shape() -> None:
    events = streamed("OK").text.split("\n\n")
    assert events[0].startswith('data: {"id": "chatcmpl-') and events[-2] == "data: [DONE]"
    assert '"usage"' not in streamed("OK").text


# 4. Timeouts sized for local servers; an abandoned request is cancelled for real.


def test_timeout_and_routing_defaults_by_kind_of_llm(tmp_path: Path) -> None:
    local = settings(tmp_path, copilot_llm_routing=None)
    assert local.llm_timeout_seconds == 300 and local.llm_routing == "two-step"
    hosted = Settings(copilot_llm="openai:gpt-4.1-mini", openai_api_key="sk-test")
    assert hosted.llm_timeout_seconds == 60 and hosted.llm_routing == "tools"
    assert settings(tmp_path, copilot_llm_timeout_seconds=42).llm_timeout_seconds == 42
    described = Settings.model_fields["copilot_llm_timeout_seconds"].description or ""
    assert "300 for openai-compatible" in described and "60 for openai" in described
    with pytest.raises(ValueError, match="copilot_llm_routing"):
        settings(tmp_path, copilot_llm_routing="three-step")


class SilentServer:
    """A real TCP server that takes a request and never answers: records each request
    and when its connection was closed by the client."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.closed = anyio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        self.bodies.append(json.loads(await reader.readexactly(length)))
        while await reader.read(1024):  # until the client closes the connection
            pass
        self.closed.set()
        writer.close()


async def test_a_timed_out_request_is_cancelled_once_and_its_connection_closed(
    tmp_path: Path,
) -> None:
    silent = SilentServer()
    server = await asyncio.start_server(silent.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        decided = await route_with(
            tmp_path,
            "which model is live?",
            copilot_llm_base_url=f"http://127.0.0.1:{port}/v1",
            copilot_llm_timeout_seconds=0.5,
        )
        with anyio.fail_after(5):
            await silent.closed.wait()  # llama.cpp sees the disconnect and stops generating
    finally:
        server.close()
    assert len(silent.bodies) == 1  # not retried: it would queue behind the abandoned one
    assert silent.bodies[0]["stream"] is True  # llama-cpp-python only notices on a stream
    reply = decided.reply or ""
    assert "did not answer within 0.5 s (the request was cancelled)" in reply
    assert "COPILOT_LLM_TIMEOUT_SECONDS" in reply


async def test_a_warm_up_is_remembered_per_server_and_model(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(httpx2_mock, "OK", "OK")
    first = settings(tmp_path)
    assert (await warm_up(llm_model(first, get_card("heart-disease")), first)).ok
    assert server.bodies[0]["max_tokens"] == 1  # the field llama-cpp-python reads
    again = await warm_up(llm_model(first, get_card("heart-disease")), first)
    assert again.ok and "not asked again" in again.detail and len(server.bodies) == 1
    other = settings(tmp_path, copilot_llm="openai-compatible:other-model")
    assert (await warm_up(llm_model(other, get_card("heart-disease")), other)).ok
    assert len(server.bodies) == 2


def test_a_warm_up_expires(tmp_path: Path) -> None:
    remember_warm(tmp_path, "http://x/v1 m", now=1000.0)
    assert warmed_seconds_ago(tmp_path, "http://x/v1 m", now=1000.0 + 60) == 60
    assert warmed_seconds_ago(tmp_path, "http://x/v1 m", now=1000.0 + WARM_FOR_SECONDS + 1) is None
    assert warmed_seconds_ago(tmp_path, "http://other/v1 m", now=1001.0) is None
    (tmp_path / "llm-warm-ups.json").write_text("not json")
    assert warmed_seconds_ago(tmp_path, "http://x/v1 m") is None


async def test_the_turns_context_comes_after_the_schema_so_the_prefix_is_reused(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """llama.cpp reuses the cached prompt up to the first token that differs: the context
    that changes every turn is written after the instructions and the JSON schema."""
    answer = json.dumps({"result": {"kind": "model_info", "data": {}}})
    server = LlamaCppServer(httpx2_mock, answer, answer)
    first = await route_with(tmp_path, "which model is live?", copilot_llm_routing="json")
    later = await route_with(
        tmp_path, "and which is live now?", REMEMBERED, copilot_llm_routing="json"
    )
    assert first.tool == later.tool == "model_info"
    systems = [
        "\n\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        for body in server.bodies
    ]
    prefixes = [text[: text.index(CONTEXT_MARKER)] for text in systems]
    assert prefixes[0] == prefixes[1] and "JSON object" in prefixes[0]
    assert systems[0] != systems[1] and LAST in systems[1].split(CONTEXT_MARKER)[1]


async def test_a_cohort_bound_copied_in_mmol_per_litre_is_converted_and_said(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    LlamaCppServer(
        httpx2_mock,
        '{"tool": "model_performance"}',
        '{"where": [{"feature": "chol", "op": ">", "value": 7}]}',
    )
    text = "How does the model do on patients whose cholesterol is above 7 mmol/l?"
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    assert decided.arguments == {"where": [{"feature": "chol", "op": ">", "value": 271.0}]}
    assert [c.said() for c in decided.conversions] == ["serum cholesterol 7 mmol/l -> 271 mg/dl"]


async def test_a_cohort_condition_nobody_said_goes_back_to_the_model(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote: a site the user never named, added to the group."""
    over_60 = {"feature": "age", "op": ">", "value": 60}
    invented = [over_60, {"feature": "site", "op": "==", "value": "VA Long Beach"}]
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "model_performance"}',
        json.dumps({"where": invented}),
        json.dumps({"where": invented[:1]}),
    )
    text = "how accurate is the model for patients over 60?"
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    assert decided.arguments == {"where": [over_60]}
    retry = server.messages(2)[-1]["content"]
    assert "where.site='VA Long Beach'" in retry and "not in the conversation" in retry


async def test_an_id_the_conversation_never_held_is_left_out_of_a_new_patient(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote for a patient described with "explain": the patient and a
    prediction id it made up, three times over after the feedback."""
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "explain_prediction"}',
        json.dumps({"prediction_id": "12345", "patient": PATIENT}),
    )
    decided = await route_with(
        tmp_path, f"Explain the prediction for {PATIENT_TEXT}", copilot_llm_routing="two-step"
    )
    assert (decided.tool, decided.arguments) == ("explain_prediction", {"patient": PATIENT})
    assert len(server.bodies) == 2


async def test_a_fasting_glucose_decides_fbs_whatever_the_model_wrote(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """The real model read "fasting glucose 88 mg/dL" as fbs true (the card's line is 120)."""
    text = "63 yo man, asymptomatic, BP 130, chol 254, fasting glucose 88 mg/dL, max HR 147"
    written = {"age": 63, "sex": "Male", "cp": "asymptomatic", "trestbps": 130, "chol": 254}
    written |= {"fbs": True, "thalch": 147}
    LlamaCppServer(httpx2_mock, '{"tool": "predict_risk"}', json.dumps({"patient": written}))
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    assert decided.arguments == {"patient": written | {"fbs": False}}


async def test_a_follow_up_on_a_group_sees_the_last_call_and_keeps_its_conditions(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    women = {"feature": "sex", "op": "==", "value": "Female"}
    memory = Memory(last_tool="model_performance", last_arguments={"where": [women]})
    hungary = {"feature": "site", "op": "==", "value": "Hungary"}
    server = LlamaCppServer(
        httpx2_mock, '{"tool": "model_performance"}', json.dumps({"where": [women, hungary]})
    )
    decided = await route_with(tmp_path, "and for Hungary?", memory, copilot_llm_routing="two-step")
    assert decided.arguments == {"where": [women, hungary]}
    systems = [m["content"] for m in server.bodies[0]["messages"] if m["role"] == "system"]
    context = json.loads(systems[-1].split("\n", 1)[1])
    assert context["last_call"] == {"tool": "model_performance", "arguments": {"where": [women]}}


# 6. The offline grammar's reading, offered to the model as a hint to check.


def _system(body: dict[str, Any]) -> str:
    return "\n\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


async def test_a_confirmed_reading_is_used_without_a_second_request(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """The model's first step judges the grammar's reading; judged right, the grammar's
    arguments are read like a model's answer and no second request is made."""
    server = LlamaCppServer(httpx2_mock, '{"right": true}')
    decided = await route_with(
        tmp_path, PATIENT_TEXT, reader_hint=True, copilot_llm_routing="two-step"
    )
    assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
    assert decided.usage["requests"] == 1
    confirm = _system(server.bodies[0])
    reading = confirm.split("The reader's reading: ")[1]
    assert reading.startswith('the user asks for the tool "predict_risk" (')
    shown = reading.split(" with the arguments ")[1].rsplit(".", 1)[0]
    assert json.loads(shown) == {"patient": PATIENT}
    static = confirm.index("Now check a rule-based reader's reading")  # cached on the server
    assert static < confirm.index("The reader's reading") and static < confirm.index(CONTEXT_MARKER)
    format_ = server.bodies[0]["response_format"]
    assert format_["schema"]["properties"] == {"right": {"type": "boolean", "title": "Right"}}


async def test_a_confirmed_reading_that_fails_the_checks_is_a_draft_for_the_model(
    httpx2_mock: respx.Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    misread = Hint("predict_risk", {"patient": {**PATIENT, "thalch": 400}})
    monkeypatch.setattr("copilot.llm.router.read_hint", lambda request, card: misread)
    server = LlamaCppServer(httpx2_mock, '{"right": true}', json.dumps({"patient": PATIENT}))
    decided = await route_with(
        tmp_path, PATIENT_TEXT, reader_hint=True, copilot_llm_routing="two-step"
    )
    assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
    fill = _system(server.bodies[1])
    drafted = fill.split("A rule-based reader filled these arguments: ")[1].split(". Check")[0]
    assert json.loads(drafted) == {"patient": {**PATIENT, "thalch": 400}}


async def test_a_reading_judged_wrong_leaves_the_model_to_read_alone(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(httpx2_mock, '{"right": false}', '{"tool": "explain_prediction"}', "{}")
    decided = await route_with(
        tmp_path, PATIENT_TEXT, REMEMBERED, reader_hint=True, copilot_llm_routing="two-step"
    )
    assert (decided.tool, decided.arguments) == ("explain_prediction", {"prediction_id": LAST})
    assert decided.usage["requests"] == 3
    assert "Now choose the one tool" in _system(server.bodies[1])
    assert all("rule-based reader" not in _system(body) for body in server.bodies[1:])


async def test_a_reading_judged_wrong_whose_tool_is_chosen_again_is_a_draft(
    httpx2_mock: respx.Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reading judged wrong whose tool the model then chooses: the arguments may be what
    was wrong, so they are a draft for the model, not adopted. A bound the model then writes
    as an equality (what the real model wrote for "over 65": `age == 65`) goes back."""
    over = {"feature": "age", "op": ">", "value": 65}
    reading = Hint("feature_importance", {"where": [over], "top": 3})
    monkeypatch.setattr("copilot.llm.router.read_hint", lambda request, card: reading)
    server = LlamaCppServer(
        httpx2_mock,
        '{"right": false}',
        '{"tool": "feature_importance"}',
        json.dumps({"where": [{**over, "op": "=="}]}),
        json.dumps({"where": [over]}),
    )
    decided = await route_with(
        tmp_path,
        "which inputs weigh most for the patients above 65?",
        reader_hint=True,
        copilot_llm_routing="two-step",
    )
    assert decided.tool == "feature_importance"
    assert decided.arguments["where"] == [over]
    drafted = _system(server.bodies[2]).split("filled these arguments: ")[1].split(". Check")[0]
    assert json.loads(drafted) == {"where": [over], "top": 3}
    assert "where.age op '==' (the user said > 65" in server.messages(3)[-1]["content"]


@pytest.mark.parametrize(("p_wrong", "overruled"), [(0.56, False), (0.84, False), (0.97, True)])
async def test_a_reading_is_overruled_only_when_the_model_is_sure(
    httpx2_mock: respx.Router, tmp_path: Path, p_wrong: float, overruled: bool
) -> None:
    """The verdict is asked unstreamed with log-probabilities (a stream asking for them ends
    at once on llama-cpp-python); "wrong" overrules the reading only at OVERRULE_AT or more
    (the real 1.5B model said "wrong" at 0.56 about a plainly right reading)."""
    server = LlamaCppServer(
        httpx2_mock, ('{"right": false}', p_wrong), '{"tool": "model_info"}', "{}"
    )
    decided = await route_with(
        tmp_path, PATIENT_TEXT, reader_hint=True, copilot_llm_routing="two-step"
    )
    asked = server.bodies[0]
    assert (asked["stream"], asked["logprobs"], asked["top_logprobs"]) == (False, True, 5)
    assert all(body["temperature"] == 0 for body in server.bodies)  # routing reads, never samples
    if overruled:
        assert (decided.tool, decided.usage["requests"]) == ("model_info", 3)
        assert server.bodies[1]["stream"] is True and "logprobs" not in server.bodies[1]
    else:
        assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
        assert decided.usage["requests"] == 1


async def test_a_server_refusing_log_probabilities_is_asked_plainly(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """A model that takes no `logprobs` (HTTP 400) is asked the verdict again without them,
    and its answer decides; the person never sees the refusal."""
    bodies: list[dict[str, Any]] = []
    answers = ['{"right": false}', '{"tool": "model_info"}', "{}"]

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if body.get("logprobs"):
            refusal = {"message": "logprobs are not supported with this model", "param": "logprobs"}
            return httpx.Response(400, json={"error": {**refusal, "type": "invalid_request_error"}})
        return streamed(answers.pop(0))

    httpx2_mock.post(COMPLETIONS).mock(side_effect=answer)
    decided = await route_with(
        tmp_path, "which model is live?", reader_hint=True, copilot_llm_routing="two-step"
    )
    assert (decided.tool, len(bodies), answers) == ("model_info", 4, [])
    assert "logprobs" not in bodies[1] and bodies[1]["stream"] is True


async def test_a_verdict_that_never_parses_counts_as_wrong(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock, "yes", '{"ok": 1}', '{"right": "maybe"}', '{"tool": "model_info"}', "{}"
    )
    decided = await route_with(
        tmp_path, "which model is live?", reader_hint=True, copilot_llm_routing="two-step"
    )
    assert decided.tool == "model_info"
    assert "Answer with one JSON object only" in json.dumps(server.bodies[1])
    assert 'Answer {\\"right\\": true} or' in json.dumps(server.bodies[2])


@pytest.mark.parametrize("routing", ["two-step", "json", "tools"])
async def test_a_request_the_grammar_declines_is_declined_without_asking_the_model(
    httpx2_mock: respx.MockRouter, tmp_path: Path, routing: str
) -> None:
    """What the real 1.5B model did when asked to confirm a decline: it judged it wrong and
    proposed a rollback for "wipe the old experiments". A decline is the grammar's call."""
    decided = await route_with(  # no server mocked: any request would fail the test
        tmp_path, "delete all records", reader_hint=True, copilot_llm_routing=routing
    )
    assert decided.tool is None and decided.reply and "delete" in decided.reply.lower()
    assert decided.usage["requests"] == 0 and not httpx2_mock.calls


async def test_without_the_hint_the_model_decides_about_a_decline_too(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock, '{"tool": "reply"}', json.dumps({"text": "I can't delete records."})
    )
    decided = await route_with(tmp_path, "delete all records", copilot_llm_routing="two-step")
    assert decided.tool is None and decided.reply == "I can't delete records."
    assert len(server.bodies) == 2


async def test_a_confirmed_question_back_asks_and_remembers_the_patient(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """The grammar asks for a patient's missing values; judged right, that question is the
    answer and the patient so far is remembered for the next turn."""
    server = LlamaCppServer(httpx2_mock, '{"right": true}')
    decided = await route_with(
        tmp_path,
        "risk for a 61 year old woman, cholesterol 250?",
        reader_hint=True,
        copilot_llm_routing="two-step",
    )
    assert decided.tool is None and decided.usage["requests"] == 1
    assert decided.reply is not None and decided.reply.startswith("To score this patient")
    assert "no tool can run yet; the copilot should ask the user" in _system(server.bodies[0])
    assert decided.pending is not None
    assert decided.pending.patient["age"] == 61 and decided.pending.patient["chol"] == 250


async def test_the_grammars_likely_readings_are_offered_to_choose_among(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """Unsure, the grammar offers readings (as it does to a person); each is read again as
    a tool, and the model chooses among them or another tool: nothing to confirm."""
    server = LlamaCppServer(httpx2_mock, '{"tool": "explain_prediction"}', "{}")
    decided = await route_with(
        tmp_path,
        "what about the vessels thing",
        REMEMBERED,
        reader_hint=True,
        copilot_llm_routing="two-step",
    )
    assert (decided.tool, decided.arguments) == ("explain_prediction", {"prediction_id": LAST})
    choose = _system(server.bodies[0])
    assert "Now choose the one tool" in choose
    assert 'likely readings: explain_prediction ("explain the last prediction"); what_if' in choose
    assert "rule-based reader" not in _system(server.bodies[1])


@pytest.mark.parametrize(("p_choice", "acted"), [(0.6, False), (0.84, False), (0.93, True)])
async def test_an_unsure_request_is_acted_on_only_when_the_model_is_sure(
    httpx2_mock: respx.Router, tmp_path: Path, p_choice: float, acted: bool
) -> None:
    """The grammar unsure, the model's choice is asked with log-probabilities and taken only
    at OVERRULE_AT or more; below, the grammar's own question back (with its readings) is the
    answer: the real 1.5B model picked a tool for both held-out requests that said too
    little to pick one."""
    server = LlamaCppServer(httpx2_mock, ('{"tool": "explain_prediction"}', p_choice), "{}")
    decided = await route_with(
        tmp_path,
        "what about the vessels thing",
        REMEMBERED,
        reader_hint=True,
        copilot_llm_routing="two-step",
    )
    asked = server.bodies[0]
    assert (asked["stream"], asked["logprobs"], asked["temperature"]) == (False, True, 0)
    if acted:
        assert (decided.tool, decided.arguments) == ("explain_prediction", {"prediction_id": LAST})
    else:
        assert decided.tool is None and decided.usage["requests"] == 1
        assert decided.reply is not None
        assert suggestions_in(decided.reply)[0] == "explain the last prediction"


async def test_a_request_nobody_can_read_gets_the_grammars_answer_unless_the_model_is_sure(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """The grammar unsure with no reading to offer: its doubt is not passed on, and the
    model's choice, unsure too, is not acted on (the 1.5B model answered "is it bad?", with
    nothing before it, with a performance report)."""
    server = LlamaCppServer(httpx2_mock, ('{"tool": "model_performance"}', 0.5))
    decided = await route_with(
        tmp_path, "is it bad?", reader_hint=True, copilot_llm_routing="two-step"
    )
    assert decided.tool is None and decided.usage["requests"] == 1
    assert decided.reply is not None and decided.reply.startswith("I can't do that. I can")
    assert "rule-based reader" not in _system(server.bodies[0])


def test_a_choice_is_as_sure_as_the_tokens_that_spell_its_name() -> None:
    names = {"explain_prediction", "what_if", "model_info", "model_performance", "reply"}
    answer = ModelResponse(
        parts=[],
        provider_details={"logprobs": choice_logprobs('{"tool": "model_info"}', 0.9)["content"]},
    )
    assert choice_probability(answer, names) == pytest.approx(0.9, abs=1e-3)
    assert choice_probability(ModelResponse(parts=[]), names) is None


async def test_the_grammars_doubt_is_not_passed_on(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(httpx2_mock, '{"tool": "reply"}', json.dumps({"text": "Hello."}))
    await route_with(tmp_path, "hmm", reader_hint=True, copilot_llm_routing="two-step")
    assert "rule-based reader" not in _system(server.bodies[0])
    assert "Now choose the one tool" in _system(server.bodies[0])


async def test_one_step_routing_gets_the_tool_and_its_draft_at_once(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    answer = json.dumps({"result": {"kind": "model_info", "data": {}}})
    server = LlamaCppServer(httpx2_mock, answer)
    decided = await route_with(
        tmp_path, "which model is live?", reader_hint=True, copilot_llm_routing="json"
    )
    assert decided.tool == "model_info"
    system = _system(server.bodies[0])
    assert 'as the tool "model_info"' in system and "filled these arguments: {}" in system
    assert server.bodies[0]["temperature"] == 0


def test_the_hint_is_on_for_real_models_and_never_for_the_offline_provider(
    tmp_path: Path,
) -> None:
    card = get_card("heart-disease")
    assert build_agents(settings(tmp_path), card).router.reader_hint is True
    off = settings(tmp_path, copilot_llm_reader_hint=False)
    assert build_agents(off, card).router.reader_hint is False
    offline = Settings(copilot_llm="offline", copilot_home=tmp_path)
    assert build_agents(offline, card).router.reader_hint is False


# 7. Arguments a small model got wrong against the real server, read in code.


async def test_an_age_is_not_a_row_id_the_model_chooses_again(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model did with "67 yo man, ...": show_rows with row 67."""
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "show_rows"}',
        '{"tool": "predict_risk"}',
        json.dumps({"patient": PATIENT}),
    )
    decided = await route_with(tmp_path, PATIENT_TEXT, copilot_llm_routing="two-step")
    assert (decided.tool, decided.arguments) == ("predict_risk", {"patient": PATIENT})
    assert "Not show_rows: show_rows needs row ids" in _system(server.bodies[1])


async def test_a_row_id_needs_a_row_word_and_the_number(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "show_rows"}',
        '{"row_ids": [12, 67]}',
        '{"row_ids": [12]}',
    )
    decided = await route_with(tmp_path, "show me record #12", copilot_llm_routing="two-step")
    assert decided.arguments == {"row_ids": [12]}
    assert "row_ids=67" in server.messages(2)[-1]["content"]


async def test_a_bound_read_the_wrong_way_round_goes_back_with_what_was_said(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote for "men under 45 at Hungary": age > 45."""
    men = {"feature": "sex", "op": "==", "value": "Male"}
    hungary = {"feature": "site", "op": "==", "value": "Hungary"}
    wrong = [men, {"feature": "age", "op": ">", "value": 45}, hungary]
    right = [men, {"feature": "age", "op": "<", "value": 45}, hungary]
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "model_performance"}',
        json.dumps({"where": wrong}),
        json.dumps({"where": right}),
    )
    text = "how accurate is it for men under 45 at Hungary?"
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    assert decided.arguments == {"where": right}
    assert "where.age op '>' (the user said < 45" in server.messages(2)[-1]["content"]


async def test_model_kinds_nobody_named_are_left_to_the_default(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    written = {"sites": ["Hungary"], "model_kinds": ["xgboost"], "reason": "drift"}
    LlamaCppServer(httpx2_mock, '{"tool": "retrain_model"}', json.dumps(written))
    decided = await route_with(tmp_path, "retrain on Hungary", copilot_llm_routing="two-step")
    assert decided.arguments == {
        "sites": ["Hungary"],
        "model_kinds": ["logistic_regression", "random_forest", "xgboost"],
        "reason": "drift",
    }
    LlamaCppServer(httpx2_mock, '{"tool": "retrain_model"}', json.dumps(written))
    named = await route_with(
        tmp_path, "train an xgboost on Hungary", copilot_llm_routing="two-step"
    )
    assert named.arguments["model_kinds"] == ["xgboost"]


async def test_a_new_patients_values_are_the_ones_the_message_states(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote for a full patient under constrained decoding: a chest pain
    type and a heart rate nobody said, exercise angina for "no angina on exertion", and
    the number of vessels left out."""
    text = (
        "58M, asymptomatic, BP 145, chol 233, LVH on ECG, max HR 150, no angina on "
        "exertion, oldpeak 2.3, 0 vessels. What does the model say?"
    )
    written = {"age": 58, "sex": "Male", "cp": "non-anginal", "trestbps": 145, "chol": 233}
    written |= {"restecg": "lv hypertrophy", "thalch": 96, "exang": True, "oldpeak": 2.3}
    server = LlamaCppServer(
        httpx2_mock, '{"tool": "predict_risk"}', json.dumps({"patient": written})
    )
    decided = await route_with(tmp_path, text, copilot_llm_routing="two-step")
    stated = {"cp": "asymptomatic", "thalch": 150, "exang": False, "ca": 0}
    assert decided.arguments == {"patient": written | stated}
    assert len(server.bodies) == 2  # read in code: no retry


async def test_a_tool_whose_arguments_cannot_be_filled_is_chosen_again_once(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model did with "is it mostly his cholesterol or his age?": what_if with
    changes nobody asked for, three times; then it chooses again, told why."""
    invented = json.dumps({"changes": {"chol": 300}})
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "what_if"}',
        invented,
        invented,
        invented,
        '{"tool": "explain_prediction"}',
        "{}",
    )
    decided = await route_with(
        tmp_path,
        "is it mostly his cholesterol or his age?",
        REMEMBERED,
        copilot_llm_routing="two-step",
    )
    assert (decided.tool, decided.arguments) == ("explain_prediction", {"prediction_id": LAST})
    assert "Not what_if: its arguments could not be filled" in _system(server.bodies[4])
    assert decided.usage["requests"] == 6


async def test_choosing_the_same_tool_again_ends_the_turn_plainly(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    invented = json.dumps({"changes": {"chol": 300}})
    server = LlamaCppServer(
        httpx2_mock, '{"tool": "what_if"}', invented, invented, invented, '{"tool": "what_if"}'
    )
    decided = await route_with(
        tmp_path, "is it mostly his cholesterol?", REMEMBERED, copilot_llm_routing="two-step"
    )
    assert decided.tool is None and "could not turn that into a valid request" in (
        decided.reply or ""
    )
    assert len(server.bodies) == 5


async def test_times_and_sites_nobody_said_are_left_out_or_sent_back(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    """What the real model wrote for "drift?": a site and a start date nobody gave."""
    invented = {"site": "VA Long Beach", "since": "2023-10-01T00:00:00Z", "patients": []}
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "check_drift"}',
        *[json.dumps(invented)] * 3,
        '{"tool": "reply"}',
        json.dumps({"text": "Which site's data should I check?"}),
    )
    decided = await route_with(tmp_path, "drift?", copilot_llm_routing="two-step")
    assert decided.tool is None and decided.reply == "Which site's data should I check?"
    retry = server.messages(2)[-1]["content"]
    assert "site='VA Long Beach'" in retry and "since" not in retry  # left out, not sent back
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "monitoring_history"}',
        json.dumps({"site": "Hungary", "since": "2023-10-01T00:00:00Z", "metric": "auc"}),
    )
    decided = await route_with(
        tmp_path, "has the AUC been getting worse?", copilot_llm_routing="two-step"
    )
    assert decided.arguments == {"metric": "auc"}
    server = LlamaCppServer(
        httpx2_mock,
        '{"tool": "monitoring_history"}',
        json.dumps({"site": "Hungary", "since": "2026-11-01T00:00:00Z"}),
    )
    decided = await route_with(
        tmp_path, "how has hungray drifted since last month?", copilot_llm_routing="two-step"
    )
    assert decided.arguments["site"] == "Hungary" and "since" in decided.arguments


async def test_a_model_kind_named_with_a_typo_is_kept(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    written = {"sites": ["Hungary"], "model_kinds": ["xgboost"], "reason": "asked"}
    LlamaCppServer(httpx2_mock, '{"tool": "retrain_model"}', json.dumps(written))
    decided = await route_with(
        tmp_path, "retrain an xgbost on Hungary", copilot_llm_routing="two-step"
    )
    assert decided.arguments["model_kinds"] == ["xgboost"]


# 7. A call whose arguments are XML elements named after the tool's fields.

# The 1.5B model's narrative for an explanation, three tries in a row (its tail as captured;
# the summary's sentences are the facts' own).
SUMMARY_AS_ELEMENTS = """<tools>
  <function>
    <name>final_result</name>
    <arguments>
      <headline>ST depression is the main driver of this patient's risk.</headline>
      <risk_statement>The predicted risk is 88%, against a baseline of 45%.</risk_statement>
      <top_drivers>
        <driver>ST depression (2.6 mm) raises risk.</driver>
        <driver>maximum heart rate (114 bpm) raises risk.</driver>
      </top_drivers>
      <caveats>
        <caveat>The model shows association, not causation.</caveat>
        <caveat>fasting blood sugar > 120 mg/dl was missing or outside the training range.</caveat>
      </caveats>
    </arguments>
  </function>
</tools>"""
SUMMARY = ClinicalSummary(
    headline="ST depression is the main driver of this patient's risk.",
    risk_statement="The predicted risk is 88%, against a baseline of 45%.",
    top_drivers=[
        "ST depression (2.6 mm) raises risk.",
        "maximum heart rate (114 bpm) raises risk.",
    ],
    caveats=[
        "The model shows association, not causation.",
        "fasting blood sugar > 120 mg/dl was missing or outside the training range.",
    ],
)


@pytest.mark.parametrize("named", [True, False], ids=["with-name", "only-tool-offered"])
async def test_a_summary_written_as_xml_elements_is_read(
    httpx2_mock: respx.Router, tmp_path: Path, named: bool
) -> None:
    text = (
        SUMMARY_AS_ELEMENTS
        if named
        else SUMMARY_AS_ELEMENTS.replace("<name>final_result</name>", "")
    )
    server = LlamaCppServer(httpx2_mock, text)
    model = llm_model(settings(tmp_path), get_card("heart-disease"))
    result = await Agent(model, output_type=ClinicalSummary).run("the facts")
    assert result.output == SUMMARY and len(server.bodies) == 1


def test_xml_element_calls_need_a_known_tool_and_field() -> None:
    drift = {"type": "object", "properties": {"site": {"type": "string"}}}
    runs = {"type": "object", "properties": {"last": {"type": "integer"}}}
    call = "<tools><function><name>list_runs</name><arguments><last>3</last></arguments>"
    assert recover_element_call(call + "</function></tools>", {"list_runs": runs}) == (
        "list_runs",
        {"last": 3},
    )
    both = {"check_drift": drift, "list_runs": runs}
    assert recover_element_call("<site>VA</site>", both) is None  # which tool?
    assert recover_element_call("<b>VA</b> drifted", {"check_drift": drift}) is None
    assert recover_element_call("<site>VA", {"check_drift": drift}) is None  # never closed
