"""The README's example conversation, verbatim and in its order, typed into the chat of a
fresh `copilot up` (a new COPILOT_HOME: the demo model is trained on start) in Debian's
chromium. Each answer is checked against the copilot's own record (the agent API), the
model service and the registry; proposals are approved on their cards; the page is
refreshed once mid-way and the conversation must come back; "New Chat" at the end starts
an empty one. One screenshot per step goes
to test-artifacts/browser/readme-conversation/.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.system.test_browser import ARTIFACTS, CHROMIUM, TIMEOUT_MS, Chat

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ARTIFACTS / "readme-conversation"
# the shared evaluation set (model_service/training.py): 20% of all 920 rows, four sites
EVALUATION_ROWS = 184

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM}"
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect, sync_playwright


def readme_conversation() -> list[str]:
    """The lines of the README's example conversation, without their notes in brackets."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    run_it = readme.split("## Run it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", run_it, re.DOTALL)
    assert block is not None, "the Run it section has no example conversation"
    return [re.sub(r"\s{2,}\(.*\)$", "", line).strip() for line in block.group(1).splitlines()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Up:
    """`copilot up` on a fresh home: where its three services are, and the sign-in."""

    model: str
    api: str
    ui: str
    name: str
    key: str

    def get(self, path: str) -> Any:
        answer = httpx.get(
            f"{self.api}{path}", headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """As a newcomer runs it: nothing configured, an empty home, the demo model trained."""
    home = tmp_path_factory.mktemp("readme-home") / ".copilot"
    ports = [_free_port() for _ in range(3)]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COPILOT_", "CHAINLIT_", "MLFLOW_TRACKING"))
    }
    env |= {
        "COPILOT_HOME": str(home),
        "MODEL_SERVICE_URL": f"http://127.0.0.1:{ports[0]}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "copilot.cli", "up"]
    command += ["--api-port", str(ports[1]), "--ui-port", str(ports[2])]
    started = time.monotonic()
    with subprocess.Popen(
        command,
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + 300
            while not any("press Ctrl-C" in line for line in lines):
                assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
                lines.append(process.stdout.readline())
            sign_in = re.search(r"sign in as\s+(\S+)\s+with key\s+(\S+)", "".join(lines))
            assert sign_in is not None, "".join(lines)
            print(f"\ncopilot up on a fresh home: {time.monotonic() - started:.1f} s")
            model, api, ui = (f"http://127.0.0.1:{port}" for port in ports)
            yield Up(model, api, ui, sign_in.group(1), sign_in.group(2))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _pct(value: float) -> str:
    return f"{value:.0%}" if abs(value) >= 0.01 else f"{value:.1%}"


class Walk:
    """The conversation as the copilot records it, step by step."""

    def __init__(self, up: Up, chat: Chat) -> None:
        self.up, self.chat = up, chat
        self.conversation_id = ""
        self.answers = 0

    def conversation(self) -> Any:
        if not self.conversation_id:
            listed = self.up.get("/v1/conversations")
            assert len(listed) == 1, listed  # a fresh home: the chat's conversation only
            self.conversation_id = listed[0]["id"]
        return self.up.get(f"/v1/conversations/{self.conversation_id}")

    def _answered(self) -> Any:
        """Waits for the turn under way to finish with a new assistant message."""
        found: dict[str, Any] = {}

        def done() -> bool:
            if not self.conversation_id and not self.up.get("/v1/conversations"):
                return False
            found["c"] = self.conversation()
            said = [m for m in found["c"]["messages"] if m["role"] == "assistant"]
            return len(said) > self.answers and not found["c"]["turn_in_progress"]

        wait_until(done, timeout=TIMEOUT_MS / 1000 * 3, what="the copilot's answer")
        said = [m for m in found["c"]["messages"] if m["role"] == "assistant"]
        self.answers = len(said)
        # the answer the copilot recorded is the one on the page
        first_line = said[-1]["content"].split("\n")[0][:60]
        shown = self.chat.page.locator("div.step[data-step-type='assistant_message']")
        expect(shown.filter(has_text=first_line).last).to_be_visible(timeout=TIMEOUT_MS)
        return found["c"]

    def ask(self, text: str) -> tuple[Any, dict[str, Any]]:
        """Types a README line; the conversation and the newest tool call after the answer."""
        calls_before = len(self.conversation()["tool_calls"]) if self.conversation_id else 0
        self.chat.ask(text)
        conversation = self._answered()
        calls = conversation["tool_calls"]
        return conversation, calls[-1] if len(calls) > calls_before else {}

    def approve(self, tool: str) -> dict[str, Any]:
        """Approves the newest card of `tool` and returns the executed action."""
        action_id = self.chat.proposal(tool)
        card = self.chat.card(action_id)
        self.chat.page.wait_for_timeout(200)  # the card's buttons are wired once it is drawn
        card.get_by_role("button", name="Approve").click()
        self._answered()
        action: dict[str, Any] = self.up.get(f"/v1/actions/{action_id}")
        assert action["status"] == "executed", action
        assert action["decided_by"] == f"{self.up.name} via ui:{self.up.name}"
        expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        return action

    def served(self, version: str) -> None:
        def follows() -> bool:
            return bool(httpx.get(f"{self.up.model}/v1/model").json()["version"] == version)

        wait_until(follows, timeout=30, what=f"the model service to serve version {version}")

    def page_says(self, text: str) -> None:
        shown = self.chat.page.locator("div.step[data-step-type='assistant_message']")
        expect(shown.filter(has_text=text).last).to_be_visible(timeout=TIMEOUT_MS)


def _within(given: Any, kept: Any) -> bool:
    """Whether `kept` holds everything `given` says (dicts may have more keys, left None)."""
    if isinstance(given, dict):
        return isinstance(kept, dict) and all(_within(v, kept.get(k)) for k, v in given.items())
    if isinstance(given, list):
        return (
            isinstance(kept, list)
            and len(given) == len(kept)
            and all(_within(g, k) for g, k in zip(given, kept, strict=True))
        )
    return bool(given == kept)


def _predicted(up: Up, patient: dict[str, Any]) -> float:
    answer = httpx.post(f"{up.model}/v1/predict", json=patient, timeout=30)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["probability"])


def test_the_readme_conversation_works_on_a_fresh_home(browser: "Browser", up: Up) -> None:
    lines = readme_conversation()
    assert len(lines) == 14, lines
    started = time.monotonic()
    chat = Chat(browser, up.ui, up.name, up.key)
    walk = Walk(up, chat)
    timings: list[str] = []

    def step(number: int, check: Callable[[str], None]) -> None:
        began = time.monotonic()
        check(lines[number - 1])
        chat.shot(f"readme-conversation/{number:02d}")
        timings.append(f"{number}: {time.monotonic() - began:.1f} s")

    patient: dict[str, Any] = {}

    def risk(text: str) -> None:
        _, call = walk.ask(text)
        assert call["tool"] == "predict_risk"
        patient.update(call["arguments"]["patient"])
        assert patient["age"] == 63 and patient["chol"] == 233 and patient["oldpeak"] == 2.3
        probability = call["result"]["probability"]
        assert probability == pytest.approx(_predicted(up, patient), abs=1e-9)
        walk.page_says(f"Predicted risk of heart disease: {_pct(probability)}")
        expect(chat.page.locator("img[alt='risk-explanation']").last).to_be_visible()

    def why(text: str) -> None:
        _, call = walk.ask(text)
        assert call["tool"] == "explain_prediction"
        result = call["result"]
        total = result["base_value"] + sum(d["contribution"] for d in result["drivers"])
        assert total == pytest.approx(result["log_odds"], abs=1e-4)
        assert result["probability"] == pytest.approx(_predicted(up, patient), abs=1e-9)

    def what_if(text: str) -> None:
        _, call = walk.ask(text)
        assert call["tool"] == "what_if"
        result = call["result"]
        assert result["probability_before"] == pytest.approx(_predicted(up, patient), abs=1e-9)
        after = _predicted(up, {**patient, "chol": 180})
        assert result["probability_after"] == pytest.approx(after, abs=1e-9)
        walk.page_says(f"to {_pct(after)}")

    def answered_on_page(conversation: dict[str, Any]) -> None:
        said = [m for m in conversation["messages"] if m["role"] == "assistant"][-1]
        walk.page_says(said["content"].split("\n")[0][:60])

    def counterfactual(text: str) -> None:
        conversation, call = walk.ask(text)
        assert call["tool"] == "counterfactual"
        result = call["result"]
        assert result["original_probability"] == pytest.approx(_predicted(up, patient), abs=1e-9)
        if result["found"]:
            changed = {c["feature"]: c["to_value"] for c in result["changes"]}
            assert not {"age", "sex"} & changed.keys()
            after = _predicted(up, {**patient, **changed})
            assert result["probability"] == pytest.approx(after, abs=1e-9)
            assert after < result["threshold"]
        answered_on_page(conversation)

    def same_as_service(tool: str, path: str, fields: list[str]) -> Callable[[str], None]:
        """A cohort question: the tool's numbers are the model service's for the same ask."""

        def check(text: str) -> None:
            conversation, call = walk.ask(text)
            assert call["tool"] == tool, call
            direct = httpx.post(f"{up.model}{path}", json=call["arguments"], timeout=120)
            assert direct.status_code == 200, direct.text
            for field in fields:  # the tool's typed result may add fields left empty
                assert _within(direct.json()[field], call["result"][field]), field
            answered_on_page(conversation)

        return check

    def drift(text: str) -> None:
        _, call = walk.ask(text)
        assert call["tool"] == "check_drift" and call["arguments"]["site"] == "VA Long Beach"
        result = call["result"]
        assert result["current"]["site"] == "VA Long Beach"
        if result["drift_detected"]:
            walk.page_says(
                f"{result['features_drifted']} of {result['features_tested']} tested features"
            )

    def refresh() -> None:
        """The page is reloaded: the conversation so far comes back from the copilot."""
        chat.page.reload()
        expect(chat.page.locator("#chat-input")).to_be_visible(timeout=TIMEOUT_MS)
        users = chat.page.locator("div.step[data-step-type='user_message']")
        for said in lines[:4]:
            expect(users.filter(has_text=said).first).to_be_visible(timeout=TIMEOUT_MS)
        history = walk.conversation()["messages"]
        for message in [m for m in history if m["role"] == "assistant"]:
            walk.page_says(message["content"].split("\n")[0][:60])
        chat.shot("readme-conversation/04b-after-refresh")

    retrained: dict[str, Any] = {}

    def retrain(text: str) -> None:
        conversation, _ = walk.ask(text)
        (proposed,) = [a for a in conversation["actions"] if a["status"] == "pending"]
        assert proposed["tool"] == "retrain_model"
        assert proposed["arguments"]["sites"] == ["Cleveland", "Hungary"]
        action = walk.approve("retrain_model")
        retrained.update(action["result"])
        assert (retrained["version"], retrained["alias"]) == ("2", "challenger")
        assert retrained["champion_version"] == "1"
        assert retrained["evaluation_set"]["rows"] == EVALUATION_ROWS
        walk.page_says("New version 2 (@challenger)")
        walk.page_says(f"on the same evaluation set, {EVALUATION_ROWS} rows (Cleveland")
        walk.served("1")  # the champion is untouched

    def compare(text: str) -> None:
        _, call = walk.ask(text)
        assert call["tool"] == "compare_runs"
        result = call["result"]
        assert result["evaluation_set"]["rows"] == EVALUATION_ROWS
        assert [r["version"] for r in result["runs"]] == ["1", "2"]  # oldest first
        auc = next(m for m in result["metrics"] if m["metric"] == "holdout_roc_auc")
        champion = httpx.get(f"{up.model}/v1/model").json()["metrics"]["holdout_roc_auc"]
        new = retrained["metrics"]["holdout_roc_auc"]
        assert list(auc["values"].values()) == pytest.approx([champion, new])
        walk.page_says(f"on the same evaluation set, {EVALUATION_ROWS} rows")

    def promote(text: str) -> None:
        conversation, _ = walk.ask(text)
        (proposed,) = [a for a in conversation["actions"] if a["status"] == "pending"]
        assert proposed["tool"] == "promote_model"
        assert proposed["preview"]["will_fail"] is False
        assert "version 2 passes the promotion gate" in proposed["preview"]["note"]
        action = walk.approve("promote_model")
        assert action["result"]["champion"] == "2" and action["result"]["forced"] is False
        assert all(check["passed"] for check in action["result"]["checks"])
        walk.page_says("Version 2 is the @champion")
        walk.served("2")

    def roll_back(text: str) -> None:
        conversation, _ = walk.ask(text)
        (proposed,) = [a for a in conversation["actions"] if a["status"] == "pending"]
        assert proposed["tool"] == "rollback_model"
        assert proposed["preview"]["will_fail"] is False
        action = walk.approve("rollback_model")
        assert (action["result"]["champion"], action["result"]["previous_champion"]) == (
            "1",
            "2",
        )
        walk.served("1")

    def new_chat() -> None:
        """ "New Chat" leaves the conversation (kept in the store) for an empty one."""
        chat.page.locator("#new-chat-button").click()
        chat.page.locator("#confirm").click()
        expect(chat.page.get_by_text("Compare the last two runs")).to_be_visible(
            timeout=TIMEOUT_MS
        )  # the starters of an empty chat
        expect(chat.page.locator("#confirm")).to_have_count(0)  # the dialog is gone
        chat.page.wait_for_timeout(1500)  # time for a wrongly restored conversation to arrive
        expect(chat.page.locator("div.step[data-step-type='user_message']")).to_have_count(0)
        chat.shot("readme-conversation/15-new-chat")

    try:
        step(1, risk)
        step(2, why)
        step(3, what_if)
        step(4, counterfactual)
        refresh()
        step(5, same_as_service("describe_data", "/v1/cohort/summary", ["cohort", "features"]))
        step(6, same_as_service("model_performance", "/v1/cohort/performance", ["roc_auc"]))
        step(7, same_as_service("model_mistakes", "/v1/cohort/mistakes", ["false_negatives"]))
        step(8, same_as_service("feature_importance", "/v1/cohort/importance", ["importance"]))
        step(9, same_as_service("cohort_what_if", "/v1/cohort/what-if", ["mean_change"]))
        step(10, drift)
        step(11, retrain)
        step(12, compare)
        step(13, promote)
        step(14, roll_back)
        new_chat()
    except BaseException:
        chat.shot("readme-conversation/failed")
        raise
    finally:
        chat.close()
    print(f"README conversation: {time.monotonic() - started:.1f} s ({', '.join(timings)})")
