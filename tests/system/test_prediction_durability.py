"""SUBPROCESS TEST: an acknowledged prediction survives kill -9 of the model service.

`copilot serve model` runs as a real process; concurrent clients predict until enough
answers are in, the process is killed with SIGKILL while requests are still in flight, and
every prediction_id that was answered with a 200 must be in the prediction log's database.
"""

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from copilot.cli.bench import model_service_command
from model_service.database import make_engine
from tests.conftest import PROCESS_START_SECONDS, TrainedRegistry, wait_until

CLIENTS = 8
ACKNOWLEDGED_BEFORE_KILL = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_subprocess_acknowledged_predictions_survive_kill_9(
    tmp_path: Path,
    trained_registry: TrainedRegistry,
    database_url: str,
    patient: dict[str, Any],
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "COPILOT_HOME": str(tmp_path),
        "COPILOT_DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": trained_registry.tracking_uri,
    }
    process = subprocess.Popen(
        model_service_command(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    acknowledged: list[str] = []
    failures: list[str] = []
    enough = threading.Event()
    lock = threading.Lock()

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/ready").status_code == 200
        except httpx.TransportError:
            return False

    def client(index: int) -> None:
        # Single predictions and small batches, until the server is gone.
        with httpx.Client(base_url=base, timeout=30) as http:
            request = 0
            while True:
                request += 1
                rows = 1 if (index + request) % 3 else 16
                try:
                    if rows == 1:
                        response = http.post("/v1/predict", json=patient)
                        ids = [response.json()["prediction_id"]] if response.is_success else []
                    else:
                        response = http.post("/v1/predict/batch", json={"patients": [patient] * 16})
                        predictions = response.json()["predictions"] if response.is_success else []
                        ids = [p["prediction_id"] for p in predictions]
                except httpx.TransportError:
                    return  # killed
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                    enough.set()
                    return
                with lock:
                    acknowledged.extend(ids)
                    if len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                        enough.set()

    try:
        wait_until(ready, timeout=PROCESS_START_SECONDS, what="the model service process")
        clients = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in clients:
            thread.start()
        assert enough.wait(timeout=60), "the clients got too few answers"
        assert not failures, failures[0]
        os.killpg(process.pid, signal.SIGKILL)  # mid-traffic: requests are still in flight
        process.wait(timeout=10)
        for thread in clients:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = set(
                connection.execute(text("SELECT prediction_id FROM prediction_log")).scalars()
            )
    finally:
        engine.dispose()
    with lock:
        answered = set(acknowledged)
    lost = answered - stored
    assert not lost, f"{len(lost)} of {len(answered)} acknowledged predictions were lost"
