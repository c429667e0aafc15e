"""The chat UI in a real browser: Debian's chromium driven by Playwright, against
`copilot serve ui` started here over a live model service and a private registry copy.

An approver sees a patient's risk with its chart and approves a promotion on its card; a
rollback is rejected; a `user` sees their card without buttons, a crafted approval from
their session is refused, and an approver decides it from a new session. Screenshots go
to test-artifacts/browser/.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from copilot.actions import ActionStore, PendingAction
from copilot.chat.views import STARTERS
from copilot.settings import Settings
from model_service import registry
from model_service.app import ServiceConfig
from model_service.cards import DatasetCard
from model_service.database import make_engine
from tests.conftest import PROCESS_START_SECONDS, TrainedRegistry, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
KEYS = "ann:approver:ann-key,uma:user:uma-key"
RISK_QUESTION = next(text for label, text in STARTERS if label == "Risk for a patient")
TIMEOUT_MS = 60_000  # the machine may be shared with other test runs

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's chromium is not installed at {CHROMIUM}: browser test skipped "
    "(bash .ci/run installs it when run as root: apt-get install --no-install-recommends "
    "chromium)",
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect, sync_playwright
    from playwright.sync_api import Error as PlaywrightError


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-home")


@pytest.fixture(scope="module")
def service_config(
    trained_registry: TrainedRegistry, heart_card: DatasetCard, home: Path
) -> ServiceConfig:
    """Overrides conftest's: the UI moves aliases, so the model service and the UI share a
    private copy of the registry and the copilot database in this COPILOT_HOME."""
    return ServiceConfig(
        card=heart_card,
        tracking_uri=trained_registry.copy(home),
        database_url=f"sqlite:///{home / 'copilot.db'}",
        reports_dir=home / "reports",
        reload_interval_seconds=0.2,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ui(
    live_service: str, service_config: ServiceConfig, home: Path, tmp_path_factory: Any
) -> Iterator[str]:
    """`copilot serve ui` as a process; its working directory must stay empty."""
    port = _free_port()
    workdir = tmp_path_factory.mktemp("browser-cwd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COPILOT_", "CHAINLIT_"))}
    env |= {
        "COPILOT_HOME": str(home),
        "COPILOT_API_KEYS": KEYS,
        "MLFLOW_TRACKING_URI": service_config.tracking_uri,
        "MODEL_SERVICE_URL": live_service,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    command = [sys.executable, "-c", "from copilot.cli.main import main; main()", "serve", "ui"]
    with (home / "ui.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (home / "ui.log").read_text()
        try:
            return httpx.get(f"{url}/auth/config").status_code == 200
        except httpx.TransportError:
            return False

    started = time.monotonic()
    try:
        wait_until(up, timeout=PROCESS_START_SECONDS, what="copilot serve ui")
        print(f"\nUI up in {time.monotonic() - started:.1f} s; screenshots in {ARTIFACTS}")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert list(workdir.iterdir()) == []  # Chainlit's files went to COPILOT_HOME/ui
    assert (home / "ui" / ".chainlit" / "config.toml").exists()


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    # only this test's screenshots: the README walk's, in a folder here, may be being taken
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        # root in CI containers: chromium's sandbox needs user namespaces it may not have
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _store(home: Path, service_config: ServiceConfig) -> ActionStore:
    key = Settings(copilot_home=home).audit_key()
    return ActionStore(make_engine(service_config.database_url), audit_key=key, ttl_seconds=900)


def _champion(service_config: ServiceConfig) -> str:
    client = registry.client(service_config.tracking_uri)
    return str(registry.alias_version(client, "heart-disease-risk", "champion").version)


OPEN_CHATS: list["Chat"] = []


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    for chat in OPEN_CHATS:
        if request.session.testsfailed > failed_before:
            chat.shot(f"failed-{request.node.name}-{chat.name}")
        chat.close()
    OPEN_CHATS.clear()


class Chat:
    """One signed-in browser session (closed after the test)."""

    def __init__(self, browser: "Browser", ui: str, name: str, key: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        OPEN_CHATS.append(self)
        self.page: Page = self.context.new_page()
        self.session_ids: list[str] = []
        # the socket's handshake carries the session id (needed to craft a request below)
        self.page.on("request", self._note_session)
        self.page.goto(f"{ui}/")
        self.page.fill("#email", name)
        self.page.fill("#password", key)
        self.page.get_by_role("button", name="Sign In").click()
        expect(self.page.locator("#chat-input")).to_be_visible(timeout=TIMEOUT_MS)

    def _note_session(self, request: Any) -> None:
        found = re.search(r'"sessionId":"([^"]+)"', request.post_data or "")
        if found:
            self.session_ids.append(found.group(1))

    def ask(self, text: str) -> None:
        """Sends `text` once the chat takes input (connected, no task running). A restored
        conversation arriving just after sign-in swaps the welcome screen's input for the
        chat's (emptied): then it is typed again."""
        box, send = self.page.locator("#chat-input"), self.page.locator("#chat-submit")
        sent = self.page.locator("div.step[data-step-type='user_message']").filter(has_text=text)
        before = sent.count()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while sent.count() == before:
            assert time.monotonic() < deadline, f"the chat did not take {text!r}"
            if box.input_value() != text:
                box.fill(text)
            if send.is_enabled():
                with contextlib.suppress(PlaywrightError):
                    send.click(timeout=1000)
                    sent.nth(before).wait_for(timeout=5000)
            else:
                self.page.wait_for_timeout(100)
        expect(sent.last).to_be_visible()

    def _messages(self) -> Any:
        return self.page.locator("div.step[data-step-type='assistant_message']")

    def proposal(self, tool: str) -> str:
        """The action id on the newest approval card for `tool`."""
        card = self._messages().filter(has_text=f"Approval needed: {tool}").last
        expect(card).to_be_visible(timeout=TIMEOUT_MS)
        found = re.search(r"\(action ([0-9a-f]{32})\)", card.inner_text())
        assert found, card.inner_text()
        return found.group(1)

    def card(self, action_id: str) -> Any:
        """The approval card of an action, whatever its state."""
        return self._messages().filter(has_text=f"(action {action_id})")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=ARTIFACTS / f"{name}.png")

    def close(self) -> None:
        if self in OPEN_CHATS:
            OPEN_CHATS.remove(self)
        self.context.close()


def test_an_approver_sees_the_chart_and_approves_a_promotion(
    browser: "Browser", ui: str, home: Path, service_config: ServiceConfig
) -> None:
    started = time.monotonic()
    chat = Chat(browser, ui, "ann", "ann-key")
    expect(chat.page.get_by_text("Compare the last two runs")).to_be_visible()  # a starter
    chat.shot("01-approver-signed-in")

    chat.ask(RISK_QUESTION)
    chart = chat.page.locator("img[alt='risk-explanation']")
    expect(chart).to_be_visible(timeout=TIMEOUT_MS)
    expect(chat.page.get_by_text("Predicted risk of heart disease")).to_be_visible()
    expect(chat.page.get_by_text("Used predict_risk")).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 300  # a real picture arrived
    chart.scroll_into_view_if_needed()
    chat.shot("02-risk-with-shap-chart")

    chat.ask("Promote the challenger, even if the gate fails")
    action_id = chat.proposal("promote_model")
    card = chat.card(action_id)
    expect(card.get_by_text("What will change:")).to_be_visible()
    assert _champion(service_config) == "1"  # nothing happens before the click
    chat.shot("03-promotion-card")

    card.get_by_role("button", name="Approve").click()
    expect(chat.page.get_by_text("Done: make the @challenger the @champion")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(card.get_by_text("Done, approved by ann via ui:ann")).to_be_visible()
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    chat.shot("04-promotion-approved")
    chat.close()

    action = _store(home, service_config).get(action_id)
    assert action.status == "executed" and action.decided_by == "ann via ui:ann"
    assert _champion(service_config) == "2"
    print(f"approver story: {time.monotonic() - started:.1f} s")


def test_an_approver_rejects_a_rollback(
    browser: "Browser", ui: str, home: Path, service_config: ServiceConfig
) -> None:
    started = time.monotonic()
    champion = _champion(service_config)
    chat = Chat(browser, ui, "ann", "ann-key")
    chat.ask("roll back")
    action_id = chat.proposal("rollback_model")
    card = chat.card(action_id)
    chat.shot("05-rollback-card")
    card.get_by_role("button", name="Reject").click()
    expect(chat.page.get_by_text("Not done: ann via ui:ann rejected it.")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(card.get_by_text("Rejected by ann via ui:ann")).to_be_visible()
    chat.shot("06-rollback-rejected")
    chat.close()

    assert _store(home, service_config).get(action_id).status == "rejected"
    assert _champion(service_config) == champion
    print(f"reject story: {time.monotonic() - started:.1f} s")


def test_a_user_cannot_decide_and_an_approver_decides_later_from_a_new_session(
    browser: "Browser", ui: str, home: Path, service_config: ServiceConfig
) -> None:
    started = time.monotonic()
    champion = _champion(service_config)
    user = Chat(browser, ui, "uma", "uma-key")
    user.ask("promote version 1 even if the gate fails")
    action_id = user.proposal("promote_model")
    card = user.card(action_id)
    expect(card.get_by_text("Waiting for a person with the approver role")).to_be_visible()
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    user.shot("07-user-card-without-buttons")

    # what a hand-made request from the user's own session would do: refused on the server
    answer = user.page.request.post(
        f"{ui}/project/action",
        data={
            "sessionId": user.session_ids[-1],
            "action": {"name": "approve", "payload": {"action_id": action_id}, "label": "x"},
        },
    )
    assert answer.ok, answer.text()
    expect(user.page.get_by_text("uma has the role 'user'; only approvers")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    user.shot("08-user-crafted-approval-refused")
    assert _store(home, service_config).get(action_id).status == "pending"

    user.page.reload()  # the card is rebuilt from the persisted action
    expect(user.card(action_id).get_by_text("Waiting for a person with the")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    user.close()

    approver = Chat(browser, ui, "ann", "ann-key")  # a new session finds it waiting
    card = approver.card(action_id)
    expect(card.get_by_text("Requested by uma via ui:uma")).to_be_visible()
    card.get_by_role("button", name="Edit").click()
    expect(approver.page.get_by_text("New arguments for promote_model")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    approver.ask('{"version": 1}')
    expect(approver.page.get_by_text("Not decided: invalid arguments for promote")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    approver.shot("09-approver-edit-refused")
    assert _store(home, service_config).get(action_id).status == "pending"

    card.get_by_role("button", name="Reject").click()
    # `.first`: once, under heavy load, this line was shown twice (issue noted, not found)
    expect(approver.page.get_by_text("Not done: ann via ui:ann rejected it.").first).to_be_visible(
        timeout=TIMEOUT_MS
    )
    approver.shot("10-approver-rejects-users-request")
    approver.close()
    action: PendingAction = _store(home, service_config).get(action_id)
    assert action.status == "rejected" and action.requested_by == "uma via ui:uma"
    assert _champion(service_config) == champion
    print(f"user story: {time.monotonic() - started:.1f} s")


def test_the_monitoring_history_is_a_chart_in_the_chat(
    browser: "Browser", ui: str, service_config: ServiceConfig
) -> None:
    from datetime import UTC, datetime, timedelta

    from copilot.monitoring import MonitorStore, Point

    store = MonitorStore(make_engine(service_config.database_url))
    now = datetime.now(UTC)
    for day, auc, labels in ((9, 0.84, 0), (6, 0.8, 12), (3, 0.74, 45)):
        point = Point("all", "auc", auc, "1", estimated=labels < 30, labels=labels, rows=300)
        store.record_points(f"browser{day}", now - timedelta(days=day), [point])
    chat = Chat(browser, ui, "ann", "ann-key")
    chat.ask("is the model getting worse?")
    chart = chat.page.locator("img[alt='monitoring-history']")
    expect(chart).to_be_visible(timeout=TIMEOUT_MS)
    assert chart.evaluate("img => img.naturalWidth") > 300
    expect(
        chat.page.get_by_text("AUC of version 1: 0.84 at the first check, 0.74 at the latest")
    ).to_be_visible()
    expect(chat.page.get_by_text("Used monitoring_history")).to_be_visible()
    chart.scroll_into_view_if_needed()
    chat.shot("09-monitoring-history-chart")


def test_a_reading_offered_for_an_unclear_request_is_a_button_that_sends_it(
    browser: "Browser", ui: str
) -> None:
    chat = Chat(browser, ui, "ann", "ann-key")
    chat.ask("training history")
    offered = chat.page.get_by_role("button", name="list the recent runs")
    expect(offered).to_be_visible(timeout=TIMEOUT_MS)
    expect(chat.page.get_by_role("button", name="compare the last two runs")).to_be_visible()
    chat.shot("11-readings-offered")
    offered.click()
    said = chat.page.locator("div.step[data-step-type='user_message']")
    expect(said.filter(has_text="list the recent runs")).to_be_visible(timeout=TIMEOUT_MS)
    expect(chat.page.get_by_text("Used list_runs")).to_be_visible(timeout=TIMEOUT_MS)
    chat.shot("12-reading-sent")
