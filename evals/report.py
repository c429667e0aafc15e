"""The eval run as a terminal table, a JSON report, an HTML page, and the regressions
against an earlier report."""

from __future__ import annotations

import html
import json
import math
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evals.datasets import REPORT_ONLY
from evals.errors import EvalError
from evals.metrics import Gate, SuiteResult
from evals.records import CaseRecord, Selection

# metric -> higher is better (None: shown, never a regression)
COMPARED: dict[str, bool] = {
    "pass_rate": True,
    "accuracy": True,
    "tool_accuracy": True,
    "argument_accuracy": True,
    "trajectory_match": True,
    "unconfirmed_state_changes": False,
    "faithfulness": True,
    "exact_answers": True,
    "canaries": True,
}
LATENCY_SLOWER = 1.5  # p95 this many times the baseline's counts as a regression


class EvalRun(BaseModel):
    """One `copilot eval`: every suite's numbers and the gates."""

    started_at: datetime
    provider: str
    repeat: int
    selection: Selection | None = None  # which cases (None: reports from before it was kept)
    case_timeout_seconds: float | None = None
    resumed: int = 0  # case runs carried over from the interrupted run (--resume)
    suites: list[SuiteResult]
    cases: list[CaseRecord] = []  # every case run: verdict, seconds, tokens
    gates: list[Gate]
    passed: bool
    setup_seconds: float
    seconds: float


class Regression(BaseModel):
    suite: str
    metric: str
    baseline: float
    now: float


class BaselineError(EvalError, ValueError):
    """The baseline report is missing or not an eval report."""


def load_run(path: Path) -> EvalRun:
    """An earlier report (report.json, or the directory holding it)."""
    file = path / "report.json" if path.is_dir() else path
    try:
        return EvalRun.model_validate_json(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise BaselineError(f"--baseline {path}: {error.strerror}") from None
    except ValidationError as error:
        raise BaselineError(
            f"--baseline {path}: not an eval report ({error.error_count()} problems, first: "
            f"{error.errors()[0]['msg']} at {'.'.join(map(str, error.errors()[0]['loc']))})"
        ) from None


def regressions(run: EvalRun, baseline: EvalRun) -> list[Regression]:
    """Metrics worse than the baseline's, suite by suite (suites in both runs only)."""
    before = {s.suite: s for s in baseline.suites}
    found = []
    for suite in run.suites:
        old = before.get(suite.suite)
        if old is None:
            continue
        for metric, higher in COMPARED.items():
            now, then = getattr(suite, metric), getattr(old, metric)
            if now is None or then is None:
                continue
            if (now < then - 1e-9) if higher else (now > then + 1e-9):
                found.append(Regression(suite=suite.suite, metric=metric, baseline=then, now=now))
        if (
            suite.latency_p95_ms is not None
            and old.latency_p95_ms
            and suite.latency_p95_ms > old.latency_p95_ms * LATENCY_SLOWER
        ):
            found.append(
                Regression(
                    suite=suite.suite,
                    metric="latency_p95_ms",
                    baseline=old.latency_p95_ms,
                    now=suite.latency_p95_ms,
                )
            )
    return found


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


COLUMNS = (
    "suite",
    "cases",
    "runs",
    "pass",
    "accuracy",
    "tool acc",
    "args acc",
    "trajectory",
    "unconfirmed",
    "faithful",
    "exact",
    "pass^k",
    "p50 ms",
    "p95 ms",
    "s/case",
    "timed out",
    "tokens in/out",
    "verified",
)
CASE_COLUMNS = ("suite", "case", "result", "seconds", "LLM requests", "tokens in/out", "verified")


def _cells(suite: SuiteResult) -> list[str]:
    hat = " ".join(f"{k}:{_pct(v)}" for k, v in suite.pass_hat_k.items())
    exact = (
        suite.exact_answers
        if suite.canaries is None
        else min(v for v in (suite.exact_answers, suite.canaries) if v is not None)
    )
    return [
        f"{suite.suite} (report only)" if suite.suite in REPORT_ONLY else suite.suite,
        str(suite.cases),
        str(suite.runs),
        _pct(suite.pass_rate),
        _pct(suite.accuracy),
        _pct(suite.tool_accuracy),
        _pct(suite.argument_accuracy),
        _pct(suite.trajectory_match),
        str(suite.unconfirmed_state_changes),
        _pct(suite.faithfulness),
        _pct(exact),
        hat,
        _ms(suite.latency_p50_ms),
        _ms(suite.latency_p95_ms),
        "-" if suite.seconds_per_case is None else f"{suite.seconds_per_case:.1f}",
        str(suite.timed_out),
        _tokens(suite.input_tokens, suite.output_tokens),
        _pct(suite.narratives_verified),
    ]


def _tokens(given: int, taken: int) -> str:
    """Input/output tokens; "-" when none were reported (offline, or a server that streams
    no counts, as llama-cpp-python)."""
    return f"{given:,}/{taken:,}" if given or taken else "-"


def _case_cells(case: CaseRecord) -> list[str]:
    result = "timed out" if case.timed_out else "pass" if case.passed else "fail"
    return [
        case.suite,
        case.case,
        result,
        f"{case.seconds:.1f}",
        str(case.llm_requests),
        _tokens(case.input_tokens, case.output_tokens),
        f"{case.narratives_verified}/{case.narratives}" if case.narratives else "-",
    ]


def _selected(run: EvalRun) -> str:
    """Which cases the run played, in words."""
    chosen = run.selection
    if chosen is None:
        return "every case"
    parts = [
        f"first {chosen.limit} per suite" if chosen.limit is not None else "",
        f"a sample of {chosen.sample} per suite (seed {chosen.seed})"
        if chosen.sample is not None
        else "",
        f"case timeout {run.case_timeout_seconds:g} s" if run.case_timeout_seconds else "",
        f"{run.resumed} case runs carried over (--resume)" if run.resumed else "",
    ]
    return ", ".join(p for p in parts if p) or "every case"


def print_run(console: Console, run: EvalRun, found: list[Regression] | None = None) -> None:
    """The result table, the categories, the gates, regressions and the first failures."""
    worse = {(r.suite, r.metric) for r in found or []}
    table = Table(title=f"copilot eval ({run.provider}, repeat {run.repeat})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "suite" else "right")
    for suite in run.suites:
        cells = _cells(suite)
        if any(s == suite.suite for s, _ in worse):
            cells[0] = f"[red]{cells[0]} (regressed)[/]"
        table.add_row(*cells)
    console.print(table)
    if run.selection is not None:
        console.print(f"  cases: {_selected(run)}", highlight=False)
    for suite in run.suites:
        if len(suite.categories) > 1:
            parts = ", ".join(
                f"{name} {rate.rate:.1%} ({rate.passed}/{rate.runs})"
                for name, rate in suite.categories.items()
            )
            console.print(f"  {suite.suite}: {escape(parts)}", highlight=False)
    for gate in run.gates:
        mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        if not gate.enforced:
            mark = "[dim]not gated for this provider[/]" if gate.passed else "[yellow]below[/]"
        value = (
            f"{gate.value:.0f}" if gate.metric == "unconfirmed_state_changes" else _pct(gate.value)
        )
        console.print(f"  gate {gate.suite} {gate.metric} {gate.rule}: {value} {mark}")
    if found is not None and not found:
        console.print("  no regressions against the baseline")
    for regression in found or []:
        console.print(
            f"  [red]regression[/] {regression.suite} {regression.metric}: "
            f"{regression.baseline:.4g} -> {regression.now:.4g}"
        )
    for suite in run.suites:
        for failure in suite.failures[:5]:
            reasons = "; ".join(failure.reasons)[:400]
            console.print(
                f"  [red]failed[/] {suite.suite}/{escape(failure.case)}: {escape(reasons)}"
            )
    verdict = "[green]all gates passed[/]" if run.passed else "[red]a gate failed[/]"
    console.print(
        f"{verdict} in {run.seconds:.0f} s (setup {run.setup_seconds:.0f} s)", highlight=False
    )


def write_reports(
    run: EvalRun, path: Path, found: list[Regression] | None = None
) -> tuple[Path, Path]:
    """The JSON report at `path` (a .json file, or a directory to hold report.json) and the
    HTML page beside it; returns both paths."""
    json_path = path if path.suffix == ".json" and not path.is_dir() else path / "report.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = run.model_dump(mode="json")
    if found is not None:
        payload["regressions"] = [r.model_dump() for r in found]
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")
    html_path = json_path.with_suffix(".html")
    html_path.write_text(_html(run, found or []), encoding="utf-8")
    return json_path, html_path


def _html(run: EvalRun, found: list[Regression]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in _cells(s)) + "</tr>"
        for s in run.suites
    )
    gates = "".join(
        f"<li class={'ok' if g.passed else 'bad'}>{esc(g.suite)} {esc(g.metric)} {esc(g.rule)}: "
        f"{esc(str(g.value))}{'' if g.enforced else ' (not gated for this provider)'}</li>"
        for g in run.gates
    )
    worse = "".join(
        f"<li class=bad>{esc(r.suite)} {esc(r.metric)}: {r.baseline:.4g} &rarr; {r.now:.4g}</li>"
        for r in found
    )
    case_head = "".join(f"<th>{esc(c)}</th>" for c in CASE_COLUMNS)
    case_rows = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in _case_cells(c)) + "</tr>"
        for c in run.cases
    )
    failures = "".join(
        f"<li><b>{esc(s.suite)}/{esc(f.case)}</b>: {esc('; '.join(f.reasons))}</li>"
        for s in run.suites
        for f in s.failures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>copilot eval {esc(str(run.started_at))}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
.ok{{color:#070}}.bad{{color:#b00}}</style></head><body>
<h1>copilot eval: {"passed" if run.passed else "a gate failed"}</h1>
<p>provider {esc(run.provider)}, repeat {run.repeat}, started {esc(str(run.started_at))},
{run.seconds:.0f} s (setup {run.setup_seconds:.0f} s); cases: {esc(_selected(run))}</p>
<table><tr>{head}</tr>{rows}</table>
<h2>Cases</h2><table><tr>{case_head}</tr>{case_rows}</table>
<h2>Gates</h2><ul>{gates}</ul>
<h2>Regressions against the baseline</h2><ul>{worse or "<li>none</li>"}</ul>
<h2>Failures (first of each suite)</h2><ul>{failures or "<li>none</li>"}</ul>
</body></html>
"""
