"""`copilot monitor`: the monitor built from a process's dependencies, and one pass shown."""

from __future__ import annotations

from typing import Any

from copilot.deps import Deps
from copilot.monitor import Monitor, PassResult, Thresholds, Webhook


def build_monitor(deps: Deps) -> Monitor:
    settings = deps.settings
    secret = settings.copilot_webhook_secret
    webhook = Webhook(settings.copilot_webhook_url, secret.get_secret_value() if secret else None)
    return Monitor(
        store=deps.monitoring,
        actions=deps.actions,
        conversations=deps.conversations,
        tools=deps.tools,
        thresholds=Thresholds.from_settings(settings),
        webhook=webhook,
        clock=deps.clock,
    )


def pass_summary(result: PassResult) -> dict[str, Any]:
    """One pass as JSON: its id, time, points, proposals and webhook deliveries."""
    return {
        "check_id": result.check_id,
        "checked_at": result.checked_at.isoformat(),
        "points": [
            {
                "site": p.site,
                "metric": p.metric,
                "model_version": p.model_version,
                "value": p.value,
                "estimated": p.estimated,
                "labels": p.labels,
                "rows": p.rows,
                "note": p.note,
            }
            for p in result.points
        ],
        "proposed": result.proposed,
        "already_pending": result.already_pending,
        "deliveries": [
            {"delivered": d.delivered, "attempts": d.attempts, "detail": d.detail}
            for d in result.deliveries
        ],
    }
