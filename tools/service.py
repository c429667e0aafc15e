"""Calls to the model service, with its failures turned into tool errors."""

from __future__ import annotations

from typing import Any

import httpx

from tools.context import ToolContext
from tools.errors import (
    InvalidToolInput,
    ModelServiceUnavailable,
    ModelServiceUnreachable,
    NotFound,
)


async def call(ctx: ToolContext, method: str, path: str, body: Any = None) -> Any:
    """The JSON answer of the model service, or the tool error that says what went wrong."""
    url = str(ctx.model_service.base_url).rstrip("/") + path
    try:
        response = await ctx.model_service.request(method, path, json=body)
    except httpx.TransportError as error:
        raise ModelServiceUnreachable(
            f"the model service at {ctx.model_service.base_url} is unreachable "
            f"({type(error).__name__}); is `copilot serve model` running?"
        ) from None
    if response.status_code < 400:
        return response.json()
    detail = _detail(response)
    if response.status_code in {413, 422}:
        if isinstance(detail, list):
            raise InvalidToolInput([str(item.get("message", item)) for item in detail])
        raise InvalidToolInput([str(detail)])
    if response.status_code == 404:
        raise NotFound(str(detail))
    raise ModelServiceUnavailable(
        f"the model service answered {response.status_code} to {method} {url}: {detail}"
    )


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text[:300]
