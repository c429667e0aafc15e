"""The model service's bounds: rows in flight and the log queue (429 with Retry-After), the
wait for a commit (503), a body that does not arrive (408), and uvicorn's settings.

The database is held busy by a second connection that takes SQLite's write lock, so that
requests stay in flight, waiting for their commit, until the test lets go."""

import contextlib
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from model_service.app import ServiceConfig, create_app, server_options
from model_service.database import make_engine
from model_service.http_limits import BodyTimeout
from model_service.observability import Message
from model_service.predictions import PredictionBatch, PredictionLog, PredictionLogFull
from model_service.serving import new_ids
from tests.conftest import service_client, wait_until


@contextlib.contextmanager
def database_busy(path: Path) -> Iterator[None]:
    """Holds SQLite's write lock: the prediction log's commits wait until the block ends."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def test_the_log_acknowledges_a_batch_only_once_it_is_committed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    log = PredictionLog(engine, max_queued_rows=5)
    try:
        with database_busy(tmp_path / "log.db"):
            first = PredictionBatch(
                ids=new_ids(3),
                created_at=datetime.now(UTC),
                dataset="heart-disease",
                model_name="m",
                model_version="1",
                threshold=0.5,
                probabilities=[0.4] * 3,
                labels=[0] * 3,
                records=[{"age": 50}] * 3,
            )
            committed = log.append(first)
            with pytest.raises(PredictionLogFull, match="3 rows wait to be written"):
                log.append(replace(first, ids=new_ids(3)))
            assert not committed.done()
        committed.result(timeout=30)
        assert log.queued_rows == 0 and log.get(first.ids[0]) is not None
    finally:
        log.close()
        engine.dispose()


def _config(service_config: ServiceConfig, tmp_path: Path, **limits: Any) -> ServiceConfig:
    return replace(service_config, database_url=f"sqlite:///{tmp_path / 'copilot.db'}", **limits)


def test_rows_in_flight_are_bounded_with_a_429_that_says_when_to_retry(
    service_config: ServiceConfig, tmp_path: Path, patient: dict[str, Any]
) -> None:
    config = _config(service_config, tmp_path, max_rows_in_flight=40)
    with service_client(config) as client, ThreadPoolExecutor(1) as pool:
        budget = client.app.state.rows_in_flight  # type: ignore[attr-defined]
        with database_busy(tmp_path / "copilot.db"):
            first = pool.submit(client.post, "/v1/predict/batch", json={"patients": [patient] * 30})
            wait_until(lambda: budget.in_flight == 30, timeout=20, what="30 rows in flight")
            refused = client.post("/v1/predict/batch", json={"patients": [patient] * 20})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["detail"] == (
                "rows in flight: 30 rows are being scored or logged and 20 more would pass "
                "the limit of 40; retry in 1 s"
            )
            assert not first.done()  # acknowledged only once committed
        answered = first.result(timeout=30)
        assert answered.status_code == 200 and len(answered.json()["predictions"]) == 30
        assert budget.in_flight == 0
        again = client.post("/v1/predict/batch", json={"patients": [patient] * 20})
        assert again.status_code == 200


def test_the_log_queue_is_bounded_with_a_429_that_names_it(
    service_config: ServiceConfig, tmp_path: Path, patient: dict[str, Any]
) -> None:
    config = _config(service_config, tmp_path, max_queued_log_rows=40)
    with service_client(config) as client, ThreadPoolExecutor(1) as pool:
        log = client.app.state.log  # type: ignore[attr-defined]
        with database_busy(tmp_path / "copilot.db"):
            first = pool.submit(client.post, "/v1/predict/batch", json={"patients": [patient] * 30})
            wait_until(lambda: log.queued_rows == 30, timeout=20, what="30 rows queued")
            refused = client.post("/v1/predict/batch", json={"patients": [patient] * 20})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["detail"] == (
                "prediction log: 30 rows wait to be written to the database and 20 more would "
                "pass the limit of 40; retry in 1 s"
            )
        assert first.result(timeout=30).status_code == 200
        assert log.queued_rows == 0


def test_a_commit_that_does_not_come_in_time_is_a_503_and_still_lands(
    service_config: ServiceConfig, tmp_path: Path, patient: dict[str, Any]
) -> None:
    config = _config(service_config, tmp_path, log_commit_timeout_seconds=0.3)
    with service_client(config) as client:
        log = client.app.state.log  # type: ignore[attr-defined]
        with database_busy(tmp_path / "copilot.db"):
            response = client.post("/v1/predict", json=patient)
            assert response.status_code == 503
            assert response.json()["detail"] == (
                "the prediction log could not commit these predictions within 0.3 s (the "
                "database is slow or down); they were not acknowledged: retry"
            )
            assert log.queued_rows == 1  # kept, not dropped
        log.flush(timeout=30)
        assert log.queued_rows == 0


def test_limits_are_checked_when_the_config_is_made(service_config: ServiceConfig) -> None:
    with pytest.raises(ValueError, match=r"ServiceConfig.max_rows_in_flight: 0 must be at least"):
        replace(service_config, max_rows_in_flight=0)
    with pytest.raises(ValueError, match=r"ServiceConfig.body_timeout_seconds: -1 must be posit"):
        replace(service_config, body_timeout_seconds=-1)


def test_uvicorn_gets_the_keep_alive_and_connection_limits(service_config: ServiceConfig) -> None:
    config = replace(service_config, keep_alive_seconds=3, max_connections=64)
    server = uvicorn.Config(create_app(config), **server_options(config))
    assert (server.timeout_keep_alive, server.limit_concurrency) == (3, 64)


async def _call(app: Any, body_chunks: list[bytes], *, stall: bool) -> list[Message]:
    """One POST in process: the body's chunks, then (`stall`) a client that sends no more."""
    chunks = list(body_chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": stall or bool(chunks)}
        await anyio.Event().wait()  # a client that stopped sending: never set
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"400")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent


def _answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], Any]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return start["status"], dict(start["headers"]), httpx.Response(200, content=body).json()


@pytest.mark.anyio
async def test_a_body_that_stops_arriving_gets_a_408_and_the_connection_closed(
    service_config: ServiceConfig,
) -> None:
    app = create_app(replace(service_config, body_timeout_seconds=0.2))
    status, headers, body = _answer(await _call(app, [b'{"age": 63, "sex": "Ma'], stall=True))
    assert status == 408
    assert headers[b"connection"] == b"close" and b"x-request-id" in headers
    assert body["detail"] == [
        {
            "loc": ["body"],
            "field": "body",
            "value": None,
            "rule": "body_timeout",
            "message": "body: the request body did not arrive in full within 0.2 s of the "
            "request's start; send the whole body at once",
        }
    ]


@pytest.mark.anyio
async def test_the_body_timeout_guards_any_asgi_app() -> None:
    received: list[bytes] = []

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        while True:  # no error handling of its own: the middleware answers for it
            message = await receive()
            received.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": b'{"bytes": %d}' % len(b"".join(received))}
        )

    guarded = BodyTimeout(echo, seconds=0.2)
    status, _, body = _answer(await _call(guarded, [b"ab", b"cd"], stall=False))
    assert (status, body) == (200, {"bytes": 4})
    received.clear()
    status, headers, body = _answer(await _call(guarded, [b"ab"], stall=True))
    assert status == 408 and headers[b"connection"] == b"close"
    assert body["detail"][0]["rule"] == "body_timeout" and received == [b"ab"]


@pytest.mark.anyio
async def test_a_full_row_budget_refuses_before_the_body_is_read(
    service_config: ServiceConfig,
) -> None:
    app = create_app(replace(service_config, max_rows_in_flight=40))
    with app.state.rows_in_flight.hold(40):  # a request nothing more fits beside
        status, headers, body = _answer(await _call(app, [b'{"age": 6'], stall=True))
    assert status == 429 and headers[b"retry-after"] == b"1"  # not 408: nothing was read
    assert body == {
        "detail": "rows in flight: 40 rows are being scored or logged, the limit of 40; "
        "retry in 1 s"
    }
