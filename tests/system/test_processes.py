"""Tests that run real processes: the services started as `copilot serve ...` answer over
HTTP and stop on SIGTERM, two processes racing to approve one action, a process killed
with SIGKILL mid-execution, and the import check of a fresh interpreter. Slower than the
unit tests beside the packages; kept apart so they can be run or skipped as a group."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from copilot.actions import ActionStore
from copilot.cli.bench import model_service_command
from tests.conftest import PROCESS_START_SECONDS, Clock, TrainedRegistry, wait_until
from tests.copilot.api.test_api import API_KEYS, PATIENT, auth, tracking_uri
from tests.copilot.conftest import KEY, engine, store
from tests.copilot.test_actions import PROMOTE, _champion, _events
from tests.copilot.test_actions_hardening import _replace_tool
from tools.context import ToolContext

# fixtures of the unit tests, used here as they are
__all__ = ["engine", "store", "tracking_uri"]
pytestmark = pytest.mark.anyio


def test_serve_api_process_answers_over_http_and_stops_on_sigterm(
    tmp_path: Path, tracking_uri: str, live_service: str
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = os.environ | {
        "COPILOT_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_SERVICE_URL": live_service,
        "COPILOT_API_KEYS": API_KEYS,
    }
    command = [sys.executable, "-c", "from copilot.cli.main import main; main()", "serve", "api"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=PROCESS_START_SECONDS, what="the agent API process")
        created = httpx.post(f"{base}/v1/conversations", headers=auth("ann"))
        assert created.status_code == 201
        turn = httpx.post(
            f"{base}/v1/conversations/{created.json()['id']}/messages",
            headers=auth("ann"),
            json={"content": PATIENT},
            timeout=60,
        )
        assert turn.json()["tool_calls"][0]["tool"] == "predict_risk"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode in {0, -signal.SIGTERM}, output
    assert "Application shutdown complete" in output
    assert (tmp_path / "copilot.db").exists()


def test_model_service_process_serves_over_http_and_stops_on_sigterm(
    tmp_path: Path, trained_registry: TrainedRegistry, patient: dict[str, object]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {
        "COPILOT_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": trained_registry.tracking_uri,
    }
    process = subprocess.Popen(
        model_service_command(port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=PROCESS_START_SECONDS, what="the model service process")
        response = httpx.post(f"{base}/v1/predict", json=patient)
        assert response.status_code == 200 and response.json()["model"]["version"] == "1"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn finishes in-flight work, then re-raises SIGTERM for the process manager
    assert process.returncode in {0, -signal.SIGTERM}, output
    assert "Application shutdown complete" in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "model_service.access"]
    assert any(line["endpoint"] == "/v1/predict" and line["status"] == 200 for line in access)
    assert "typical angina" not in output and "lv hypertrophy" not in output  # patient values
    assert all("chol" not in line for line in access)
    assert (tmp_path / "copilot.db").exists()


_RACER = textwrap.dedent("""
    import asyncio, sys, time, httpx
    from copilot.actions import ActionStore
    from model_service.cards import get_card
    from model_service.database import make_engine
    from tools.context import ToolContext
    database_url, tracking_uri, action_id, start = sys.argv[1:5]
    store = ActionStore(make_engine(database_url), audit_key=b"test-audit-key", ttl_seconds=900)
    ctx = ToolContext(httpx.AsyncClient(base_url="http://127.0.0.1:9"), tracking_uri,
                      get_card("heart-disease"))
    while time.time() < float(start):
        time.sleep(0.001)
    store.decide(action_id, "approve", by="racer")
    print(asyncio.run(store.execute(action_id, ctx)).status)
""")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_approving_at_once_execute_once(
    database_url: str, store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("conv-1", "promote_model", PROMOTE, requested_by="ann")
    start = str(time.time() + 4)  # both import first, then go at the same moment
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER,
                database_url,
                registry_ctx.tracking_uri,
                action.id,
                start,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    assert _events(engine, action.id).count("executed") == 1
    assert _events(engine, action.id).count("approved") == 1
    assert store.get(action.id).status == "executed" and _champion(registry_ctx) == "2"
    assert store.verify_audit().ok


_CRASHER = textwrap.dedent("""
    import asyncio, sys, anyio, httpx
    from copilot import actions
    from copilot.actions import ActionStore, StateChangingTool
    from model_service.cards import get_card
    from model_service.database import make_engine
    from tools.context import ToolContext
    database_url, tracking_uri, action_id = sys.argv[1:4]
    spec = actions.STATE_CHANGING["rollback_model"]
    async def forever(*_):
        await anyio.sleep(3600)
    actions.STATE_CHANGING["rollback_model"] = StateChangingTool(
        spec.name, spec.input_model, forever, spec.summary)
    store = ActionStore(make_engine(database_url), audit_key=b"test-audit-key", ttl_seconds=900)
    ctx = ToolContext(httpx.AsyncClient(base_url="http://127.0.0.1:9"), tracking_uri,
                      get_card("heart-disease"))
    asyncio.run(store.execute(action_id, ctx))
""")


async def test_an_execution_killed_mid_run_is_reconciled_not_waited_for(
    database_url: str, engine: Engine, registry_ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900)
    action = store.propose("c", "rollback_model", {"reason": "bad model"}, "ann")
    store.decide(action.id, "approve", "bob")
    crasher = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, database_url, registry_ctx.tracking_uri, action.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: store.get(action.id).executing, timeout=60, what="the claim")
    finally:
        os.kill(crasher.pid, signal.SIGKILL)
        crasher.communicate(timeout=30)
    ran: list[str] = []

    async def record(*_: Any) -> Any:
        ran.append("ran")
        raise AssertionError("a claimed action must not run again")

    _replace_tool(monkeypatch, "rollback_model", record)
    clock = Clock(datetime.now(UTC) + timedelta(seconds=30))  # the claim is no longer young
    waiting = ActionStore(engine, audit_key=KEY, ttl_seconds=900, clock=clock)
    started = time.monotonic()
    answer = await waiting.execute(action.id, registry_ctx)
    assert time.monotonic() - started < 5  # an answer, not a 15-minute wait
    assert answer.status == "approved" and answer.executing

    clock.advance(31)  # the dead process renewed nothing: its 60 s lease runs out
    failed = waiting.get(action.id)
    assert failed.status == "failed" and not failed.executing and failed.result is not None
    assert failed.result["error"].startswith("the process running it stopped before it finished")
    assert "check the registry before proposing it again" in failed.result["error"]
    assert _events(engine, action.id) == ["proposed", "approved", "failed"]
    assert (await waiting.execute(action.id, registry_ctx)).status == "failed" and ran == []
    assert waiting.verify_audit().ok


def test_only_the_chainlit_file_imports_chainlit() -> None:
    """Importing Chainlit writes files into its app root, so nothing else may import it."""
    code = (
        "import sys, copilot.cli.main, copilot.chat.server, copilot.chat.views, "
        "copilot.chat.turns; "
        "print('chainlit' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
