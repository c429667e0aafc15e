"""The prediction log: every served prediction with its inputs, in the copilot database.

A request's predictions are committed before it is answered, so a 200 survives a crash
(kill -9). Group commit keeps that cheap: one writer thread commits everything appended
since its last commit in one transaction, so concurrent requests share a commit; `append()`
returns a future that completes when the batch is committed. A failed write is retried
with backoff, never dropped; until it lands, `get()` still finds those predictions in
memory. Rows waiting for the database are bounded: past the bound `append()` refuses
(`PredictionLogFull`, answered 429) instead of growing the queue.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import JSON, Column, DateTime, Dialect, Engine, Index, Table, insert, select
from sqlmodel import Field, SQLModel

from model_service.admission import Busy
from model_service.database import add_missing_columns
from model_service.errors import ModelServiceError
from model_service.outcomes import OUTCOMES

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_SECONDS = 10.0
INSERT_BATCH_ROWS = 2000
GROUP_COMMIT_ROWS = 10_000  # one commit takes whole batches up to this many rows (at least one)
MAX_QUEUED_ROWS = 50_000
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0


class PredictionLogUnavailable(ModelServiceError, RuntimeError):
    """The database did not take the log's writes in time."""


class PredictionLogFull(Busy):
    """Too many rows wait for the database; the request is refused rather than queued."""


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
    site: str | None = Field(default=None, max_length=100)  # where it was asked from


PREDICTIONS: Table = PredictionRecord.__table__  # type: ignore[attr-defined]
# The newest predictions in a window, of all sites or one (the drift check, performance and
# the monitor ask this way), read in order from an index instead of sorted each time
WINDOW = Index("ix_prediction_log_window", PREDICTIONS.c.dataset, PREDICTIONS.c.created_at)
BY_SITE = Index(
    "ix_prediction_log_site_window",
    PREDICTIONS.c.dataset,
    PREDICTIONS.c.site,
    PREDICTIONS.c.created_at,
)


class Scored(NamedTuple):
    """A logged prediction as performance needs it."""

    prediction_id: str
    model_version: str
    probability: float
    threshold: float
    observed: int | None  # the outcome's label, once recorded


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
    site: str | None = None
    sequence: int = field(default=0, compare=False)
    committed: Future[None] = field(default_factory=Future, compare=False, repr=False)

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
            "site": self.site,
        }


class PredictionLog:
    """Append-only log with a group-committing writer thread; safe to share between threads."""

    def __init__(self, engine: Engine, max_queued_rows: int = MAX_QUEUED_ROWS) -> None:
        self.engine = engine
        self.max_queued_rows = max_queued_rows
        # the outcomes table too: `scored` joins it (OutcomeLog writes it)
        SQLModel.metadata.create_all(engine, tables=[PREDICTIONS, OUTCOMES])
        for index in (WINDOW, BY_SITE):  # a log made before these indexes had none
            index.create(engine, checkfirst=True)
        add_missing_columns(engine, PREDICTIONS)
        self._queue: deque[PredictionBatch] = deque()
        self._pending: dict[str, tuple[PredictionBatch, int]] = {}
        self.queued_rows = 0
        self._appended = 0
        self._written = 0
        self._retry_in = 0.0
        self._closed = False
        self._changed = threading.Condition()
        self._insert = _Insert(engine.dialect)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def check_room(self, rows: int) -> None:
        """Raises `PredictionLogFull` when `rows` more would not fit (checked before scoring)."""
        with self._changed:
            self._check_room(rows)

    def append(self, batch: PredictionBatch) -> Future[None]:
        """Queues `batch` for the next commit; the future completes once it is committed (it
        never fails: a failed write is retried). Raises `PredictionLogFull` when full."""
        with self._changed:
            self._check_room(len(batch.ids))
            self._appended += 1
            batch.sequence = self._appended
            self._queue.append(batch)
            self.queued_rows += len(batch.ids)
            for index, prediction_id in enumerate(batch.ids):
                self._pending[prediction_id] = (batch, index)
            self._changed.notify_all()
        return batch.committed

    def _check_room(self, rows: int) -> None:
        if self.queued_rows and self.queued_rows + rows > self.max_queued_rows:
            retry_after = max(1, math.ceil(self._retry_in))  # the writer's backoff, if failing
            raise PredictionLogFull(
                f"prediction log: {self.queued_rows} rows wait to be written to the database "
                f"and {rows} more would pass the limit of {self.max_queued_rows}; retry in "
                f"{retry_after} s",
                retry_after,
            )

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

    def since(
        self, dataset: str, start: datetime, limit: int, site: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Inputs of the newest `limit` predictions for `dataset` made at or after `start`
        (from `site` only, when given; oldest first), and whether older ones were left out."""
        self.flush()  # answered predictions are in already; this waits for the rest
        query = select(PREDICTIONS.c.features).where(
            PREDICTIONS.c.dataset == dataset, PREDICTIONS.c.created_at >= start
        )
        if site is not None:
            query = query.where(PREDICTIONS.c.site == site)
        with self.engine.connect() as connection:
            rows = (
                connection.execute(query.order_by(PREDICTIONS.c.created_at.desc()).limit(limit + 1))
                .scalars()
                .all()
            )
        return list(reversed(rows[:limit])), len(rows) > limit

    def scored(
        self, dataset: str, start: datetime, end: datetime, site: str | None, limit: int
    ) -> tuple[list[Scored], bool]:
        """Id, model version, probability, threshold and observed label (None until an
        outcome is recorded) of the newest `limit` predictions for `dataset` made in
        [start, end) (from `site` only, when given), and whether older ones were left out.
        One query: the outcomes are joined in the database."""
        self.flush()
        columns = (
            PREDICTIONS.c.prediction_id,
            PREDICTIONS.c.model_version,
            PREDICTIONS.c.probability,
            PREDICTIONS.c.threshold,
            OUTCOMES.c.label,
        )
        query = (
            select(*columns)
            .select_from(
                PREDICTIONS.outerjoin(
                    OUTCOMES, OUTCOMES.c.prediction_id == PREDICTIONS.c.prediction_id
                )
            )
            .where(
                PREDICTIONS.c.dataset == dataset,
                PREDICTIONS.c.created_at >= start,
                PREDICTIONS.c.created_at < end,
            )
        )
        if site is not None:
            query = query.where(PREDICTIONS.c.site == site)
        with self.engine.connect() as connection:
            rows = connection.execute(
                query.order_by(PREDICTIONS.c.created_at.desc()).limit(limit + 1)
            ).all()
        found = [Scored(*row) for row in rows[:limit]]
        return found, len(rows) > limit

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Returns once everything appended before the call is in the database."""
        with self._changed:
            target = self._appended
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

    def _next_group(self) -> list[PredictionBatch]:
        group: list[PredictionBatch] = []
        rows = 0
        for batch in self._queue:
            if group and rows + len(batch.ids) > GROUP_COMMIT_ROWS:
                break
            group.append(batch)
            rows += len(batch.ids)
        return group

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closed)
                if self._closed and not self._queue:
                    return
                batches = self._next_group()
            try:
                self._write(batches)
            except Exception:  # the writer must outlive any failed write: retried, never dropped
                retry_in = max(self._retry_in * 2, FIRST_RETRY_SECONDS)
                self._retry_in = min(retry_in, MAX_RETRY_SECONDS)
                logger.exception("prediction log write failed; retrying in %.1f s", self._retry_in)
                time.sleep(self._retry_in)
                continue
            self._retry_in = 0.0
            with self._changed:
                for batch in batches:
                    self._queue.popleft()
                    self.queued_rows -= len(batch.ids)
                    for prediction_id in batch.ids:
                        self._pending.pop(prediction_id, None)
                self._written = batches[-1].sequence
                self._changed.notify_all()
            for batch in batches:
                with contextlib.suppress(InvalidStateError):  # a caller cancelled its wait
                    batch.committed.set_result(None)

    def _write(self, batches: list[PredictionBatch]) -> None:
        rows = self._insert.parameters(batches)
        with self.engine.begin() as connection:
            for start in range(0, len(rows), INSERT_BATCH_ROWS):
                chunk = rows[start : start + INSERT_BATCH_ROWS]
                connection.exec_driver_sql(self._insert.sql, chunk)


_ROW_ORDER = (
    "prediction_id",
    "created_at",
    "dataset",
    "model_name",
    "model_version",
    "probability",
    "label",
    "threshold",
    "features",
    "site",
)


class _Insert:
    """The log's INSERT compiled once for the engine's dialect, with each column's own
    converter (SQLAlchemy's bind processor): a batch's shared values are converted once,
    and a 10,000-row commit skips SQLAlchemy's per-row parameter handling."""

    def __init__(self, dialect: Dialect) -> None:
        compiled = insert(PREDICTIONS).compile(dialect=dialect)
        self.sql = str(compiled)
        self.positions = (
            [_ROW_ORDER.index(name) for name in compiled.positiontup or ()]
            if compiled.positional
            else None
        )
        self.convert = {
            column.name: column.type.dialect_impl(dialect).bind_processor(dialect) or _unchanged
            for column in PREDICTIONS.columns
        }

    def parameters(self, batches: list[PredictionBatch]) -> list[Any]:
        """Per row: a tuple in the statement's order (positional drivers) or a dict."""
        convert = self.convert
        probability, features = convert["probability"], convert["features"]
        rows: list[tuple[Any, ...]] = []
        for batch in batches:
            shared = (
                convert["created_at"](batch.created_at),
                convert["dataset"](batch.dataset),
                convert["model_name"](batch.model_name),
                convert["model_version"](batch.model_version),
            )
            threshold = convert["threshold"](batch.threshold)
            site = convert["site"](batch.site)
            rows.extend(
                (prediction_id, *shared, probability(p), label, threshold, features(record), site)
                for prediction_id, p, label, record in zip(
                    batch.ids, batch.probabilities, batch.labels, batch.records, strict=True
                )
            )
        if self.positions is None:
            return [dict(zip(_ROW_ORDER, row, strict=True)) for row in rows]
        if self.positions != list(range(len(_ROW_ORDER))):
            return [tuple(row[i] for i in self.positions) for row in rows]
        return rows


def _unchanged(value: Any) -> Any:
    return value


def now_utc() -> datetime:
    return datetime.now(UTC)
