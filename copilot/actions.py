"""Pending actions: the only way a state-changing tool runs (docs/interfaces.md, safety contract).

    propose -> pending --approve--> approved --execute--> executed | failed
                       --edit--> pending (new arguments, a fresh preview)
                       --reject--> rejected
                       --after the TTL--> expired

* Arguments are validated against the tool's input model when proposed and when edited,
  and, when the store has the tools' context, against the dataset card and the registry
  (StateChangingTool.check); their SHA-256 (of the canonical JSON) is stored and audited.
* An edit never approves: it puts the action back to pending with the new arguments, to be
  approved as a separate step. A decision may name the arguments hash its decider saw
  (`expected_sha256`); one made on other arguments (e.g. before an edit) is refused.
* Four eyes (`four_eyes`): nobody decides their own proposal, and nobody who edited an
  action approves it.
* `execute` is the execution path. It runs a tool only for an approved action whose audit
  trail backs it: the log matches its signed anchor (copilot/audit.py), the action's rows
  verify (HMAC and links), and the proposal, edits and approval are for this tool and
  these arguments (see _trail_problem).
* Exactly once: every transition is a compare-and-set on the status, and execution first
  claims the action (`execution_claim`) under a lease (`lease_until`) that the running
  process renews; a lease that ran out (the process died) is reconciled to failed when
  the store starts or anyone asks for the action. A caller that finds the action running
  elsewhere waits briefly for the outcome, then gets the action marked `executing`.
* Every transition appends to the audit log in the same transaction. Time comes from
  `clock` (tests pass a settable one).

Errors: ActionError -> UnknownAction (404), InvalidArguments (422), ActionConflict (409:
expired, already decided; AlreadyDecided and ArgumentsChanged carry the action;
AuditLogBroken), NotAllowed
(403: four eyes), ArgumentsTampered (refused).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Table,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Field, SQLModel

from copilot import audit
from copilot.errors import CopilotError
from model_service.database import add_missing_columns
from model_service.schemas import describe_error
from tools.context import ToolContext
from tools.errors import ToolError
from tools.lifecycle import (
    Preview,
    ProgressCallback,
    PromoteInput,
    RetrainInput,
    RollbackInput,
    promote_model,
    promote_preview,
    promote_problems,
    retrain_model,
    retrain_problems,
    rollback_model,
    rollback_preview,
)

Status = Literal["pending", "approved", "rejected", "expired", "executed", "failed"]
Decision = Literal["approve", "edit", "reject"]
TRANSACTION_RETRIES = 5
LEASE_SECONDS = 60.0  # an execution's claim lasts this long unless renewed (every quarter)
OUTCOME_WAIT_SECONDS = 20.0  # how long a second caller waits for a running action's outcome
RAN = {"executed", "failed", "refused"}  # audited events that end an action's execution


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ActionError(CopilotError):
    """A request about a pending action that cannot be granted; the message says why."""


class UnknownAction(ActionError):
    pass


class InvalidArguments(ActionError):
    def __init__(self, tool: str, problems: list[str]) -> None:
        super().__init__(f"invalid arguments for {tool}: " + "; ".join(problems))
        self.problems = problems


class ActionConflict(ActionError):
    pass


class AlreadyDecided(ActionConflict):
    """The action is no longer pending (decided, expired, running or done)."""

    def __init__(self, action: PendingAction) -> None:
        if action.status == "expired":
            detail = f"action {action.id} expired at {action.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            by = f" by {action.decided_by}" if action.decided_by else ""
            detail = f"action {action.id} is already {action.status}{by}; nothing more runs"
        super().__init__(detail)
        self.action = action


class ArgumentsChanged(ActionConflict):
    """The decider saw other arguments than the action holds now (it was edited since)."""

    def __init__(self, action: PendingAction, seen_sha256: str) -> None:
        super().__init__(
            f"action {action.id} was edited: its arguments are now "
            f"{json.dumps(action.arguments, sort_keys=True)} (sha256 "
            f"{action.arguments_sha256[:12]}), not the ones decided on (sha256 "
            f"{seen_sha256[:12]}); review them and decide again"
        )
        self.action = action


class NotAllowed(ActionError):
    pass


class ArgumentsTampered(ActionError):
    pass


class AuditLogBroken(ActionConflict):
    """The audit log does not match its signed anchor: nothing is appended or run."""


@dataclass(frozen=True)
class StateChangingTool:
    name: str
    input_model: type[BaseModel]
    run: Callable[[ToolContext, Any, ProgressCallback | None], Awaitable[BaseModel]]
    summary: Callable[[Any], str]  # what will change, for people deciding
    # problems with valid arguments that the card or the registry shows ("field: ...")
    check: Callable[[ToolContext, Any], list[str]] = lambda _ctx, _args: []
    # what the registry says of it now, read-only (e.g. a promotion the gate would refuse)
    preview: Callable[[ToolContext, Any], Preview | None] = lambda _ctx, _args: None


async def _retrain(ctx: ToolContext, args: Any, progress: ProgressCallback | None) -> BaseModel:
    return await retrain_model(ctx, args, progress)


async def _promote(ctx: ToolContext, args: Any, _: ProgressCallback | None) -> BaseModel:
    return await promote_model(ctx, args)


async def _rollback(ctx: ToolContext, args: Any, _: ProgressCallback | None) -> BaseModel:
    return await rollback_model(ctx, args)


STATE_CHANGING: dict[str, StateChangingTool] = {
    tool.name: tool
    for tool in (
        StateChangingTool(
            "retrain_model",
            RetrainInput,
            _retrain,
            lambda a: (
                f"train {', '.join(a.model_kinds)} on {' + '.join(a.sites)} and register "
                "the best as @challenger (the champion is not changed)"
            ),
            retrain_problems,
        ),
        StateChangingTool(
            "promote_model",
            PromoteInput,
            _promote,
            lambda a: (
                f"make {'version ' + a.version if a.version else 'the @challenger'} the "
                "@champion that scores patients"
                + (
                    ", even if the promotion gate fails"
                    if a.force
                    else ", if it passes the promotion gate"
                )
            ),
            promote_problems,
            promote_preview,
        ),
        StateChangingTool(
            "rollback_model",
            RollbackInput,
            _rollback,
            lambda _: "restore the previous @champion for scoring patients",
            preview=rollback_preview,
        ),
    )
}


class PendingActionRecord(SQLModel, table=True):
    __tablename__ = "pending_action"

    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=64)
    tool: str = Field(max_length=64)
    arguments: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    arguments_sha256: str = Field(max_length=64)
    original_arguments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    edited_by: str | None = Field(default=None, max_length=200)
    requested_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(index=True, max_length=16)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    comment: str | None = Field(default=None, max_length=2000)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    preview: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    execution_claim: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    audit_head: str = Field(max_length=64)


ACTIONS: Table = PendingActionRecord.__table__  # type: ignore[attr-defined]


class PendingAction(BaseModel):
    """A state change waiting for (or past) a human decision."""

    id: str
    conversation_id: str
    tool: str
    arguments: dict[str, Any]
    arguments_sha256: str
    original_arguments: dict[str, Any] | None
    edited_by: str | None = None  # who last edited the arguments (None: as proposed)
    summary: str
    preview: Preview | None = None  # what the registry said of it when proposed or edited
    requested_by: str
    created_at: datetime
    expires_at: datetime
    status: Status
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    result: dict[str, Any] | None
    executing: bool


def principal(identity: str) -> str:
    """The account behind an identity: "Dr Lee via local:root" is local:root. The four-eyes
    rule compares principals, so a name typed with --as cannot approve one's own request.
    The agent API ("api-key:NAME") and the chat ("ui:NAME") sign in with the same
    COPILOT_API_KEYS names, so both are one principal, "key:NAME"."""
    account = identity.rsplit(" via ", 1)[-1]
    kind, _, name = account.partition(":")
    return f"key:{name}" if kind in {"api-key", "ui"} else account


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _view(row: Any) -> PendingAction:
    tool = STATE_CHANGING[row["tool"]]
    return PendingAction(
        id=row["id"],
        conversation_id=row["conversation_id"],
        tool=row["tool"],
        arguments=row["arguments"],
        arguments_sha256=row["arguments_sha256"],
        original_arguments=row["original_arguments"],
        edited_by=row["edited_by"],
        summary=tool.summary(tool.input_model.model_validate(row["arguments"])),
        preview=row["preview"],
        requested_by=row["requested_by"],
        created_at=_aware(row["created_at"]),
        expires_at=_aware(row["expires_at"]),
        status=row["status"],
        decided_by=row["decided_by"],
        decided_at=_aware(row["decided_at"]),
        comment=row["comment"],
        result=row["result"],
        executing=row["status"] == "approved" and row["execution_claim"] is not None,
    )


class ActionStore:
    """Pending actions and their audit trail in the copilot database.

    `tools` (the tools' context) lets proposals and edits be checked against the dataset
    card and the registry; `clock` returns the time (aware); `lease_seconds` is how long an
    execution's claim lasts without renewal. Construction reconciles ran-out leases."""

    def __init__(
        self,
        engine: Engine,
        *,
        audit_key: bytes,
        ttl_seconds: int,
        four_eyes: bool = False,
        tools: ToolContext | None = None,
        clock: Callable[[], datetime] = _utc_now,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.engine = engine
        self.audit_key = audit_key
        self.ttl = timedelta(seconds=ttl_seconds)
        self.four_eyes = four_eyes
        self.tools = tools
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self._seen_seq = 0  # the highest anchor this store saw committed (rollbacks)
        self._seen_lock = threading.Lock()
        self._appended = threading.local()
        SQLModel.metadata.create_all(engine, tables=[ACTIONS, *audit.TABLES])
        add_missing_columns(engine, ACTIONS)
        audit.ensure_anchor(engine, audit_key)
        self.reconcile()

    # ---- transactions and the audit log -------------------------------------------------

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        """Runs `work` in one transaction, again if the audit chain moved meanwhile."""
        for attempt in range(TRANSACTION_RETRIES):
            self._appended.seq = 0
            try:
                with self.engine.begin() as connection:
                    result = work(connection)
            except IntegrityError:
                if attempt == TRANSACTION_RETRIES - 1:
                    raise
                continue
            self._saw(self._appended.seq)
            return result
        raise AssertionError("unreachable")

    def _saw(self, seq: int) -> None:
        with self._seen_lock:
            self._seen_seq = max(self._seen_seq, seq)

    def _append(
        self, connection: Connection, *, actor: str, event: str, action_id: str, payload: Any
    ) -> str:
        """Appends to the audit log (in `connection`'s transaction); refuses a broken log."""
        try:
            digest = audit.append(
                connection,
                self.audit_key,
                actor=actor,
                event=event,
                action_id=action_id,
                payload=payload,
                at=self.clock(),
                check_head=True,
            )
        except audit.AuditBroken as error:
            raise AuditLogBroken(
                f"action {action_id!r}: the audit log cannot be extended: {error}; "
                "nothing was changed (run `copilot audit verify`)"
            ) from None
        self._appended.seq = audit.read_head(connection).seq
        return digest

    def _transition(
        self,
        action_id: str,
        where: list[Any],
        values: Mapping[str, Any],
        *,
        actor: str,
        event: str,
        payload: Any,
    ) -> bool:
        """Compare-and-set: updates the action when `where` holds and audits it, together."""

        def work(connection: Connection) -> bool:
            changed = connection.execute(
                update(ACTIONS).where(ACTIONS.c.id == action_id, *where).values(**values)
            ).rowcount
            if changed:
                head = self._append(
                    connection, actor=actor, event=event, action_id=action_id, payload=payload
                )
                connection.execute(
                    update(ACTIONS).where(ACTIONS.c.id == action_id).values(audit_head=head)
                )
            return bool(changed)

        return bool(self._transaction(work))

    # ---- arguments --------------------------------------------------------------------

    @staticmethod
    def validate(tool: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The tool's validated arguments (canonical form) and their SHA-256."""
        spec = STATE_CHANGING.get(tool)
        if spec is None:
            raise InvalidArguments(
                tool, [f"{tool!r} is not a state-changing tool; known: {', '.join(STATE_CHANGING)}"]
            )
        try:
            model = spec.input_model.model_validate(arguments)
        except ValidationError as error:
            known = list(spec.input_model.model_fields)
            raise InvalidArguments(
                tool, [describe_error(e, known).message for e in error.errors()]
            ) from None
        canonical = model.model_dump(mode="json")
        return canonical, audit.sha256(canonical)

    def checked(self, tool: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """`validate`, then (with the tools' context) the card's and the registry's word."""
        canonical, digest = self.validate(tool, arguments)
        if self.tools is None:
            return canonical, digest
        spec = STATE_CHANGING[tool]
        try:
            problems = spec.check(self.tools, spec.input_model.model_validate(canonical))
        except ToolError as error:
            raise ActionConflict(f"cannot check the arguments of {tool} now: {error}") from None
        if problems:
            raise InvalidArguments(tool, problems)
        return canonical, digest

    def preview(self, tool: str, canonical: dict[str, Any]) -> dict[str, Any] | None:
        """What the registry says of valid arguments now, read-only (None: nothing to say,
        or no tools' context to ask)."""
        if self.tools is None:
            return None
        spec = STATE_CHANGING[tool]
        try:
            found = spec.preview(self.tools, spec.input_model.model_validate(canonical))
        except ToolError:
            return None
        return None if found is None else found.model_dump()

    # ---- proposing and reading ------------------------------------------------------------

    def propose(
        self, conversation_id: str, tool: str, arguments: dict[str, Any], requested_by: str
    ) -> PendingAction:
        """Records a pending action (nothing runs)."""
        canonical, digest = self.checked(tool, arguments)
        preview = self.preview(tool, canonical)
        action_id = uuid.uuid4().hex
        now = self.clock()

        def work(connection: Connection) -> None:
            head = self._append(
                connection,
                actor=requested_by,
                event="proposed",
                action_id=action_id,
                payload={
                    "tool": tool,
                    "arguments": canonical,
                    "arguments_sha256": digest,
                    "conversation_id": conversation_id,
                },
            )
            connection.execute(
                ACTIONS.insert().values(
                    id=action_id,
                    conversation_id=conversation_id,
                    tool=tool,
                    arguments=canonical,
                    arguments_sha256=digest,
                    requested_by=requested_by,
                    created_at=now,
                    expires_at=now + self.ttl,
                    status="pending",
                    preview=preview,
                    audit_head=head,
                )
            )

        self._transaction(work)
        return self.get(action_id)

    def _row(self, action_id: str) -> Any:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(ACTIONS).where(ACTIONS.c.id == action_id))
                .mappings()
                .first()
            )
        if row is None:
            raise UnknownAction(f"action {action_id!r} does not exist")
        return row

    def get(self, action_id: str) -> PendingAction:
        """The action; an execution whose lease ran out is reconciled first."""
        row = self._row(action_id)
        if self._lease_ran_out(row):
            self._reconcile_quietly(row)
            row = self._row(action_id)
        return _view(row)

    def list(
        self,
        status: Status | None = None,
        conversation_ids: list[str] | None = None,
        requested_by: str | None = None,
    ) -> list[PendingAction]:
        """Actions, newest first; overdue pending ones are marked expired first, and ran-out
        executions failed."""
        self.expire_overdue()
        self.reconcile()
        query = select(ACTIONS).order_by(ACTIONS.c.created_at.desc())
        if status is not None:
            query = query.where(ACTIONS.c.status == status)
        if conversation_ids is not None:
            query = query.where(ACTIONS.c.conversation_id.in_(conversation_ids))
        if requested_by is not None:
            query = query.where(ACTIONS.c.requested_by == requested_by)
        with self.engine.connect() as connection:
            return [_view(row) for row in connection.execute(query).mappings()]

    # ---- expiry and leases ----------------------------------------------------------------

    def expire_overdue(self) -> None:
        with self.engine.connect() as connection:
            overdue = (
                connection.execute(
                    select(ACTIONS.c.id).where(
                        ACTIONS.c.status == "pending", ACTIONS.c.expires_at < self.clock()
                    )
                )
                .scalars()
                .all()
            )
        for action_id in overdue:
            try:
                self._expire(action_id)
            except AuditLogBroken:  # reading goes on; deciding it says why
                return

    def _expire(self, action_id: str) -> bool:
        return self._transition(
            action_id,
            [ACTIONS.c.status == "pending"],
            {"status": "expired"},
            actor="system",
            event="expired",
            payload={},
        )

    def _lease_ran_out(self, row: Any) -> bool:
        lease = _aware(row["lease_until"])
        return (
            row["status"] == "approved"
            and row["execution_claim"] is not None
            and (lease is None or lease < self.clock())
        )

    def reconcile(self) -> Sequence[str]:
        """Marks failed the executions whose lease ran out (their process stopped); returns
        their ids. Called when the store starts and when actions are read."""
        now = self.clock()
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(ACTIONS).where(
                        ACTIONS.c.status == "approved",
                        ACTIONS.c.execution_claim.is_not(None),
                        or_(ACTIONS.c.lease_until.is_(None), ACTIONS.c.lease_until < now),
                    )
                )
                .mappings()
                .all()
            )
        return [row["id"] for row in rows if self._reconcile_quietly(row)]

    def _reconcile_quietly(self, row: Any) -> bool:
        try:
            return self._reconcile(row)
        except AuditLogBroken:  # left as it is: nothing can be recorded in a broken log
            return False

    def _reconcile(self, row: Any) -> bool:
        lease = _aware(row["lease_until"])
        ran_out = f" (its lease ran out at {lease:%Y-%m-%d %H:%M:%S} UTC)" if lease else ""
        result = {
            "error": f"the process running it stopped before it finished{ran_out}; the change "
            "may have been made in part: check the registry before proposing it again"
        }
        still_out = or_(ACTIONS.c.lease_until.is_(None), ACTIONS.c.lease_until < self.clock())
        return self._transition(
            row["id"],
            [
                ACTIONS.c.status == "approved",
                ACTIONS.c.execution_claim == row["execution_claim"],
                still_out,
            ],
            {"status": "failed", "result": result},
            actor="system",
            event="failed",
            payload={"result": result, "reconciled": True},
        )

    # ---- deciding ---------------------------------------------------------------------

    def decide(
        self,
        action_id: str,
        decision: Decision,
        by: str,
        arguments: dict[str, Any] | None = None,
        comment: str | None = None,
        expected_sha256: str | None = None,
    ) -> PendingAction:
        """Approve, edit or reject a pending action.

        An edit never approves: the action stays pending with the new, re-validated
        arguments and a fresh preview, and is approved as a separate step. With
        `expected_sha256` (the arguments hash the decider saw), a decision on other
        arguments is refused (ArgumentsChanged). With four eyes, the requester decides
        nothing of their action and nobody who edited it approves it. A repeated approval
        of an approved, executed or failed action changes nothing and returns it as it is."""
        action = self.get(action_id)
        if action.status == "pending" and self.clock() > action.expires_at:
            self._expire(action_id)
            expired = action.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            raise ActionConflict(f"action {action_id} expired at {expired}; propose it again")
        if action.status != "pending":
            if decision == "approve" and action.status in {"approved", "executed", "failed"}:
                return action
            raise AlreadyDecided(action)
        if expected_sha256 is not None and expected_sha256 != action.arguments_sha256:
            raise ArgumentsChanged(action, expected_sha256)
        if self.four_eyes:
            self._check_four_eyes(action, decision, by)
        values: dict[str, Any] = {"decided_by": by, "decided_at": self.clock(), "comment": comment}
        payload: dict[str, Any] = {"comment": comment}
        if decision == "edit":
            if arguments is None:
                raise InvalidArguments(action.tool, ["edit needs the new arguments"])
            canonical, digest = self.checked(action.tool, arguments)
            values = {
                "status": "pending",  # approved only as a separate step
                "comment": comment,
                "edited_by": by,
                "arguments": canonical,
                "arguments_sha256": digest,
                "original_arguments": action.original_arguments or action.arguments,
                "preview": self.preview(action.tool, canonical),
            }
            payload |= {
                "arguments": canonical,
                "arguments_sha256": digest,
                "previous_sha256": action.arguments_sha256,
                "status": "pending",
            }
        else:
            values["status"] = "rejected" if decision == "reject" else "approved"
            payload["arguments_sha256"] = action.arguments_sha256
        event = {"approve": "approved", "edit": "edited", "reject": "rejected"}[decision]
        where = [
            ACTIONS.c.status == "pending",
            ACTIONS.c.expires_at >= self.clock(),
            ACTIONS.c.arguments_sha256 == action.arguments_sha256,  # what the decider saw
        ]
        if not self._transition(action_id, where, values, actor=by, event=event, payload=payload):
            current = self.get(action_id)  # decided, edited or expired meanwhile
            if current.status == "pending" and current.arguments_sha256 != action.arguments_sha256:
                raise ArgumentsChanged(current, action.arguments_sha256)
            return self.decide(action_id, decision, by, arguments, comment, expected_sha256)
        return self.get(action_id)

    def _check_four_eyes(self, action: PendingAction, decision: Decision, by: str) -> None:
        if principal(by) == principal(action.requested_by):
            raise NotAllowed(
                f"{by} requested action {action.id} and may not decide it (four-eyes rule)"
            )
        if decision != "approve":
            return
        with self.engine.connect() as connection:
            editors = {
                principal(e["actor"])
                for e in audit.events(connection, action.id)
                if e["event"] == "edited"
            }
        if principal(by) in editors:
            raise NotAllowed(
                f"{by} edited action {action.id} and may not approve it (four-eyes rule): "
                "someone other than its requester and its editors approves it"
            )

    # ---- executing ----------------------------------------------------------------------

    def _trail_problem(self, action: PendingAction, digest: str) -> tuple[str | None, bool]:
        """Why the audit trail does not back running `action` with arguments `digest` (None
        when it does), and whether the whole log is in doubt (nothing can be appended).

        The log must match its signed anchor; the action's rows must verify (HMAC, links);
        the proposal must be for this tool; the approval for these arguments, which must be
        the ones proposed or last edited; and nothing may have run yet."""
        with audit.snapshot(self.engine) as connection:
            head = audit.head_problem(connection, self.audit_key)
            seq = audit.read_head(connection).seq
            held = audit.count(connection)
            rows = audit.rows_of(connection, action.id)
            altered = audit.row_problems(connection, self.audit_key, rows)
        if head is None and held != seq:
            head = f"it holds {held} rows where the anchor counts {seq} (rows were deleted)"
        if head is not None:
            return f"the audit log does not match its signed anchor: {head}", True
        if seq < self._seen_seq:
            return (
                f"the audit log's signed anchor went back from {self._seen_seq} to {seq} "
                "(the log was rolled back)",
                True,
            )
        self._saw(seq)
        if altered:
            return f"its audit trail was altered: {'; '.join(altered)}", False
        return self._approval_problem(action, digest, rows), False

    def _approval_problem(  # noqa: PLR0911 - one return per reason to refuse
        self, action: PendingAction, digest: str, rows: Sequence[Any]
    ) -> str | None:
        trail = [{**row, "payload": json.loads(row["payload"])} for row in rows]
        if any(e["event"] in RAN for e in trail):
            return "the audit log shows it already ran"
        if not trail or trail[0]["event"] != "proposed":
            return "the audit log holds no proposal and approval for it"
        proposal = trail[0]["payload"]
        if proposal.get("tool") != action.tool:
            return "the tool differs from what was proposed"
        expected, source, approval = proposal.get("arguments_sha256"), "proposed", None
        for entry in trail[1:]:
            if entry["event"] == "edited":  # an edit never approves, and voids earlier ones
                expected, source = entry["payload"].get("arguments_sha256"), "last edited"
                approval = None
            elif entry["event"] == "approved":
                approval = entry
        if approval is None:
            return "the audit log holds no proposal and approval for it"
        if approval["payload"].get("arguments_sha256") != digest:
            return "the arguments differ from what was approved"
        if expected != digest:
            return f"the arguments differ from what was {source}"
        if self.clock() > _aware(approval["at"]) + self.ttl:  # type: ignore[operator]
            return "the approval is older than the action time-to-live; propose it again"
        return None

    async def execute(
        self,
        action_id: str,
        ctx: ToolContext,
        progress: ProgressCallback | None = None,
        wait_seconds: float = OUTCOME_WAIT_SECONDS,
    ) -> PendingAction:
        """Runs an approved action's tool, exactly once; returns the action with its result.

        This is the only caller of the state-changing tools. It runs nothing unless the
        action is approved and its audit trail backs what would run (see _trail_problem).
        A caller that finds the action running elsewhere gets it back still approved and
        `executing`, after waiting for the outcome while the claim is recent (_outcome)."""
        action = self.get(action_id)
        if action.status != "approved":
            if action.status in {"executed", "failed"}:
                return action
            raise ActionConflict(
                f"action {action_id} is {action.status}; only approved actions run"
            )
        claim = uuid.uuid4().hex
        now = self.clock()
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == action_id,
                    ACTIONS.c.status == "approved",
                    ACTIONS.c.execution_claim.is_(None),
                )
                .values(execution_claim=claim, claimed_at=now, lease_until=now + self.lease)
            ).rowcount
        if not claimed:  # another caller runs it: nothing more runs here
            return await self._outcome(action_id, wait_seconds)
        spec = STATE_CHANGING[action.tool]
        problem: str | None
        try:
            canonical, digest = self.validate(action.tool, action.arguments)
        except InvalidArguments as error:
            canonical, digest = {}, ""
            problem, broken = f"the stored arguments are not valid ({error})", False
        else:
            problem, broken = self._trail_problem(action, digest)
        if broken:  # nothing can be recorded: the claim is given back, nothing runs
            self._release(action_id, claim)
            raise ArgumentsTampered(f"action {action_id} refused: {problem}")
        if problem is None and digest != action.arguments_sha256:
            problem = "the stored hash does not match the stored arguments"
        if problem is not None:
            self._finish(action_id, claim, "failed", {"error": f"refused: {problem}"}, "refused")
            raise ArgumentsTampered(f"action {action_id} refused: {problem}")
        keeper = threading.Event()
        threading.Thread(
            target=self._keep_lease, args=(action_id, claim, keeper), daemon=True
        ).start()
        try:
            outcome = await spec.run(ctx, spec.input_model.model_validate(canonical), progress)
        except ToolError as error:
            return self._finish(action_id, claim, "failed", {"error": str(error)}, "failed")
        except BaseException as error:  # recorded, never left half-done; then re-raised
            self._finish(
                action_id,
                claim,
                "failed",
                {
                    "error": f"interrupted by {type(error).__name__}; the change may have been "
                    "made in part: check the registry before proposing it again"
                },
                "failed",
            )
            raise
        finally:
            keeper.set()
        return self._finish(
            action_id, claim, "executed", outcome.model_dump(mode="json"), "executed"
        )

    def _keep_lease(self, action_id: str, claim: str, done: threading.Event) -> None:
        """Renews the execution's lease every quarter of it until `done` (a thread)."""
        while not done.wait(self.lease.total_seconds() / 4):
            try:
                with self.engine.begin() as connection:
                    kept = connection.execute(
                        update(ACTIONS)
                        .where(
                            ACTIONS.c.id == action_id,
                            ACTIONS.c.status == "approved",
                            ACTIONS.c.execution_claim == claim,
                        )
                        .values(lease_until=self.clock() + self.lease)
                    ).rowcount
            except DBAPIError:  # the database is away for a moment: try again next time
                continue
            if not kept:
                return

    def _release(self, action_id: str, claim: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == action_id, ACTIONS.c.execution_claim == claim)
                .values(execution_claim=None, claimed_at=None, lease_until=None)
            )

    async def _outcome(self, action_id: str, wait_seconds: float) -> PendingAction:
        """The outcome of an execution claimed by another caller: waited for only while the
        claim is younger than `wait_seconds` (two approvals at once get the same answer);
        an older one is answered at once as still running (`executing`)."""
        claimed_at = _aware(self._row(action_id)["claimed_at"]) or self.clock()
        young_for = (claimed_at - self.clock()).total_seconds() + wait_seconds
        deadline = time.monotonic() + max(0.0, min(wait_seconds, young_for))
        action = self.get(action_id)
        while action.executing and time.monotonic() < deadline:
            await anyio.sleep(0.1)
            action = self.get(action_id)
        return action

    def _finish(
        self, action_id: str, claim: str, status: Status, result: dict[str, Any], event: str
    ) -> PendingAction:
        """Records how the execution under `claim` ended (also after its lease was
        reconciled: what happened is what is recorded)."""
        self._transition(
            action_id,
            [ACTIONS.c.execution_claim == claim],
            {"status": status, "result": result},
            actor="system",
            event=event,
            payload={"result": result},
        )
        return self.get(action_id)

    def verify_audit(self) -> audit.Verification:
        with self.engine.connect() as connection:
            heads = dict(connection.execute(select(ACTIONS.c.id, ACTIONS.c.audit_head)).all())
        result = audit.verify(
            self.engine,
            self.audit_key,
            {str(k): str(v) for k, v in heads.items()},
            known_seq=self._seen_seq,
        )
        self._saw(result.anchor_seq)
        return result
