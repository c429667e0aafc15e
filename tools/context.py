"""What every tool runs against: the model service over HTTP and the MLflow store."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from model_service.cards import DatasetCard


@dataclass(frozen=True)
class ToolContext:
    """Explicit clients for the tools (built by the caller, never at import time)."""

    model_service: httpx.AsyncClient  # base_url = MODEL_SERVICE_URL
    tracking_uri: str
    card: DatasetCard
