"""What every tool runs against: the model service over HTTP and the MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from model_service.cards import DatasetCard

HistoryReader = Callable[[str | None, str | None, datetime], list[dict[str, Any]]]


@dataclass(frozen=True)
class ToolContext:
    """Explicit clients for the tools (built by the caller, never at import time)."""

    model_service: httpx.AsyncClient  # base_url = MODEL_SERVICE_URL
    tracking_uri: str
    card: DatasetCard
    # the monitor's stored time series (site, metric, since) -> points, oldest first; None
    # where no copilot database is at hand
    history: HistoryReader | None = None
