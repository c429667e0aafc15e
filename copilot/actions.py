"""Pending actions: the only way a state-changing tool runs (docs/interfaces.md, safety contract).

    propose -> pending --approve/edit--> approved --execute--> executed | failed
                       --reject--> rejected
                       --after the TTL--> expired

* Arguments are validated against the tool's input model when proposed and when edited;
  their SHA-256 (of the canonical JSON) is stored and written to the audit log with the
  approval.
* `execute` is the execution path. It runs a tool only for an approved action, after
  re-validating the stored arguments and checking that their hash equals both the stored
  hash and the hash the approval recorded in the audit log.
* Exactly once: every transition is a compare-and-set on the status, and execution first
  claims the action (`execution_claim`), so a second approval, or two at the same moment
  from two processes, run nothing more and return the same action.
* Every transition appends to the hash-chained audit log in the same transaction.

Errors: ActionError -> UnknownAction (404), InvalidArguments (422), ActionConflict (409:
expired, already decided; AlreadyDecided carries the action), NotAllowed (403: four eyes),
ArgumentsTampered (refused).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, Column, Connection, DateTime, Engine, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from copilot import audit
from copilot.errors import CopilotError
from tools.context import ToolContext
from tools.errors import ToolError
from tools.lifecycle import (
    ProgressCallback,
    PromoteInput,
    RetrainInput,
    RollbackInput,
    promote_model,
    retrain_model,
    rollback_model,
)

Status = Literal["pending", "approved", "rejected", "expired", "executed", "failed"]
Decision = Literal["approve", "edit", "reject"]
TRANSACTION_RETRIES = 5


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


class NotAllowed(ActionError):
    pass


class ArgumentsTampered(ActionError):
    pass


@dataclass(frozen=True)
class StateChangingTool:
    name: str
    input_model: type[BaseModel]
    run: Callable[[ToolContext, Any, ProgressCallback | None], Awaitable[BaseModel]]
    summary: Callable[[Any], str]  # what will change, for people deciding


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
        ),
        StateChangingTool(
            "rollback_model",
            RollbackInput,
            _rollback,
            lambda _: "restore the previous @champion for scoring patients",
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
    requested_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(index=True, max_length=16)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    comment: str | None = Field(default=None, max_length=2000)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    execution_claim: str | None = Field(default=None, max_length=32)
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
    summary: str
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
        summary=tool.summary(tool.input_model.model_validate(row["arguments"])),
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
    """Pending actions and their audit trail in the copilot database."""

    def __init__(
        self, engine: Engine, *, audit_key: bytes, ttl_seconds: int, four_eyes: bool = False
    ) -> None:
        self.engine = engine
        self.audit_key = audit_key
        self.ttl = timedelta(seconds=ttl_seconds)
        self.four_eyes = four_eyes
        SQLModel.metadata.create_all(engine, tables=[ACTIONS, audit.AUDIT])

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        """Runs `work` in one transaction, again if the audit chain moved meanwhile."""
        for attempt in range(TRANSACTION_RETRIES):
            try:
                with self.engine.begin() as connection:
                    return work(connection)
            except IntegrityError:
                if attempt == TRANSACTION_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

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
            raise InvalidArguments(
                tool,
                [
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in error.errors()
                ],
            ) from None
        canonical = model.model_dump(mode="json")
        return canonical, audit.sha256(canonical)

    def propose(
        self, conversation_id: str, tool: str, arguments: dict[str, Any], requested_by: str
    ) -> PendingAction:
        """Records a pending action (nothing runs)."""
        canonical, digest = self.validate(tool, arguments)
        action_id = uuid.uuid4().hex
        now = datetime.now(UTC)

        def work(connection: Connection) -> None:
            head = audit.append(
                connection,
                self.audit_key,
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
                    audit_head=head,
                )
            )

        self._transaction(work)
        return self.get(action_id)

    def get(self, action_id: str) -> PendingAction:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(ACTIONS).where(ACTIONS.c.id == action_id))
                .mappings()
                .first()
            )
        if row is None:
            raise UnknownAction(f"action {action_id!r} does not exist")
        return _view(row)

    def list(
        self,
        status: Status | None = None,
        conversation_ids: list[str] | None = None,
        requested_by: str | None = None,
    ) -> list[PendingAction]:
        """Actions, newest first; overdue pending ones are marked expired first."""
        self.expire_overdue()
        query = select(ACTIONS).order_by(ACTIONS.c.created_at.desc())
        if status is not None:
            query = query.where(ACTIONS.c.status == status)
        if conversation_ids is not None:
            query = query.where(ACTIONS.c.conversation_id.in_(conversation_ids))
        if requested_by is not None:
            query = query.where(ACTIONS.c.requested_by == requested_by)
        with self.engine.connect() as connection:
            return [_view(row) for row in connection.execute(query).mappings()]

    def expire_overdue(self) -> None:
        with self.engine.connect() as connection:
            overdue = (
                connection.execute(
                    select(ACTIONS.c.id).where(
                        ACTIONS.c.status == "pending", ACTIONS.c.expires_at < datetime.now(UTC)
                    )
                )
                .scalars()
                .all()
            )
        for action_id in overdue:
            self._expire(action_id)

    def _expire(self, action_id: str) -> bool:
        def work(connection: Connection) -> bool:
            changed = connection.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == action_id, ACTIONS.c.status == "pending")
                .values(status="expired")
            ).rowcount
            if changed:
                head = audit.append(
                    connection,
                    self.audit_key,
                    actor="system",
                    event="expired",
                    action_id=action_id,
                    payload={},
                )
                connection.execute(
                    update(ACTIONS).where(ACTIONS.c.id == action_id).values(audit_head=head)
                )
            return bool(changed)

        return bool(self._transaction(work))

    def decide(
        self,
        action_id: str,
        decision: Decision,
        by: str,
        arguments: dict[str, Any] | None = None,
        comment: str | None = None,
    ) -> PendingAction:
        """Approve, edit (= approve with new, re-validated arguments) or reject.

        A repeated approval of an approved, executed or failed action changes nothing and
        returns it as it is."""
        action = self.get(action_id)
        if action.status == "pending" and datetime.now(UTC) > action.expires_at:
            self._expire(action_id)
            expired = action.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            raise ActionConflict(f"action {action_id} expired at {expired}; propose it again")
        if action.status != "pending":
            done = {"approved", "executed", "failed"}
            if decision in {"approve", "edit"} and action.status in done:
                return action
            raise ActionConflict(f"action {action_id} is already {action.status}")
        if self.four_eyes and principal(by) == principal(action.requested_by):
            raise NotAllowed(
                f"{by} requested action {action_id} and may not decide it (four-eyes rule)"
            )
        values: dict[str, Any] = {
            "decided_by": by,
            "decided_at": datetime.now(UTC),
            "comment": comment,
        }
        payload: dict[str, Any] = {"comment": comment}
        if decision == "edit":
            if arguments is None:
                raise InvalidArguments(action.tool, ["edit needs the new arguments"])
            canonical, digest = self.validate(action.tool, arguments)
            values |= {
                "arguments": canonical,
                "arguments_sha256": digest,
                "original_arguments": action.original_arguments or action.arguments,
            }
            payload |= {
                "arguments": canonical,
                "arguments_sha256": digest,
                "previous_sha256": action.arguments_sha256,
            }
        else:
            payload["arguments_sha256"] = action.arguments_sha256
        values["status"] = "rejected" if decision == "reject" else "approved"
        event = {"approve": "approved", "edit": "edited", "reject": "rejected"}[decision]

        def work(connection: Connection) -> bool:
            changed = connection.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == action_id,
                    ACTIONS.c.status == "pending",
                    ACTIONS.c.expires_at >= datetime.now(UTC),
                )
                .values(**values)
            ).rowcount
            if changed:
                head = audit.append(
                    connection,
                    self.audit_key,
                    actor=by,
                    event=event,
                    action_id=action_id,
                    payload=payload,
                )
                connection.execute(
                    update(ACTIONS).where(ACTIONS.c.id == action_id).values(audit_head=head)
                )
            return bool(changed)

        if not self._transaction(work):  # decided by someone else meanwhile
            return self.decide(action_id, decision, by, arguments, comment)
        return self.get(action_id)

    def _check_approval(  # noqa: PLR0911 - one return per reason to refuse
        self, action: PendingAction, digest: str
    ) -> str | None:
        """Why the audit trail does not back running `action` with arguments `digest`
        (None when it does): the approval must be for these arguments of this tool, the
        arguments must be the ones proposed (or approved in an edit), and nothing may
        have run yet."""
        with self.engine.connect() as connection:
            trail = audit.events(connection, action.id)
        if any(e["event"] in {"executed", "failed", "refused"} for e in trail):
            return "the audit log shows it already ran"
        proposed = [e for e in trail if e["event"] == "proposed"]
        decisions = [e for e in trail if e["event"] in {"approved", "edited"}]
        if not proposed or not decisions:
            return "the audit log holds no proposal and approval for it"
        if proposed[0]["payload"].get("tool") != action.tool:
            return "the tool differs from what was proposed"
        decision = decisions[-1]
        if decision["payload"].get("arguments_sha256") != digest:
            return "the arguments differ from what was approved"
        if (
            decision["event"] == "approved"
            and proposed[0]["payload"].get("arguments_sha256") != digest
        ):
            return "the arguments differ from what was proposed"
        if (
            datetime.now(UTC)
            > decision["at"].replace(tzinfo=decision["at"].tzinfo or UTC) + self.ttl
        ):
            return "the approval is older than the action time-to-live; propose it again"
        return None

    async def execute(
        self,
        action_id: str,
        ctx: ToolContext,
        progress: ProgressCallback | None = None,
        wait_seconds: float = 900.0,
    ) -> PendingAction:
        """Runs an approved action's tool, exactly once; returns the action with its result.

        This is the only caller of the state-changing tools. It runs nothing unless the
        action is approved and its audit trail backs what would run (see _check_approval).
        A caller that finds the action already running waits (up to `wait_seconds`) for
        the same outcome."""
        action = self.get(action_id)
        if action.status != "approved":
            if action.status in {"executed", "failed"}:
                return action
            raise ActionConflict(
                f"action {action_id} is {action.status}; only approved actions run"
            )
        claim = uuid.uuid4().hex
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == action_id,
                    ACTIONS.c.status == "approved",
                    ACTIONS.c.execution_claim.is_(None),
                )
                .values(execution_claim=claim)
            ).rowcount
        if not claimed:  # another caller runs it: nothing more runs here
            return await self._outcome(action_id, wait_seconds)
        spec = STATE_CHANGING[action.tool]
        canonical, digest = self.validate(action.tool, action.arguments)
        problem = self._check_approval(action, digest)
        if problem is None and digest != action.arguments_sha256:
            problem = "the stored hash does not match the stored arguments"
        if problem is not None:
            self._finish(action_id, "failed", {"error": f"refused: {problem}"}, "refused")
            raise ArgumentsTampered(f"action {action_id} refused: {problem}")
        try:
            outcome = await spec.run(ctx, spec.input_model.model_validate(canonical), progress)
        except ToolError as error:
            return self._finish(action_id, "failed", {"error": str(error)}, "failed")
        except BaseException as error:  # recorded, never left half-done; then re-raised
            self._finish(
                action_id,
                "failed",
                {
                    "error": f"interrupted by {type(error).__name__}; the change may have been "
                    "made in part: check the registry before proposing it again"
                },
                "failed",
            )
            raise
        return self._finish(action_id, "executed", outcome.model_dump(mode="json"), "executed")

    async def _outcome(self, action_id: str, wait_seconds: float) -> PendingAction:
        deadline = time.monotonic() + wait_seconds
        action = self.get(action_id)
        while action.status == "approved" and time.monotonic() < deadline:
            await anyio.sleep(0.1)
            action = self.get(action_id)
        return action

    def _finish(
        self, action_id: str, status: Status, result: dict[str, Any], event: str
    ) -> PendingAction:
        def work(connection: Connection) -> None:
            head = audit.append(
                connection,
                self.audit_key,
                actor="system",
                event=event,
                action_id=action_id,
                payload={"result": result},
            )
            connection.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == action_id)
                .values(status=status, result=result, audit_head=head)
            )

        self._transaction(work)
        return self.get(action_id)

    def verify_audit(self) -> audit.Verification:
        with self.engine.connect() as connection:
            heads = dict(connection.execute(select(ACTIONS.c.id, ACTIONS.c.audit_head)).all())
        return audit.verify(self.engine, self.audit_key, {str(k): str(v) for k, v in heads.items()})
