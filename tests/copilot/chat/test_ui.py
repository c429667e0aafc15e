"""The chat UI without a browser: approval cards, the SHAP chart and tables, sign-in and
roles, turns and decisions through a real copilot, and what `copilot serve ui` prepares.

(The Chainlit file itself is exercised in a real browser by tests/test_browser.py.)
"""

import io
import json
import os
import socket
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

import graphs.turns
from copilot.actions import ActionConflict, InvalidArguments, NotAllowed, PendingAction
from copilot.chat import server as ui_server
from copilot.chat import turns as ui_turns
from copilot.chat import views as ui_views
from copilot.chat.access import (
    KeyWithdrawn,
    Person,
    current_person,
    current_role,
    key_fingerprint,
    parse_arguments,
    sign_in,
    throttled_sign_in,
    visible_pending,
)
from copilot.cli.main import app
from copilot.conversations import TurnInProgress
from copilot.facts import RouteRequest
from copilot.llm.agents import build_agents
from copilot.llm.router import route
from copilot.settings import Settings
from copilot.throttle import FailureThrottle
from model_service import registry
from model_service.cards import DatasetCard
from tests.conftest import TrainedRegistry
from tools.drift import DriftSummary
from tools.predictions import Explanation
from tools.runs import RunComparison

KEYS = "ann:approver:ann-key,bob:approver:bob-key,uma:user:uma-key"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _action(**changes: Any) -> PendingAction:
    values: dict[str, Any] = {
        "id": "a" * 32,
        "conversation_id": "c1",
        "tool": "promote_model",
        "arguments": {"version": None, "force": False, "reason": "better on Hungary"},
        "arguments_sha256": "0" * 64,
        "original_arguments": None,
        "summary": "make the @challenger the @champion that scores patients",
        "requested_by": "uma via ui:uma",
        "created_at": NOW - timedelta(minutes=1),
        "expires_at": NOW + timedelta(minutes=14, seconds=30),
        "status": "pending",
        "decided_by": None,
        "decided_at": None,
        "comment": None,
        "result": None,
        "executing": False,
    }
    return PendingAction.model_validate(values | changes)


def test_an_approval_card_shows_the_persisted_action() -> None:
    card = ui_views.approval_card(_action(), can_decide=True, now=NOW)
    assert card.startswith(f"**Approval needed: `promote_model`** (action `{'a' * 32}`)")
    assert "**What will change:** make the @challenger the @champion" in card
    assert "**Requested by** uma via ui\\:uma at 2026-11-23 08:59 UTC" in card
    assert "**Expires** 2026-11-23 09:14 UTC (in 14 min)" in card
    assert '"reason": "better on Hungary"' in card
    assert "Waiting for a person with the approver role" not in card

    for_user = ui_views.approval_card(_action(), can_decide=False, now=NOW)
    assert for_user.endswith("Waiting for a person with the approver role to decide.")

    done = ui_views.approval_card(
        _action(
            status="executed",
            decided_by="bob via ui:bob",
            original_arguments={"version": None, "force": False, "reason": "x"},
        ),
        can_decide=True,
    )
    assert done.startswith("**Done, approved by bob via ui\\:bob: `promote_model`**")
    assert "**Expires**" not in done and "**Proposed as**" in done
    assert ui_views.approval_card(_action(status="expired"), can_decide=True).startswith(
        "**Expired before anyone decided: "
    )


def test_an_edited_card_shows_the_new_arguments_and_asks_for_approval() -> None:
    edited = _action(
        arguments={"version": "2", "force": True, "reason": "reviewed"},
        original_arguments={"version": None, "force": False, "reason": "better on Hungary"},
        edited_by="bob via ui:bob",
    )
    card = ui_views.approval_card(edited, can_decide=True, now=NOW)
    assert card.startswith("**Edited, approval needed: `promote_model`**")
    assert "**Edited by** bob via ui\\:bob: nothing has run. Approve the new arguments" in card
    assert card.index('"force": true') < card.index("**Proposed as**")  # new ones first
    assert "four-eyes" not in card
    four_eyes = ui_views.approval_card(edited, can_decide=True, four_eyes=True, now=NOW)
    assert "by someone other than uma via ui\\:uma and bob via ui\\:bob (four-eyes rule)" in (
        four_eyes
    )
    assert ui_views.decision_payload(edited) == {
        "action_id": "a" * 32,
        "arguments_sha256": "0" * 64,
    }


def test_a_card_says_before_approval_that_it_will_be_refused() -> None:
    refused = {"will_fail": True, "note": "the promotion gate refuses version 2: robustness"}
    card = ui_views.approval_card(_action(preview=refused), can_decide=True, now=NOW)
    assert (
        "**What will change:** make the @challenger the @champion that scores patients\n\n"
        "**Will be refused as things stand:** the promotion gate refuses version 2: robustness"
    ) in card
    passing = {"will_fail": False, "note": "version 2 passes the promotion gate"}
    card = ui_views.approval_card(_action(preview=passing), can_decide=True, now=NOW)
    assert "**Now:** version 2 passes the promotion gate" in card
    decided = _action(preview=refused, status="rejected", decided_by="bob via ui:bob")
    assert "things stand" not in ui_views.approval_card(decided, can_decide=True, now=NOW)


@pytest.mark.anyio
async def test_the_starter_patient_has_enough_information_for_a_risk(
    heart_card: DatasetCard,
) -> None:
    (text,) = [text for label, text in ui_views.STARTERS if label == "Risk for a patient"]
    decided = await route(build_agents(Settings(), heart_card).router, RouteRequest(text))
    patient = decided.arguments["patient"]
    assert decided.tool == "predict_risk" and len(patient) >= heart_card.needed_features
    missing = set(heart_card.feature_names) - set(patient)
    assert heart_card.confidence(missing, outside_training_range=False) == "low"


def test_text_from_people_cannot_become_markup_on_a_card() -> None:
    card = ui_views.approval_card(
        _action(
            requested_by="[approve here](http://evil.example) via ui:eve",
            comment="![x](http://evil.example/?leak=1) **urgent**",
            status="rejected",
            decided_by="ann via ui:ann",
            arguments={"reason": "```\n</code> ``` `"},
        ),
        can_decide=True,
    )
    # bare URLs are broken with a zero-width space: the chat would make them links
    assert "\\[approve here\\]\\(http:/\u200b/evil.example\\) via ui\\:eve" in card
    assert "\\!\\[x\\]\\(http:/\u200b/evil.example/?leak=1\\) \\*\\*urgent\\*\\*" in card
    assert "http://evil" not in card
    # a fence longer than any backtick run in the arguments keeps the JSON inside its block
    assert "````json\n" in card and card.rstrip().endswith("````")


def test_assistant_text_keeps_names_after_a_colon() -> None:
    text = "Not done: ann via ui:ann rejected it at 08:14:47; report: http://host:8000/r"
    assert ui_views.chat_text(text) == (
        "Not done: ann via ui\\:ann rejected it at 08:14:47; report: http://host:8000/r"
    )


def _explanation(n_features: int) -> dict[str, Any]:
    drivers = [
        {
            "rank": i + 1,
            "feature": f"f{i}",
            "display_name": f"feature {i}",
            "value": 233.0 if i == 0 else None if i == 1 else "asymptomatic",
            "unit": "mg/dl" if i == 0 else None,
            "contribution": (0.8 if i % 2 == 0 else -0.6) / (i + 1),
            "direction": "raises risk" if i % 2 == 0 else "lowers risk",
        }
        for i in range(n_features)
    ]
    return Explanation.model_validate(
        {
            "prediction_id": "p1",
            "probability": 0.62,
            "log_odds": 0.49,
            "base_value": -0.1,
            "base_probability": 0.475,
            "drivers": drivers,
            "model": {"name": "heart-disease-risk", "version": "1", "alias": "champion"},
            "warnings": [
                {
                    "feature": "f1",
                    "display_name": "feature 1",
                    "code": "missing_imputed",
                    "message": "feature 1 missing; imputed as normal (the training median)",
                }
            ],
            "information": {
                "confidence": "low",
                "recorded": n_features - 1,
                "missing": 1,
                "total": n_features,
                "needed": 1,
                "filled_in": ["feature 1"],
            },
        }
    ).model_dump(mode="json")


def test_the_shap_chart_draws_each_driver_with_the_patients_value() -> None:
    explanation = _explanation(13)
    bars = ui_views.chart_bars(explanation)
    assert bars[0] == ("feature 0 = 233 mg/dl", 0.8)
    assert bars[1] == ("feature 1 = missing (imputed)", -0.3)
    assert bars[2][0] == "feature 2 = asymptomatic"
    assert len(bars) == ui_views.CHART_FEATURES + 1
    # the value the model filled in is drawn apart (hatched) from the patient's own
    assert ui_views.filled_in_bars(explanation) == [False, True] + [False] * (len(bars) - 2)
    rest = explanation["drivers"][ui_views.CHART_FEATURES :]
    assert bars[-1] == ("5 other features", pytest.approx(sum(d["contribution"] for d in rest)))

    png = ui_views.shap_chart_png(explanation)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = imread(io.BytesIO(png)).shape
    assert width > 600 and height > 400
    few = imread(io.BytesIO(ui_views.shap_chart_png(_explanation(3)))).shape[0]
    assert few < height  # the chart grows with its bars


def test_drift_is_a_table_with_the_report_link() -> None:
    summary = DriftSummary.model_validate(
        {
            "drift_detected": True,
            "share_drifted": 0.25,
            "features_drifted": 1,
            "features_tested": 4,
            "drifted": [
                {
                    "feature": "chol",
                    "display_name": "serum cholesterol",
                    "method": "ks",
                    "p_value_adjusted": 0.00012,
                    "p_value_shown": "< 0.001",
                    "effect_size": 0.41,
                    "effect_size_method": "wasserstein",
                },
                {
                    "feature": "oldpeak",
                    "display_name": "ST depression",
                    "method": "ks",
                    "p_value_adjusted": 0.0,
                    "p_value_shown": "< 0.001",
                    "effect_size": None,
                    "effect_size_method": None,
                },
                {
                    "feature": "thalch",
                    "display_name": "maximum heart rate",
                    "method": "ks",
                    "p_value_adjusted": 0.0123,
                    "p_value_shown": "0.012",
                    "effect_size": None,
                    "effect_size_method": None,
                },
            ],
            "stable": ["age", "trestbps"],
            "untested": ["ca"],
            "display_names": {
                "age": "age",
                "trestbps": "resting blood pressure",
                "chol": "serum cholesterol",
                "ca": "vessels coloured by fluoroscopy",
            },
            "data_quality": [
                {
                    "feature": "chol",
                    "display_name": "serum cholesterol",
                    "issue": "zero",
                    "count": 49,
                    "detail": "49 zeros | missing",
                }
            ],
            "reference": {"rows": 304},
            "current": {"rows": 200, "site": "VA Long Beach"},
            "report_url": "http://127.0.0.1:8000/v1/reports/r1.html",
        }
    ).model_dump(mode="json")
    table = ui_views.table_for({"tool": "check_drift", "arguments": {}, "result": summary})
    assert table is not None
    lines = table.splitlines()
    assert lines[0] == "| Feature | Test | Adjusted p | Effect size | Result |"
    # display names, never raw names such as trestbps; p-values below 0.001 (0 included) as
    # "< 0.001"
    assert "| serum cholesterol | ks | \\< 0.001 | 0.41 (wasserstein) | **drifted** |" in lines
    assert "| ST depression | ks | \\< 0.001 |  | **drifted** |" in lines
    assert "| maximum heart rate | ks | 0.012 |  | **drifted** |" in lines
    assert "| resting blood pressure |  |  |  | stable |" in lines
    assert "| vessels coloured by fluoroscopy |  |  |  | too few values to test |" in lines
    assert "| serum cholesterol | 49 zeros \\| missing | 49 |" in lines  # a pipe cannot split it
    assert lines[-1] == (
        "[Open the full Evidently drift report](http://127.0.0.1:8000/v1/reports/r1.html)"
    )


def _run(run_id: str, sites: list[str], version: str, aliases: list[str]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "name": run_id,
        "started_at": "2026-11-23T08:00:00Z",
        "dataset": "heart-disease",
        "sites": sites,
        "best_kind": "xgboost",
        "reason": "test",
        "metrics": {"holdout_roc_auc": 0.9},
        "version": version,
        "aliases": aliases,
    }


def test_a_run_comparison_is_a_table_with_the_better_value_in_bold() -> None:
    comparison = RunComparison.model_validate(
        {
            "runs": [
                _run("a" * 32, ["Cleveland"], "1", ["champion"]),
                _run("b" * 32, ["Cleveland", "Hungary"], "2", ["challenger"]),
            ],
            "metrics": [
                {
                    "metric": "holdout_roc_auc",
                    "higher_is_better": True,
                    "values": {"a" * 32: 0.91, "b" * 32: 0.88},
                    "best_run": "a" * 32,
                    "delta": -0.03,
                }
            ],
            "params_differing": {
                "sites": {"a" * 32: "Cleveland", "b" * 32: "Cleveland,Hungary"},
                "model.max_depth": {"a" * 32: "", "b" * 32: "3"},
                "model.solver": {"a" * 32: "lbfgs", "b" * 32: ""},
            },
        }
    ).model_dump(mode="json")
    table = ui_views.table_for({"tool": "compare_runs", "arguments": {}, "result": comparison})
    assert table is not None
    lines = table.splitlines()
    assert lines[0] == (
        "| Metric | aaaaaaaa \\(Cleveland\\) v1 @champion "
        "| bbbbbbbb \\(Cleveland \\+ Hungary\\) v2 @challenger | Change |"
    )
    assert lines[2] == "| holdout roc auc | **0.910** | 0.880 | -0.030 |"
    assert "| sites | Cleveland | Cleveland,Hungary |" in lines
    assert "max\\_depth" not in table  # hyperparameters are counted, not listed
    assert lines[-1] == "2 model hyperparameters differ too (see MLflow)."


def test_only_tools_with_pictures_get_a_table() -> None:
    assert ui_views.table_for({"tool": "predict_risk", "arguments": {}, "result": {}}) is None
    proposal = {"tool": "promote_model", "arguments": {}, "result": {"action_id": "x"}}
    assert ui_views.table_for(proposal) is None
    assert (
        ui_views.table_for({"tool": "list_runs", "arguments": {}, "result": {"runs": []}}) is None
    )
    runs = {"runs": [_run("c" * 32, ["Hungary"], "3", [])]}
    listed = ui_views.table_for({"tool": "list_runs", "arguments": {}, "result": runs})
    assert listed is not None and "| cccccccc \\(Hungary\\) v3 | 2026-11-23 08:00 |" in listed


def test_sign_in_takes_a_name_and_its_key() -> None:
    settings = Settings(copilot_api_keys=KEYS)
    assert sign_in(settings, "ann", "ann-key") == Person("ann", "approver")
    assert sign_in(settings, "uma", "uma-key") == Person("uma", "user")
    assert sign_in(settings, "ann", "uma-key") is None  # another person's key
    assert sign_in(settings, "ann", "") is None
    assert sign_in(Settings(copilot_api_keys=None), "ann", "ann-key") is None
    assert Person("ann", "approver").identity == "ann via ui:ann"
    assert current_role(settings, "uma") == "user" and current_role(settings, "eve") is None


SECRET = "server-secret"


def test_a_session_whose_key_was_removed_is_refused_not_demoted() -> None:
    """Chainlit's token outlives a configuration change: the role comes from the keys now."""
    before = Settings(copilot_api_keys=KEYS)
    bobs, umas = key_fingerprint(SECRET, "bob-key"), key_fingerprint(SECRET, "uma-key")
    assert current_person(before, "bob", bobs, SECRET) == Person("bob", "approver")
    after = Settings(copilot_api_keys="ann:approver:ann-key,uma:approver:uma-key")
    assert current_person(after, "uma", umas, SECRET) == Person("uma", "approver")  # promoted
    with pytest.raises(KeyWithdrawn, match="'bob' has no key in COPILOT_API_KEYS any more"):
        current_person(after, "bob", bobs, SECRET)
    with pytest.raises(KeyWithdrawn, match="'this session' has no key"):
        current_person(after, "", None, SECRET)


def test_a_session_is_bound_to_the_key_it_signed_in_with() -> None:
    """A key change (same name, new key) ends the old sessions; the token holds only an
    HMAC of the key under the server's secret."""
    old = key_fingerprint(SECRET, "uma-key")
    assert "uma-key" not in old and old != key_fingerprint("another-secret", "uma-key")
    rotated = Settings(copilot_api_keys="ann:approver:ann-key,uma:user:uma-new-key")
    with pytest.raises(KeyWithdrawn, match="the key of 'uma' changed since this session"):
        current_person(rotated, "uma", old, SECRET)
    with pytest.raises(KeyWithdrawn, match="changed since"):
        current_person(rotated, "uma", None, SECRET)  # a token from before fingerprints
    new = key_fingerprint(SECRET, "uma-new-key")
    assert current_person(rotated, "uma", new, SECRET) == Person("uma", "user")


def test_failed_sign_ins_are_throttled_per_address_and_per_name() -> None:
    settings = Settings(copilot_api_keys=KEYS)
    now = [0.0]
    throttle = FailureThrottle(max_failures=5, window_seconds=300, clock=lambda: now[0])
    for attempt in range(5):
        assert throttled_sign_in(settings, throttle, "10.0.0.9", "ann", f"guess{attempt}") is None
    # the right key no longer helps from that address, nor for that name from another one
    assert throttled_sign_in(settings, throttle, "10.0.0.9", "uma", "uma-key") is None
    assert throttled_sign_in(settings, throttle, "10.0.0.7", "ann", "ann-key") is None
    assert throttled_sign_in(settings, throttle, "10.0.0.7", "uma", "uma-key") == Person(
        "uma", "user"
    )
    now[0] = 301.0  # the window has passed
    assert throttled_sign_in(settings, throttle, "10.0.0.9", "ann", "ann-key") == Person(
        "ann", "approver"
    )


def test_edited_arguments_must_be_a_json_object() -> None:
    assert parse_arguments("promote_model", '{"force": true}') == {"force": True}
    with pytest.raises(InvalidArguments, match=r"not JSON \(Expecting value at character 0\)"):
        parse_arguments("promote_model", "force it")
    with pytest.raises(InvalidArguments, match="must be a JSON object"):
        parse_arguments("promote_model", "[1, 2]")


@pytest.mark.anyio
async def test_turns_and_decisions_run_as_the_conversations_turn(
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    live_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        copilot_home=tmp_path,
        mlflow_tracking_uri=trained_registry.copy(tmp_path),
        model_service_url=live_service,
        copilot_api_keys=KEYS,
    )
    uma, ann = Person("uma", "user"), Person("ann", "approver")
    seen: list[tuple[str, str]] = []

    async def on_event(event: str, data: dict[str, Any]) -> None:
        if event != "message":
            seen.append((event, data.get("tool") or data["action"]["tool"]))

    async with ui_turns.open_runtime(settings) as runtime:
        conversation_id = await ui_turns.start_conversation(runtime, uma)
        assert runtime.deps.conversations.get(conversation_id).owner == "ui:uma"  # type: ignore[union-attr]
        text = "Promote the challenger, even if the gate fails"
        turn = await ui_turns.send(runtime, conversation_id, text, uma, on_event)
        (proposed,) = turn.pending_actions
        action_id = proposed["id"]
        assert seen == [("action_proposed", "promote_model")]
        copilot = runtime
        assert [a.id for a in await visible_pending(copilot, uma)] == [action_id]
        assert await visible_pending(copilot, Person("ulf", "user")) == []
        assert [a.id for a in await visible_pending(copilot, ann)] == [action_id]

        for name in ("uma", "eve"):  # a user, and a name with no key at all
            with pytest.raises(NotAllowed, match="only approvers decide actions"):
                await ui_turns.decide(runtime, name, action_id, "approve", None, on_event)
        with pytest.raises(InvalidArguments, match='"version": 1 is not a string'):
            await ui_turns.decide(runtime, "ann", action_id, "edit", {"version": 1}, on_event)
        # while another turn of the conversation runs (here: held by hand), nothing is decided
        monkeypatch.setattr(graphs.turns, "DECISION_WAIT_SECONDS", 0.3)
        lease = runtime.deps.conversations.begin_turn(conversation_id, "message")
        with pytest.raises(TurnInProgress):
            await ui_turns.decide(runtime, "ann", action_id, "approve", None, on_event)
        runtime.deps.conversations.end_turn(lease)
        assert copilot.deps.actions.get(action_id).status == "pending"

        # an edit from the card runs nothing: the card comes back with the new arguments
        shown = ui_views.decision_payload(copilot.deps.actions.get(action_id))
        seen.clear()
        forced = {"version": "2", "force": True, "reason": "reviewed on the card"}
        edited, told = await ui_turns.decide(runtime, "ann", action_id, "edit", forced, on_event)
        assert edited.status == "pending" and edited.arguments == forced
        assert edited.edited_by == "ann via ui:ann" and told.tool_calls == []
        assert not [event for event, _ in seen if event.startswith("tool_")]
        assert "the edited action waits for approval" in told.messages[0]["content"]
        assert [a.id for a in await visible_pending(copilot, ann)] == [action_id]
        card = ui_views.approval_card(edited, can_decide=True)
        assert card.startswith("**Edited, approval needed") and '"force": true' in card
        # the buttons of the card as it was before the edit approve nothing
        with pytest.raises(ActionConflict, match="was edited"):
            await ui_turns.decide(
                runtime,
                "ann",
                action_id,
                "approve",
                None,
                on_event,
                expected_sha256=shown["arguments_sha256"],
            )
        assert copilot.deps.actions.get(action_id).status == "pending"

        seen.clear()
        action, outcome = await ui_turns.decide(
            runtime,
            "ann",
            action_id,
            "approve",
            None,
            on_event,
            expected_sha256=ui_views.decision_payload(edited)["arguments_sha256"],
        )
        assert action.arguments == forced
        assert action.status == "executed" and action.decided_by == "ann via ui:ann"
        assert outcome.messages[0]["content"].startswith("Done: make version 2 the @champion")
        assert seen[0] == ("tool_started", "promote_model")
        assert ("tool_finished", "promote_model") in seen
        assert await visible_pending(copilot, ann) == []
        published = [e.event for e in runtime.deps.conversations.events_after(conversation_id, 0)]
        assert published.count("turn_started") == 3 and published[-1] == "turn_finished"

        # a refreshed page continues uma's newest conversation, its history from the store
        assert await ui_turns.latest_conversation(runtime, uma) == conversation_id
        assert await ui_turns.latest_conversation(runtime, ann) is None
        said = await ui_turns.earlier_messages(runtime, conversation_id)
        assert said[0] == {"role": "user", "content": text}
        assert said[1]["role"] == "assistant" and said[1]["content"].startswith("Proposed: ")
        assert said[-1] == {"role": "assistant", "content": outcome.messages[0]["content"]}
        newer = await ui_turns.start_conversation(runtime, uma)
        assert await ui_turns.latest_conversation(runtime, uma) == newer
        assert await ui_turns.earlier_messages(runtime, newer) == []
    champion = registry.alias_version(
        registry.client(settings.tracking_uri), "heart-disease-risk", "champion"
    )
    assert str(champion.version) == "2"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """What prepare() sets is restored after the test."""
    for name in (
        "CHAINLIT_APP_ROOT",
        "CHAINLIT_AUTH_SECRET",
        "CHAINLIT_ENV_FILE",
        "PYDANTIC_AI_NO_BANNER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "chainlit", raising=False)
    return monkeypatch


def test_the_ui_keeps_its_files_and_config_under_copilot_home(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings = Settings(copilot_home=tmp_path, copilot_api_keys=KEYS)
    root = ui_server.prepare(settings)
    assert root == tmp_path / "ui"
    config = tomllib.loads((root / ".chainlit" / "config.toml").read_text())
    assert config["project"]["allow_origins"] == []
    assert config["features"]["spontaneous_file_upload"]["enabled"] is False
    assert config["features"]["unsafe_allow_html"] is False
    assert config["UI"]["name"] == ui_server.UI_NAME
    texts = json.loads((root / ".chainlit" / "translations" / "en-US.json").read_text())
    form = texts["auth"]["login"]["form"]
    assert form["email"]["label"] == "Name (the one given with your key)"
    assert form["email"]["placeholder"] == "e.g. ann" and form["password"]["label"] == "Key"
    assert (root / "chainlit_en-US.md").read_text().startswith("# MLOps Copilot")
    assert os.environ["CHAINLIT_APP_ROOT"] == str(root)
    assert os.environ["CHAINLIT_ENV_FILE"] == os.devnull
    secret = os.environ["CHAINLIT_AUTH_SECRET"]
    assert len(secret) >= 32 and (root / "auth.secret").stat().st_mode & 0o077 == 0
    clean_env.delenv("CHAINLIT_AUTH_SECRET")
    assert ui_server.auth_secret(root) == secret  # kept: a restart signs nobody out
    clean_env.setenv("CHAINLIT_AUTH_SECRET", "from-the-environment")
    assert ui_server.auth_secret(root) == "from-the-environment"


def test_the_sign_in_speaks_to_a_local_user_with_the_key_copilot_up_printed(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """`copilot up` without COPILOT_API_KEYS makes one approver key and prints it: the form
    says so, with that name, and mentions no setting the person never set."""
    (tmp_path / "local-approver.key").write_text("k" * 43 + "\n")
    local = Settings(copilot_home=tmp_path, copilot_api_keys=f"dana:approver:{'k' * 43}")
    assert ui_server.local_sign_in(local) == "dana"
    root = ui_server.prepare(local)
    form = json.loads((root / ".chainlit" / "translations" / "en-US.json").read_text())["auth"][
        "login"
    ]["form"]
    assert form["email"]["label"] == "Name (as `copilot up` printed it)"
    assert form["email"]["placeholder"] == "dana"
    assert form["password"]["label"] == "Key (as `copilot up` printed it)"
    for configured in (KEYS, f"dana:approver:{'x' * 43}"):  # keys given to people
        settings = Settings(copilot_home=tmp_path, copilot_api_keys=configured)
        assert ui_server.local_sign_in(settings) is None
        assert "COPILOT_API_KEYS" not in json.dumps(ui_server.sign_in_wording(settings))


def test_the_ui_refuses_to_start_without_keys(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ui_server.UiError, match="COPILOT_API_KEYS is empty"):
        ui_server.prepare(Settings(copilot_home=tmp_path))
    clean_env.setenv("COPILOT_HOME", str(tmp_path))
    clean_env.delenv("COPILOT_API_KEYS", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(app, ["serve", "ui", "--port", str(port)])
    assert result.exit_code == 2 and "COPILOT_API_KEYS is empty" in result.output
    assert not (tmp_path / "ui").exists()


def test_assistant_messages_reach_the_chat_as_literal_text() -> None:
    """Run names, tags and reasons come from MLflow, where anyone with access writes them:
    in the chat they are words, never links, images or markup."""
    told = (
        "Training runs, newest first:\n"
        "- ![x](http://evil.example/p.png) [click](http://evil.example) **v3** | a | b"
    )
    shown = ui_views.message_text(told)
    lines = shown.split("\n")
    assert lines[0] == "Training runs, newest first:"
    assert "\\!\\[x\\]\\(http:/\u200b/evil.example/p.png\\)" in lines[1]
    assert "\\[click\\]" in lines[1] and "\\*\\*v3\\*\\*" in lines[1] and "\\|" in lines[1]
    assert ui_views.message_text("ann via ui:ann") == "ann via ui\\:ann"
