"""The audit log: every proposal, decision, execution and result, hash-chained.

Each row's hash is an HMAC (keyed with a secret kept outside the database: COPILOT_AUDIT_KEY
or COPILOT_HOME/audit.key) over its contents and the previous row's hash, so nobody with
only database access can write a row that verifies. `prev_hash` is unique,
so two writers can never both extend the same row (the loser's transaction fails and is
retried by the caller). `verify` recomputes the chain: an edited row no longer matches
its hash, a deleted row breaks the link of the next one, and a deleted tail no longer
holds the entry a pending action points to (`audit_head`). Rows are appended inside the
caller's transaction, so a state change and its audit row commit together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Engine, Table, Text, insert, select
from sqlmodel import Field, SQLModel

GENESIS = "0" * 64


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


AUDIT: Table = AuditRecord.__table__  # type: ignore[attr-defined]


def canonical(value: Any) -> str:
    """The one JSON spelling of a value (sorted keys, no spaces) that hashes are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def _row_hash(
    key: bytes,
    prev_hash: str,
    at: datetime,
    actor: str,
    event: str,
    action_id: str | None,
    payload: str,
) -> str:
    at_text = at.astimezone(UTC).isoformat(timespec="microseconds")
    message = canonical([prev_hash, at_text, actor, event, action_id, payload]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


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


def append(
    connection: Connection,
    key: bytes,
    *,
    actor: str,
    event: str,
    action_id: str | None,
    payload: Any,
) -> str:
    """Appends one event in the caller's transaction; returns its hash."""
    prev_hash = (
        connection.execute(
            select(AUDIT.c.hash).order_by(AUDIT.c.seq.desc()).limit(1)
        ).scalar_one_or_none()
        or GENESIS
    )
    at = datetime.now(UTC)
    text = canonical(payload)
    digest = _row_hash(key, prev_hash, at, actor, event, action_id, text)
    connection.execute(
        insert(AUDIT).values(
            at=at,
            actor=actor,
            event=event,
            action_id=action_id,
            payload=text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    return digest


def events(connection: Connection, action_id: str) -> list[dict[str, Any]]:
    """The audited events of one action, oldest first (payloads decoded)."""
    rows = (
        connection.execute(
            select(AUDIT).where(AUDIT.c.action_id == action_id).order_by(AUDIT.c.seq)
        )
        .mappings()
        .all()
    )
    return [{**row, "payload": json.loads(row["payload"])} for row in rows]


@dataclass
class Verification:
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(engine: Engine, key: bytes, heads: dict[str, str] | None = None) -> Verification:
    """Recomputes the chain. `heads` (action id -> hash of its latest audit row) lets a
    deleted tail be noticed too."""
    result = Verification()
    expected_prev = GENESIS
    seen: set[str] = set()
    latest: dict[str, str] = {}
    with engine.connect() as connection:
        rows = connection.execute(select(AUDIT).order_by(AUDIT.c.seq)).mappings()
        for row in rows:
            result.rows += 1
            at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
            if row["prev_hash"] != expected_prev:
                result.problems.append(
                    f"row {row['seq']}: does not follow the row before it "
                    "(a row was deleted or altered before it)"
                )
            recomputed = _row_hash(
                key,
                row["prev_hash"],
                at,
                row["actor"],
                row["event"],
                row["action_id"],
                row["payload"],
            )
            if recomputed != row["hash"]:
                result.problems.append(
                    f"row {row['seq']}: contents do not match its hash (the row was altered)"
                )
            expected_prev = row["hash"]
            seen.add(row["hash"])
            if row["action_id"] is not None:
                latest[row["action_id"]] = row["hash"]
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
