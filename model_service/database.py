"""SQLAlchemy engines for the copilot database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, Table, create_engine, event, inspect, text


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the driver we ship), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so several processes can share it."""
    url = normalize_url(url)
    # orjson for JSON columns: the prediction log writes 10,000 of them per batch request
    json_options: dict[str, Any] = {
        "json_serializer": lambda value: orjson.dumps(value).decode(),
        "json_deserializer": orjson.loads,
    }
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, **json_options)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, **json_options
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(connection: Any, _record: Any) -> None:
        connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with "database
        # is locked" when another connection committed in between (WAL snapshots cannot
        # be upgraded). Taking the write lock up front lets the busy timeout do its job.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def add_missing_columns(engine: Engine, table: Table) -> None:
    """Columns this version added to a table an older version created (nullable ones only:
    ALTER TABLE ... ADD COLUMN, which SQLite and PostgreSQL both take)."""
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in present]
    if not missing:
        return
    with engine.begin() as connection:
        for column in missing:
            if not column.nullable:
                raise ValueError(f"{table.name}.{column.name} cannot be added in place")
            kind = column.type.compile(dialect=engine.dialect)
            connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
