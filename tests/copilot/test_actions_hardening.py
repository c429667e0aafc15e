"""Pending actions against the adversarial review (issue 13), on SQLite and PostgreSQL:
execution checks the audit signatures it relies on, executions hold a lease that a crash
lets run out, arguments are checked against the card and the registry, and a four-eyes
edit needs another approver."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from copilot import actions as actions_module
from copilot import narration
from copilot.actions import (
    ActionStore,
    ArgumentsTampered,
    InvalidArguments,
    NotAllowed,
    StateChangingTool,
)
from copilot.audit import sha256
from model_service import registry
from tests.conftest import Clock, TrainedRegistry
from tests.copilot.api.test_api import (
    auth,
    decide,
    new_conversation,
    open_api,
    propose,
    settings_for,
)
from tests.copilot.conftest import KEY
from tools.context import ToolContext

pytestmark = pytest.mark.anyio
NAME = "heart-disease-risk"


def _sql(engine: Engine, statement: str, **values: Any) -> list[Any]:
    with engine.begin() as connection:
        result = connection.execute(text(statement), values)
        return list(result.all()) if result.returns_rows else []


def _events(engine: Engine, action_id: str) -> list[str]:
    rows = _sql(
        engine, "SELECT event FROM audit_log WHERE action_id = :id ORDER BY seq", id=action_id
    )
    return [row[0] for row in rows]


def _champion(ctx: ToolContext) -> str:
    client = registry.client(ctx.tracking_uri)
    return str(registry.alias_version(client, NAME, "champion").version)


def _counts(engine: Engine) -> tuple[int, int]:
    return (
        _sql(engine, "SELECT count(*) FROM audit_log")[0][0],
        _sql(engine, "SELECT count(*) FROM pending_action")[0][0],
    )


def _replace_tool(monkeypatch: pytest.MonkeyPatch, name: str, run: Any) -> None:
    spec = actions_module.STATE_CHANGING[name]
    monkeypatch.setitem(
        actions_module.STATE_CHANGING,
        name,
        StateChangingTool(spec.name, spec.input_model, run, spec.summary),
    )


# ---- 4. execution checks the signatures of the rows it relies on ---------------------------


async def test_a_rewritten_proposal_row_does_not_run_swapped_arguments(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("c", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    store.propose("c", "rollback_model", {"reason": "later"}, "ann")  # the chain moves on
    forged = {"version": "2", "force": True, "reason": "gate"}
    (seq, payload) = _sql(
        engine,
        "SELECT seq, payload FROM audit_log WHERE action_id = :id AND event = 'proposed'",
        id=action.id,
    )[0]
    rewritten = {**json.loads(payload), "arguments": forged, "arguments_sha256": sha256(forged)}
    _sql(engine, "UPDATE audit_log SET payload = :p WHERE seq = :s", p=json.dumps(rewritten), s=seq)
    _sql(
        engine,
        "UPDATE pending_action SET arguments = :a, arguments_sha256 = :h WHERE id = :id",
        a=json.dumps(forged),
        h=sha256(forged),
        id=action.id,
    )
    store.decide(action.id, "approve", "bob")  # the approver saw the forged arguments
    with pytest.raises(
        ArgumentsTampered, match=r"audit row \d+ \(proposed\) does not match its hash"
    ):
        await store.execute(action.id, registry_ctx)
    assert _champion(registry_ctx) == "1"
    assert store.get(action.id).status == "failed" and _events(engine, action.id)[-1] == "refused"


async def test_a_rewritten_newest_row_stops_the_approval(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    action = store.propose("c", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    forged = {"version": "2", "force": True, "reason": "gate"}
    _sql(
        engine,
        "UPDATE audit_log SET payload = :p WHERE action_id = :id",
        p=json.dumps(
            {"tool": "promote_model", "arguments": forged, "arguments_sha256": sha256(forged)}
        ),
        id=action.id,
    )
    before = _counts(engine)
    with pytest.raises(actions_module.AuditLogBroken, match="is not the one the anchor signed"):
        store.decide(action.id, "approve", "bob")
    assert _counts(engine) == before and store.get(action.id).status == "pending"


async def test_an_approval_row_of_another_action_is_not_borrowed(
    store: ActionStore, engine: Engine, registry_ctx: ToolContext
) -> None:
    arguments = {"version": "2", "force": True, "reason": "gate"}
    approved = store.propose("c", "promote_model", arguments, "ann")
    store.decide(approved.id, "approve", "bob")
    other = store.propose("c", "promote_model", arguments, "ann")
    store.decide(approved.id, "approve", "bob")
    # the attacker moves the approval to the other action and marks that one approved
    _sql(
        engine,
        "UPDATE audit_log SET action_id = :other WHERE action_id = :id AND event = 'approved'",
        other=other.id,
        id=approved.id,
    )
    _sql(engine, "UPDATE pending_action SET status = 'approved' WHERE id = :id", id=other.id)
    with pytest.raises(ArgumentsTampered, match=r"\(approved\) does not match its hash"):
        await store.execute(other.id, registry_ctx)
    assert _champion(registry_ctx) == "1"


# ---- 6. an execution holds a lease; a crash lets it run out -------------------------------


def test_the_store_reconciles_when_it_starts(engine: Engine) -> None:
    clock = Clock()
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, clock=clock)
    action = store.propose("c", "rollback_model", {"reason": "bad model"}, "ann")
    store.decide(action.id, "approve", "bob")
    _sql(
        engine,
        "UPDATE pending_action SET execution_claim = 'dead', claimed_at = :t, lease_until = :t "
        "WHERE id = :id",
        t=clock.now,
        id=action.id,
    )
    clock.advance(1)
    ActionStore(engine, audit_key=KEY, ttl_seconds=900, clock=clock)  # a restart
    assert _sql(engine, "SELECT status FROM pending_action WHERE id = :id", id=action.id)[0][0] == (
        "failed"
    )
    assert _events(engine, action.id)[-1] == "failed"


async def test_a_long_run_keeps_its_lease_and_is_answered_as_running(
    engine: Engine, registry_ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = anyio.Event()
    runs: list[str] = []

    async def slow(_: ToolContext, args: Any, __: Any) -> Any:
        runs.append(args.reason)
        await release.wait()
        return args

    _replace_tool(monkeypatch, "rollback_model", slow)
    clock = Clock()
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, clock=clock, lease_seconds=0.4)
    action = store.propose("c", "rollback_model", {"reason": "bad model"}, "ann")
    store.decide(action.id, "approve", "bob")
    outcomes: list[Any] = []

    async def run() -> None:
        outcomes.append(await store.execute(action.id, registry_ctx))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        while not runs:
            await anyio.sleep(0.01)
        clock.advance(3600)  # far past the first lease: only renewals keep it
        with anyio.fail_after(30):
            while waiting_lease(engine, action.id) < clock.now:
                await anyio.sleep(0.05)
        other = ActionStore(engine, audit_key=KEY, ttl_seconds=900, clock=clock)
        running = await other.execute(action.id, registry_ctx, wait_seconds=0)
        assert running.status == "approved" and running.executing
        told = narration.action_outcome(running.model_dump(mode="json"))
        assert (
            told == f"Action {action.id} is running (started elsewhere); ask again for its outcome."
        )
        release.set()
    assert [o.status for o in outcomes] == ["executed"] and runs == ["bad model"]
    assert _events(engine, action.id) == ["proposed", "approved", "executed"]


def waiting_lease(engine: Engine, action_id: str) -> datetime:
    (lease,) = _sql(engine, "SELECT lease_until FROM pending_action WHERE id = :id", id=action_id)[
        0
    ]
    if isinstance(lease, str):  # SQLite hands back text
        lease = datetime.fromisoformat(lease)
    return lease if lease.tzinfo else lease.replace(tzinfo=UTC)


# ---- 7. arguments are checked at proposal and at edit, nothing written when refused -------


@pytest.mark.parametrize(
    ("version", "shown"),
    [("../../1", '"../../1"'), ("@challenger", '"@challenger"'), ("0", '"0"'), (" 2", '" 2"')],
)
def test_versions_must_be_plain_numbers(
    store: ActionStore, engine: Engine, version: str, shown: str
) -> None:
    before = _counts(engine)
    with pytest.raises(InvalidArguments, match=f'"version": {shown} is not a version number'):
        store.propose("c", "promote_model", {"version": version, "reason": "gate"}, "ann")
    assert _counts(engine) == before
    action = store.propose("c", "promote_model", {"reason": "gate"}, "ann")
    with pytest.raises(InvalidArguments, match="leave version out to promote the @challenger"):
        store.decide(action.id, "edit", "bob", {"version": version, "reason": "gate"})
    assert store.get(action.id).arguments["version"] is None
    assert _events(engine, action.id) == ["proposed"]


def test_sites_must_be_few_and_distinct(store: ActionStore, engine: Engine) -> None:
    before = _counts(engine)
    with pytest.raises(InvalidArguments, match='"sites": 5000 items exceed the limit of 16'):
        store.propose("c", "retrain_model", {"sites": ["Cleveland"] * 5000, "reason": "x" * 3}, "a")
    with pytest.raises(InvalidArguments, match=r'"sites": "Hungary" is given 2 times \(each site'):
        store.propose(
            "c",
            "retrain_model",
            {"sites": ["Hungary", "Cleveland", "Hungary"], "reason": "drift"},
            "a",
        )
    with pytest.raises(InvalidArguments, match='"model_kinds": "xgboost" is given 2 times'):
        store.propose(
            "c",
            "retrain_model",
            {"sites": ["Hungary"], "model_kinds": ["xgboost", "xgboost"], "reason": "drift"},
            "a",
        )
    with pytest.raises(InvalidArguments, match=r'"sites": " " is not a site name'):
        store.propose("c", "retrain_model", {"sites": [" "], "reason": "drift"}, "a")
    assert _counts(engine) == before


async def test_the_card_and_the_registry_are_asked(
    engine: Engine, registry_ctx: ToolContext
) -> None:
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, tools=registry_ctx)
    before = _counts(engine)
    with pytest.raises(
        InvalidArguments,
        match=r"version: \"99\" is not a version of model 'heart-disease-risk' in the registry",
    ):
        store.propose("c", "promote_model", {"version": "99", "reason": "gate"}, "ann")
    with pytest.raises(
        InvalidArguments, match=r"sites: \"Atlantis\" is not a site of dataset 'heart-disease'"
    ):
        store.propose(
            "c", "retrain_model", {"sites": ["Hungary", "Atlantis"], "reason": "why not"}, "a"
        )
    assert _counts(engine) == before
    action = store.propose("c", "promote_model", {"version": "2", "reason": "gate"}, "ann")
    with pytest.raises(InvalidArguments, match='version: "3" is not a version'):
        store.decide(action.id, "edit", "bob", {"version": "3", "reason": "gate"})
    assert store.get(action.id).status == "pending" and _events(engine, action.id) == ["proposed"]
    retrain = store.propose("c", "retrain_model", {"sites": ["Hungary"], "reason": "drift"}, "a")
    with pytest.raises(InvalidArguments, match='"Atlantis" is not a site'):
        store.decide(retrain.id, "edit", "bob", {"sites": ["Atlantis"], "reason": "drift"})
    edited = store.decide(
        action.id, "edit", "bob", {"version": "2", "force": True, "reason": "gate"}
    )
    assert edited.status == "pending"
    # a fresh preview, for the new arguments: forced, the gate no longer refuses it
    assert edited.preview is not None and edited.preview.will_fail is False
    assert "force overrides it" in edited.preview.note or "passes" in edited.preview.note
    approved = store.decide(action.id, "approve", "bob")
    assert (await store.execute(approved.id, registry_ctx)).status == "executed"
    assert _champion(registry_ctx) == "2"


@pytest.fixture
def api_client(
    tmp_path: Path, trained_registry: TrainedRegistry, live_service: str
) -> Iterator[tuple[TestClient, str]]:
    tracking_uri = trained_registry.copy(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'copilot.db'}"
    settings = settings_for(tmp_path / "home", database_url, tracking_uri, live_service)
    with open_api(settings) as client:
        yield client, tracking_uri


def test_the_api_answers_bad_versions_with_422(api_client: tuple[TestClient, str]) -> None:
    client, tracking_uri = api_client
    mine = new_conversation(client, "ann")
    action = propose(client, "ann", mine, "Promote the challenger.")
    path = decide(
        client,
        "bob",
        action["id"],
        decision="edit",
        arguments={"version": "../../1", "reason": "why not"},
    )
    assert path.status_code == 422, path.text
    assert path.json()["detail"][0]["rule"] == "version_number"
    assert '"../../1" is not a version number' in path.json()["detail"][0]["message"]
    missing = decide(
        client,
        "bob",
        action["id"],
        decision="edit",
        arguments={"version": "99", "reason": "why not"},
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"][0]["message"] == (
        "version: \"99\" is not a version of model 'heart-disease-risk' in the registry"
    )
    current = client.get(f"/v1/actions/{action['id']}", headers=auth("ann")).json()
    assert current["status"] == "pending" and current["arguments"] == action["arguments"]
    client_registry = registry.client(tracking_uri)
    assert str(registry.alias_version(client_registry, NAME, "champion").version) == "1"


# ---- four eyes: an edit goes back to pending, and its editor does not approve it ----------


async def test_a_four_eyes_edit_needs_another_approver(
    engine: Engine, registry_ctx: ToolContext
) -> None:
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, four_eyes=True)
    action = store.propose("c", "promote_model", {"reason": "gate"}, "ann via api-key:ann")
    forced = {"version": "2", "force": True, "reason": "gate"}
    edited = store.decide(action.id, "edit", "bob via api-key:bob", forced, comment="force it")
    assert edited.status == "pending" and edited.decided_by is None
    assert edited.arguments == forced and edited.arguments_sha256 == sha256(forced)
    assert edited.original_arguments == action.arguments
    assert _events(engine, action.id) == ["proposed", "edited"]
    assert _champion(registry_ctx) == "1"
    with pytest.raises(NotAllowed, match=r"edited action \w+ and may not approve it"):
        store.decide(action.id, "approve", "bob via ui:bob")  # the editor, by another door
    with pytest.raises(NotAllowed, match="requested action"):
        store.decide(action.id, "approve", "ann via api-key:ann")
    approved = store.decide(action.id, "approve", "carol via api-key:carol")
    assert approved.status == "approved" and approved.decided_by == "carol via api-key:carol"
    done = await store.execute(action.id, registry_ctx)
    assert done.status == "executed" and _champion(registry_ctx) == "2"
    assert _events(engine, action.id) == ["proposed", "edited", "approved", "executed"]
    assert store.verify_audit().ok


async def test_arguments_swapped_after_a_four_eyes_edit_are_refused(
    engine: Engine, registry_ctx: ToolContext
) -> None:
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900, four_eyes=True)
    action = store.propose("c", "promote_model", {"reason": "gate"}, "ann")
    store.decide(action.id, "edit", "bob", {"version": "2", "reason": "gate"})
    forged = {"version": "2", "force": True, "reason": "gate"}
    _sql(
        engine,
        "UPDATE pending_action SET arguments = :a, arguments_sha256 = :h WHERE id = :id",
        a=json.dumps(forged),
        h=sha256(forged),
        id=action.id,
    )
    store.decide(action.id, "approve", "carol")
    with pytest.raises(ArgumentsTampered, match="the arguments differ from what was last edited"):
        await store.execute(action.id, registry_ctx)
    assert _champion(registry_ctx) == "1"


def test_without_four_eyes_an_edit_still_waits_for_approval(store: ActionStore) -> None:
    action = store.propose("c", "rollback_model", {"reason": "bad"}, "ann")
    edited = store.decide(action.id, "edit", "ann", {"reason": "worse"})
    assert edited.status == "pending" and edited.decided_by is None
    assert edited.edited_by == "ann"  # without four eyes, the editor may approve it next
    approved = store.decide(action.id, "approve", "ann")
    assert approved.status == "approved" and approved.decided_by == "ann"


def test_a_database_of_an_older_version_gains_the_new_columns(engine: Engine) -> None:
    """The execution lease's columns are added in place to a pending_action table an
    older version created; its actions carry on."""
    ActionStore(engine, audit_key=KEY, ttl_seconds=900)
    with engine.begin() as connection:
        for column in ("lease_until", "claimed_at"):
            connection.execute(text(f"ALTER TABLE pending_action DROP COLUMN {column}"))
    store = ActionStore(engine, audit_key=KEY, ttl_seconds=900)
    action = store.propose("c1", "rollback_model", {"reason": "upgrade"}, requested_by="ann")
    assert store.get(action.id).status == "pending"
