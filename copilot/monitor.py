"""`copilot monitor`: a scheduled check of the champion in production.

One pass, per site and for all sites together, over the predictions logged in the last
`COPILOT_MONITOR_WINDOW_HOURS`: drift and data quality (the model service's drift check of
the logged predictions) and performance per model version (observed once outcomes are
recorded, else expected from the probabilities and marked as an estimate). Every number
is stored as a point of the time series (copilot/monitoring.py), with why a number is
missing (too few predictions) when it is.

A crossed threshold proposes, through ActionStore (nothing runs without a person's
approval), and cites the check and its numbers in the action's reason:

* drift: `share_drifted >= COPILOT_MONITOR_DRIFT_SHARE` at a site -> retrain on the
  card's default training sites plus that site;
* performance: an observed (never an estimated) AUC below `COPILOT_MONITOR_MIN_AUC` for
  the champion's version -> roll back when there is a previous champion, else retrain.

No second proposal while one for the same cause is pending. Each new proposal is sent to
the webhook (copilot/webhook.py) after the check is stored; its failure is recorded and
changes nothing else. One pass at a time across replicas (MonitorStore's lease).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from copilot.actions import ActionStore, UnknownAction
from copilot.conversations import ConversationStore
from copilot.monitoring import MonitorStore, Point
from copilot.settings import Settings
from copilot.webhook import FIRST_BACKOFF_SECONDS, RETRIES, Delivery, deliver
from tools.context import ToolContext
from tools.errors import InvalidToolInput, ToolError
from tools.lifecycle import RollbackInput, rollback_preview
from tools.monitoring import ALL_SITES, DRIFT_METRICS, PERFORMANCE_METRICS
from tools.service import call

logger = logging.getLogger(__name__)

REQUESTED_BY = "monitor"
LEASE_SECONDS = 600.0  # a pass that runs longer than this may be joined by another
RETRY_FAILED_SECONDS = 30.0  # a failed pass (e.g. the service still starting) runs again soon


@dataclass(frozen=True)
class Thresholds:
    drift_share: float
    min_auc: float
    min_labels: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            drift_share=settings.copilot_monitor_drift_share,
            min_auc=settings.copilot_monitor_min_auc,
            min_labels=settings.copilot_monitor_min_labels,
            window=timedelta(hours=settings.copilot_monitor_window_hours),
        )


@dataclass(frozen=True)
class Webhook:
    url: str | None
    secret: str | None
    retries: int = RETRIES
    first_backoff: float = FIRST_BACKOFF_SECONDS


@dataclass
class Alert:
    cause: str
    tool: str
    arguments: dict[str, Any]
    numbers: dict[str, Any]


@dataclass
class PassResult:
    """What one pass did (None from `run_pass` when another replica held the lease)."""

    check_id: str
    checked_at: datetime
    points: list[Point] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)  # action ids
    already_pending: list[str] = field(default_factory=list)  # causes
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass(frozen=True)
class Monitor:
    """Everything a pass needs, passed in explicitly (the CLI builds it from Deps)."""

    store: MonitorStore
    actions: ActionStore
    conversations: ConversationStore
    tools: ToolContext
    thresholds: Thresholds
    webhook: Webhook
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def run_pass(self) -> PassResult | None:
        """One check, or None when another process is running one."""
        holder = await anyio.to_thread.run_sync(self.store.take_lease, LEASE_SECONDS)
        if holder is None:
            return None
        try:
            return await self._check()
        finally:
            await anyio.to_thread.run_sync(self.store.release_lease, holder)

    async def _check(self) -> PassResult:
        checked_at = self.clock()
        result = PassResult(uuid.uuid4().hex[:16], checked_at)
        await anyio.to_thread.run_sync(self.store.start_check, result.check_id, checked_at)
        try:
            champion = await self._champion_version()
            sites = [ALL_SITES, *await anyio.to_thread.run_sync(self.tools.card.sites)]
            measured = await self._measure_sites(sites, checked_at, champion)
            alerts: list[Alert] = []
            for site in sites:  # in a stable order, whichever answered first
                points, found = measured[site]
                result.points += points
                alerts += found
            await anyio.to_thread.run_sync(
                self.store.record_points, result.check_id, checked_at, result.points
            )
            new = await self._propose(result, alerts)
        except Exception as error:
            await anyio.to_thread.run_sync(
                self.store.finish_check,
                result.check_id,
                "failed",
                {"error": f"{type(error).__name__}: {error}"[:500]},
            )
            raise
        summary = {
            "points": len(result.points),
            "proposed": result.proposed,
            "already_pending": result.already_pending,
        }
        await anyio.to_thread.run_sync(self.store.finish_check, result.check_id, "done", summary)
        for alert_id, payload in new:  # the check is stored: a webhook cannot undo it
            result.deliveries.append(await self._notify(alert_id, payload))
        return result

    # ---- measuring ------------------------------------------------------------------------

    async def _measure_sites(
        self, sites: list[str], checked_at: datetime, champion: str | None
    ) -> dict[str, tuple[list[Point], list[Alert]]]:
        """Every site's drift and performance, asked of the model service at once; the first
        failure (e.g. the service is down) is raised after all have answered."""
        measured: dict[str, tuple[list[Point], list[Alert]]] = {}
        failures: list[ToolError] = []

        async def measure(site: str) -> None:
            try:
                drift_points, drift_alert = await self._drift(site, checked_at)
                performance_points, performance_alert = await self._performance(
                    site, checked_at, champion
                )
            except ToolError as error:
                failures.append(error)
                return
            found = [a for a in (drift_alert, performance_alert) if a is not None]
            measured[site] = (drift_points + performance_points, found)

        async with anyio.create_task_group() as group:
            for site in sites:
                group.start_soon(measure, site)
        if failures:
            raise failures[0]
        return measured

    def _window(self, checked_at: datetime) -> dict[str, str]:
        return {"since": (checked_at - self.thresholds.window).isoformat()}

    async def _champion_version(self) -> str | None:
        try:
            info = await call(self.tools, "GET", "/v1/model")
        except ToolError:
            return None
        return str(info["version"])

    async def _drift(self, site: str, checked_at: datetime) -> tuple[list[Point], Alert | None]:
        body: dict[str, Any] = {**self._window(checked_at), "report": False}  # no HTML
        if site != ALL_SITES:
            body["site"] = site
        try:
            report = await call(self.tools, "POST", "/v1/drift", body)
        except InvalidToolInput as error:  # too few predictions in the window
            return [Point(site, metric, None, note=str(error)) for metric in DRIFT_METRICS], None
        rows = int(report["current"]["rows"])
        tested = [f for f in report["features"] if f["tested"]]
        drifted = [f["feature"] for f in tested if f["drifted"]]
        share = float(report["share_drifted"])
        points = [
            Point(site, "share_drifted", share, rows=rows),
            Point(site, "features_drifted", float(len(drifted)), rows=rows),
            Point(site, "data_quality_findings", float(len(report["data_quality"])), rows=rows),
        ]
        if share < self.thresholds.drift_share:
            return points, None
        card = self.tools.card
        sites = list(card.default_training_sites)
        if site != ALL_SITES and site not in sites:
            sites.append(site)
        where = "all sites" if site == ALL_SITES else site
        numbers = {
            "site": site,
            "share_drifted": share,
            "features_drifted": len(drifted),
            "features_tested": len(tested),
            "drifted": drifted,
            "rows": rows,
            "threshold": self.thresholds.drift_share,
        }
        reason = (
            f"drift at {where}: {len(drifted)} of {len(tested)} features drifted "
            f"({share:.2f} >= threshold {self.thresholds.drift_share:g}) in {rows} predictions"
        )
        return points, Alert(
            f"drift:{site}",
            "retrain_model",
            {"sites": sites or card.sites(), "reason": reason},
            numbers,
        )

    async def _performance(
        self, site: str, checked_at: datetime, champion: str | None
    ) -> tuple[list[Point], Alert | None]:
        body: dict[str, Any] = {
            **self._window(checked_at),
            "min_labels": self.thresholds.min_labels,
        }
        if site != ALL_SITES:
            body["site"] = site
        report = await call(self.tools, "POST", "/v1/performance", body)
        points: list[Point] = []
        alert = None
        if not report["versions"]:
            note = "no predictions logged in the window"
            return [Point(site, metric, None, note=note) for metric in PERFORMANCE_METRICS], None
        for version in report["versions"]:
            metrics = version["metrics"]
            for metric in PERFORMANCE_METRICS:
                value = metrics[metric]
                points.append(
                    Point(
                        site,
                        metric,
                        value,
                        model_version=version["model_version"],
                        estimated=version["estimated"],
                        labels=version["labels"],
                        rows=version["predictions"],
                        note=None if value is not None else "not defined for these rows",
                    )
                )
            auc = metrics["auc"]
            if (
                site == ALL_SITES
                and version["model_version"] == champion
                and not version["estimated"]
                and auc is not None
                and auc < self.thresholds.min_auc
            ):
                alert = await self._performance_alert(version, auc)
        return points, alert

    async def _performance_alert(self, version: dict[str, Any], auc: float) -> Alert:
        numbers = {
            "model_version": version["model_version"],
            "auc": auc,
            "labels": version["labels"],
            "predictions": version["predictions"],
            "threshold": self.thresholds.min_auc,
        }
        reason = (
            f"observed AUC {auc:.3f} of version {version['model_version']} on "
            f"{version['labels']} labelled predictions is below {self.thresholds.min_auc:g}"
        )
        preview = await anyio.to_thread.run_sync(
            lambda: rollback_preview(self.tools, RollbackInput(reason=reason[:500]))
        )
        cause = f"performance:{version['model_version']}"
        if preview is not None and not preview.will_fail:
            return Alert(cause, "rollback_model", {"reason": reason}, numbers)
        sites = list(self.tools.card.default_training_sites) or self.tools.card.sites()
        return Alert(cause, "retrain_model", {"sites": sites, "reason": reason}, numbers)

    # ---- proposing and notifying ----------------------------------------------------------

    def _pending_for(self, cause: str) -> str | None:
        for action_id in self.store.action_ids_for(cause):
            try:
                if self.actions.get(action_id).status == "pending":
                    return action_id
            except UnknownAction:
                continue
        return None

    async def _propose(
        self, result: PassResult, alerts: list[Alert]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Proposes each alert's action unless one is pending for its cause; returns the
        webhook payloads of the new proposals."""
        new: list[tuple[int, dict[str, Any]]] = []
        conversation_id: str | None = None
        for alert in alerts:
            reason = f"monitor check {result.check_id}: {alert.arguments['reason']}"[:500]
            arguments = {**alert.arguments, "reason": reason}
            pending = await anyio.to_thread.run_sync(self._pending_for, alert.cause)
            if pending is not None:
                result.already_pending.append(alert.cause)
                await anyio.to_thread.run_sync(
                    self.store.add_alert, result.check_id, alert.cause, reason, pending, False
                )
                continue
            if conversation_id is None:  # where the proposals of this check are decided
                conversation = await anyio.to_thread.run_sync(
                    self.conversations.create, REQUESTED_BY
                )
                conversation_id = conversation.id
            action = await anyio.to_thread.run_sync(
                self.actions.propose, conversation_id, alert.tool, arguments, REQUESTED_BY
            )
            result.proposed.append(action.id)
            alert_id = await anyio.to_thread.run_sync(
                self.store.add_alert, result.check_id, alert.cause, reason, action.id, True
            )
            payload = {
                "event": "monitor_alert",
                "check_id": result.check_id,
                "checked_at": result.checked_at.isoformat(),
                "cause": alert.cause,
                "numbers": alert.numbers,
                "action": {
                    "id": action.id,
                    "tool": action.tool,
                    "arguments": action.arguments,
                    "summary": action.summary,
                    "status": action.status,
                    "expires_at": action.expires_at.isoformat(),
                },
                "text": f"{reason}. Proposed: {action.summary} (action {action.id}, "
                "waiting for approval)",
            }
            new.append((alert_id, payload))
        return new

    async def _notify(self, alert_id: int, payload: dict[str, Any]) -> Delivery:
        if not self.webhook.url:
            return Delivery(False, 0, "COPILOT_WEBHOOK_URL is not set")
        try:
            delivery = await deliver(
                self.webhook.url,
                self.webhook.secret,
                payload,
                retries=self.webhook.retries,
                first_backoff=self.webhook.first_backoff,
            )
        except Exception as error:  # never let a notification break the monitor
            logger.exception("webhook delivery failed")
            delivery = Delivery(False, 0, f"{type(error).__name__}: {error}")
        status = "delivered" if delivery.delivered else "failed"
        detail = f"{delivery.detail} ({delivery.attempts} attempts)"
        await anyio.to_thread.run_sync(self.store.record_delivery, alert_id, status, detail)
        return delivery


async def run_forever(monitor: Monitor, interval_seconds: float) -> None:
    """A pass every `interval_seconds` until cancelled; a failed pass is logged and tried
    again within RETRY_FAILED_SECONDS."""
    while True:
        started = anyio.current_time()
        wait = interval_seconds
        try:
            result = await monitor.run_pass()
        except Exception:
            wait = min(interval_seconds, RETRY_FAILED_SECONDS)
            logger.exception("monitor pass failed; the next one in %.0f s", wait)
        else:
            if result is None:
                logger.info("monitor: another process is running a check; skipped")
            else:
                logger.info(
                    "monitor check %s: %d points, proposed %s",
                    result.check_id,
                    len(result.points),
                    result.proposed or "nothing",
                )
        await anyio.sleep(max(0.0, wait - (anyio.current_time() - started)))
