"""Bounds on work in flight: a request that would overfill one is refused (429), not queued."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

from model_service.errors import ModelServiceError

ROWS_RETRY_AFTER_SECONDS = 1


class Busy(ModelServiceError, RuntimeError):
    """A bound is full: the message says which and when to retry (`retry_after`, seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class RowBudget:
    """Rows being scored or waiting for their log commit, at most `limit` at once. A request
    that arrives while nothing is in flight is always let in, however many rows it has."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def full(self) -> Busy | None:
        """Why no request of even one row fits now, if none does."""
        if self.in_flight < self.limit:
            return None
        return Busy(
            f"rows in flight: {self.in_flight} rows are being scored or logged, the limit of "
            f"{self.limit}; retry in {ROWS_RETRY_AFTER_SECONDS} s",
            ROWS_RETRY_AFTER_SECONDS,
        )

    @contextlib.contextmanager
    def hold(self, rows: int) -> Iterator[None]:
        """Holds `rows` of the budget for the block; raises `Busy` when they do not fit."""
        with self._lock:
            if rows and self.in_flight and self.in_flight + rows > self.limit:
                raise Busy(
                    f"rows in flight: {self.in_flight} rows are being scored or logged and "
                    f"{rows} more would pass the limit of {self.limit}; retry in "
                    f"{ROWS_RETRY_AFTER_SECONDS} s",
                    ROWS_RETRY_AFTER_SECONDS,
                )
            self.in_flight += rows
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= rows
