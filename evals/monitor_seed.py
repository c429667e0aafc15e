"""The monitored world of the monitoring suite: a copilot database whose monitor history was
made for real.

A model service of its own (a copy of the `trained` registry: v1 @champion) is asked for
risks of real patients with the asking site, the outcomes of some of them are recorded,
and `copilot monitor` passes (copilot.monitor.Monitor, as the CLI runs it) store drift,
data quality and performance per site in a template copilot database:

* pass 1: the first half of each seeded site's rows, outcomes for every other one of them;
* pass 2: the second half too, outcomes for every other one of those as well.

Switzerland is never asked: its series hold the monitor's notes, not numbers. Each case
of the suite starts from a copy of the template (evals.environment).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from copilot.deps import build_deps
from copilot.monitor import Monitor, Thresholds, Webhook
from copilot.settings import Settings
from model_service.cards import DatasetCard
from model_service.database import make_engine

SEEDED_SITES = ("Cleveland", "Hungary", "VA Long Beach")  # Switzerland: no predictions
PASSES = 2
LABELLED_EVERY = 2  # an outcome is recorded for every other prediction


class SeedFailed(RuntimeError):
    """The model service refused a seeding request."""


def site_patients(card: DatasetCard, site: str) -> tuple[list[dict[str, Any]], list[int]]:
    """A site's real patients as API records (gaps as null) and their observed labels."""
    frame = card.select_sites(card.load_raw(), [site])
    integer = {f.name for f in card.features if f.integer}
    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for name in card.feature_names:
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                record[name] = None
            else:
                record[name] = int(value) if name in integer else value
        records.append(record)
    return records, card.target(frame).tolist()


async def _checked(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise SeedFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


async def _log_half(client: httpx.AsyncClient, card: DatasetCard, half: int) -> None:
    """Predictions of one half of each seeded site's rows, asked from that site, and the
    outcomes of every other one."""
    for site in SEEDED_SITES:
        patients, labels = site_patients(card, site)
        middle = len(patients) // 2
        chosen = slice(0, middle) if half == 0 else slice(middle, None)
        body = {"patients": patients[chosen]}
        answer = await _checked(
            await client.post("/v1/predict/batch", params={"site": site}, json=body),
            f"predictions at {site}",
        )
        for index, prediction in enumerate(answer["predictions"]):
            if index % LABELLED_EVERY:
                continue
            label = labels[chosen][index]
            outcome = {"prediction_id": prediction["prediction_id"], "label": label}
            await _checked(await client.post("/v1/outcomes", json=outcome), f"outcome at {site}")


async def seed_history(
    settings: Settings,
    card: DatasetCard,
    service_url: str,
    database: Path,
    audit_key: bytes,
    progress: Callable[[str], None],
) -> None:
    """Log predictions and outcomes at `service_url` (a service of the suite's own) and store
    PASSES monitor checks in the copilot database `database`; a failure leaves no file."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        async with httpx.AsyncClient(base_url=service_url, timeout=120) as client:
            deps = build_deps(
                settings.model_copy(update={"copilot_database_url": f"sqlite:///{database}"}),
                engine,
                client,
                audit_key=audit_key,
            )
            monitor = Monitor(
                store=deps.monitoring,
                actions=deps.actions,
                conversations=deps.conversations,
                tools=deps.tools,
                thresholds=Thresholds.from_settings(deps.settings),
                webhook=Webhook(None, None),
                clock=deps.clock,
            )
            for half in range(PASSES):
                progress(f"monitoring: predictions and outcomes, part {half + 1} of {PASSES}")
                await _log_half(client, card, half)
                progress(f"monitoring: monitor pass {half + 1} of {PASSES}")
                if await monitor.run_pass() is None:
                    raise SeedFailed("another monitor pass held the lease")
    except BaseException:
        engine.dispose()
        database.unlink(missing_ok=True)
        raise
    engine.dispose()
