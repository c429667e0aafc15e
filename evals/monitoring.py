"""The monitoring grader: a history answer is the monitor's stored series, stated.

For each step marked `history_answer`, the grader reads the `monitor_point` rows of the
case's copilot database itself (SQL, read-only; never through the tool or its store) for
the case's expected site and metric (when the case names none, the one asked) since the
window the tool reports, and checks:

* the step's monitoring_history result holds exactly those points, per metric and model
  version (values, estimates, labels, rows, notes, checks), with first, last and change;
* the reply states them: the number of checks, each told series' latest value (and its
  first when more than one was measured) to three significant figures, the outcomes a
  performance value rests on, or, when nothing was measured, the monitor's reason.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_evals.evaluators import Evaluator

from copilot.narration import HISTORY_SERIES_TOLD
from evals.cases import Expect, Script
from evals.grading import Context, Results, expectations, resolve, verdict
from evals.harness import Call, Outcome
from tools.monitoring import ALL_SITES, METRIC_NAMES, PERFORMANCE_METRICS

TOOL = "monitoring_history"
_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?")
_POINT_FIELDS = ("check_id", "value", "estimated", "labels", "rows", "note")


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def stored_points(
    database_url: str, site: str, metric: str | None, since: datetime
) -> list[dict[str, Any]]:
    """The monitor_point rows of one site (and metric) checked at or after `since`, oldest
    first, read straight from the SQLite file."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        connection.row_factory = sqlite3.Row
        rows = [
            dict(row)
            for row in connection.execute(
                "SELECT id, check_id, checked_at, site, metric, model_version, value, "
                "estimated, labels, rows, note FROM monitor_point WHERE site = ? ORDER BY id",
                (site,),
            )
        ]
    found = []
    for row in rows:
        row["checked_at"] = _aware(datetime.fromisoformat(row["checked_at"]))
        row["estimated"] = bool(row["estimated"])
        if row["checked_at"] >= since and (metric is None or row["metric"] == metric):
            found.append(row)
    found.sort(key=lambda row: (row["checked_at"], row["id"]))
    return found


def expected_series(points: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Per (metric, model version): the points, first and last measured value, change."""
    grouped: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for point in points:
        grouped.setdefault((point["metric"], point["model_version"]), []).append(point)
    series = {}
    for key, rows in grouped.items():
        measured = [row["value"] for row in rows if row["value"] is not None]
        first = measured[0] if measured else None
        last = measured[-1] if measured else None
        series[key] = {
            "points": [{name: row[name] for name in _POINT_FIELDS} for row in rows],
            "first": first,
            "last": last,
            "change": last - first if first is not None and last is not None else None,
            "measured": len(measured),
        }
    return series


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(actual == expected)


def _compare_result(
    result: dict[str, Any], site: str, metric: str | None, stored: list[dict[str, Any]]
) -> list[str]:
    problems = []
    if result.get("site") != site or result.get("metric") != metric:
        problems.append(
            f"asked for site {result.get('site')!r} metric {result.get('metric')!r}, "
            f"wanted {site!r} {metric!r}"
        )
    checks = len({row["check_id"] for row in stored})
    if result.get("checks") != checks:
        problems.append(f"checks {result.get('checks')}, the store holds {checks}")
    wanted = expected_series(stored)
    got = {(s["metric"], s["model_version"]): s for s in result.get("series", [])}
    if set(got) != set(wanted):
        problems.append(f"series {sorted(got, key=str)}, the store holds {sorted(wanted, key=str)}")
    for key in set(got) & set(wanted):
        series, truth = got[key], wanted[key]
        for name in ("first", "last", "change"):
            if not _same(series[name], truth[name]):
                problems.append(f"{key[0]} {name} {series[name]}, the store gives {truth[name]}")
        points = [{name: p[name] for name in _POINT_FIELDS} for p in series["points"]]
        if len(points) != len(truth["points"]) or not all(
            all(_same(p[name], t[name]) for name in _POINT_FIELDS)
            for p, t in zip(points, truth["points"], strict=False)
        ):
            problems.append(f"{key[0]} points differ from the store's {truth['points']}")
    return problems


def _stated(text: str, value: float, integer: bool = False) -> bool:
    """`value` is in the text: exactly when a count, else to three significant figures
    (as a decimal or a percentage)."""
    numbers = [float(n) for n in _NUMBER.findall(text)]
    if integer:
        return any(n == value for n in numbers)
    if value == 0:
        return any(n == 0 for n in numbers)
    tolerance = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 2) + 1e-12
    return any(abs(n - value) <= tolerance or abs(n / 100 - value) <= tolerance for n in numbers)


def _compare_text(text: str, stored: list[dict[str, Any]]) -> list[str]:
    series = expected_series(stored)
    if not series:
        return [] if "no monitor checks" in text else ["does not say no checks are stored"]
    checks = len({row["check_id"] for row in stored})
    problems = [] if _stated(text, checks, True) else [f"{checks} checks not stated"]
    order = {name: index for index, name in enumerate(METRIC_NAMES)}
    told = sorted(series, key=lambda k: (order.get(k[0], len(order)), k[1] or ""))
    for metric, version in told[:HISTORY_SERIES_TOLD]:
        truth = series[(metric, version)]
        counted = metric in {"features_drifted", "data_quality_findings"}
        if truth["last"] is None:
            notes = [p["note"] for p in truth["points"] if p["note"]]
            if notes and notes[-1].lower() not in text:
                problems.append(f"{metric}: the monitor's reason {notes[-1]!r} not given")
            continue
        if not _stated(text, truth["last"], counted):
            problems.append(f"{metric}: latest {truth['last']} not stated")
        if truth["measured"] > 1 and not _stated(text, truth["first"], counted):
            problems.append(f"{metric}: first {truth['first']} not stated")
        newest = [p for p in truth["points"] if p["value"] is not None][-1]
        if metric in PERFORMANCE_METRICS and not _stated(text, newest["labels"], True):
            problems.append(f"{metric}: {newest['labels']} outcomes not stated")
    return problems


def _history_call(calls: list[Call]) -> Call | None:
    return next((c for c in calls if c.tool == TOOL and isinstance(c.result, dict)), None)


@dataclass
class HistoryAnswer(Evaluator[Script, Outcome, Expect]):
    """Monitoring history answers are the stored series (read from the case's copilot
    database by the grader) and state their numbers."""

    def evaluate(self, ctx: Context) -> Results:
        graded = [(i, w, s) for i, w, s in expectations(ctx) if w.history_answer]
        if not graded:
            return {}
        problems: list[str] = []
        for index, wanted, step in graded:
            arguments = resolve(wanted.arguments, ctx.output, index)
            call = _history_call(step.calls)
            if call is None or "series" not in call.result:
                problems.append(f"step {index + 1}: no monitoring history result")
                continue
            site = arguments.get("site") or ALL_SITES
            # a metric the case leaves open is the one the tool was asked for
            metric = arguments.get("metric", call.arguments.get("metric"))
            since = _aware(datetime.fromisoformat(call.result["since"]))
            stored = stored_points(ctx.output.database_url, site, metric, since)
            text = " ".join(step.messages).lower()
            found = _compare_result(call.result, site, metric, stored)
            found += _compare_text(text, stored)
            problems.extend(f"step {index + 1}: {p}" for p in found)
        return verdict("exact_answer", problems, len(graded))
