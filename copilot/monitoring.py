"""The monitor's records in the copilot database, shared by every replica:

* `monitor_check`: one row per pass (`copilot monitor`): when it ran, its status, and a
  summary of what it found.
* `monitor_point`: the time series: one number per check, site (`all`, ALL_SITES, for every
  site together), metric and model version (performance metrics only), with whether it is an
  estimate, how many labels and rows it rests on, or why there is no value.
* `monitor_alert`: a threshold a check crossed, the pending action it proposed (or the
  one already pending for the same cause), and how the webhook delivery went.
* `monitor_lease`: one pass at a time across replicas. Taking it is an INSERT (the primary
  key refuses a second taker) or an UPDATE of an expired lease, like a turn's lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

LEASE_NAME = "monitor"
HISTORY_LIMIT = 5000  # points one history read returns (the newest)


class MonitorCheckRecord(SQLModel, table=True):
    __tablename__ = "monitor_check"

    id: str = Field(primary_key=True, max_length=32)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    status: str = Field(max_length=16)  # running, done, failed
    summary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class MonitorPointRecord(SQLModel, table=True):
    __tablename__ = "monitor_point"

    id: int | None = Field(default=None, primary_key=True)
    check_id: str = Field(index=True, max_length=32)
    checked_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), index=True, nullable=False)
    )
    site: str = Field(index=True, max_length=100)
    metric: str = Field(max_length=32)
    model_version: str | None = Field(default=None, max_length=32)
    value: float | None = None
    estimated: bool = False
    labels: int = 0
    rows: int = 0
    note: str | None = Field(default=None, max_length=500)  # why there is no value


class MonitorAlertRecord(SQLModel, table=True):
    __tablename__ = "monitor_alert"

    id: int | None = Field(default=None, primary_key=True)
    check_id: str = Field(index=True, max_length=32)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    cause: str = Field(index=True, max_length=200)
    reason: str = Field(max_length=2000)
    action_id: str | None = Field(default=None, max_length=32)
    proposed: bool = False  # False: an action for this cause was already pending
    webhook: str = Field(default="not_configured", max_length=16)  # delivered, failed
    webhook_detail: str | None = Field(default=None, max_length=500)


class MonitorLeaseRecord(SQLModel, table=True):
    __tablename__ = "monitor_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=32)
    lease_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


CHECKS: Table = MonitorCheckRecord.__table__  # type: ignore[attr-defined]
POINTS: Table = MonitorPointRecord.__table__  # type: ignore[attr-defined]
ALERTS: Table = MonitorAlertRecord.__table__  # type: ignore[attr-defined]
LEASES: Table = MonitorLeaseRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Point:
    """One number of the series as a check measured it."""

    site: str
    metric: str
    value: float | None
    model_version: str | None = None
    estimated: bool = False
    labels: int = 0
    rows: int = 0
    note: str | None = None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class MonitorStore:
    """Checks, their time series, alerts and the pass lease (synchronous)."""

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self.clock = clock
        SQLModel.metadata.create_all(engine, tables=[CHECKS, POINTS, ALERTS, LEASES])

    # ---- one pass at a time ---------------------------------------------------------------

    def take_lease(self, seconds: float) -> str | None:
        """A holder id when this process may run a pass now, None while another holds it."""
        holder = uuid.uuid4().hex
        now = self.clock()
        until = now + timedelta(seconds=seconds)
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(LEASES).values(name=LEASE_NAME, holder=holder, lease_until=until)
                )
            return holder
        except IntegrityError:
            pass
        with self.engine.begin() as connection:
            taken = connection.execute(
                update(LEASES)
                .where(LEASES.c.name == LEASE_NAME, LEASES.c.lease_until < now)
                .values(holder=holder, lease_until=until)
            ).rowcount
        return holder if taken == 1 else None

    def release_lease(self, holder: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(LEASES).where(LEASES.c.name == LEASE_NAME, LEASES.c.holder == holder)
            )

    # ---- writing a check ------------------------------------------------------------------

    def start_check(self, check_id: str, started_at: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(CHECKS).values(id=check_id, started_at=started_at, status="running")
            )

    def record_points(self, check_id: str, checked_at: datetime, points: list[Point]) -> None:
        """All of a check's numbers in one transaction (none if it fails)."""
        if not points:
            return
        rows = [
            {
                "check_id": check_id,
                "checked_at": checked_at,
                "site": p.site,
                "metric": p.metric,
                "model_version": p.model_version,
                "value": p.value,
                "estimated": p.estimated,
                "labels": p.labels,
                "rows": p.rows,
                "note": p.note[:500] if p.note else None,
            }
            for p in points
        ]
        with self.engine.begin() as connection:
            connection.execute(insert(POINTS), rows)

    def finish_check(self, check_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(CHECKS)
                .where(CHECKS.c.id == check_id)
                .values(finished_at=self.clock(), status=status, summary=summary)
            )

    def add_alert(
        self,
        check_id: str,
        cause: str,
        reason: str,
        action_id: str | None,
        proposed: bool,
    ) -> int:
        with self.engine.begin() as connection:
            inserted = connection.execute(
                insert(ALERTS).values(
                    check_id=check_id,
                    created_at=self.clock(),
                    cause=cause,
                    reason=reason[:2000],
                    action_id=action_id,
                    proposed=proposed,
                )
            )
            key = inserted.inserted_primary_key
        return int(key[0]) if key else 0

    def record_delivery(self, alert_id: int, webhook: str, detail: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(ALERTS)
                .where(ALERTS.c.id == alert_id)
                .values(webhook=webhook, webhook_detail=detail[:500] if detail else None)
            )

    # ---- reading --------------------------------------------------------------------------

    def action_ids_for(self, cause: str) -> list[str]:
        """The actions proposed for a cause, newest first."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(ALERTS.c.action_id)
                    .where(ALERTS.c.cause == cause, ALERTS.c.action_id.is_not(None))
                    .order_by(ALERTS.c.id.desc())
                ).scalars()
            )

    def check(self, check_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(CHECKS).where(CHECKS.c.id == check_id)).mappings()
            found = row.first()
        return dict(found) if found is not None else None

    def alerts(self, check_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(ALERTS).where(ALERTS.c.check_id == check_id).order_by(ALERTS.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def history(
        self, site: str | None, metric: str | None, since: datetime
    ) -> list[dict[str, Any]]:
        """Points checked at or after `since` (one site, one metric, or all), oldest first;
        the newest HISTORY_LIMIT of them."""
        query = select(POINTS).where(POINTS.c.checked_at >= since)
        if site is not None:
            query = query.where(POINTS.c.site == site)
        if metric is not None:
            query = query.where(POINTS.c.metric == metric)
        query = query.order_by(POINTS.c.checked_at.desc(), POINTS.c.id.desc()).limit(HISTORY_LIMIT)
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["checked_at"] = _aware(row["checked_at"])
            row.pop("id", None)
        return list(reversed(rows))
