"""One graded case as a flat record, and the run log a run appends them to.

A record is written as soon as its case is graded (one JSON line, flushed and synced), so a
run that is killed loses at most the case in progress, and `copilot eval --resume` carries
on from the cases already recorded. The log's first line says what the run is (provider and
which cases), so a resumed run measures the same cases against the same provider.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from evals.cases import Expect
from evals.errors import EvalError
from evals.harness import Outcome

ROUTING = ("tool", "arguments", "trajectory")  # the assertions "accuracy" is made of
VERIFIED_WITHIN = 2  # a narrative verified on the first or second try


class Selection(BaseModel):
    """Which cases a run plays: the suites, each case `repeat` times, the first `limit` of
    each suite or a `sample` of it drawn with `seed` (neither: every case)."""

    suites: list[str]
    repeat: int = 1
    limit: int | None = None
    sample: int | None = None
    seed: int = 0


class RunHeader(BaseModel):
    provider: str
    started_at: datetime
    selection: Selection


class CaseRecord(BaseModel):
    """What one run of one case came to, with what it cost."""

    suite: str
    case: str  # the run's name (the case name, and the repeat when there are several)
    source_case: str  # the case's name in the suite
    category: str
    passed: bool
    routed: bool | None = None  # tool, arguments and trajectory all right (None: not graded)
    assertions: dict[str, bool] = {}
    reasons: list[str] = []  # why it failed
    unconfirmed_state_changes: int = 0
    narrated_calls: int = 0
    faithful_calls: int = 0
    say_seconds: list[float] = []  # each user turn's latency
    seconds: float = 0.0  # the whole case: its world, its turns, its graders
    timed_out: bool = False
    error: str | None = None  # the case raised (or timed out) before it could be graded
    llm_requests: int = 0
    input_tokens: int = 0  # 0 when the server does not report tokens
    output_tokens: int = 0
    narratives: int = 0  # texts an LLM narrator was asked for
    narratives_verified: int = 0  # ... that passed the verifier within VERIFIED_WITHIN tries
    protocol_text_replaced: int = 0  # router replies that were protocol text, not shown


def _spent(outcome: Outcome) -> dict[str, int]:
    """Requests, tokens and narratives over every turn of the case (the turns' `usage`)."""
    spent = dict.fromkeys(
        (
            "llm_requests",
            "input_tokens",
            "output_tokens",
            "narratives",
            "narratives_verified",
            "protocol_text_replaced",
        ),
        0,
    )
    for step in outcome.steps:
        for usage in step.usage:
            spent["llm_requests"] += int(usage.get("requests", 0))
            spent["input_tokens"] += int(usage.get("input_tokens", 0))
            spent["output_tokens"] += int(usage.get("output_tokens", 0))
            spent["protocol_text_replaced"] += int(usage.get("protocol_text_replaced", 0))
            if usage.get("agent") == "narrator":
                spent["narratives"] += 1
                verified = (
                    usage.get("verified") and int(usage.get("requests", 0)) <= VERIFIED_WITHIN
                )
                spent["narratives_verified"] += int(bool(verified))
    return spent


def graded(suite: str, case: Any, seconds: float) -> CaseRecord:
    """A record of a pydantic-evals ReportCase (graded)."""
    results = dict(case.assertions)
    passed = all(bool(r.value) for r in results.values()) and not case.evaluator_failures
    routing = [bool(results[k].value) for k in ROUTING if k in results]
    scores = {k: v.value for k, v in case.scores.items()}
    reasons = [
        f"{key}: {result.reason or 'failed'}" for key, result in results.items() if not result.value
    ] + [f"evaluator {f.name} failed: {f.error_message}" for f in case.evaluator_failures]
    output = case.output if isinstance(case.output, Outcome) else None
    return CaseRecord(
        suite=suite,
        case=case.name,
        source_case=case.source_case_name or case.name,
        category=(case.metadata or Expect()).category,
        passed=passed,
        routed=all(routing) if routing else None,
        assertions={key: bool(result.value) for key, result in results.items()},
        reasons=reasons,
        unconfirmed_state_changes=int(scores.get("unconfirmed_state_changes", 0)),
        narrated_calls=int(scores.get("narrated_calls", 0)),
        faithful_calls=int(scores.get("faithful_calls", 0)),
        say_seconds=[s.seconds for s in output.steps if s.kind == "say"] if output else [],
        seconds=seconds,
        **(_spent(output) if output else {}),
    )


def failed(suite: str, failure: Any, seconds: float, timed_out: bool) -> CaseRecord:
    """A record of a pydantic-evals ReportCaseFailure (the task raised or timed out)."""
    return CaseRecord(
        suite=suite,
        case=failure.name,
        source_case=failure.source_case_name or failure.name,
        category=(failure.metadata or Expect()).category,
        passed=False,
        reasons=[
            failure.error_message.removeprefix("CaseTimedOut: ")
            if timed_out
            else f"error: {failure.error_message}"
        ],
        seconds=seconds,
        timed_out=timed_out,
        error=failure.error_message,
    )


class RunLogError(EvalError, ValueError):
    """A run log that cannot be resumed (missing, not a run log, another provider)."""


def log_path(report: Path) -> Path:
    """The run log beside a report: `report.json` -> `report.cases.jsonl`."""
    return report.with_name(f"{report.stem}.cases.jsonl")


def report_path(given: Path) -> Path:
    """The report a `--resume` argument names: a run directory (its report.json), the
    report itself (written or not yet), or its run log."""
    if given.is_dir():
        return given / "report.json"
    if given.name.endswith(".cases.jsonl"):
        return given.with_name(given.name.removesuffix(".cases.jsonl") + ".json")
    return given


class RunLog:
    """The run log: a header line, then one line per graded case, appended as they finish."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, header: RunHeader) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"run": header.model_dump(mode="json")}) + "\n")

    def append(self, record: CaseRecord) -> None:
        line = json.dumps({"case": record.model_dump(mode="json")}, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    def carry_on(self) -> tuple[RunHeader, list[CaseRecord]]:
        """The interrupted run's header and records, the log rewritten without a line a
        kill cut short (so the next case starts a line of its own)."""
        header, records = self.read()
        lines = [json.dumps({"run": header.model_dump(mode="json")})] + [
            json.dumps({"case": record.model_dump(mode="json")}) for record in records
        ]
        kept = self.path.with_name(f"{self.path.name}.tmp")
        kept.write_text("\n".join(lines) + "\n", encoding="utf-8")
        kept.replace(self.path)
        return header, records

    def read(self) -> tuple[RunHeader, list[CaseRecord]]:
        """The header and every complete case line (a line cut short by a kill is dropped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise RunLogError(f"--resume: no run log at {self.path} ({error.strerror})") from None
        try:
            header = RunHeader.model_validate(json.loads(lines[0])["run"])
        except (IndexError, KeyError, TypeError, ValueError, ValidationError):
            raise RunLogError(
                f"--resume: {self.path} is not a run log (its first line must be the run header)"
            ) from None
        records = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                records.append(CaseRecord.model_validate(json.loads(line)["case"]))
            except (KeyError, TypeError, ValueError, ValidationError):
                if number != len(lines):  # only the last line can be cut short
                    raise RunLogError(
                        f"--resume: {self.path} line {number} is not a case record"
                    ) from None
        return header, records
