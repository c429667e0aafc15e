"""The prediction log's write-behind behaviour (SQLite; PostgreSQL in test_postgres.py)."""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from model_service.database import make_engine
from model_service.predictions import PredictionBatch, PredictionLog, PredictionLogFull
from model_service.serving import new_ids


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    yield engine
    engine.dispose()


def _batch(rows: int, created: datetime | None = None, chol: float = 200.0) -> PredictionBatch:
    return PredictionBatch(
        ids=new_ids(rows),
        created_at=created or datetime.now(UTC),
        dataset="heart-disease",
        model_name="m",
        model_version="1",
        threshold=0.5,
        probabilities=[0.4] * rows,
        labels=[0] * rows,
        records=[{"age": 50, "chol": chol} for _ in range(rows)],
    )


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM prediction_log")).scalar_one())


def test_flush_returns_while_traffic_keeps_arriving(engine: Engine) -> None:
    log = PredictionLog(engine)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                log.append(_batch(50))
            except PredictionLogFull:  # the service says 503 "retry in 1 s": clients back off
                time.sleep(0.05)
            time.sleep(0.002)

    writers = [threading.Thread(target=traffic) for _ in range(4)]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.3)
        first = _batch(3)
        log.append(first)
        started = time.monotonic()
        log.flush(timeout=20)
        assert time.monotonic() - started < 10
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT count(*) FROM prediction_log WHERE prediction_id = :id"),
                {"id": first.ids[0]},
            )
            assert stored.scalar_one() == 1
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        log.close()


def test_a_failed_write_is_retried_not_dropped(engine: Engine) -> None:
    log = PredictionLog(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE prediction_log RENAME TO prediction_log_away"))
    batch = _batch(5)
    log.append(batch)
    time.sleep(0.6)  # the writer fails at least once meanwhile
    assert log.get(batch.ids[0]) is not None  # still served from memory
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE prediction_log_away RENAME TO prediction_log"))
    log.flush(timeout=20)
    assert _count(engine) == 5
    log.close()


def test_flush_gives_up_with_a_clear_error_while_the_database_refuses(engine: Engine) -> None:
    from model_service.predictions import PredictionLogUnavailable

    log = PredictionLog(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE prediction_log"))
    log.append(_batch(1))
    with pytest.raises(PredictionLogUnavailable, match="could not write to the database within"):
        log.flush(timeout=0.5)
    with engine.begin() as connection:  # let close() finish
        from model_service.predictions import PREDICTIONS

        PREDICTIONS.create(connection)
    log.close()


def test_since_keeps_the_newest_rows_and_says_so(engine: Engine) -> None:
    log = PredictionLog(engine)
    start = datetime.now(UTC) - timedelta(hours=1)
    log.append(_batch(3, created=start + timedelta(minutes=1), chol=111))
    log.append(_batch(3, created=start + timedelta(minutes=2), chol=222))
    rows, truncated = log.since("heart-disease", start, limit=4)
    assert truncated and [r["chol"] for r in rows] == [111, 222, 222, 222]
    rows, truncated = log.since("heart-disease", start, limit=6)
    assert not truncated and len(rows) == 6
    assert log.since("breast-cancer", start, limit=6) == ([], False)
    log.close()


def test_windows_are_read_from_an_index_even_in_a_log_made_before_it(engine: Engine) -> None:
    PredictionLog(engine).close()
    with engine.begin() as connection:  # a log from before the window indexes
        connection.execute(text("DROP INDEX ix_prediction_log_window"))
        connection.execute(text("DROP INDEX ix_prediction_log_site_window"))
    log = PredictionLog(engine)
    start = datetime.now(UTC) - timedelta(hours=1)
    log.append(_batch(3, created=start + timedelta(minutes=1)))
    log.flush()
    with engine.connect() as connection:
        plans = [
            " ".join(
                str(step[-1])
                for step in connection.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT features FROM prediction_log WHERE dataset = "
                        f"'heart-disease'{site} AND created_at >= '2000' ORDER BY created_at DESC"
                    )
                )
            )
            for site in ("", " AND site = 'Hungary'")
        ]
    assert "ix_prediction_log_window" in plans[0] and "TEMP B-TREE" not in plans[0]
    assert "ix_prediction_log_site_window" in plans[1] and "TEMP B-TREE" not in plans[1]
    scored, truncated = log.scored("heart-disease", start, datetime.now(UTC), None, 10)
    assert len(scored) == 3 and not truncated
    assert all(row.observed is None and row.probability == 0.4 for row in scored)
    log.close()
