"""The prediction log: every served prediction with its inputs, in the copilot database.

Writes go through a background thread so that logging never sits on the request path.
Each appended batch gets a sequence number; `flush()` waits until everything appended
before it is committed (not for later traffic). A failed write is retried with backoff,
never dropped; until it lands, `get()` still finds those predictions in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Table, insert, select
from sqlmodel import Field, SQLModel

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.2
FLUSH_TIMEOUT_SECONDS = 10.0
INSERT_BATCH_ROWS = 2000
MAX_RETRY_SECONDS = 5.0


class PredictionLogUnavailable(RuntimeError):
    """The database did not take the log's writes in time."""


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


@dataclass
class PredictionBatch:
    """Predictions served together by one model version (turned into rows by the writer)."""

    ids: list[str]
    created_at: datetime
    dataset: str
    model_name: str
    model_version: str
    threshold: float
    probabilities: list[float]
    labels: list[int]
    records: list[dict[str, Any]]
    sequence: int = field(default=0, compare=False)

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(index) for index in range(len(self.ids))]

    def row(self, index: int) -> dict[str, Any]:
        return {
            "prediction_id": self.ids[index],
            "created_at": self.created_at,
            "dataset": self.dataset,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "probability": self.probabilities[index],
            "label": self.labels[index],
            "threshold": self.threshold,
            "features": dict(self.records[index]),
        }


class PredictionLog:
    """Append-only log with a write-behind thread; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[PREDICTIONS])
        self._queue: deque[PredictionBatch] = deque()
        self._pending: dict[str, tuple[PredictionBatch, int]] = {}
        self._appended = 0
        self._written = 0
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, batch: PredictionBatch) -> None:
        with self._changed:
            self._appended += 1
            batch.sequence = self._appended
            self._queue.append(batch)
            for index, prediction_id in enumerate(batch.ids):
                self._pending[prediction_id] = (batch, index)
            self._changed.notify_all()

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self._changed:
            pending = self._pending.get(prediction_id)
        if pending is not None:
            batch, index = pending
            return batch.row(index)
        with self.engine.connect() as connection:
            found = (
                connection.execute(
                    select(PREDICTIONS).where(PREDICTIONS.c.prediction_id == prediction_id)
                )
                .mappings()
                .first()
            )
        return dict(found) if found is not None else None

    def since(self, dataset: str, start: datetime, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Inputs of the newest `limit` predictions for `dataset` made at or after `start`
        (oldest first), and whether older ones were left out."""
        self.flush()
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(PREDICTIONS.c.features)
                    .where(PREDICTIONS.c.dataset == dataset, PREDICTIONS.c.created_at >= start)
                    .order_by(PREDICTIONS.c.created_at.desc())
                    .limit(limit + 1)
                )
                .scalars()
                .all()
            )
        return list(reversed(rows[:limit])), len(rows) > limit

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Returns once everything appended before the call is in the database."""
        with self._changed:
            target = self._appended
            self._changed.notify_all()
            if not self._changed.wait_for(lambda: self._written >= target, timeout):
                raise PredictionLogUnavailable(
                    f"the prediction log could not write to the database within {timeout:g} s"
                )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = FLUSH_INTERVAL_SECONDS
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closed, FLUSH_INTERVAL_SECONDS)
                if self._closed and not self._queue:
                    return
                batches = list(self._queue)
            if not batches:
                continue
            try:
                self._write(batches)
            except Exception:
                logger.exception("prediction log write failed; retrying in %.1f s", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
                continue
            backoff = FLUSH_INTERVAL_SECONDS
            with self._changed:
                for _ in batches:
                    self._queue.popleft()
                for batch in batches:
                    for prediction_id in batch.ids:
                        self._pending.pop(prediction_id, None)
                self._written = batches[-1].sequence
                self._changed.notify_all()

    def _write(self, batches: list[PredictionBatch]) -> None:
        rows = [row for batch in batches for row in batch.rows()]
        with self.engine.begin() as connection:
            for start in range(0, len(rows), INSERT_BATCH_ROWS):
                connection.execute(insert(PREDICTIONS), rows[start : start + INSERT_BATCH_ROWS])


def now_utc() -> datetime:
    return datetime.now(UTC)
