"""The safety contract of pending actions, tried adversarially, on SQLite and PostgreSQL."""

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from copilot.actions import (
    ActionConflict,
    ActionStore,
    ArgumentsTampered,
    InvalidArguments,
    NotAllowed,
)
from copilot.audit import sha256
from model_service import registry
from model_service.database import make_engine
from tests.conftest import Clock
from tests.copilot.conftest import KEY
from tools.context import ToolContext

pytestmark = pytest.mark.anyio
POSTGRES_URL = os.environ.get("COPILOT_TEST_POSTGRES_URL")
NAME = "heart-disease-risk"
PROMOTE = {"force": True, "reason": "more sites"}


def _champion(registry_ctx: ToolContext) -> str:
    return str(
        registry.alias_version(registry.client(registry_ctx.tracking_uri), NAME, "champion").version
    )


def _events(engine: Engine, action_id: str) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT event FROM audit_log WHERE action_id = :id ORDER BY seq"),
                {"id": action_id},
            ).scalars()
        )


async def test_approved_action_runs_once(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("conv-1", "promote_model", PROMOTE, requested_by="ann")
    assert action.status == "pending" and action.arguments == {"version": None, **PROMOTE}
    assert action.arguments_sha256 == sha256(action.arguments)
    assert action.summary.startswith("make the @challenger the @champion")
    assert _champion(registry_ctx) == "1"  # proposing changes nothing
    approved = store.decide(action.id, "approve", by="bob", comment="ok")
    assert (approved.status, approved.decided_by, approved.comment) == ("approved", "bob", "ok")
    done = await store.execute(action.id, registry_ctx)
    assert done.status == "executed" and done.result is not None
    assert done.result["champion"] == "2" and _champion(registry_ctx) == "2"
    # approving or executing again runs nothing more and answers the same
    assert store.decide(action.id, "approve", by="bob") == done
    assert await store.execute(action.id, registry_ctx) == done
    assert _events(engine, action.id) == ["proposed", "approved", "executed"]


async def test_rejected_or_pending_actions_never_run(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    pending = store.propose("conv-1", "promote_model", PROMOTE, requested_by="ann")
    with pytest.raises(ActionConflict, match="is pending; only approved actions run"):
        await store.execute(pending.id, registry_ctx)
    rejected = store.decide(pending.id, "reject", by="bob", comment="not now")
    assert rejected.status == "rejected"
    with pytest.raises(ActionConflict, match="is rejected; only approved actions run"):
        await store.execute(pending.id, registry_ctx)
    with pytest.raises(ActionConflict, match="is already rejected"):
        store.decide(pending.id, "approve", by="bob")
    assert _champion(registry_ctx) == "1"
    assert _events(engine, pending.id) == ["proposed", "rejected"]


async def test_edits_are_validated_and_what_runs_is_what_was_approved(
    store: ActionStore, registry_ctx: ToolContext
) -> None:
    with pytest.raises(InvalidArguments, match='"sites" must not be empty'):
        store.propose("conv-1", "retrain_model", {"sites": [], "reason": "drift"}, "ann")
    with pytest.raises(InvalidArguments, match="'delete_registry' is not a state-changing tool"):
        store.propose("conv-1", "delete_registry", {}, "ann")
    action = store.propose("conv-1", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    with pytest.raises(InvalidArguments, match='"force": "maybe" is not true or false'):
        store.decide(action.id, "edit", by="bob", arguments={"force": "maybe", "reason": "x!"})
    assert store.get(action.id).status == "pending"  # still waiting after a bad edit
    edited = store.decide(action.id, "edit", by="bob", arguments={**PROMOTE, "version": "2"})
    assert edited.status == "pending" and edited.arguments["force"] is True  # never approves
    assert edited.original_arguments == {"version": "2", "force": False, "reason": "gate"}
    assert edited.edited_by == "bob" and edited.decided_by is None
    store.decide(action.id, "approve", by="bob", expected_sha256=edited.arguments_sha256)
    done = await store.execute(action.id, registry_ctx)
    assert (
        done.status == "executed"
        and done.result is not None
        and done.result["forced"] in {True, False}
    )
    assert _champion(registry_ctx) == "2"


async def test_arguments_altered_after_approval_are_refused(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("conv-1", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    store.decide(action.id, "approve", by="bob")
    # someone with database access swaps the arguments and even fixes up the stored hash
    forged = {"version": "2", "force": True, "reason": "gate"}
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE pending_action SET arguments = :a, arguments_sha256 = :h WHERE id = :id"),
            {"a": __import__("json").dumps(forged), "h": sha256(forged), "id": action.id},
        )
    with pytest.raises(ArgumentsTampered, match="the arguments differ from what was approved"):
        await store.execute(action.id, registry_ctx)
    assert store.get(action.id).status == "failed" and _champion(registry_ctx) == "1"
    assert _events(engine, action.id)[-1] == "refused"


async def test_expired_and_four_eyes(engine: Engine, registry_ctx: ToolContext) -> None:
    clock = Clock()
    short = ActionStore(engine, audit_key=KEY, ttl_seconds=1, four_eyes=True, clock=clock)
    action = short.propose("conv-1", "rollback_model", {"reason": "bad"}, requested_by="ann")
    with pytest.raises(
        NotAllowed, match=r"ann requested action \w+ and may not decide it \(four-eyes rule\)"
    ):
        short.decide(action.id, "approve", by="ann")
    clock.advance(1.2)
    with pytest.raises(ActionConflict, match=r"expired at .*; propose it again"):
        short.decide(action.id, "approve", by="bob")
    assert short.get(action.id).status == "expired"
    assert _events(engine, action.id) == ["proposed", "expired"]
    with pytest.raises(ActionConflict, match="is expired; only approved actions run"):
        await short.execute(action.id, registry_ctx)


async def test_actions_survive_a_restart(database_url: str, registry_ctx: ToolContext) -> None:
    first = make_engine(database_url)
    action = ActionStore(first, audit_key=KEY, ttl_seconds=900).propose(
        "conv-9", "promote_model", PROMOTE, "ann"
    )
    first.dispose()
    second = make_engine(database_url)  # a new process would build exactly this
    store = ActionStore(second, audit_key=KEY, ttl_seconds=900)
    assert [a.id for a in store.list(status="pending", conversation_ids=["conv-9"])] == [action.id]
    store.decide(action.id, "approve", by="bob")
    assert (await store.execute(action.id, registry_ctx)).status == "executed"
    second.dispose()


async def test_a_failing_tool_is_recorded_not_retried(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("conv-1", "rollback_model", {"reason": "nothing to roll back"}, "ann")
    store.decide(action.id, "approve", by="bob")
    failed = await store.execute(action.id, registry_ctx)
    assert failed.status == "failed" and failed.result is not None
    assert "has no @previous-champion" in failed.result["error"]
    assert await store.execute(action.id, registry_ctx) == failed
    assert _events(engine, action.id) == ["proposed", "approved", "failed"]


async def test_audit_verify_detects_edited_and_deleted_rows(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    for reason in ("one", "two", "three"):
        action = store.propose("conv-1", "rollback_model", {"reason": reason}, "ann")
        store.decide(action.id, "reject", by="bob")
    assert store.verify_audit().ok and store.verify_audit().rows == 6
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE audit_log SET actor = 'mallory' WHERE seq = "
                "(SELECT min(seq) FROM audit_log)"
            )
        )
    assert any("contents do not match its hash" in p for p in store.verify_audit().problems)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET actor = 'ann' WHERE seq = (SELECT min(seq) FROM audit_log)")
        )
    assert store.verify_audit().ok
    with engine.begin() as connection:
        rows = list(connection.execute(text("SELECT seq FROM audit_log ORDER BY seq")).scalars())
        connection.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": rows[2]})
    assert any("does not follow the row before it" in p for p in store.verify_audit().problems)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": rows[-1]})
    problems = store.verify_audit().problems
    assert any("its latest audit row is missing" in p for p in problems)


def _sql(engine: Engine, statement: str, **values: Any) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), values)


async def test_an_executed_action_cannot_be_replayed(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("c", "promote_model", PROMOTE, "ann")
    store.decide(action.id, "approve", "bob")
    assert (await store.execute(action.id, registry_ctx)).status == "executed"
    _sql(
        engine,
        "UPDATE pending_action SET status = 'approved', execution_claim = NULL WHERE id = :id",
        id=action.id,
    )
    with pytest.raises(ArgumentsTampered, match="the audit log shows it already ran"):
        await store.execute(action.id, registry_ctx)
    assert _events(engine, action.id).count("executed") == 1


async def test_arguments_swapped_while_pending_are_refused(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("c", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    forged = {"version": "2", "force": True, "reason": "gate"}
    _sql(
        engine,
        "UPDATE pending_action SET arguments = :a, arguments_sha256 = :h WHERE id = :id",
        a=json.dumps(forged),
        h=sha256(forged),
        id=action.id,
    )
    store.decide(action.id, "approve", "bob")  # the approver saw the swapped arguments
    with pytest.raises(ArgumentsTampered, match="differ from what was proposed"):
        await store.execute(action.id, registry_ctx)
    assert _champion(registry_ctx) == "1"


async def test_a_swapped_tool_is_refused(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("c", "rollback_model", {"reason": "bad"}, "ann")
    store.decide(action.id, "approve", "bob")
    _sql(
        engine,
        "UPDATE pending_action SET tool = 'promote_model', arguments = :a, "
        "arguments_sha256 = :h WHERE id = :id",
        a=json.dumps({"version": None, "force": True, "reason": "bad"}),
        h=sha256({"version": None, "force": True, "reason": "bad"}),
        id=action.id,
    )
    with pytest.raises(ArgumentsTampered):
        await store.execute(action.id, registry_ctx)
    assert _champion(registry_ctx) == "1"


async def test_an_old_approval_does_not_run(engine: Engine, registry_ctx: ToolContext) -> None:
    clock = Clock()
    short = ActionStore(engine, audit_key=KEY, ttl_seconds=1, clock=clock)
    action = short.propose("c", "promote_model", PROMOTE, "ann")
    short.decide(action.id, "approve", "bob")
    clock.advance(1.2)
    with pytest.raises(ArgumentsTampered, match="older than the action time-to-live"):
        await short.execute(action.id, registry_ctx)
    assert _champion(registry_ctx) == "1"


async def test_an_interrupted_execution_is_recorded_as_failed(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copilot.actions as actions_module

    async def boom(*_: Any) -> Any:
        raise RuntimeError("registry vanished")

    spec = actions_module.STATE_CHANGING["rollback_model"]
    monkeypatch.setitem(
        actions_module.STATE_CHANGING,
        "rollback_model",
        actions_module.StateChangingTool(spec.name, spec.input_model, boom, spec.summary),
    )
    action = store.propose("c", "rollback_model", {"reason": "bad"}, "ann")
    store.decide(action.id, "approve", "bob")
    with pytest.raises(RuntimeError, match="registry vanished"):
        await store.execute(action.id, registry_ctx)
    failed = store.get(action.id)
    assert failed.status == "failed" and "interrupted by RuntimeError" in failed.result["error"]  # type: ignore[index]
    assert _events(engine, action.id)[-1] == "failed"


async def test_concurrent_executions_return_the_same_outcome(
    store: ActionStore, registry_ctx: ToolContext
) -> None:
    import anyio

    action = store.propose("c", "promote_model", PROMOTE, "ann")
    store.decide(action.id, "approve", "bob")
    outcomes: list[Any] = []

    async def run() -> None:
        outcomes.append(await store.execute(action.id, registry_ctx))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        group.start_soon(run)
    assert [o.status for o in outcomes] == ["executed", "executed"]
    assert outcomes[0].result == outcomes[1].result


def test_edits_with_unknown_or_loose_values_are_refused(store: ActionStore) -> None:
    action = store.propose("c", "promote_model", {"reason": "gate"}, "ann")
    with pytest.raises(InvalidArguments, match='"Force" is not a known field'):
        store.decide(action.id, "edit", "bob", {"Force": True, "reason": "gate"})
    with pytest.raises(InvalidArguments, match='"force": "yes" is not true or false'):
        store.decide(action.id, "edit", "bob", {"force": "yes", "reason": "gate"})
    assert store.get(action.id).status == "pending"


def test_rows_written_without_the_key_do_not_verify(
    store: ActionStore, engine: Engine, tmp_path: Path
) -> None:
    from copilot import audit

    action = store.propose("c", "rollback_model", {"reason": "bad"}, "ann")
    # a forger with database access but not the key appends a well-chained approval
    with engine.begin() as connection:
        audit.append(
            connection,
            b"guessed-key",
            actor="mallory",
            event="approved",
            action_id=action.id,
            payload={"arguments_sha256": action.arguments_sha256},
        )
    problems = store.verify_audit().problems
    assert any("contents do not match its hash" in p for p in problems)
    assert any("audit rows after the one it records were added" in p for p in problems)

    key_home = tmp_path / "home"
    key = audit.load_key(key_home, None)
    assert len(key) == 64 and audit.load_key(key_home, None) == key  # created once, then kept
    assert oct((key_home / "audit.key").stat().st_mode & 0o777) == "0o600"
    assert audit.load_key(key_home, "configured-secret") == b"configured-secret"


def test_one_person_is_one_principal_in_the_chat_and_the_api(engine: Engine) -> None:
    from copilot.actions import NotAllowed, principal

    assert principal("bob via api-key:bob") == principal("bob via ui:bob") == "key:bob"
    assert principal("Dr Lee via local:root") == "local:root"
    store = ActionStore(engine, audit_key=b"k", ttl_seconds=900, four_eyes=True)
    action = store.propose("c", "rollback_model", {"reason": "worse"}, "bob via api-key:bob")
    with pytest.raises(NotAllowed):
        store.decide(action.id, "approve", "bob via ui:bob")  # the same person, another door
    assert store.decide(action.id, "approve", "carol via ui:carol").status == "approved"


async def test_a_proposal_carries_what_the_registry_says_of_it_now(
    engine: Engine, registry_ctx: ToolContext
) -> None:
    """Read-only, when proposed and again when edited; without the tools' context, none."""
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, tools=registry_ctx)
    back = store.propose("conv-p", "rollback_model", {"reason": "worse at VA"}, "ann")
    assert back.preview is not None and back.preview.will_fail
    assert back.preview.note == f"model {NAME!r} has no @previous-champion to roll back to"
    again = store.propose("conv-p", "promote_model", {"version": "1", "reason": "again"}, "ann")
    assert again.preview is not None and again.preview.will_fail
    assert again.preview.note == "version 1 is already the champion"
    edited = store.decide(again.id, "edit", by="bob", arguments={**PROMOTE, "version": "2"})
    assert edited.preview is not None and not edited.preview.will_fail
    assert "version 2" in edited.preview.note
    assert _champion(registry_ctx) == "1"  # previews change nothing
    plain = ActionStore(engine, audit_key=KEY, ttl_seconds=900)
    assert plain.propose("conv-p", "rollback_model", {"reason": "worse"}, "ann").preview is None
