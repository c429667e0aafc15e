"""Observed outcomes of logged predictions (ground truth), in the copilot database.

`POST /v1/outcomes` records the label a clinician later observed for a prediction. One
label per prediction: the same label again is the same record (idempotent), a different
one is a conflict naming both. An outcome is answered only once committed; like the
prediction log, one writer thread commits everything submitted since its last commit in
one transaction (group commit), deciding each submission against what the database and
the earlier submissions of the group hold. A write that fails is retried with backoff; a
primary-key race with another replica is retried too, and then sees the other's row.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Table, select
from sqlmodel import Field, SQLModel

from model_service.errors import ModelServiceError

logger = logging.getLogger(__name__)

GROUP_OUTCOMES = 1000  # one commit decides at most this many submissions
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0


class OutcomeConflict(ModelServiceError):
    """The prediction already has a different observed label (answered 409)."""


class OutcomeRecord(SQLModel, table=True):
    """The label observed for one logged prediction."""

    __tablename__ = "prediction_outcome"

    prediction_id: str = Field(primary_key=True, max_length=32)
    label: int
    recorded_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), index=True, nullable=False)
    )


OUTCOMES: Table = OutcomeRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Outcome:
    prediction_id: str
    label: int
    recorded_at: datetime
    created: bool  # False: the same label was recorded before


@dataclass
class _Submission:
    prediction_id: str
    label: int
    recorded_at: datetime
    decided: Future[Outcome] = field(default_factory=Future, repr=False)


class OutcomeLog:
    """Outcomes with a group-committing writer thread; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[OUTCOMES])
        self._queue: deque[_Submission] = deque()
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="outcome-log", daemon=True)
        self._thread.start()

    def submit(self, prediction_id: str, label: int) -> Future[Outcome]:
        """Queues an outcome; the future gives the stored record once committed, or
        raises `OutcomeConflict` when the prediction has another label already."""
        submission = _Submission(prediction_id, label, datetime.now(UTC))
        with self._changed:
            self._queue.append(submission)
            self._changed.notify_all()
        return submission.decided

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        retry_in = 0.0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closed)
                if self._closed and not self._queue:
                    return
                group = list(self._queue)[:GROUP_OUTCOMES]
            try:
                decided = self._write(group)
            except Exception:  # retried, never dropped (a replica's race included)
                retry_in = min(max(retry_in * 2, FIRST_RETRY_SECONDS), MAX_RETRY_SECONDS)
                logger.exception("outcome write failed; retrying in %.1f s", retry_in)
                time.sleep(retry_in)
                continue
            retry_in = 0.0
            with self._changed:
                for _ in group:
                    self._queue.popleft()
            for submission, answer in zip(group, decided, strict=True):
                with contextlib.suppress(InvalidStateError):  # a caller stopped waiting
                    if isinstance(answer, Outcome):
                        submission.decided.set_result(answer)
                    else:
                        submission.decided.set_exception(answer)

    def _write(self, group: list[_Submission]) -> list[Outcome | OutcomeConflict]:
        ids = sorted({submission.prediction_id for submission in group})
        answers: list[Outcome | OutcomeConflict] = []
        with self.engine.begin() as connection:
            stored: dict[str, tuple[int, datetime]] = {
                row.prediction_id: (row.label, _aware(row.recorded_at))
                for row in connection.execute(
                    select(OUTCOMES).where(OUTCOMES.c.prediction_id.in_(ids))
                )
            }
            new_rows: list[dict[str, Any]] = []
            for submission in group:
                known = stored.get(submission.prediction_id)
                if known is None:
                    stored[submission.prediction_id] = (submission.label, submission.recorded_at)
                    new_rows.append(
                        {
                            "prediction_id": submission.prediction_id,
                            "label": submission.label,
                            "recorded_at": submission.recorded_at,
                        }
                    )
                    answers.append(
                        Outcome(
                            submission.prediction_id,
                            submission.label,
                            submission.recorded_at,
                            True,
                        )
                    )
                elif known[0] == submission.label:
                    answers.append(Outcome(submission.prediction_id, known[0], known[1], False))
                else:
                    answers.append(
                        OutcomeConflict(
                            f"prediction {submission.prediction_id!r} already has the observed "
                            f"label {known[0]} (recorded {known[1].isoformat()}); refusing "
                            f"label {submission.label}: one outcome per prediction"
                        )
                    )
            if new_rows:
                connection.execute(OUTCOMES.insert(), new_rows)
        return answers


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
