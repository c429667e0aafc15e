"""Real LLM providers against an OpenAI chat-completions server mocked at the HTTP level
(pytest-httpx2: the OpenAI client talks through httpx2). No real LLM, no network."""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from copilot.facts import RouteRequest
from copilot.llm.providers import llm_model, recover_tool_call, unavailable, warm_up
from copilot.llm.router import Route, build_router, route
from copilot.settings import Settings
from model_service.cards import get_card

# respx is the server: model requests are allowed, and never reach the network
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("allow_model_requests")]
BASE_URL = "http://llm.test/v1"
COMPLETIONS = f"{BASE_URL}/chat/completions"
PATIENT = {"age": 63, "sex": "Male", "cp": "asymptomatic", "trestbps": 145, "chol": 233}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "copilot_llm": "openai-compatible:qwen2.5-coder-1.5b",
        "copilot_llm_base_url": BASE_URL,
        "copilot_llm_max_retries": 2,
        "copilot_llm_timeout_seconds": 5,
        "copilot_llm_routing": "tools",
        **overrides,
    }
    return Settings(**values)


def completion(
    content: str | None = None, tool: str | None = None, arguments: Any = None
) -> httpx.Response:
    """An OpenAI chat completion: text, or one tool call."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool is not None:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        message["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": args}}
        ]
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_763_856_000,
        "model": "qwen2.5-coder-1.5b",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool else "stop",
            }
        ],
        "usage": {"prompt_tokens": 812, "completion_tokens": 41, "total_tokens": 853},
    }
    return httpx.Response(200, json=body)


def as_served(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """`response` as a server sends it: a chat-completion chunk stream when the request
    asks for one (`stream: true`), with the usage in a last chunk when it asks for that."""
    body = json.loads(request.content)
    if not body.get("stream") or response.status_code != 200:
        return response
    completion_body = response.json()
    if len(completion_body.get("choices", [])) != 1:
        return response  # not a chat completion: sent as it is
    (choice,) = completion_body["choices"]
    message = choice["message"]
    head = {k: completion_body[k] for k in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    chunks = [chunk({"role": "assistant"})]
    if message.get("content"):
        chunks.append(chunk({"content": message["content"]}))
    for index, call in enumerate(message.get("tool_calls") or []):
        chunks.append(chunk({"tool_calls": [{"index": index, **call}]}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if completion_body.get("usage") and body.get("stream_options", {}).get("include_usage"):
        chunks.append({**head, "choices": [], "usage": completion_body["usage"]})
    events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=events)


class Server:
    """The mocked LLM server: answers each request with the next scripted response and
    keeps the request bodies."""

    def __init__(self, mock: respx.Router, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        mock.post(COMPLETIONS).mock(side_effect=self.answer)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return as_served(request, step)


async def route_with(text: str, **overrides: Any) -> Route:
    configured = settings(**overrides)
    model = llm_model(configured, get_card("heart-disease"))
    router = build_router(
        model,
        card=get_card("heart-disease"),
        routing=configured.llm_routing,
        unavailable=lambda error: unavailable(configured, error),
    )
    return await route(router, RouteRequest(text))


async def test_a_native_tool_call_becomes_a_typed_route_with_usage(
    httpx2_mock: respx.Router,
) -> None:
    server = Server(httpx2_mock, completion(tool="predict_risk", arguments={"patient": PATIENT}))
    decided = await route_with("63 yo man, asymptomatic chest pain, BP 145, chol 233")
    assert decided.tool == "predict_risk"
    assert decided.arguments["patient"] == PATIENT
    assert decided.usage["input_tokens"] == 812 and decided.usage["output_tokens"] == 41
    assert decided.usage["requests"] == 1 and decided.usage["seconds"] > 0
    tools = {t["function"]["name"] for t in server.bodies[0]["tools"]}
    assert {"predict_risk", "promote_model", "rollback_model", "check_drift"} <= tools


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "check_drift", "arguments": {"site": "VA Long Beach"}}',
        '<tool_call>\n{"name": "check_drift", "arguments": {"site": "VA Long Beach"}}\n'
        "</tool_call>",
        '{"tool_calls": [{"function": {"name": "check_drift", '
        '"arguments": "{\\"site\\": \\"VA Long Beach\\"}"}}]}',
    ],
    ids=["bare-json", "qwen-tags", "openai-wire-format-as-text"],
)
async def test_a_tool_call_written_as_text_is_recovered(
    httpx2_mock: respx.Router, text: str
) -> None:
    Server(httpx2_mock, completion(content=text))
    decided = await route_with("has VA drifted?")
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "VA Long Beach"})


async def test_a_tool_call_inside_a_json_fence_is_recovered(httpx2_mock: respx.Router) -> None:
    fenced = (
        "Sure, I will check drift:\n```json\n"
        '{"name": "check_drift", "arguments": {"site": "Hungary"}}\n```'
    )
    Server(httpx2_mock, completion(content=fenced))
    decided = await route_with("check drift for Hungary")
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "Hungary"})


async def test_plain_text_stays_a_reply(httpx2_mock: respx.Router) -> None:
    Server(httpx2_mock, completion(content="I can't delete patient records."))
    decided = await route_with("delete all patient records")
    assert decided == Route(tool=None, reply="I can't delete patient records.", usage=decided.usage)


async def test_malformed_arguments_go_back_with_the_reason_then_the_fix_is_used(
    httpx2_mock: respx.Router,
) -> None:
    too_high = {"patient": {**PATIENT, "chol": 9000}}
    server = Server(
        httpx2_mock,
        completion(tool="predict_risk", arguments=json.dumps(too_high)[:-2]),
        completion(tool="predict_risk", arguments=too_high),
        completion(tool="predict_risk", arguments={"patient": PATIENT}),
    )
    decided = await route_with("63 yo man, asymptomatic chest pain, BP 145, cholesterol 233")
    assert decided.tool == "predict_risk" and decided.arguments["patient"]["chol"] == 233
    retries = [body["messages"][-1] for body in server.bodies[1:]]  # each retry's reason
    assert "Invalid JSON" in retries[0]["content"] or "json" in retries[0]["content"].lower()
    assert "chol" in retries[1]["content"] and "700" in retries[1]["content"]
    assert decided.usage["requests"] == 3


async def test_an_unknown_tool_is_retried_with_the_known_names(httpx2_mock: respx.Router) -> None:
    server = Server(
        httpx2_mock,
        completion(tool="delete_model", arguments={"version": "1"}),
        completion(tool="model_info", arguments={}),
    )
    decided = await route_with("what model is serving?")
    assert decided.tool == "model_info"
    retry = next(m for m in server.bodies[1]["messages"] if m["role"] == "tool")
    assert "delete_model" in retry["content"] and "model_info" in retry["content"]


async def test_retries_used_up_on_bad_arguments_become_a_reply_not_a_crash(
    httpx2_mock: respx.Router,
) -> None:
    bad = completion(tool="predict_risk", arguments={"patient": {"age": 400}})
    Server(httpx2_mock, bad, bad, bad)
    decided = await route_with("a 400 year old")
    assert decided.tool is None and decided.reply is not None
    assert "could not turn that into a valid request" in decided.reply


async def test_429_is_retried_then_succeeds(httpx2_mock: respx.Router) -> None:
    limited = httpx.Response(
        429, headers={"retry-after-ms": "20"}, json={"error": {"message": "slow down"}}
    )
    server = Server(httpx2_mock, limited, completion(tool="model_info", arguments={}))
    decided = await route_with("which model?")
    assert decided.tool == "model_info" and len(server.bodies) == 2


def _failing(status: int) -> httpx.Response:
    return httpx.Response(
        status, headers={"retry-after-ms": "10"}, json={"error": {"message": "model crashed"}}
    )


async def test_repeated_500s_end_in_a_clear_message_and_no_other_provider(
    httpx2_mock: respx.Router,
) -> None:
    server = Server(httpx2_mock, *(_failing(500) for _ in range(3)))
    decided = await route_with("which model?")
    assert decided.tool is None and decided.reply is not None
    assert len(server.bodies) == 3  # one try plus COPILOT_LLM_MAX_RETRIES=2
    assert "openai-compatible:qwen2.5-coder-1.5b at http://llm.test/v1" in decided.reply
    assert "not available" in decided.reply and "did not switch to another model" in decided.reply
    assert "tried 3 times" in decided.reply and "nothing was changed" in decided.reply


async def test_a_timeout_is_retried_then_reported(httpx2_mock: respx.Router) -> None:
    timeouts = [httpx.ReadTimeout("timed out") for _ in range(2)]
    server = Server(httpx2_mock, *timeouts)
    decided = await route_with("which model?", copilot_llm_max_retries=1)
    assert len(server.bodies) == 2
    assert decided.tool is None and decided.reply is not None
    assert "not available" in decided.reply and "tried 2 times" in decided.reply


async def test_json_mode_asks_for_one_schema_and_reads_the_tool_back(
    httpx2_mock: respx.Router,
) -> None:
    answer = {"result": {"kind": "check_drift", "data": {"site": "VA Long Beach"}}}
    server = Server(httpx2_mock, completion(content="```json\n" + json.dumps(answer) + "\n```"))
    decided = await route_with("has VA Long Beach drifted?", copilot_llm_routing="json")
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "VA Long Beach"})
    body = server.bodies[0]
    assert "tools" not in body  # no tool calling asked of the server
    assert body["response_format"]["type"] == "json_object"
    kinds = {
        option["properties"]["kind"]["const"]
        for option in body["response_format"]["schema"]["properties"]["result"]["anyOf"]
    }
    assert kinds == {
        "predict_risk",
        "explain_prediction",
        "what_if",
        "check_drift",
        "list_runs",
        "compare_runs",
        "model_info",
        "monitoring_history",
        "describe_data",
        "show_rows",
        "define_feature",
        "model_performance",
        "model_mistakes",
        "feature_importance",
        "feature_interactions",
        "counterfactual",
        "cohort_what_if",
        "retrain_model",
        "promote_model",
        "rollback_model",
        "reply",
    }


async def test_json_mode_with_openai_uses_openais_json_schema_form(
    httpx2_mock: respx.Router,
) -> None:
    """OpenAI refuses fields it does not know, such as llama.cpp's `schema` in json_object."""
    answer = {"result": {"kind": "rollback_model", "data": {"reason": "AUC fell"}}}
    server = Server(httpx2_mock, completion(content=json.dumps(answer)))
    decided = await route_with(
        "roll back, AUC fell",
        copilot_llm="openai:gpt-4.1-mini",
        copilot_llm_routing="json",
        openai_api_key="sk-test",
    )
    assert (decided.tool, decided.arguments) == ("rollback_model", {"reason": "AUC fell"})
    response_format = server.bodies[0]["response_format"]
    assert set(response_format) == {"type", "json_schema"}
    assert response_format["type"] == "json_schema"
    described = response_format["json_schema"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", described["name"])
    assert described["strict"] is False
    assert "result" in described["schema"]["properties"]
    assert server.bodies[0]["model"] == "gpt-4.1-mini"


async def test_json_mode_reply_and_invalid_arguments(httpx2_mock: respx.Router) -> None:
    bad = {"result": {"kind": "predict_risk", "data": {"patient": {"age": 400}}}}
    good = {"result": {"kind": "reply", "data": {"text": "Ages run from 0 to 120."}}}
    server = Server(
        httpx2_mock, completion(content=json.dumps(bad)), completion(content=json.dumps(good))
    )
    decided = await route_with("risk for a 400 year old", copilot_llm_routing="json")
    assert decided.tool is None and decided.reply == "Ages run from 0 to 120."
    retry = server.bodies[1]["messages"][-1]["content"]
    assert "age" in retry and "120" in retry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no tool here", None),
        ('```json\n{"name": "list_runs", "arguments": {}}\n```', ("list_runs", {})),
        (
            '[{"tool": "what_if", "args": {"changes": {"chol": 180}}}]',
            ("what_if", {"changes": {"chol": 180}}),
        ),
        ('{"name": "x", "arguments": "not json"}', None),
        ('{"result": 3}', None),
    ],
)
def test_recover_tool_call_shapes(text: str, expected: tuple[str, dict[str, Any]] | None) -> None:
    assert recover_tool_call(text) == expected


async def test_warm_up_reports_both_ways(httpx2_mock: respx.Router, tmp_path: Path) -> None:
    configured = settings(copilot_llm_max_retries=0, copilot_home=tmp_path / "a")
    later = settings(copilot_llm_max_retries=0, copilot_home=tmp_path / "b")
    model = llm_model(configured, get_card("heart-disease"))
    Server(httpx2_mock, completion(content="OK"), httpx.ConnectError("connection refused"))
    ready = await warm_up(model, configured)
    assert ready.ok and "answered" in ready.detail
    down = await warm_up(model, later)
    assert not down.ok and "not available" in down.detail and "llm.test" in down.detail


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="needs COPILOT_LLM_BASE_URL"):
        Settings(copilot_llm="openai-compatible:m", copilot_llm_base_url=None)
    with pytest.raises(ValueError, match="COPILOT_LLM_BASE_URL='ftp://x' must be an http"):
        Settings(copilot_llm="openai-compatible:m", copilot_llm_base_url="ftp://x")
    with pytest.raises(ValueError, match="needs OPENAI_API_KEY"):
        Settings(copilot_llm="openai:gpt-4.1-mini", openai_api_key=None)
    with pytest.raises(ValueError, match="copilot_llm_routing"):
        Settings(copilot_llm_routing="xml")  # type: ignore[arg-type]


def test_degenerate_text_is_no_tool_call() -> None:
    assert recover_tool_call("[" * 3000) is None  # deep nesting: no RecursionError
    assert recover_tool_call('{"name": "list_runs", "arguments": {}}' + " " * 30_000) is None


async def test_a_broken_call_written_as_text_is_retried_not_shown(
    httpx2_mock: respx.Router,
) -> None:
    server = Server(
        httpx2_mock,
        completion(content='{"name": "check_dr'),  # cut off at max_tokens
        completion(tool="check_drift", arguments={"site": "Hungary"}),
    )
    decided = await route_with("check drift for Hungary")
    assert (decided.tool, decided.arguments) == ("check_drift", {"site": "Hungary"})
    assert "could not read" in server.bodies[1]["messages"][-1]["content"]


async def test_a_refused_request_is_not_called_unavailable(httpx2_mock: respx.Router) -> None:
    denied = httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})
    server = Server(httpx2_mock, denied)
    decided = await route_with("which model?")
    assert len(server.bodies) == 1 and decided.reply is not None
    assert "refused the request (HTTP 401: Incorrect API key provided)" in decided.reply
    assert "did not switch to another model" in decided.reply


async def test_warm_up_of_a_server_that_answers_wrongly(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    configured = settings(copilot_llm_max_retries=0, copilot_home=tmp_path)
    model = llm_model(configured, get_card("heart-disease"))
    Server(httpx2_mock, httpx.Response(200, json={"choices": []}))
    answer = await warm_up(model, configured)
    assert not answer.ok and "answered but not as expected" in answer.detail


def test_keys_stay_out_of_reprs_errors_and_labels() -> None:
    configured = Settings(
        copilot_api_keys="ann:approver:sk-ann-secret",
        copilot_llm="openai-compatible:m",
        copilot_llm_base_url="http://user:pw-secret@llm.test:8080/v1",
    )
    assert "sk-ann-secret" not in repr(configured)
    from copilot.llm.providers import llm_label

    assert llm_label(configured) == "openai-compatible:m at http://llm.test:8080/v1"
    with pytest.raises(ValueError, match="entry 1") as refused:
        Settings(copilot_api_keys="sk-only-a-secret")
    assert "sk-only-a-secret" not in str(refused.value)


async def test_the_offline_provider_reads_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading a request is CPU work done in a worker thread: while one is being read
    (held here until the loop shows it is free), other requests of the process go on."""
    import threading

    import anyio

    from copilot.llm import providers

    card = get_card("heart-disease")
    release, reading = threading.Event(), threading.Event()
    understand = providers.understand

    def held(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        assert release.wait(10), "the event loop never got to release the reading"
        return understand(*args, **kwargs)

    monkeypatch.setattr(providers, "understand", held)
    router = build_router(providers.offline_model(card), card=card)
    decided: list[Route] = []

    async def read() -> None:
        decided.append(await route(router, RouteRequest('"' + " " * 9_000 + "show the runs")))

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        while not reading.is_set():  # this loop keeps running while the reading waits
            await anyio.sleep(0.01)
        release.set()
    assert len(decided) == 1  # and the reading finished once released
