"""A mocked llama-cpp-python 0.3.36 OpenAI-compatible server, as the real one behaves (the
shapes below were captured from it serving Qwen2.5-Coder-1.5B Q4_K_M): streamed answers as
`chat.completion.chunk` events with no usage; plain answers as one `chat.completion`, with
`logprobs` when asked for (raw: tokens the JSON grammar would refuse are among the top
ones); a stream that asks for log-probabilities ends after its role chunk, with no answer;
and HTTP 500 with a pydantic dump when an assistant message carries `"content": null`."""

from __future__ import annotations

import json
import math
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


def _logprob(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": None}


def verdict_logprobs(text: str, p_wrong: float) -> dict[str, Any]:
    """The log-probabilities the real server sent with a verdict ('{"', 'right', '":',
    ' false', '}'), the boolean token's top alternatives at `p_wrong` against "right"."""
    chosen = " false" if '"right": false' in text else " true"
    top = {" false": math.log(p_wrong), " true": math.log(1 - p_wrong), " False": -6.55}
    tokens = [('{"', -0.11), ("right", -0.002), ('":', -0.0001), (chosen, top[chosen])]
    content = [{**_logprob(t, lp), "top_logprobs": [_logprob(t, lp)]} for t, lp in tokens]
    alternatives = sorted(top.items(), key=lambda item: -item[1])
    content[3]["top_logprobs"] = [_logprob(t, lp) for t, lp in alternatives]
    content.append({**_logprob("}", -0.003), "top_logprobs": [_logprob("}", -0.003)]})
    return {"content": content}


def choice_logprobs(text: str, p_choice: float) -> dict[str, Any]:
    """Log-probabilities as the real server sends them with a choice ('{"', 'tool', '":',
    ' "', the name's tokens, '"}'): the name's first token at `p_choice` against another
    tool's name (and a token that spells none)."""
    name = json.loads(text)["tool"]
    other = "reply" if name != "reply" else "model"
    pieces = [name[:5], name[5:]] if len(name) > 5 else [name]
    tokens = [('{"', -0.02), ("tool", -0.001), ('":', -0.0001), (' "', -0.001)]
    content = [{**_logprob(t, lp), "top_logprobs": [_logprob(t, lp)]} for t, lp in tokens]
    first = [(pieces[0], math.log(p_choice)), (other, math.log(1 - p_choice)), ("```", -7.2)]
    content.append({**_logprob(*first[0]), "top_logprobs": [_logprob(t, lp) for t, lp in first]})
    content += [{**_logprob(p, -0.01), "top_logprobs": [_logprob(p, -0.01)]} for p in pieces[1:]]
    content.append({**_logprob('"}', -0.002), "top_logprobs": [_logprob('"}', -0.002)]})
    return {"content": content}


def completed(text: str, logprobs: dict[str, Any] | None = None) -> httpx.Response:
    """A text answer as llama-cpp-python sends it to a request that is not streamed."""
    body = {
        "id": "chatcmpl-771118c2-d37b-43c0-ae76-b5ad84aacf2f",
        "object": "chat.completion",
        "created": 1_796_154_284,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"content": text, "role": "assistant"},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1758, "completion_tokens": 5, "total_tokens": 1763},
    }
    return httpx.Response(200, json=body)


def stream_cut_short() -> httpx.Response:
    """What llama-cpp-python 0.3.36 streams when log-probabilities are asked for: the role
    chunk and `[DONE]` (its server logs "ASGI callable returned without completing")."""
    events = f"data: {json.dumps(_chunk({'role': 'assistant'}))}\n\ndata: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=events)


class LlamaCppServer:
    """Answers each accepted request with the next scripted text (a verdict's may come with
    the probability of "wrong" the model gave it, a choice's with that of the tool it chose:
    `(text, probability)`) and refuses, as the
    real server does, an assistant message with `"content": null` (HTTP 500)."""

    def __init__(self, mock: respx.Router, *answers: str | tuple[str, float]) -> None:
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
        if body.get("stream") and body.get("logprobs"):
            return stream_cut_short()
        answer = self.answers.pop(0)
        text, p_wrong = answer if isinstance(answer, tuple) else (answer, None)
        if body.get("stream"):
            return streamed(text)
        if p_wrong is None or not body.get("logprobs"):
            return completed(text)
        if text.startswith('{"tool"'):  # a choice, at this probability
            return completed(text, choice_logprobs(text, p_wrong))
        return completed(text, verdict_logprobs(text, p_wrong))

    def messages(self, request: int) -> list[dict[str, Any]]:
        """The messages of one request after the system prompts."""
        return [m for m in self.bodies[request]["messages"] if m["role"] != "system"]
