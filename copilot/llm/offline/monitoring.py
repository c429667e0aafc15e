"""Questions about how things moved over time, read as monitoring_history arguments:
"how has VA Long Beach drifted over the last month?", "is the model getting worse?",
"AUC trend at Hungary", "show the monitoring history".

A question counts when it asks how something moved (a trend, a history, "over time",
"getting worse", "how has ... drifted/changed") and names what moved: drift, data quality
or performance; or when it names the monitor itself. Otherwise a drift question stays
check_drift ("drift over the past week": the predictions since then), so the two tools
never compete.
"""

from __future__ import annotations

import re
from typing import Any

from copilot.llm.offline.grammar import Reading

_OVER_TIME = re.compile(
    r"\bover time\b|\btrends?\b|\btrending\b|"
    r"\bhistor(?:y|ical)\b|\bgetting (?:worse|better)\b|\b(?:got|gotten|become|becoming) "
    r"(?:worse|better)\b|\bdegrad(?:e|ed|es|ing|ation)\b|\bdeteriorat|\bdeclin(?:e|ed|ing)\b|"
    r"\bhow (?:has|have) [a-z ]{1,40}(?:drifted|changed|moved|done|performed|evolved)\b|"
    r"\btime series\b"
)
_MONITOR = re.compile(r"\bmonitor(?:ing)? (?:history|checks?|results?|series)\b")
_DRIFT = re.compile(r"\bdrift|\bshift")
_QUALITY = re.compile(r"\bdata quality\b|\bquality findings?\b")
_PERFORMANCE = re.compile(
    r"\bworse\b|\bbetter\b|\bperform|\bdegrad|\bdeteriorat|\bdeclin|\baccura|\bauc\b|"
    r"\bsensitivity\b|\bspecificity\b"
)
_NAMED_METRICS = (
    ("sensitivity", re.compile(r"\bsensitivity\b|\brecall\b")),
    ("specificity", re.compile(r"\bspecificity\b")),
    ("accuracy", re.compile(r"\baccuracy\b")),
    ("auc", re.compile(r"\bauc\b|\broc\b")),
)


def _metric(text: str) -> str | None:
    for metric, pattern in _NAMED_METRICS:
        if pattern.search(text):
            return metric
    if _QUALITY.search(text):
        return "data_quality_findings"
    if _DRIFT.search(text):
        return "share_drifted"
    if _PERFORMANCE.search(text):
        return "auc"
    return None


def history_arguments(reading: Reading) -> dict[str, Any] | None:
    """monitoring_history's arguments when the clause asks how something moved over time."""
    text = reading.text
    monitor = _MONITOR.search(text) is not None
    if not monitor and not _OVER_TIME.search(text):
        return None
    metric = _metric(text)
    if metric is None and not monitor:
        return None
    arguments: dict[str, Any] = {}
    if len(reading.sites) == 1:
        arguments["site"] = reading.sites[0]
    if metric is not None:
        arguments["metric"] = metric
    if reading.since:
        arguments["since"] = reading.since
    return arguments
