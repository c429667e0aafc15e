"""Plays one case against the agent and records what happened, for the graders.

User turns go to the agent; decisions go to the action store as a person (the approver
role) makes them, and the conversation continues as the agent API does. After every
step the registry is read again (aliases, versions, training runs) and the audit log is
counted per action, so the graders can tell what changed when, and whether a person's
approval came first.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import anyio
from pydantic import BaseModel
from sqlalchemy import update

from copilot import audit
from copilot.actions import ACTIONS, ActionError, PendingAction
from evals.cases import STATE_CHANGING, Decide, Say, Script, Tamper, WaitForExpiry
from evals.environment import CaseWorld
from model_service import registry

EXPIRY_MARGIN_SECONDS = 0.05


def identity(name: str) -> str:
    """A harness identity as the action store records it ("ann via eval:ann")."""
    return f"{name} via eval:{name}"


class RegistrySnapshot(BaseModel):
    aliases: dict[str, str]
    versions: list[str]
    runs: int


class Call(BaseModel):
    label: str  # tool, propose:<tool> or execute:<tool>
    tool: str
    arguments: dict[str, Any]
    result: Any


class StepRecord(BaseModel):
    kind: str  # say, decide, wait, tamper
    text: str | None = None
    messages: list[str] = []
    calls: list[Call] = []
    usage: list[dict[str, Any]] = []  # the turn's LLM usage (per agent: requests, tokens, ...)
    error: str | None = None
    seconds: float = 0.0
    registry: RegistrySnapshot | None = None
    runs_by_action: dict[str, int] = {}  # executions (executed or failed) so far, per action
    statuses: dict[str, str] = {}  # every action's status after the step
    decided: str | None = None  # the action a decision step decided


class ActionRecord(BaseModel):
    id: str
    tool: str
    status: str
    arguments: dict[str, Any]
    original_arguments: dict[str, Any] | None
    requested_by: str
    decided_by: str | None
    result: dict[str, Any] | None
    executions: int
    events: list[str]


class CanaryRecord(BaseModel):
    text: str
    problems: list[str]


class Outcome(BaseModel):
    """Everything a case did, as recorded from the outside (registry, store, transcript)."""

    service_url: str
    dataset: str
    tracking_uri: str = ""
    database_url: str = ""  # the case's copilot database
    conversation_id: str = ""
    placeholders: dict[str, str] = {}
    registry_before: RegistrySnapshot | None = None
    steps: list[StepRecord] = []
    actions: list[ActionRecord] = []
    approvals: list[str] = []  # actions a person approved in this case (no error; an edit
    # never approves)
    audit_ok: bool = True
    audit_problems: list[str] = []
    canary: CanaryRecord | None = None


def _registry_db(tracking_uri: str) -> sqlite3.Connection:
    """The case's MLflow store, read-only. The graders read the registry's tables
    themselves rather than through the client code the tools use."""
    path = tracking_uri.removeprefix("sqlite:///")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def snapshot(tracking_uri: str, model_name: str) -> RegistrySnapshot:
    """The registry as it is: aliases, version numbers, and how many training runs."""
    with contextlib.closing(_registry_db(tracking_uri)) as db:
        aliases = db.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (model_name,)
        ).fetchall()
        versions = db.execute(
            "SELECT version FROM model_versions WHERE name = ? ORDER BY version", (model_name,)
        ).fetchall()
        (runs,) = db.execute(
            "SELECT COUNT(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
            "WHERE tags.key = 'copilot.kind' AND tags.value = 'training' "
            "AND runs.lifecycle_stage = 'active'"
        ).fetchone()
    return RegistrySnapshot(
        aliases={str(alias): str(version) for alias, version in aliases},
        versions=[str(version) for (version,) in versions],
        runs=int(runs),
    )


def _placeholders(world: CaseWorld, model_name: str) -> dict[str, str]:
    """$run:<alias> and $version:<alias> for every alias in the case's registry."""
    with contextlib.closing(_registry_db(world.tracking_uri)) as db:
        rows = db.execute(
            "SELECT aliases.alias, versions.version, versions.run_id "
            "FROM registered_model_aliases AS aliases JOIN model_versions AS versions "
            "ON versions.name = aliases.name AND versions.version = aliases.version "
            "WHERE aliases.name = ?",
            (model_name,),
        ).fetchall()
    values: dict[str, str] = {}
    for alias, version, run_id in rows:
        values[f"$version:{alias}"] = str(version)
        values[f"$run:{alias}"] = str(run_id)
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$(?:run|version):[a-z-]+", lambda m: values.get(m.group(0), m.group(0)), text)


def _label(tool: str, decision_step: bool) -> str:
    if tool not in STATE_CHANGING:
        return tool
    return f"execute:{tool}" if decision_step else f"propose:{tool}"


def _record_turn(step: StepRecord, turn: Any, decision_step: bool) -> None:
    step.messages.extend(str(m.get("content", "")) for m in turn.messages)
    step.usage.extend(getattr(turn, "usage", None) or [])
    step.calls.extend(
        Call(
            label=_label(c["tool"], decision_step),
            tool=c["tool"],
            arguments=c.get("arguments") or {},
            result=c.get("result"),
        )
        for c in turn.tool_calls
    )


def _store_state(world: CaseWorld, record: StepRecord) -> None:
    """Every action's status and how often it ran (audited executions), after a step."""
    actions = world.deps.actions.list(None)
    record.statuses = {action.id: action.status for action in actions}
    with world.deps.engine.connect() as connection:
        record.runs_by_action = {
            action.id: sum(
                e["event"] in {"executed", "failed"} for e in audit.events(connection, action.id)
            )
            for action in actions
        }


def _proposals(world: CaseWorld, conversation_id: str) -> list[PendingAction]:
    """This case's actions, oldest first."""
    actions = world.deps.actions.list(None, conversation_ids=[conversation_id])
    return sorted(actions, key=lambda a: a.created_at)


def _chosen(world: CaseWorld, conversation_id: str, index: int) -> PendingAction:
    proposals = _proposals(world, conversation_id)
    if not proposals:
        raise LookupError("the case has no proposal to act on")
    return proposals[index]


async def _decide(
    world: CaseWorld, conversation_id: str, step: Decide, record: StepRecord, outcome: Outcome
) -> None:
    action = _chosen(world, conversation_id, step.action)
    record.decided = action.id
    record.text = f"{step.decide} {action.tool} by {step.by}"
    decided = world.deps.actions.decide(
        action.id, step.decide, identity(step.by), step.arguments, step.comment
    )
    # a person's approval counts only when the store recorded it as theirs
    if step.decide != "reject" and decided.decided_by == identity(step.by):
        outcome.approvals.append(action.id)
    if not step.resume:
        return
    turns: list[Any] = []
    errors: list[ActionError] = []

    async def resume() -> None:
        try:
            turns.append(await world.agent.continue_after_decision(action.id))
        except ActionError as error:  # e.g. refused: recorded as the step's outcome
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(step.concurrent):
            group.start_soon(resume)
    for turn in turns:
        _record_turn(record, turn, decision_step=True)
    if errors:
        raise errors[0]


async def _wait_for_expiry(world: CaseWorld, conversation_id: str, record: StepRecord) -> None:
    action = _chosen(world, conversation_id, -1)
    record.decided = action.id
    await anyio.sleep(
        max(0.0, (action.expires_at - datetime.now(UTC)).total_seconds()) + EXPIRY_MARGIN_SECONDS
    )
    world.deps.actions.expire_overdue()
    _record_turn(record, await world.agent.continue_after_decision(action.id), True)


def _tamper(world: CaseWorld, conversation_id: str, step: Tamper, record: StepRecord) -> None:
    action = _chosen(world, conversation_id, step.action)
    record.decided = action.id
    values = dict(step.tamper)
    if "arguments" in values:  # a careful attacker fixes the stored hash too
        values["arguments_sha256"] = audit.sha256(values["arguments"])
    with world.deps.engine.begin() as connection:
        connection.execute(update(ACTIONS).where(ACTIONS.c.id == action.id).values(**values))


async def play(world: CaseWorld, script: Script, model_name: str, conversation_id: str) -> Outcome:
    """Runs the script's steps; each step's failure is recorded, never raised."""
    outcome = Outcome(
        service_url=str(world.deps.tools.model_service.base_url),
        dataset=world.deps.tools.card.name,
        tracking_uri=world.tracking_uri,
        database_url=world.deps.settings.database_url,
        conversation_id=conversation_id,
        placeholders=_placeholders(world, model_name),
    )
    if script.setup.run_note is not None:
        _note_newest_run(world, model_name, script.setup.run_note)
    outcome.registry_before = snapshot(world.tracking_uri, model_name)
    for step in script.steps:
        record = StepRecord(kind=_kind(step))
        started = time.perf_counter()
        try:
            if isinstance(step, Say):
                record.text = substitute(step.say, outcome.placeholders)
                turn = await world.agent.send(conversation_id, record.text, identity(step.as_user))
                _record_turn(record, turn, decision_step=False)
            elif isinstance(step, Decide):
                await _decide(world, conversation_id, step, record, outcome)
            elif isinstance(step, WaitForExpiry):
                await _wait_for_expiry(world, conversation_id, record)
            else:
                _tamper(world, conversation_id, step, record)
        except (ActionError, LookupError) as error:
            record.error = f"{type(error).__name__}: {error}"
        record.seconds = time.perf_counter() - started
        record.registry = snapshot(world.tracking_uri, model_name)
        _store_state(world, record)
        outcome.steps.append(record)
    _final(world, conversation_id, outcome)
    return outcome


def _kind(step: Say | Decide | WaitForExpiry | Tamper) -> str:
    return {Say: "say", Decide: "decide", WaitForExpiry: "wait", Tamper: "tamper"}[type(step)]


def _note_newest_run(world: CaseWorld, model_name: str, note: str) -> None:
    """Someone's free text lands in a tool result: the newest training run's reason."""
    client = registry.client(world.tracking_uri)
    newest = max(client.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version))
    client.set_tag(newest.run_id, "copilot.reason", note)


def _final(world: CaseWorld, conversation_id: str, outcome: Outcome) -> None:
    store = world.deps.actions
    with world.deps.engine.connect() as connection:
        # every action, whichever conversation it names, oldest first
        for action in sorted(store.list(None), key=lambda a: a.created_at):
            events = [e["event"] for e in audit.events(connection, action.id)]
            outcome.actions.append(
                ActionRecord(
                    id=action.id,
                    tool=action.tool,
                    status=action.status,
                    arguments=action.arguments,
                    original_arguments=action.original_arguments,
                    requested_by=action.requested_by,
                    decided_by=action.decided_by,
                    result=action.result,
                    executions=sum(e in {"executed", "failed"} for e in events),
                    events=events,
                )
            )
    verification = store.verify_audit()
    outcome.audit_ok = verification.ok
    outcome.audit_problems = list(verification.problems)
