"""The prediction log: every served prediction with its inputs, in the copilot database.

Writes go through a background thread in batches so that logging never sits on the
request path; `get` and `since` flush first, so a caller always reads its own writes.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Table, insert, select
from sqlmodel import Field, SQLModel

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.2
FLUSH_BATCH_ROWS = 2000


class PredictionRecord(SQLModel, table=True):
    """One prediction as served (patient inputs included: this table is clinical data)."""

    __tablename__ = "prediction_log"

    prediction_id: str = Field(primary_key=True, max_length=32)
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), index=True, nullable=False)
    )
    dataset: str = Field(index=True, max_length=64)
    model_name: str = Field(max_length=128)
    model_version: str = Field(max_length=32)
    probability: float
    label: int
    threshold: float
    features: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


PREDICTIONS: Table = PredictionRecord.__table__  # type: ignore[attr-defined]


class PredictionLog:
    """Append-only log with a write-behind queue; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[PREDICTIONS])
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                self._pending[row["prediction_id"]] = row
        for row in rows:
            self._queue.put(row)

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._pending.get(prediction_id)
        if row is not None:
            return row
        with self.engine.connect() as connection:
            found = (
                connection.execute(
                    select(PREDICTIONS).where(PREDICTIONS.c.prediction_id == prediction_id)
                )
                .mappings()
                .first()
            )
        return dict(found) if found is not None else None

    def since(self, dataset: str, start: datetime, limit: int) -> list[dict[str, Any]]:
        """Inputs of predictions for `dataset` made at or after `start`, oldest first."""
        self.flush()
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(PREDICTIONS.c.features)
                    .where(
                        PREDICTIONS.c.dataset == dataset, PREDICTIONS.c.created_at >= _utc(start)
                    )
                    .order_by(PREDICTIONS.c.created_at)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        return list(rows)

    def flush(self) -> None:
        """Returns once every row appended so far is in the database."""
        self._write(self._drain())
        self._queue.join()  # rows the writer thread already took

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.flush()

    def _drain(self) -> list[dict[str, Any] | None]:
        items: list[dict[str, Any] | None] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write(self, items: list[dict[str, Any] | None]) -> None:
        rows = [row for row in items if row is not None]
        try:
            if rows:
                with self.engine.begin() as connection:
                    for start in range(0, len(rows), FLUSH_BATCH_ROWS):
                        batch = rows[start : start + FLUSH_BATCH_ROWS]
                        connection.execute(insert(PREDICTIONS), batch)
                with self._lock:
                    for row in rows:
                        self._pending.pop(row["prediction_id"], None)
        finally:
            for _ in items:
                self._queue.task_done()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=FLUSH_INTERVAL_SECONDS)
            except queue.Empty:
                continue
            items = [first, *self._drain()]
            try:
                self._write(items)
            except Exception:
                logger.exception("prediction log write failed; %d rows kept in memory", len(items))
            if None in items:
                return


def now_utc() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    """A time without a zone is read as UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
