"""The audit log: every proposal, decision, execution and result, hash-chained and anchored.

Each row's hash is an HMAC (keyed with a secret kept outside the database: COPILOT_AUDIT_KEY
or COPILOT_HOME/audit.key) over its sequence number (1, 2, 3, ...), its contents and the
previous row's hash. The chain's head (newest sequence number and hash) is HMAC-signed in
a table of its own, `audit_anchor`, updated in the same transaction as every append; its
sequence number only grows. Rows are appended inside the caller's transaction, so a state
change and its audit row commit together or not at all.

Threat model: someone with database access but not the key
* cannot write a row or an anchor that verifies (no HMAC), so cannot add, alter or
  renumber rows, nor re-sign a shortened chain;
* cannot delete rows, the newest included, nor forget an action's executed or refused
  event: the chain, the sequence numbers or the signed anchor stop matching, which
  `verify` reports and execution (copilot/actions.py) refuses to run on;
* can roll the log back only to an anchor they saved earlier, together with every row after
  it. A running store remembers the highest sequence it saw and notices that; a fresh one
  cannot (keep the database's backups and logs for that). Emptying the log entirely is
  likewise visible only to a running store. An approval also expires after the action TTL;
* can stop the copilot: the action store appends nothing to, and runs nothing from, a log
  that does not match its anchor, until someone looks (`copilot audit verify`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from copilot.errors import CopilotError

GENESIS = "0" * 64
ANCHOR_ID = 1


class AuditRecord(SQLModel, table=True):
    """One audited event."""

    __tablename__ = "audit_log"

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    actor: str = Field(max_length=200)
    event: str = Field(max_length=40)
    action_id: str | None = Field(default=None, index=True, max_length=32)
    payload: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON, as hashed
    prev_hash: str = Field(unique=True, max_length=64)
    hash: str = Field(unique=True, max_length=64)


class AuditAnchorRecord(SQLModel, table=True):
    """The signed head of the audit log: one row, kept apart from the rows it protects."""

    __tablename__ = "audit_anchor"

    id: int = Field(primary_key=True)
    seq: int
    head: str = Field(max_length=64)
    mac: str = Field(max_length=64)


AUDIT: Table = AuditRecord.__table__  # type: ignore[attr-defined]
ANCHOR: Table = AuditAnchorRecord.__table__  # type: ignore[attr-defined]
TABLES = [AUDIT, ANCHOR]


class AuditBroken(CopilotError):
    """The audit log does not match its signed anchor; nothing may extend or rely on it."""


def canonical(value: Any) -> str:
    """The one JSON spelling of a value (sorted keys, no spaces) that hashes are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def _mac(key: bytes, value: Any) -> str:
    return hmac.new(key, canonical(value).encode(), hashlib.sha256).hexdigest()


def _row_hash(
    key: bytes,
    seq: int,
    prev_hash: str,
    at: datetime,
    actor: str,
    event: str,
    action_id: str | None,
    payload: str,
) -> str:
    at_text = at.astimezone(UTC).isoformat(timespec="microseconds")
    return _mac(key, [seq, prev_hash, at_text, actor, event, action_id, payload])


def _anchor_mac(key: bytes, seq: int, head: str) -> str:
    return _mac(key, ["audit_anchor", seq, head])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _recomputed(key: bytes, row: Any) -> str:
    return _row_hash(
        key,
        row["seq"],
        row["prev_hash"],
        _aware(row["at"]),
        row["actor"],
        row["event"],
        row["action_id"],
        row["payload"],
    )


def load_key(home: Path, configured: str | None) -> bytes:
    """The audit key: COPILOT_AUDIT_KEY when set (required when several hosts share the
    database), else COPILOT_HOME/audit.key, created on first use (readable by its owner only)."""
    if configured:
        return configured.encode()
    path = home / "audit.key"
    home.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_bytes().strip()


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that reads one consistent state of the log (and the rest)."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():  # SQLite: BEGIN IMMEDIATE (see model_service.database)
            yield connection


@dataclass(frozen=True)
class Head:
    """The newest row (sequence number and hash) as the signed anchor records it."""

    seq: int
    hash: str


def head_problem(  # noqa: PLR0911 - one return per way the head can be wrong
    connection: Connection, key: bytes, *, lock: bool = False
) -> str | None:
    """Why the newest rows do not match the signed anchor (None when they do). `lock`
    holds the anchor until the transaction ends (appenders take it first)."""
    query = select(ANCHOR).where(ANCHOR.c.id == ANCHOR_ID)
    anchor = connection.execute(query.with_for_update() if lock else query).mappings().first()
    newest = (
        connection.execute(select(AUDIT).order_by(AUDIT.c.seq.desc()).limit(1)).mappings().first()
    )
    if anchor is None:
        return None if newest is None else "the signed anchor of the audit log is missing"
    if not hmac.compare_digest(anchor["mac"], _anchor_mac(key, anchor["seq"], anchor["head"])):
        return "the audit anchor's signature does not match (the anchor was altered)"
    if newest is None and anchor["seq"] == 0 and anchor["head"] == GENESIS:
        return None  # an empty log, anchored when its tables were made
    if newest is None or newest["seq"] < anchor["seq"]:
        seq = 0 if newest is None else newest["seq"]
        return (
            f"the newest audit row is {seq} but the signed anchor records {anchor['seq']} "
            "(rows at the end were deleted)"
        )
    if newest["seq"] > anchor["seq"]:
        return (
            f"the audit log holds rows after the signed anchor ({anchor['seq']}): rows were "
            "added, or the anchor was rolled back"
        )
    if newest["hash"] != anchor["head"] or _recomputed(key, newest) != newest["hash"]:
        return f"the newest audit row {newest['seq']} is not the one the anchor signed"
    return None


def ensure_anchor(engine: Engine, key: bytes) -> None:
    """Anchors an empty log at sequence 0, so the first appenders lock a row that exists
    (two first writers would otherwise both find none); a log with rows is left as it is."""
    with engine.begin() as connection:
        if connection.execute(select(ANCHOR.c.id)).first() is not None:
            return
        if connection.execute(select(AUDIT.c.seq).limit(1)).first() is not None:
            return  # rows without an anchor: head_problem says so
    signed = {"seq": 0, "head": GENESIS, "mac": _anchor_mac(key, 0, GENESIS)}
    with contextlib.suppress(IntegrityError), engine.begin() as connection:
        connection.execute(insert(ANCHOR).values(id=ANCHOR_ID, **signed))


def read_head(connection: Connection) -> Head:
    """The anchor as stored (sequence 0 and GENESIS for an empty log)."""
    anchor = connection.execute(select(ANCHOR).where(ANCHOR.c.id == ANCHOR_ID)).mappings().first()
    return Head(0, GENESIS) if anchor is None else Head(anchor["seq"], anchor["head"])


def append(
    connection: Connection,
    key: bytes,
    *,
    actor: str,
    event: str,
    action_id: str | None,
    payload: Any,
    at: datetime | None = None,
    check_head: bool = False,
) -> str:
    """Appends one event in the caller's transaction and moves the signed anchor to it;
    returns its hash. With `check_head` (the action store) it first refuses, with
    AuditBroken, to extend a log whose newest rows do not match the anchor."""
    problem = head_problem(connection, key, lock=True)
    if check_head and problem is not None:
        raise AuditBroken(problem)
    newest = connection.execute(
        select(AUDIT.c.seq, AUDIT.c.hash).order_by(AUDIT.c.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (1, GENESIS) if newest is None else (newest[0] + 1, newest[1])
    at = datetime.now(UTC) if at is None else at
    text = canonical(payload)
    digest = _row_hash(key, seq, prev_hash, at, actor, event, action_id, text)
    connection.execute(
        insert(AUDIT).values(
            seq=seq,
            at=at,
            actor=actor,
            event=event,
            action_id=action_id,
            payload=text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    signed = {"seq": seq, "head": digest, "mac": _anchor_mac(key, seq, digest)}
    moved = connection.execute(
        update(ANCHOR).where(ANCHOR.c.id == ANCHOR_ID, ANCHOR.c.seq < seq).values(**signed)
    ).rowcount
    if not moved:  # the first row (a concurrent first append fails on the primary key)
        connection.execute(insert(ANCHOR).values(id=ANCHOR_ID, **signed))
    return digest


def rows_of(connection: Connection, action_id: str) -> list[Any]:
    """The audit rows of one action, oldest first, as stored (payloads as signed text)."""
    return list(
        connection.execute(
            select(AUDIT).where(AUDIT.c.action_id == action_id).order_by(AUDIT.c.seq)
        )
        .mappings()
        .all()
    )


def events(connection: Connection, action_id: str) -> list[dict[str, Any]]:
    """The audited events of one action, oldest first (payloads decoded)."""
    return [
        {**row, "payload": json.loads(row["payload"])} for row in rows_of(connection, action_id)
    ]


def row_problems(connection: Connection, key: bytes, rows: Sequence[Any]) -> list[str]:
    """What is wrong with these rows (as stored, see rows_of): a hash that does not match
    its contents, or a link to a row before it that is not there."""
    before = {row["seq"] - 1 for row in rows if row["seq"] > 1}
    previous = dict(
        connection.execute(select(AUDIT.c.seq, AUDIT.c.hash).where(AUDIT.c.seq.in_(before))).all()
    )
    problems = []
    for row in rows:
        expected = GENESIS if row["seq"] == 1 else previous.get(row["seq"] - 1)
        if _recomputed(key, row) != row["hash"]:
            problems.append(f"audit row {row['seq']} ({row['event']}) does not match its hash")
        elif row["prev_hash"] != expected:
            problems.append(
                f"audit row {row['seq']} ({row['event']}) does not follow the row before it"
            )
    return problems


def count(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(AUDIT)).scalar_one())


@dataclass
class Verification:
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    anchor_seq: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    engine: Engine, key: bytes, heads: dict[str, str] | None = None, *, known_seq: int = 0
) -> Verification:
    """Recomputes the chain and checks it against the signed anchor. `heads` (action id ->
    hash of its latest audit row) lets a deleted action tail be named; `known_seq` (the
    highest sequence a store saw) lets a rollback to an older anchor be noticed."""
    result = Verification()
    expected_prev = GENESIS
    seen: set[str] = set()
    latest: dict[str, str] = {}
    with snapshot(engine) as connection:
        anchor_problem = head_problem(connection, key)
        result.anchor_seq = read_head(connection).seq
        for row in connection.execute(select(AUDIT).order_by(AUDIT.c.seq)).mappings():
            result.rows += 1
            if row["seq"] != result.rows:
                result.problems.append(
                    f"row {row['seq']}: expected sequence {result.rows} (rows were deleted)"
                )
            if row["prev_hash"] != expected_prev:
                result.problems.append(
                    f"row {row['seq']}: does not follow the row before it "
                    "(a row was deleted or altered before it)"
                )
            if _recomputed(key, row) != row["hash"]:
                result.problems.append(
                    f"row {row['seq']}: contents do not match its hash (the row was altered)"
                )
            expected_prev = row["hash"]
            seen.add(row["hash"])
            if row["action_id"] is not None:
                latest[row["action_id"]] = row["hash"]
    if anchor_problem is not None:
        result.problems.append(anchor_problem)
    if result.anchor_seq < known_seq:
        result.problems.append(
            f"the signed anchor is at {result.anchor_seq} but this process saw {known_seq}: "
            "the log was rolled back to an older anchor"
        )
    for action_id, head in (heads or {}).items():
        if head not in seen:
            result.problems.append(
                f"action {action_id}: its latest audit row is missing (rows were deleted)"
            )
        elif latest.get(action_id) != head:
            result.problems.append(
                f"action {action_id}: audit rows after the one it records were added, or it "
                "was pointed back at an older row"
            )
    return result
