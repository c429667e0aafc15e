"""The audit log's signed anchor (copilot/audit.py) against someone with database access but
without the audit key, on SQLite and PostgreSQL: deleting or rewriting the newest rows is
seen by `verify` and refused by execution."""

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, text

from copilot import actions as actions_module
from copilot.actions import ActionStore, ArgumentsTampered, AuditLogBroken, StateChangingTool
from tests.copilot.conftest import KEY
from tools.context import ToolContext

pytestmark = pytest.mark.anyio


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run of rollback_model (replaced by a recorder that changes nothing)."""
    ran: list[str] = []
    spec = actions_module.STATE_CHANGING["rollback_model"]

    async def record(_: ToolContext, args: Any, __: Any) -> Any:
        ran.append(args.reason)
        return spec.input_model.model_validate({"reason": args.reason})

    monkeypatch.setitem(
        actions_module.STATE_CHANGING,
        "rollback_model",
        StateChangingTool(spec.name, spec.input_model, record, spec.summary),
    )
    return ran


def _sql(engine: Engine, statement: str, **values: Any) -> list[Any]:
    with engine.begin() as connection:
        result = connection.execute(text(statement), values)
        return list(result.all()) if result.returns_rows else []


def _approved(store: ActionStore, reason: str) -> str:
    action = store.propose("c", "rollback_model", {"reason": reason}, "ann")
    store.decide(action.id, "approve", "bob")
    return action.id


def _rewind(engine: Engine, action_id: str) -> None:
    """What the attacker does: drop the action's newest audit row, point the action at the
    row before it and make it approved (and unclaimed) again."""
    (newest,) = _sql(engine, "SELECT max(seq) FROM audit_log")[0]
    _sql(engine, "DELETE FROM audit_log WHERE seq = :s", s=newest)
    (head,) = _sql(
        engine,
        "SELECT hash FROM audit_log WHERE action_id = :id ORDER BY seq DESC LIMIT 1",
        id=action_id,
    )[0]
    _sql(
        engine,
        "UPDATE pending_action SET status = 'approved', execution_claim = NULL, "
        "result = NULL, audit_head = :h WHERE id = :id",
        h=head,
        id=action_id,
    )


async def test_deleting_the_newest_row_does_not_rerun_an_executed_action(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext, runs: list[str]
) -> None:
    action_id = _approved(store, "bad model")
    assert (await store.execute(action_id, registry_ctx)).status == "executed"
    assert store.verify_audit().ok and runs == ["bad model"]
    _rewind(engine, action_id)  # the "executed" row is gone, the action approved again

    fresh = ActionStore(engine, audit_key=KEY, ttl_seconds=900)  # as `copilot audit verify`
    problems = fresh.verify_audit().problems
    assert any("the signed anchor records 3 (rows at the end were deleted)" in p for p in problems)
    with pytest.raises(ArgumentsTampered, match="does not match its signed anchor"):
        await fresh.execute(action_id, registry_ctx)
    assert runs == ["bad model"]  # nothing ran again
    # nothing can be appended to the broken log either; the refused action is left unclaimed
    with pytest.raises(AuditLogBroken, match="the audit log cannot be extended"):
        fresh.propose("c", "rollback_model", {"reason": "another"}, "ann")
    assert fresh.get(action_id).executing is False


async def test_erasing_the_newest_action_entirely_is_detected(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext, runs: list[str]
) -> None:
    first = store.propose("c", "rollback_model", {"reason": "one"}, "ann")
    store.decide(first.id, "reject", "bob")
    erased = _approved(store, "two")
    await store.execute(erased, registry_ctx)
    assert store.verify_audit().ok
    _sql(engine, "DELETE FROM audit_log WHERE action_id = :id", id=erased)
    _sql(engine, "DELETE FROM pending_action WHERE id = :id", id=erased)
    problems = ActionStore(engine, audit_key=KEY, ttl_seconds=900).verify_audit().problems
    assert any("the signed anchor records 5 (rows at the end were deleted)" in p for p in problems)


def test_the_anchor_cannot_be_forged_removed_or_renumbered_around(
    store: ActionStore, engine: Engine
) -> None:
    for reason in ("one", "two"):
        store.decide(
            store.propose("c", "rollback_model", {"reason": reason}, "a").id, "reject", "b"
        )
    assert store.verify_audit().ok and store.verify_audit().anchor_seq == 4
    saved = _sql(engine, "SELECT seq, head, mac FROM audit_anchor")[0]

    _sql(
        engine, "UPDATE audit_anchor SET seq = 3, head = (SELECT hash FROM audit_log WHERE seq = 3)"
    )
    problems = store.verify_audit().problems
    assert any("the audit anchor's signature does not match" in p for p in problems)

    _sql(engine, "DELETE FROM audit_anchor")
    assert any("anchor of the audit log is missing" in p for p in store.verify_audit().problems)
    _sql(
        engine,
        "INSERT INTO audit_anchor (id, seq, head, mac) VALUES (1, :s, :h, :m)",
        s=saved[0],
        h=saved[1],
        m=saved[2],
    )
    assert store.verify_audit().ok

    # sequence numbers are signed: closing the gap a deleted row leaves is seen
    _sql(engine, "DELETE FROM audit_log WHERE seq = 2")
    _sql(engine, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    problems = store.verify_audit().problems
    assert any("row 2: contents do not match its hash" in p for p in problems)


async def test_a_saved_anchor_restored_with_the_rows_is_noticed_by_a_running_store(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext, runs: list[str]
) -> None:
    """The limit of the threat model: an attacker who saved an old anchor can roll the log
    back to it (with every row after it). A store that saw the newer anchor refuses; a new
    process cannot tell (see copilot/audit.py)."""
    action_id = _approved(store, "bad model")
    saved = _sql(engine, "SELECT seq, head, mac FROM audit_anchor")[0]
    await store.execute(action_id, registry_ctx)
    _rewind(engine, action_id)
    _sql(
        engine,
        "UPDATE audit_anchor SET seq = :s, head = :h, mac = :m",
        s=saved[0],
        h=saved[1],
        m=saved[2],
    )
    assert any("rolled back to an older anchor" in p for p in store.verify_audit().problems)
    with pytest.raises(ArgumentsTampered, match="the log was rolled back"):
        await store.execute(action_id, registry_ctx)
    assert runs == ["bad model"]
    assert ActionStore(engine, audit_key=KEY, ttl_seconds=900).verify_audit().ok


def test_concurrent_appends_keep_the_anchor_on_the_newest_row(
    store: ActionStore, engine: Engine
) -> None:
    failures: list[BaseException] = []

    def propose(n: int) -> None:
        try:
            for i in range(3):
                store.propose(f"c{n}", "rollback_model", {"reason": f"r{n}-{i}"}, "ann")
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=propose, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    result = store.verify_audit()
    assert result.ok, result.problems
    assert result.rows == result.anchor_seq == 18


async def test_a_row_deleted_in_the_middle_stops_execution(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext, runs: list[str]
) -> None:
    old = store.propose("c", "rollback_model", {"reason": "old"}, "ann")
    store.decide(old.id, "reject", "bob")
    action_id = _approved(store, "bad model")
    _sql(engine, "DELETE FROM audit_log WHERE action_id = :id AND event = 'rejected'", id=old.id)
    assert any("does not follow the row before it" in p for p in store.verify_audit().problems)
    with pytest.raises(ArgumentsTampered, match="holds 3 rows where the anchor counts 4"):
        await store.execute(action_id, registry_ctx)
    assert runs == [] and store.get(action_id).status == "approved"
