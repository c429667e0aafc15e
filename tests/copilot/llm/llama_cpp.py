"""A mocked llama-cpp-python 0.3.36 OpenAI-compatible server, as the real one behaves (the
shapes below were captured from it serving Qwen2.5-Coder-1.5B Q4_K_M): streamed answers as
`chat.completion.chunk` events with no usage, and HTTP 500 with a pydantic dump when an
assistant message carries `"content": null`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

BASE_URL = "http://llama.test/v1"
COMPLETIONS = f"{BASE_URL}/chat/completions"
MODEL = "qwen2.5-coder-1.5b"

# The exact body the real server sent for this request's third message (captured).
CAPTURED_NULL_CONTENT_MESSAGE = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "check_drift", "arguments": '{"site":"VA"}'},
        }
    ],
}
CAPTURED_NULL_CONTENT_500 = {
    "error": {
        "message": "7 validation errors:\n  {'type': 'literal_error', 'loc': ('body', "
        "'messages', 2, 'ChatCompletionRequestSystemMessage', 'role'), 'msg': \"Input should "
        "be 'system'\", 'input': 'assistant', 'ctx': {'expected': \"'system'\"}}\n  {'type': "
        "'literal_error', 'loc': ('body', 'messages', 2, 'ChatCompletionRequestUserMessage', "
        "'role'), 'msg': \"Input should be 'user'\", 'input': 'assistant', 'ctx': "
        "{'expected': \"'user'\"}}\n  {'type': 'string_type', 'loc': ('body', 'messages', 2, "
        "'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid "
        "string', 'input': None}\n  {'type': 'literal_error', 'loc': ('body', 'messages', 2, "
        "'ChatCompletionRequestToolMessage', 'role'), 'msg': \"Input should be 'tool'\", "
        "'input': 'assistant', 'ctx': {'expected': \"'tool'\"}}\n  {'type': 'missing', "
        "'loc': ('body', 'messages', 2, 'ChatCompletionRequestToolMessage', 'tool_call_id'), "
        "'msg': 'Field required', 'input': {'role': 'assistant', 'content': None, "
        "'tool_calls': [{'id': 'call_1', 'type': 'function', 'function': {'name': "
        "'check_drift', 'arguments': '{\"site\":\"VA\"}'}}]}}\n  {'type': 'literal_error', "
        "'loc': ('body', 'messages', 2, 'ChatCompletionRequestFunctionMessage', 'role'), "
        "'msg': \"Input should be 'function'\", 'input': 'assistant', 'ctx': {'expected': "
        "\"'function'\"}}\n  {'type': 'missing', 'loc': ('body', 'messages', 2, "
        "'ChatCompletionRequestFunctionMessage', 'name'), 'msg': 'Field required', 'input': "
        "{'role': 'assistant', 'content': None, 'tool_calls': [{'id': 'call_1', 'type': "
        "'function', 'function': {'name': 'check_drift', 'arguments': "
        '\'{"site":"VA"}\'}}]}}\n\n  File "/root/.cache/copilot-real-llm/venv/lib/'
        'python3.11/site-packages/llama_cpp/server/app.py", line 376, in '
        "create_chat_completion\n    POST /v1/chat/completions",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


def null_content_error(index: int, message: dict[str, Any]) -> dict[str, Any]:
    """llama-cpp-python's 500 body for an assistant message with `"content": null`."""
    loc = f"('body', 'messages', {index}, "

    def literal(kind: str, role: str) -> str:
        return (
            f"  {{'type': 'literal_error', 'loc': {loc}'ChatCompletionRequest{kind}Message', "
            f"'role'), 'msg': \"Input should be '{role}'\", 'input': 'assistant', 'ctx': "
            f"{{'expected': \"'{role}'\"}}}}"
        )

    def missing(kind: str, field: str) -> str:
        return (
            f"  {{'type': 'missing', 'loc': {loc}'ChatCompletionRequest{kind}Message', "
            f"'{field}'), 'msg': 'Field required', 'input': {message!r}}}"
        )

    errors = [
        literal("System", "system"),
        literal("User", "user"),
        f"  {{'type': 'string_type', 'loc': {loc}'ChatCompletionRequestAssistantMessage', "
        "'content'), 'msg': 'Input should be a valid string', 'input': None}",
        literal("Tool", "tool"),
        missing("Tool", "tool_call_id"),
        literal("Function", "function"),
        missing("Function", "name"),
    ]
    text = (
        "7 validation errors:\n"
        + "\n".join(errors)
        + '\n\n  File "/root/.cache/copilot-real-llm/venv/lib/python3.11/site-packages/'
        'llama_cpp/server/app.py", line 376, in create_chat_completion\n'
        "    POST /v1/chat/completions"
    )
    return {
        "error": {"message": text, "type": "internal_server_error", "param": None, "code": None}
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-20dbbd00-31f8-41ba-b6db-946b18ef9573",
        "model": MODEL,
        "created": 1_796_095_506,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def streamed(text: str, finish: str = "stop") -> httpx.Response:
    """A text answer as llama-cpp-python streams it: a role chunk, a few tokens per chunk,
    a last empty delta with the finish reason, `[DONE]`; no usage."""
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
    chunks = [_chunk({"role": "assistant"}), *(_chunk({"content": p}) for p in pieces)]
    chunks.append(_chunk({}, finish))
    events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=events)


class LlamaCppServer:
    """Answers each accepted request with the next scripted text and refuses, as the real
    server does, an assistant message with `"content": null` (HTTP 500)."""

    def __init__(self, mock: respx.Router, *answers: str) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        mock.post(COMPLETIONS).mock(side_effect=self.answer)

    def answer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        for index, message in enumerate(body["messages"]):
            if message["role"] == "assistant" and message.get("content", "") is None:
                self.refused += 1
                return httpx.Response(500, json=null_content_error(index, message))
        return streamed(self.answers.pop(0))

    def messages(self, request: int) -> list[dict[str, Any]]:
        """The messages of one request after the system prompts."""
        return [m for m in self.bodies[request]["messages"] if m["role"] != "system"]
