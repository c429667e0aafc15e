"""`copilot up`: the model service, the agent API, the chat UI and the monitor as four
processes.

Each service runs as its own `copilot serve ...` process (what docker-compose runs too), so
a crash in one is seen and a slow import in one delays nobody. The launcher waits until all
three answer, prints where they are, and on Ctrl-C / SIGTERM asks each to stop (uvicorn
lets requests in flight finish) before it exits; if one dies, it stops the others and says
which one and why.

Without `COPILOT_API_KEYS`, a local approver key is generated once and kept in
`COPILOT_HOME/local-approver.key` (mode 0600), so the printed sign-in works again next time.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from copilot.errors import CopilotError
from copilot.settings import LOCAL_APPROVER_KEY_FILE, Settings

LOCAL_KEY_FILE = LOCAL_APPROVER_KEY_FILE
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 35.0  # uvicorn's graceful shutdown is 30 s
POLL_SECONDS = 0.25


class LaunchError(CopilotError):
    """A service did not start, or stopped on its own."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]  # after `copilot`
    url: str
    probe: str | None  # the path that answers 200 when ready; None: running is enough


@dataclass
class Launch:
    """The three services and the key to sign in with."""

    services: list[Service]
    environment: dict[str, str]
    sign_in: tuple[str, str] | None  # (name, key) when the local key is used
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def local_approver(settings: Settings) -> tuple[str, str]:
    """(name, key) of the local approver, created under COPILOT_HOME on first use."""
    path = settings.local_approver_key_path
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser()) or "local"
    if path.exists():
        path.chmod(0o600)  # whoever made it, only its owner reads it from now on
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= 32:  # shorter: edited by hand, make a new one
            return name, key
    settings.home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return name, key


def plan(settings: Settings, model_port: int, api_port: int, ui_port: int, host: str) -> Launch:
    """What `copilot up` will start, with which environment."""
    environment = dict(os.environ)
    environment["COPILOT_HOME"] = str(settings.home)
    environment["MODEL_SERVICE_URL"] = f"http://{host}:{model_port}"
    sign_in = None
    if not settings.copilot_api_keys:
        sign_in = local_approver(settings)
        environment["COPILOT_API_KEYS"] = f"{sign_in[0]}:approver:{sign_in[1]}"
    services = [
        Service(
            "model service",
            ["serve", "model", "--host", host, "--port", str(model_port)],
            f"http://{host}:{model_port}",
            "/ready",
        ),
        Service(
            "agent API",
            ["serve", "api", "--host", host, "--port", str(api_port)],
            f"http://{host}:{api_port}",
            "/health",
        ),
        Service(
            "chat UI",
            ["serve", "ui", "--host", host, "--port", str(ui_port)],
            f"http://{host}:{ui_port}",
            "/",
        ),
        # the scheduled check (COPILOT_MONITOR_INTERVAL_SECONDS); it serves nothing
        Service("monitor", ["monitor"], "", None),
    ]
    return Launch(services, environment, sign_in)


def _copilot_command() -> list[str]:
    return [sys.executable, "-m", "copilot.cli"]


def start(launch: Launch, logs: Path) -> None:
    """Start every service; their output goes to `logs/<service>.log`."""
    logs.mkdir(parents=True, exist_ok=True)
    for service in launch.services:
        log = (logs / _log_name(service)).open("ab")
        launch.processes[service.name] = subprocess.Popen(
            [*_copilot_command(), *service.command],
            env=launch.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops them in order
        )
        log.close()


def _log_name(service: Service) -> str:
    """`model.log`, `api.log`, `ui.log`, `monitor.log`."""
    return f"{service.command[1] if service.command[0] == 'serve' else service.command[0]}.log"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    launch: Launch,
    logs: Path,
    cancelled: Callable[[], bool] = lambda: False,
    timeout: float = START_TIMEOUT_SECONDS,
) -> bool:
    """Block until every service answers (True) or `cancelled()` (False); LaunchError if
    one exits or takes too long."""
    waiting = {s.name: s for s in launch.services if s.probe is not None}
    deadline = time.monotonic() + timeout
    while waiting:
        if cancelled():
            return False
        check_alive(launch, logs)
        for name, service in list(waiting.items()):
            if _answers(service.url + (service.probe or "")):
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise LaunchError(
                f"{', '.join(waiting)} did not answer within {timeout:.0f} s; see {logs}"
            )
        if waiting:
            time.sleep(POLL_SECONDS)
    return True


def check_alive(launch: Launch, logs: Path) -> None:
    """LaunchError naming the first service that has exited, with its last log lines."""
    for service in launch.services:
        code = launch.processes[service.name].poll()
        if code is not None:
            log = logs / _log_name(service)
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            raise LaunchError(
                f"the {service.name} exited with code {code}; last lines of {log}:\n"
                + "\n".join(tail)
            )


def stop(launch: Launch, timeout: float = STOP_TIMEOUT_SECONDS) -> dict[str, int | None]:
    """Ask every running service to stop (SIGTERM), then wait; kill what is left."""
    for process in launch.processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes: dict[str, int | None] = {}
    for name, process in launch.processes.items():
        try:
            codes[name] = process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait()
    return codes


def run(launch: Launch, logs: Path, announce: Callable[[Launch], None]) -> None:
    """Start, wait until ready, announce, then supervise until a signal or a crash."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        start(launch, logs)
        if not wait_ready(launch, logs, lambda: stopping):
            return
        announce(launch)
        while not stopping:
            check_alive(launch, logs)
            time.sleep(POLL_SECONDS)
    finally:
        stop(launch)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
