"""A generic webhook: one JSON POST per alert, to whatever a person points it at (a Slack
incoming webhook relay, a mail relay, a pager). The shared secret travels in a header,
never in the body. Timeouts, transport errors, 429 and 5xx are retried with exponential
backoff; any other answer, or the last retry, is a failure that the caller records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

SECRET_HEADER = "X-Copilot-Webhook-Secret"
RETRIES = 3  # after the first attempt
FIRST_BACKOFF_SECONDS = 1.0
ATTEMPT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    detail: str  # the last status or error, for the record


async def deliver(
    url: str,
    secret: str | None,
    payload: dict[str, Any],
    *,
    retries: int = RETRIES,
    first_backoff: float = FIRST_BACKOFF_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> Delivery:
    """POSTs `payload` as JSON to `url`; never raises."""
    headers = {"Content-Type": "application/json", "User-Agent": "mlops-copilot-monitor"}
    if secret:
        headers[SECRET_HEADER] = secret
    detail = ""
    async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT_SECONDS) as client:
        for attempt in range(1, retries + 2):
            try:
                response = await client.post(url, json=payload, headers=headers)
            except httpx.HTTPError as error:
                detail = f"{type(error).__name__} reaching the webhook"
            else:
                if response.status_code < 300:
                    return Delivery(True, attempt, f"HTTP {response.status_code}")
                detail = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    return Delivery(False, attempt, f"{detail}: not retried")
            if attempt <= retries:
                await sleep(first_backoff * 2 ** (attempt - 1))
    return Delivery(False, retries + 1, f"{detail} after {retries + 1} attempts")
