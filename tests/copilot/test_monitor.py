"""`copilot monitor`: a pass stores its series, proposes through ActionStore once per cause,
and notifies a real webhook receiver (retried on 500, secret header sent)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from copilot.actions import ActionStore
from copilot.conversations import ConversationStore
from copilot.monitor import Monitor, Thresholds, Webhook
from copilot.monitoring import MonitorStore
from model_service.cards import DatasetCard
from tests.conftest import TrainedRegistry
from tests.copilot.conftest import KEY
from tests.model_service.test_outcomes import site_records
from tools.context import ToolContext
from tools.monitoring import ALL_SITES

SECRET = "s3cret-for-the-test"


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first `failures` requests with 500."""

    failures: int
    received: list[tuple[dict[str, str], dict[str, Any], int]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if len(state.received) < state.failures else 204
            state.received.append((dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def _monitor(
    engine: Engine,
    live_service: str,
    trained_registry: TrainedRegistry,
    heart_card: DatasetCard,
    webhook_url: str | None,
    **thresholds: Any,
) -> Monitor:
    tools = ToolContext(
        httpx.AsyncClient(base_url=live_service, timeout=60),
        trained_registry.tracking_uri,
        heart_card,
    )
    settings = {"drift_share": 0.3, "min_auc": 0.7, "min_labels": 30, "window": timedelta(hours=1)}
    return Monitor(
        store=MonitorStore(engine),
        actions=ActionStore(engine, audit_key=KEY, ttl_seconds=900, tools=tools),
        conversations=ConversationStore(engine),
        tools=tools,
        thresholds=Thresholds(**{**settings, **thresholds}),
        webhook=Webhook(webhook_url, SECRET, retries=3, first_backoff=0.01),
    )


def _post_site(live_service: str, card: DatasetCard, site: str) -> list[dict[str, Any]]:
    records, labels = site_records(card, site)
    predictions = httpx.post(
        f"{live_service}/v1/predict/batch",
        params={"site": site},
        json={"patients": records},
        timeout=60,
    ).json()["predictions"]
    return [{**p, "observed": label} for p, label in zip(predictions, labels, strict=True)]


@pytest.mark.anyio
async def test_a_pass_stores_the_series_proposes_once_and_notifies(
    engine: Engine,
    live_service: str,
    trained_registry: TrainedRegistry,
    heart_card: DatasetCard,
    receiver: Receiver,
) -> None:
    predictions = _post_site(live_service, heart_card, "VA Long Beach")
    monitor = _monitor(engine, live_service, trained_registry, heart_card, receiver.url)

    first = await monitor.run_pass()
    assert first is not None
    by_key = {(p.site, p.metric, p.model_version): p for p in first.points}
    drift = by_key[("VA Long Beach", "share_drifted", None)]
    assert drift.value is not None and drift.value >= 0.3
    assert drift.rows >= len(predictions)  # the service is shared by the module's tests
    auc = by_key[("VA Long Beach", "auc", "1")]
    assert auc.estimated is True and auc.labels == 0 and auc.rows >= len(predictions)
    quiet = by_key[("Cleveland", "share_drifted", None)]
    assert quiet.value is None and "only 0 predictions logged from Cleveland" in (quiet.note or "")

    # drift at VA Long Beach (and so over all sites): retrain proposals citing the check
    actions = {
        monitor.actions.get(a).arguments["sites"][-1]: monitor.actions.get(a)
        for a in first.proposed
    }
    va = actions["VA Long Beach"]
    assert va.tool == "retrain_model" and va.status == "pending" and va.requested_by == "monitor"
    assert va.arguments["sites"] == ["Cleveland", "VA Long Beach"]
    assert f"monitor check {first.check_id}: drift at VA Long Beach:" in va.arguments["reason"]
    assert f"({drift.value:.2f} >= threshold 0.3)" in va.arguments["reason"]

    # the webhook: two 500s, then delivered; the secret in its header, the numbers in JSON
    assert [d.delivered for d in first.deliveries] == [True] * len(first.proposed)
    assert [status for _, _, status in receiver.received[:3]] == [500, 500, 204]
    headers, body, _ = receiver.received[2]
    assert headers["X-Copilot-Webhook-Secret"] == SECRET
    assert body["event"] == "monitor_alert" and body["check_id"] == first.check_id
    assert body["action"]["id"] in first.proposed and body["action"]["status"] == "pending"
    alerts = monitor.store.alerts(first.check_id)
    assert alerts[0]["webhook"] == "delivered" and "3 attempts" in alerts[0]["webhook_detail"]

    # a second pass: the same causes are pending, so nothing new is proposed or sent
    sent = len(receiver.received)
    second = await monitor.run_pass()
    assert second is not None and second.proposed == []
    assert sorted(second.already_pending) == sorted([f"drift:{ALL_SITES}", "drift:VA Long Beach"])
    assert len(receiver.received) == sent

    # the stored series answers history questions with the numbers the checks saw
    history = monitor.store.history("VA Long Beach", "share_drifted", first.checked_at)
    assert [(h["check_id"], h["value"]) for h in history] == [
        (first.check_id, drift.value),
        (second.check_id, drift.value),
    ]
    assert monitor.store.check(first.check_id)["status"] == "done"  # type: ignore[index]
    await monitor.tools.model_service.aclose()


@pytest.mark.anyio
async def test_observed_auc_below_the_threshold_proposes_and_a_dead_webhook_is_recorded(
    engine: Engine, live_service: str, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    predictions = _post_site(live_service, heart_card, "Hungary")
    async with httpx.AsyncClient(base_url=live_service, timeout=60) as client:

        async def record(prediction: dict[str, Any]) -> int:
            body = {
                "prediction_id": prediction["prediction_id"],
                "label": 1 - prediction["observed"],
            }
            return (await client.post("/v1/outcomes", json=body)).status_code

        # outcomes opposite to the truth, sent at once (one group commit takes many): the AUC
        # collapses
        statuses = await asyncio.gather(*(record(p) for p in predictions))
    assert set(statuses) <= {200, 201}
    monitor = _monitor(
        engine,
        live_service,
        trained_registry,
        heart_card,
        "http://127.0.0.1:9/hook",
        drift_share=1.0,
    )
    result = await monitor.run_pass()
    assert result is not None
    auc = next(p for p in result.points if (p.site, p.metric) == ("Hungary", "auc") and p.labels)
    assert auc.estimated is False and auc.labels >= len(predictions) and auc.value is not None
    assert auc.value < 0.7
    (action_id,) = result.proposed
    action = monitor.actions.get(action_id)
    assert action.tool in {"rollback_model", "retrain_model"} and action.status == "pending"
    assert (
        "observed AUC" in action.arguments["reason"]
        and "is below 0.7" in action.arguments["reason"]
    )
    (delivery,) = result.deliveries
    assert delivery.delivered is False and delivery.attempts == 4
    (alert,) = monitor.store.alerts(result.check_id)
    assert alert["webhook"] == "failed" and "after 4 attempts" in alert["webhook_detail"]
    assert monitor.store.check(result.check_id)["status"] == "done"  # type: ignore[index]
    await monitor.tools.model_service.aclose()


@pytest.mark.anyio
async def test_one_pass_at_a_time(
    engine: Engine, live_service: str, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    monitor = _monitor(engine, live_service, trained_registry, heart_card, None)
    holder = monitor.store.take_lease(60)
    assert holder is not None
    assert await monitor.run_pass() is None  # another replica holds it
    assert monitor.store.take_lease(60) is None
    monitor.store.release_lease(holder)
    assert await monitor.run_pass() is not None
    await monitor.tools.model_service.aclose()
