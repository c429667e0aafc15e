"""`copilot up`: four real processes, a local approver key, a clean stop on SIGTERM."""

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from copilot.cli import launcher
from copilot.settings import Settings
from tests.conftest import PROCESS_START_SECONDS, TrainedRegistry


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_local_approver_key_is_private_and_kept(tmp_path: Path) -> None:
    settings = Settings(copilot_home=tmp_path / "home")
    name, key = launcher.local_approver(settings)
    path = tmp_path / "home" / launcher.LOCAL_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) >= 32
    assert launcher.local_approver(settings) == (name, key)  # the same sign-in next time
    plan = launcher.plan(settings, 18000, 18001, 18080, "127.0.0.1")
    assert plan.environment["COPILOT_API_KEYS"] == f"{name}:approver:{key}"
    assert plan.environment["MODEL_SERVICE_URL"] == "http://127.0.0.1:18000"
    configured = Settings(copilot_home=tmp_path / "home", copilot_api_keys="ann:approver:k1")
    assert launcher.plan(configured, 1, 2, 3, "127.0.0.1").sign_in is None


def test_a_service_that_exits_is_named_with_its_log(tmp_path: Path) -> None:
    broken = launcher.Launch(
        services=[launcher.Service("model service", ["serve", "model", "--port", "0"], "", "")],
        environment=dict(os.environ),
        sign_in=None,
    )
    launcher.start(broken, tmp_path)
    broken.processes["model service"].wait(60)
    with pytest.raises(launcher.LaunchError, match=r"the model service exited with code 2"):
        launcher.check_alive(broken, tmp_path)


def test_up_starts_all_three_and_stops_them_on_sigterm(
    tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    ports = [_free_port() for _ in range(3)]
    env = {
        **os.environ,
        "COPILOT_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": trained_registry.copy(tmp_path),
        "MODEL_SERVICE_URL": f"http://127.0.0.1:{ports[0]}",
        "COLUMNS": "200",
    }
    env.pop("COPILOT_API_KEYS", None)
    command = [sys.executable, "-m", "copilot.cli", "up"]
    command += ["--api-port", str(ports[1]), "--ui-port", str(ports[2])]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as up:
        try:
            _check_up(up, ports, tmp_path)
        finally:  # never leave the three services behind
            if up.poll() is None:
                up.send_signal(signal.SIGTERM)
                up.wait(60)


def _check_up(up: "subprocess.Popen[str]", ports: list[int], tmp_path: Path) -> None:
    assert up.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 2 * PROCESS_START_SECONDS  # three services, one by one
    while not any("press Ctrl-C" in line for line in lines):
        assert time.monotonic() < deadline and up.poll() is None, "".join(lines)
        lines.append(up.stdout.readline())
    printed = "".join(lines)
    key = re.search(r"with key\s+(\S+)", printed)
    assert key is not None, printed
    assert (tmp_path / "home" / launcher.LOCAL_KEY_FILE).read_text().strip() == key.group(1)

    model, api, ui = (f"http://127.0.0.1:{port}" for port in ports)
    for url in (model, api, ui):
        assert url in printed
    assert httpx.get(f"{model}/ready").status_code == 200
    auth = {"Authorization": f"Bearer {key.group(1)}"}
    created = httpx.post(f"{api}/v1/conversations", json={}, headers=auth)
    assert created.status_code == 201
    assert httpx.post(f"{api}/v1/conversations", json={}).status_code == 401
    assert httpx.get(ui).status_code == 200
    monitor_log = tmp_path / "home" / "logs" / "monitor.log"
    deadline = time.monotonic() + 90  # the first pass may come before the service is ready
    while "monitor check" not in (monitor_log.read_text() if monitor_log.exists() else ""):
        assert time.monotonic() < deadline, monitor_log.read_text()
        time.sleep(0.5)

    up.send_signal(signal.SIGTERM)
    assert up.wait(60) == 0
    rest = up.stdout.read()
    assert "stopped" in rest
    for url in (model, api, ui):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)
