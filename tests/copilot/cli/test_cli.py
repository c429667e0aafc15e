"""The `copilot` command line: exit codes, messages, and a real model-service process."""

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot.cli.main import app
from tests.conftest import TrainedRegistry

runner = CliRunner()

UNREACHABLE_MLFLOW = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "MLFLOW_TRACKING_URI",
        "COPILOT_DATABASE_URL",
        "COPILOT_DATASET",
        "MODEL_SERVICE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "serve", "up", "bench"):
        assert command in result.output


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (
            ["train", "--sites", "Switzerland"],
            {},
            1,
            "training data too small: 98 rows from Switzerland",
        ),
        (["train", "--sites", "Mars"], {}, 2, "unknown site 'Mars'"),
        (["train", "--models", "svm"], {}, 2, "--models: unknown model kind 'svm'"),
        (
            ["train"],
            {"COPILOT_DATASET": "mimic"},
            2,
            "COPILOT_DATASET='mimic' is not a known dataset",
        ),
        (["train"], {"COPILOT_LLM": "gpt"}, 2, "COPILOT_LLM='gpt' must be"),
        (
            ["train"],
            {"COPILOT_API_KEYS": "ann:boss:k1"},
            2,
            "COPILOT_API_KEYS entry 1 (name 'ann')",
        ),
        (["train", "--bogus"], {}, 2, "No such option"),
        (["serve", "model", "--port", "70000"], {}, 2, "less than or equal to 65535"),
        (
            ["serve", "model"],
            {"MODEL_SERVICE_URL": "http://127.0.0.1:70000"},
            2,
            "has a port outside 1-65535",
        ),
        (["train"], UNREACHABLE_MLFLOW, 1, "MLflow at http://127.0.0.1:9:"),
        (
            ["monitor", "--once"],
            {"COPILOT_MONITOR_INTERVAL_SECONDS": "5"},
            2,
            "COPILOT_MONITOR_INTERVAL_SECONDS: Input should be greater than or equal to 10",
        ),
        (
            ["monitor", "--once"],
            {"COPILOT_MONITOR_MIN_AUC": "2"},
            2,
            "COPILOT_MONITOR_MIN_AUC: Input should be less than or equal to 1",
        ),
        (
            ["monitor", "--once"],
            {"COPILOT_WEBHOOK_URL": "ftp://relay"},
            2,
            "COPILOT_WEBHOOK_URL='ftp://relay' must be an http(s) URL",
        ),
        (
            ["monitor", "--once"],
            {"MODEL_SERVICE_URL": "http://127.0.0.1:1"},
            1,
            "the model service at http://127.0.0.1:1 is unreachable",
        ),
        (
            ["up"],
            UNREACHABLE_MLFLOW | {"MODEL_SERVICE_URL": "http://127.0.0.1:1"},
            1,
            "MLflow at http://127.0.0.1:9:",
        ),
    ],
)
def test_expected_failures_are_one_clear_line(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    code: int,
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_train_registers_a_challenger_when_a_champion_exists(
    home: Path, tmp_path: Path, trained_registry: TrainedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_registry.copy(tmp_path))
    result = runner.invoke(
        app,
        [
            "train",
            "--sites",
            "Cleveland,Hungary",
            "--models",
            "logistic_regression",
            "--reason",
            "more data",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.output[result.output.index("{") :])
    assert trained["alias"] == "challenger" and trained["version"] == "3"
    assert trained["sites"] == ["Cleveland", "Hungary"] and trained["rows_train"] == 478


def test_train_if_missing_trains_once_then_leaves_the_champion_alone(
    home: Path, tmp_path: Path, trained_registry: TrainedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_service import registry

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    first = ["train", "--if-missing", "--sites", "Cleveland", "--models", "logistic_regression"]
    result = runner.invoke(app, [*first, "--json"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.output[result.output.index("{") :])
    assert trained["alias"] == "champion" and trained["version"] == "1"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_registry.copy(tmp_path))
    result = runner.invoke(app, ["train", "--if-missing"])
    assert result.exit_code == 0, result.output
    assert "heart-disease-risk@champion is version 1: nothing to train" in " ".join(
        result.output.split()
    )
    client = registry.client(os.environ["MLFLOW_TRACKING_URI"])
    assert len(client.search_model_versions("name='heart-disease-risk'")) == 2


def test_serve_model_refuses_a_port_in_use(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "model", "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output


def test_deciding_actions_and_verifying_the_audit_from_the_shell(
    home: Path, tmp_path: Path, trained_registry: TrainedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from copilot.actions import ActionStore
    from copilot.audit import load_key
    from model_service import registry
    from model_service.database import make_engine

    uri = trained_registry.copy(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    home.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'copilot.db'}")
    store = ActionStore(engine, audit_key=load_key(home, None), ttl_seconds=900)
    promote = store.propose(
        "conv-1", "promote_model", {"force": True, "reason": "more sites"}, "ann"
    )
    rollback = store.propose("conv-1", "rollback_model", {"reason": "just in case"}, "ann")

    listed = runner.invoke(app, ["actions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {a["id"] for a in json.loads(listed.output)} == {promote.id, rollback.id}
    shown = runner.invoke(app, ["actions", "show", promote.id])
    assert "make the @challenger the @champion" in shown.output and "pending" in shown.output

    bad = runner.invoke(app, ["actions", "edit", promote.id, "{not json"])
    assert bad.exit_code == 2 and "ARGUMENTS: not JSON" in bad.output
    invalid = runner.invoke(
        app, ["actions", "edit", promote.id, '{"force": "maybe", "reason": "x!"}']
    )
    assert invalid.exit_code == 2 and '"force": "maybe" is not true or false' in invalid.output

    approved = runner.invoke(
        app, ["actions", "approve", promote.id, "--as", "bob", "--comment", "ok", "--json"]
    )
    assert approved.exit_code == 0, approved.output
    outcome = json.loads(approved.output)
    assert outcome["status"] == "executed" and outcome["decided_by"].startswith("bob via local:")
    assert (
        str(registry.alias_version(registry.client(uri), "heart-disease-risk", "champion").version)
        == "2"
    )
    rejected = runner.invoke(app, ["actions", "reject", rollback.id])
    assert rejected.exit_code == 0 and "rejected" in rejected.output
    assert store.get(rollback.id).decided_by.startswith("local:")  # type: ignore[union-attr]
    again = runner.invoke(app, ["actions", "reject", rollback.id])
    assert again.exit_code == 1 and "is already rejected" in again.output
    missing = runner.invoke(app, ["actions", "approve", "nope"])
    assert missing.exit_code == 1 and "action 'nope' does not exist" in missing.output

    intact = runner.invoke(app, ["audit", "verify"])
    assert intact.exit_code == 0 and "audit log intact: 5 rows" in intact.output
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET payload = '{}' WHERE event = 'approved'"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "contents do not match its hash" in broken.output
    engine.dispose()


@pytest.mark.parametrize("four_eyes", [False, True], ids=["one-operator", "four-eyes"])
def test_an_edit_from_the_shell_runs_nothing_until_approved(
    home: Path,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    monkeypatch: pytest.MonkeyPatch,
    four_eyes: bool,
) -> None:
    from copilot.actions import ActionStore
    from copilot.audit import events, load_key
    from model_service import registry
    from model_service.database import make_engine

    uri = trained_registry.copy(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("COPILOT_FOUR_EYES", str(four_eyes).lower())
    home.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'copilot.db'}")
    store = ActionStore(engine, audit_key=load_key(home, None), ttl_seconds=900)
    promote = store.propose("conv-1", "promote_model", {"reason": "more sites"}, "ann")

    def champion() -> str:
        client = registry.client(uri)
        return str(registry.alias_version(client, "heart-disease-risk", "champion").version)

    forced = '{"version": "2", "force": true, "reason": "reviewed"}'
    edited = runner.invoke(app, ["actions", "edit", promote.id, forced, "--as", "bob"])
    assert edited.exit_code == 0, edited.output
    flat = " ".join(edited.output.split())
    assert f"{promote.id} promote_model pending" in flat and "nothing has run" in flat
    assert champion() == "1" and store.get(promote.id).status == "pending"
    new_hash = store.get(promote.id).arguments_sha256
    assert f"uv run copilot actions approve {promote.id} --arguments-sha256 {new_hash}" in flat

    stale = runner.invoke(
        app,
        ["actions", "approve", promote.id, "--arguments-sha256", promote.arguments_sha256],
    )
    assert stale.exit_code == 1 and "was edited" in stale.output
    assert champion() == "1" and store.get(promote.id).status == "pending"
    if four_eyes:  # the editor's account (any --as name) does not approve their own edit
        own = runner.invoke(app, ["actions", "approve", promote.id, "--as", "carol"])
        assert own.exit_code == 1 and "may not approve it (four-eyes rule)" in own.output
        assert champion() == "1" and store.get(promote.id).status == "pending"
        # someone else approves (e.g. through the agent API); the shell then runs it
        store.decide(promote.id, "approve", "dan via api-key:dan", expected_sha256=new_hash)
    approved = runner.invoke(
        app, ["actions", "approve", promote.id, "--as", "bob", "--arguments-sha256", new_hash]
    )
    assert approved.exit_code == 0, approved.output
    assert store.get(promote.id).status == "executed" and champion() == "2"
    assert store.get(promote.id).arguments["force"] is True
    with engine.connect() as connection:
        trail = [e["event"] for e in events(connection, promote.id)]
    assert trail == ["proposed", "edited", "approved", "executed"]
    engine.dispose()


def test_an_edit_at_the_chat_prompt_asks_again_for_the_approval(
    home: Path,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_service import registry

    uri = trained_registry.copy(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODEL_SERVICE_URL", live_service)
    forced = '{"version": "2", "force": true, "reason": "reviewed at the prompt"}'
    session = runner.invoke(
        app,
        ["chat", "--conversation", "t3", "--as", "dr.lee"],
        input=f"promote the challenger\ne\n{forced}\nedited\na\nok\n\n",
    )
    assert session.exit_code == 0, session.output
    flat = " ".join(session.output.split())
    edited_at = flat.index("Nothing has run: the edited action waits for approval")
    asked_again = flat.index("pending (edited by dr.lee via local:", edited_at)
    assert '"force": true' in flat[asked_again:]  # shown again, with the new arguments
    assert flat.index("Done: make version 2 the @champion", asked_again) > asked_again
    champion = registry.alias_version(registry.client(uri), "heart-disease-risk", "champion")
    assert str(champion.version) == "2"
    (action,) = json.loads(
        runner.invoke(app, ["actions", "list", "--status", "all", "--json"]).output
    )
    assert action["status"] == "executed" and action["arguments"]["force"] is True
    assert action["arguments"]["reason"] == "reviewed at the prompt"


def test_chat_one_turn_as_json_and_a_session_with_an_approval(
    home: Path,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_service import registry

    uri = trained_registry.copy(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODEL_SERVICE_URL", live_service)
    one = runner.invoke(
        app,
        [
            "chat",
            "--json",
            "--conversation",
            "t1",
            "63 yo M, asymptomatic CP, BP 145, chol 233 mg/dl, max HR 150, ST dep 2.3, exang no",
        ],
    )
    assert one.exit_code == 0, one.output
    turn = json.loads(one.output[one.output.index("{") :])
    assert set(turn) == {
        "conversation_id",
        "messages",
        "tool_calls",
        "pending_actions",
        "usage",
        "suggestions",
    }
    assert turn["suggestions"] == []
    assert [(u["agent"], u["model"]) for u in turn["usage"]] == [("router", "offline")]
    assert turn["conversation_id"] == "t1" and turn["tool_calls"][0]["tool"] == "predict_risk"

    session = runner.invoke(
        app,
        ["chat", "--conversation", "t1", "--as", "dr.lee"],
        input="why?\npromote version 2 even if the gate fails\na\nok\n\n",
    )
    assert session.exit_code == 0, session.output
    flat = " ".join(session.output.split())
    assert "Largest drivers among the patient's own values:" in flat
    assert "5 of 13 inputs were missing and filled in by the model" in flat
    assert "Proposed: make version 2 the @champion" in flat
    # on the shared evaluation set, version 2 (Cleveland + Hungary) passes the gate
    assert "As things stand: version 2 passes the promotion gate" in flat
    assert "Done: make version 2 the @champion" in flat and "approved by dr.lee via local:" in flat
    champion = registry.alias_version(registry.client(uri), "heart-disease-risk", "champion")
    assert str(champion.version) == "2"

    later = runner.invoke(app, ["chat", "--conversation", "t2"], input="roll back\nl\n\n")
    assert later.exit_code == 0 and "left pending" in later.output
    pending = runner.invoke(app, ["actions", "list", "--json"])
    assert [a["tool"] for a in json.loads(pending.output)] == ["rollback_model"]


def test_chat_turns_take_the_conversation_lease_and_publish_their_events(
    home: Path, tmp_path: Path, trained_registry: TrainedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal runs a conversation's turns the way the API and the chat UI do: one at a
    time, with events a follower of GET /v1/conversations/{id}/events sees."""
    from copilot.conversations import ConversationStore
    from model_service.database import make_engine

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_registry.copy(tmp_path))
    home.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'copilot.db'}")
    conversations = ConversationStore(engine)

    new = runner.invoke(app, ["chat", "--json", "roll back"])
    assert new.exit_code == 0, new.output
    conversation_id = json.loads(new.output[new.output.index("{") :])["conversation_id"]
    record = conversations.get(conversation_id)
    assert record is not None and record.owner.startswith("local:")
    events = [e.event for e in conversations.events_after(conversation_id, 0)]
    assert events[0] == "turn_started" and events[-1] == "turn_finished"
    assert "action_proposed" in events and conversations.turn_in_progress(conversation_id) is None

    held = conversations.begin_turn(conversation_id, "message")  # e.g. the API is running one
    busy = runner.invoke(app, ["chat", "--conversation", conversation_id, "roll back again"])
    assert busy.exit_code == 1
    assert f"a turn is in progress in conversation {conversation_id}" in busy.output
    assert "the conversation is free at " in busy.output  # when a crashed holder's lease ends
    assert len(conversations.events_after(conversation_id, 0)) == len(events)  # nothing ran
    conversations.end_turn(held)

    # a message over the limit is refused before anything runs, on every surface
    huge = runner.invoke(app, ["chat", "--conversation", conversation_id, '"' + " " * 10_000])
    assert huge.exit_code == 1
    assert "the message has 10,001 characters; the limit is 4,000" in huge.output
    assert len(conversations.events_after(conversation_id, 0)) == len(events)
    engine.dispose()


def test_four_eyes_holds_against_another_name_and_markup_is_printed_as_text(
    home: Path, tmp_path: Path, trained_registry: TrainedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from copilot.actions import ActionStore
    from copilot.audit import load_key
    from model_service.database import make_engine

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_registry.copy(tmp_path))
    monkeypatch.setenv("COPILOT_FOUR_EYES", "true")
    home.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'copilot.db'}")
    requester = runner.invoke(
        app,
        ["chat", "--json", "--as", "dr.ann", "roll back, reason: [/] [conceal]hidden[/conceal]"],
    )
    assert requester.exit_code == 0, requester.output
    action_id = json.loads(requester.output[requester.output.index("{") :])["pending_actions"][0][
        "id"
    ]
    store = ActionStore(engine, audit_key=load_key(home, None), ttl_seconds=900)
    assert store.get(action_id).requested_by.startswith("dr.ann via local:")

    listed = runner.invoke(app, ["actions", "list"])
    assert listed.exit_code == 0 and "[conceal]hidden[/conceal]" in listed.output
    same_account = runner.invoke(app, ["actions", "approve", action_id, "--as", "dr.bob"])
    assert same_account.exit_code == 1 and "four-eyes rule" in same_account.output
    assert store.get(action_id).status == "pending"
    engine.dispose()


def test_monitor_once_prints_one_pass(
    home: Path,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_registry.copy(tmp_path))
    monkeypatch.setenv("MODEL_SERVICE_URL", live_service)
    result = runner.invoke(app, ["monitor", "--once", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sites = {point["site"] for point in summary["points"]}
    assert sites == {"all", "Cleveland", "Hungary", "Switzerland", "VA Long Beach"}
    metrics = {point["metric"] for point in summary["points"]}
    assert {"share_drifted", "data_quality_findings", "auc", "accuracy"} <= metrics
    table = runner.invoke(app, ["monitor", "--once"])
    assert table.exit_code == 0, table.output
    assert "check " in table.stdout and "Hungary" in table.stdout


def test_the_readme_conversation_runs_in_the_terminal_chat(
    home: Path,
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's lines (as the browser test reads them) through `copilot chat`, on a
    registry as `copilot up` leaves it: one run, its version the champion."""
    from model_service import registry
    from tests.system.test_readme_conversation import readme_conversation

    uri = trained_registry.copy(tmp_path)
    client = registry.client(uri)
    client.delete_model_version("heart-disease-risk", trained_registry.challenger.version)
    client.delete_run(trained_registry.challenger.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODEL_SERVICE_URL", live_service)
    typed = []
    for line in readme_conversation():
        typed.append(line)
        if line.startswith(("retrain", "promote", "roll back")):
            typed += ["a", ""]  # approve, no comment
    session = runner.invoke(
        app, ["chat", "--conversation", "readme"], input="\n".join(typed) + "\n\n"
    )
    assert session.exit_code == 0, session.output
    flat = " ".join(session.output.split())
    assert "Predicted risk of heart disease:" in flat
    assert "Drift detected for VA Long Beach" in flat
    shared = "184 rows (Cleveland 61, Hungary 58, Switzerland 25, VA Long Beach 40)"
    assert f"on the same evaluation set, {shared}, which neither trained on" in flat
    assert f"Runs compared (holdout metrics on the same evaluation set, {shared}" in flat
    assert "passes the promotion gate" in flat and "refused" not in flat
    new = registry.alias_version(client, "heart-disease-risk", "previous-champion")
    assert f"Version {new.version} is the @champion; version 1 is kept" in flat
    assert flat.count("Done: ") == 3
    champion = registry.alias_version(client, "heart-disease-risk", "champion")
    assert str(champion.version) == "1"  # rolled back to the demo model
