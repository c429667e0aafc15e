"""Conversations as the agent API keeps them: who owns each, one turn at a time, and
the events of its turns. Three tables in the copilot database, shared by every replica:

* `conversation`: id, owner (an account such as "api-key:ann"), created_at.
* `conversation_turn`: a lease per conversation while a turn runs. Taking it is an INSERT
  (the primary key refuses a second taker) or an UPDATE of an expired lease, so two
  processes never run turns of one conversation at once. The holder renews it every
  TURN_RENEW_SECONDS, so a crashed process frees the conversation within
  TURN_LEASE_SECONDS.
* `conversation_event`: what turns did, in order. Only the lease holder writes a
  conversation's events, one committed row after another, so a reader that follows
  ids misses none; any process can stream them.

Errors: ConversationError -> TurnInProgress (409).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel
from sqlalchemy import JSON, Column, DateTime, Engine, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from copilot.errors import CopilotError

logger = logging.getLogger(__name__)

# A crashed process frees its conversation within TURN_LEASE_SECONDS; the holder renews
# three times per lease, so only an event loop stalled for 10 s loses it.
TURN_LEASE_SECONDS = 15.0
TURN_RENEW_SECONDS = 5.0
MAX_MESSAGE_CHARS = 4000  # what one turn may say (every surface; the agent API answers 422)
EVENT_RETENTION = timedelta(days=1)  # enough to resume a stream; the history is in checkpoints
TURN_WAIT_POLL_SECONDS = 0.2
T = TypeVar("T")
OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]


class ConversationError(CopilotError):
    """A request about a conversation that cannot be granted; the message says why."""


class TurnInProgress(ConversationError):
    pass


class MessageTooLong(ConversationError):
    def __init__(self, length: int) -> None:
        super().__init__(
            f"the message has {length:,} characters; the limit is {MAX_MESSAGE_CHARS:,} "
            "(nothing was sent)"
        )


class ConversationRecord(SQLModel, table=True):
    __tablename__ = "conversation"

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(index=True, max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TurnLeaseRecord(SQLModel, table=True):
    __tablename__ = "conversation_turn"

    conversation_id: str = Field(primary_key=True, max_length=64)
    turn_id: str = Field(max_length=32)
    kind: str = Field(max_length=16)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    lease_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class EventRecord(SQLModel, table=True):
    __tablename__ = "conversation_event"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(index=True, max_length=64)
    turn_id: str = Field(index=True, max_length=32)
    event: str = Field(max_length=32)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


CONVERSATIONS: Table = ConversationRecord.__table__  # type: ignore[attr-defined]
TURNS: Table = TurnLeaseRecord.__table__  # type: ignore[attr-defined]
EVENTS: Table = EventRecord.__table__  # type: ignore[attr-defined]


class Conversation(BaseModel):
    id: str
    owner: str
    created_at: datetime


@dataclass(frozen=True)
class Lease:
    """The right to run one turn of a conversation."""

    conversation_id: str
    turn_id: str
    kind: str
    started_at: datetime
    lease_until: datetime | None = field(default=None, compare=False)  # unless renewed


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: dict[str, Any]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class ConversationStore:
    """Conversations, turn leases and turn events in the copilot database (synchronous)."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: float = TURN_LEASE_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock
        SQLModel.metadata.create_all(engine, tables=[CONVERSATIONS, TURNS, EVENTS])

    def create(self, owner: str) -> Conversation:
        conversation = Conversation(id=uuid.uuid4().hex, owner=owner, created_at=self.clock())
        with self.engine.begin() as connection:
            connection.execute(insert(CONVERSATIONS).values(**conversation.model_dump()))
        return conversation

    def get(self, conversation_id: str) -> Conversation | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(CONVERSATIONS).where(CONVERSATIONS.c.id == conversation_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Conversation(id=row["id"], owner=row["owner"], created_at=_aware(row["created_at"]))

    def recent(self, owner: str | None = None, limit: int = 100) -> list[Conversation]:
        """Conversations, newest first (all of them when `owner` is None)."""
        query = select(CONVERSATIONS).order_by(CONVERSATIONS.c.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(CONVERSATIONS.c.owner == owner)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            Conversation(id=r["id"], owner=r["owner"], created_at=_aware(r["created_at"]))
            for r in rows
        ]

    def ids_owned_by(self, owner: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(CONVERSATIONS.c.id).where(CONVERSATIONS.c.owner == owner)
                ).scalars()
            )

    def begin_turn(self, conversation_id: str, kind: str) -> Lease:
        """Takes the conversation's turn lease, or raises TurnInProgress."""
        now = self.clock()
        lease = Lease(conversation_id, uuid.uuid4().hex, kind, now)
        values = {
            "conversation_id": conversation_id,
            "turn_id": lease.turn_id,
            "kind": kind,
            "started_at": now,
            "lease_until": now + self.lease,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(TURNS).values(**values))
        except IntegrityError:  # a lease row exists: take it over only if it ran out
            with self.engine.begin() as connection:
                taken = connection.execute(
                    update(TURNS)
                    .where(TURNS.c.conversation_id == conversation_id, TURNS.c.lease_until < now)
                    .values(**values)
                ).rowcount
            if not taken:
                running = self.turn_in_progress(conversation_id)
                since = free = ""
                if running is not None:
                    since = f" (a {running.kind} turn since {running.started_at:%H:%M:%S} UTC)"
                if running is not None and running.lease_until is not None:
                    free = (
                        f"; if the process running it stopped, the conversation is free at "
                        f"{running.lease_until:%H:%M:%S} UTC at the latest"
                    )
                raise TurnInProgress(
                    f"a turn is in progress in conversation {conversation_id}{since}; "
                    f"wait for its turn_finished event, then send again{free}"
                ) from None
        self._prune(conversation_id, now)
        return lease

    def renew(self, lease: Lease) -> bool:
        """Extends the lease; False when it was lost (it ran out and another took it)."""
        now = self.clock()
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(TURNS)
                    .where(
                        TURNS.c.conversation_id == lease.conversation_id,
                        TURNS.c.turn_id == lease.turn_id,
                    )
                    .values(lease_until=now + self.lease)
                ).rowcount
            )

    def end_turn(self, lease: Lease) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(TURNS).where(
                    TURNS.c.conversation_id == lease.conversation_id,
                    TURNS.c.turn_id == lease.turn_id,
                )
            )

    def turn_in_progress(self, conversation_id: str) -> Lease | None:
        """The running turn's lease (None when no live lease exists)."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(TURNS).where(
                        TURNS.c.conversation_id == conversation_id,
                        TURNS.c.lease_until >= self.clock(),
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Lease(
            conversation_id,
            row["turn_id"],
            row["kind"],
            _aware(row["started_at"]),
            _aware(row["lease_until"]),
        )

    def append_event(
        self, conversation_id: str, turn_id: str, event: str, data: dict[str, Any]
    ) -> int:
        with self.engine.begin() as connection:
            result = connection.execute(
                insert(EVENTS).values(
                    conversation_id=conversation_id,
                    turn_id=turn_id,
                    event=event,
                    data=data,
                    created_at=self.clock(),
                )
            )
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row always has one
        return int(key[0])

    def events_after(self, conversation_id: str, after: int, limit: int = 100) -> list[Event]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(EVENTS.c.id, EVENTS.c.event, EVENTS.c.data)
                .where(EVENTS.c.conversation_id == conversation_id, EVENTS.c.id > after)
                .order_by(EVENTS.c.id)
                .limit(limit)
            ).all()
        return [Event(int(r.id), r.event, r.data) for r in rows]

    def stream_start(self, conversation_id: str, last_event_id: int | None = None) -> int:
        """Where a new reader starts: after `last_event_id` when resuming, else at the first
        event of the turn in progress, else after the newest event."""
        if last_event_id is not None:
            return last_event_id
        running = self.turn_in_progress(conversation_id)
        with self.engine.connect() as connection:
            if running is not None:
                first = connection.execute(
                    select(func.min(EVENTS.c.id)).where(
                        EVENTS.c.conversation_id == conversation_id,
                        EVENTS.c.turn_id == running.turn_id,
                    )
                ).scalar()
                if first is not None:
                    return int(first) - 1
            newest = connection.execute(
                select(func.max(EVENTS.c.id)).where(EVENTS.c.conversation_id == conversation_id)
            ).scalar()
        return int(newest or 0)

    def _prune(self, conversation_id: str, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(EVENTS).where(
                    EVENTS.c.conversation_id == conversation_id,
                    EVENTS.c.created_at < now - EVENT_RETENTION,
                )
            )


class TurnEvents:
    """Publishes the events of one turn (each data dict gains the turn's id)."""

    def __init__(self, store: ConversationStore, lease: Lease) -> None:
        self.store = store
        self.lease = lease
        self.published = 0

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(
            self.store.append_event,
            self.lease.conversation_id,
            self.lease.turn_id,
            event,
            {"turn_id": self.lease.turn_id, **data},
        )
        self.published += 1


async def _take(
    store: ConversationStore, conversation_id: str, kind: str, wait_seconds: float
) -> Lease:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await anyio.to_thread.run_sync(store.begin_turn, conversation_id, kind)
        except TurnInProgress:
            if time.monotonic() >= deadline:
                raise
            await anyio.sleep(TURN_WAIT_POLL_SECONDS)


async def _keep(store: ConversationStore, lease: Lease) -> None:
    while True:
        await anyio.sleep(TURN_RENEW_SECONDS)
        if not await anyio.to_thread.run_sync(store.renew, lease):
            logger.warning(
                "turn %s of conversation %s lost its lease", lease.turn_id, lease.conversation_id
            )
            return


async def run_turn(
    store: ConversationStore,
    conversation_id: str,
    kind: str,
    work: Callable[[TurnEvents], Awaitable[T]],
    wait_seconds: float = 0.0,
) -> T:
    """Runs `work` as the conversation's only turn (waiting up to `wait_seconds` for a
    running one, then TurnInProgress). A turn that fails after publishing ends with a
    turn_failed event, so readers never wait for a turn_finished that cannot come."""
    lease = await _take(store, conversation_id, kind, wait_seconds)
    events = TurnEvents(store, lease)
    # A plain task, not a task group: a task group would wrap work's errors in groups.
    keeper = asyncio.create_task(_keep(store, lease))
    try:
        return await work(events)
    except BaseException as error:
        if events.published:
            with anyio.CancelScope(shield=True):
                await events.publish(
                    "turn_failed", {"error": f"{type(error).__name__}: {error}"[:2000]}
                )
        raise
    finally:
        keeper.cancel()  # not awaited: a cancellation of this task must not be swallowed
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(store.end_turn, lease)


async def relay(
    events: TurnEvents,
    stream: AsyncIterator[tuple[str, dict[str, Any]]],
    on_event: OnEvent | None = None,
) -> dict[str, Any]:
    """Publishes a turn's events as they happen (and hands each but the last to
    `on_event`); returns its turn_finished data."""
    finished: dict[str, Any] | None = None
    try:
        async for name, data in stream:
            await events.publish(name, data)
            if name == "turn_finished":
                finished = data
            elif on_event is not None:
                await on_event(name, data)
    finally:
        if isinstance(stream, AsyncGenerator):  # closed now, not by the GC, if publishing fails
            await stream.aclose()
    if finished is None:
        raise RuntimeError("the turn ended without turn_finished")
    return finished
