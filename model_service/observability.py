"""Prometheus metrics, structured JSON logs and the request middleware of the model service.

Logs never contain patient values: only the request's method, route, status, timing,
request id and the model version that served it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024
BODY_TOO_LARGE = "model_service.body_too_large"  # scope key set when a body is cut off
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_logger = logging.getLogger("model_service.access")
_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})))


class ServiceMetrics:
    """The service's Prometheus metrics in a registry of its own (nothing global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_service_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_service_request_duration_seconds",
            "Time to the response start by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.predictions = Counter(
            "model_service_predictions",
            "Predictions served by label",
            ["label"],
            registry=self.registry,
        )
        self.log_commit_wait = Histogram(
            "model_service_prediction_log_commit_wait_seconds",
            "Time a prediction request waited for the log to commit its predictions",
            registry=self.registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.model_info = Gauge(
            "model_service_model_info",
            "The model version being served (value 1)",
            ["name", "version", "alias"],
            registry=self.registry,
        )

    def serving(self, name: str, version: str, alias: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version, alias=alias or "").set(1)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Routes every log record to stderr as JSON (called by the CLI, never at import)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class _BodyTooLarge(Exception):
    pass


class RequestMiddleware:
    """Request ids, a body-size limit, Server-Timing, metrics and one access-log line."""

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, served_version: Callable[[], str | None]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.served_version = served_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                elapsed_ms = (time.perf_counter() - start) * 1000
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", f"app;dur={elapsed_ms:.3f}".encode()),
                ]
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    scope[BODY_TOO_LARGE] = True  # FastAPI reports a failed read as a 400
                    raise _BodyTooLarge
            return message

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > MAX_BODY_BYTES:
                raise _BodyTooLarge
            await self.app(scope, receive_limited, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await send_json(
                    send_with_headers,
                    413,
                    {
                        "detail": [
                            {
                                "loc": ["body"],
                                "field": "body",
                                "value": None,
                                "rule": "body_size",
                                "message": f"body: request body exceeds {MAX_BODY_BYTES} bytes",
                            }
                        ]
                    },
                )
        except Exception as error:
            # Answer here so that even a 500 carries the request id. The log gets the
            # exception's type and stack, not its message, which might quote a patient value.
            access_logger.error(
                "unhandled error",
                extra={
                    "request_id": request_id,
                    "error_type": type(error).__name__,
                    "stack": "".join(traceback.format_tb(error.__traceback__)),
                },
            )
            if not started:
                await send_json(
                    send_with_headers,
                    500,
                    {"detail": f"internal error; quote request id {request_id} when reporting it"},
                )
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(
                endpoint=endpoint, method=scope["method"], status=str(status)
            ).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(elapsed)
            access_logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "endpoint": endpoint,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "model_version": self.served_version(),
                },
            )


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON answer written straight to the ASGI `send` (for middleware)."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
