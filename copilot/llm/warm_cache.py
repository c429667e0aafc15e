"""Warm-ups remembered across processes: one small JSON file under COPILOT_HOME, keyed by
base URL and model, so each `copilot chat` does not warm the same server up again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

WARM_FOR_SECONDS = 600.0  # a server that answered this recently still has its weights loaded
FILE_NAME = "llm-warm-ups.json"


def _read(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def warmed_seconds_ago(home: Path, key: str, now: float | None = None) -> float | None:
    """How long ago `key` was warmed up, or None when never or longer than WARM_FOR_SECONDS."""
    at = _read(home / FILE_NAME).get(key)
    if at is None:
        return None
    ago = (time.time() if now is None else now) - at
    return ago if 0 <= ago <= WARM_FOR_SECONDS else None


def remember_warm(home: Path, key: str, now: float | None = None) -> None:
    """Record that `key` answered a warm-up now (expired entries are dropped)."""
    moment = time.time() if now is None else now
    path = home / FILE_NAME
    fresh = {k: v for k, v in _read(path).items() if 0 <= moment - v <= WARM_FOR_SECONDS}
    fresh[key] = moment
    try:
        home.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(fresh, sort_keys=True), encoding="utf-8")
        partial.replace(path)  # atomic: two chats starting at once never read half a file
    except OSError:
        return  # an unwritable home only costs the next process a warm-up
