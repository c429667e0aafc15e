"""Fixtures of the core's tests: the copilot database and an action store on it."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from copilot.actions import ActionStore
from model_service.database import make_engine

KEY = b"test-audit-key"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> ActionStore:
    return ActionStore(engine, audit_key=KEY, ttl_seconds=900)
