"""ASGI middleware that bounds what a request may cost before the app sees it.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and how many connections
it serves (`limit_concurrency`), but not how long a body may trickle in once the headers
have arrived: without `BodyTimeout` a slow client holds its connection (and its buffered
body) for as long as it likes. `RefuseWhenFull` answers 429 before a body is read while a
bound is full, so that a flood of refused requests costs no parsing. Plain ASGI, so any of
our apps can wrap itself in them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection

import anyio
from starlette.exceptions import HTTPException

from model_service.admission import Busy
from model_service.observability import ASGIApp, Message, Receive, Scope, Send, send_json


class BodyTimedOut(HTTPException):
    """Raised to the app from `receive()` when the body is late (FastAPI passes it on)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, body_timeout_message(seconds))


def body_timeout_message(seconds: float) -> str:
    return (
        f"body: the request body did not arrive in full within {seconds:g} s of the request's "
        "start; send the whole body at once"
    )


class BodyTimeout:
    """Answers 408 and closes the connection when a request's body has not fully arrived
    `seconds` after the request started. The app's own answer to the failed read is dropped;
    waiting for a disconnect after the body (streaming responses) is not bounded."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.seconds
        body_done = timed_out = started = False

        async def receive_in_time() -> Message:
            nonlocal body_done, timed_out
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise BodyTimedOut(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_unless_timed_out(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 408 below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTimedOut):  # an app without a handler for it
            await self.app(scope, receive_in_time, send_unless_timed_out)
        if timed_out and not started:
            await _send_timeout(send, self.seconds)


class RefuseWhenFull:
    """Answers 429 with Retry-After to a POST to one of `paths`, before its body is read,
    while `full()` returns why (a `Busy`); the app checks its bounds again after parsing."""

    def __init__(
        self, app: ASGIApp, paths: Collection[str], full: Callable[[], Busy | None]
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.full = full

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        busy = None
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            busy = self.full()
        if busy is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"retry-after", str(busy.retry_after).encode())]
        await send_json(send, 429, {"detail": str(busy)}, headers)


async def _send_timeout(send: Send, seconds: float) -> None:
    item = {
        "loc": ["body"],
        "field": "body",
        "value": None,
        "rule": "body_timeout",
        "message": body_timeout_message(seconds),
    }
    # the rest of the body is not worth waiting for: close the connection
    await send_json(send, 408, {"detail": [item]}, [(b"connection", b"close")])
