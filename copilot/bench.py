"""`copilot bench`: the model service measured against its floor and its reference.

In one run, side by side: the champion predicting in-process (the floor), our model
service over loopback HTTP, and MLflow's own scoring server (`mlflow models serve
--env-manager local`) serving the same registered version. Both servers are real
subprocesses; the client is the same for both (stdlib `http.client`, keep-alive).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from copilot.settings import Settings
from model_service import registry
from model_service.cards import DatasetCard, get_card
from model_service.risk_model import columns_from_records

THROUGHPUT_SECONDS = 5.0
THROUGHPUT_CLIENTS = 4
STARTUP_TIMEOUT_SECONDS = 120.0


class BenchError(RuntimeError):
    """A benchmark could not run (no champion, a server did not start)."""


@dataclass
class Row:
    metric: str
    copilot: float | None
    floor: float | None = None
    mlflow: float | None = None
    unit: str = "ms"
    target: str = ""
    passed: bool | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def benchmark_records(card: DatasetCard, count: int, complete: bool) -> list[dict[str, Any]]:
    """Real patients of the dataset as API records (gaps as null), cycled to `count`."""
    frame = card.load_raw()[card.feature_names]
    if complete:
        frame = frame.dropna()
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    for record in records:
        for feature in card.features:
            value = record[feature.name]
            if feature.kind == "numeric" and value is not None and feature.integer:
                record[feature.name] = int(value)
    return [records[i % len(records)] for i in range(count)]


class Client:
    """A keep-alive HTTP/1.1 client for one server (stdlib, little overhead of its own)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, http.client.HTTPResponse]:
        self.connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read(), response

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[float]:
    """Starts a server subprocess; yields the seconds it took until `ready_path` answered 200."""
    log = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-1500:]
                raise BenchError(f"{command[0]} exited with {process.returncode}: {tail}")
            if time.perf_counter() - start > STARTUP_TIMEOUT_SECONDS:
                raise BenchError(f"{' '.join(command[:3])} not ready after {STARTUP_TIMEOUT_SECONDS:.0f} s")
            with contextlib.suppress(OSError, http.client.HTTPException):
                client = Client(port)
                status = client.get(ready_path)
                client.close()
                if status == 200:
                    break
            time.sleep(0.05)
        yield time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _latency(call: Callable[[], None], count: int) -> list[float]:
    for _ in range(min(200, count)):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _throughput(port: int, path: str, body: bytes) -> float:
    """Requests per second with several keep-alive clients for a fixed time."""
    counts = [0] * THROUGHPUT_CLIENTS
    deadline = time.perf_counter() + THROUGHPUT_SECONDS
    failures: list[str] = []

    def worker(index: int) -> None:
        client = Client(port)
        while time.perf_counter() < deadline:
            status, payload, _ = client.post(path, body)
            if status != 200:
                failures.append(f"{status}: {payload[:200]!r}")
                return
            counts[index] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THROUGHPUT_CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchError(f"{path} on port {port} failed under load: {failures[0]}")
    return sum(counts) / (time.perf_counter() - start)


def _ok(client: Client, path: str, body: bytes) -> Callable[[], None]:
    def call() -> None:
        status, payload, _ = client.post(path, body)
        if status != 200:
            raise BenchError(f"{path} answered {status}: {payload[:300]!r}")

    return call


def _server_ms(response: http.client.HTTPResponse) -> float | None:
    timing = response.getheader("server-timing") or ""
    for part in timing.split(";"):
        if part.startswith("dur="):
            return float(part[4:])
    return None


def run_benchmarks(
    settings: Settings,
    *,
    rows: int,
    requests: int,
    with_mlflow: bool,
    json_path: Path | None,
    console: Console,
) -> list[Row]:
    """Runs every benchmark, prints the table, optionally writes JSON; returns the rows."""
    card = get_card(settings.copilot_dataset)
    client = registry.client(settings.tracking_uri)
    champion = registry.alias_version(client, card.model_name, registry.CHAMPION)
    if champion is None:
        raise BenchError(f"no @champion for {card.model_name}; run `copilot train` first")
    version = str(champion.version)
    console.print(f"benchmarking {card.model_name} version {version} (@champion)")
    loaded = registry.load_version(settings.tracking_uri, card.model_name, version, "champion")
    patient = benchmark_records(card, 1, complete=True)[0]
    single = json.dumps(patient).encode()
    batch_records = benchmark_records(card, rows, complete=False)
    results: list[Row] = []

    floor = _latency(lambda: loaded.model.probabilities(columns_from_records(card, [patient])), requests)
    floor_p50, floor_p99 = statistics.median(floor), _percentile(floor, 0.99)

    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | {
            "COPILOT_DATABASE_URL": f"sqlite:///{scratch}/bench.db",
            "COPILOT_HOME": settings.copilot_home.as_posix(),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        ours = _free_port()
        command = [sys.executable, "-c", "from copilot.cli import main; main()",
                   "serve", "model", "--host", "127.0.0.1", "--port", str(ours)]
        console.print("starting the model service ...")
        with _server(command, env, ours, "/ready") as ready_seconds:
            http_client = Client(ours)
            latency = _latency(_ok(http_client, "/v1/predict", single), requests)
            p50, p99 = statistics.median(latency), _percentile(latency, 0.99)
            console.print("throughput ...")
            throughput = _throughput(ours, "/v1/predict", single)
            batch_body = json.dumps({"patients": batch_records}).encode()
            server_times, wall_times = [], []
            for _ in range(5):
                start = time.perf_counter()
                status, payload, response = http_client.post("/v1/predict/batch", batch_body)
                wall_times.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    raise BenchError(f"batch answered {status}: {payload[:300]!r}")
                server_times.append(_server_ms(response) or wall_times[-1])
            explain_body = json.dumps({"patient": patient}).encode()
            explain = _latency(_ok(http_client, "/v1/explain", explain_body), max(100, requests // 4))
            console.print("drift (the first call imports Evidently) ...")
            drift_body = json.dumps({"site": "VA Long Beach"}).encode() if card.site_column else \
                json.dumps({"patients": benchmark_records(card, 200, complete=False)}).encode()
            cold_start = time.perf_counter()
            _ok(http_client, "/v1/drift", drift_body)()
            drift_cold = (time.perf_counter() - cold_start) * 1000
            drift_times = _latency(_ok(http_client, "/v1/drift", drift_body), 3)
            http_client.close()

        mlflow_p50 = mlflow_p99 = mlflow_throughput = mlflow_batch = mlflow_ready = None
        if with_mlflow:
            console.print("starting MLflow's scoring server on the same version ...")
            theirs = _free_port()
            mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
            env_mlflow = env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
            command = [mlflow_bin, "models", "serve", "-m", f"models:/{card.model_name}/{version}",
                       "--env-manager", "local", "--host", "127.0.0.1", "--port", str(theirs)]
            with _server(command, env_mlflow, theirs, "/ping") as mlflow_ready:
                mlflow_client = Client(theirs)
                body = json.dumps({"dataframe_records": [patient]}).encode()
                theirs_latency = _latency(_ok(mlflow_client, "/invocations", body), requests)
                mlflow_p50 = statistics.median(theirs_latency)
                mlflow_p99 = _percentile(theirs_latency, 0.99)
                console.print("MLflow throughput ...")
                mlflow_throughput = _throughput(theirs, "/invocations", body)
                complete = benchmark_records(card, rows, complete=True)
                batch = json.dumps({"dataframe_records": complete}).encode()
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    _ok(mlflow_client, "/invocations", batch)()
                    times.append((time.perf_counter() - start) * 1000)
                mlflow_batch = statistics.median(times)
                mlflow_client.close()

    results = [
        Row("predict p50 (1 row)", p50, floor_p50, mlflow_p50, target="<= floor + 1.5 ms",
            passed=p50 <= floor_p50 + 1.5),
        Row("predict p99 (1 row)", p99, floor_p99, mlflow_p99),
        Row("throughput (1 row, 4 clients)", throughput, 1000 / floor_p50, mlflow_throughput,
            unit="req/s", target=">= 3x MLflow",
            passed=None if mlflow_throughput is None else throughput >= 3 * mlflow_throughput),
        Row(f"batch {rows} rows, server time", statistics.median(server_times),
            target="< 150 ms", passed=statistics.median(server_times) < 150),
        Row(f"batch {rows} rows, client wall time", statistics.median(wall_times), None, mlflow_batch),
        Row("explain p50", statistics.median(explain), target="< 5 ms",
            passed=statistics.median(explain) < 5),
        Row("drift, 200 rows, cold (imports Evidently)", drift_cold),
        Row("drift, 200 rows, warm", statistics.median(drift_times), target="< 1500 ms",
            passed=statistics.median(drift_times) < 1500),
        Row("start to /ready", ready_seconds * 1000, None,
            mlflow_ready * 1000 if mlflow_ready is not None else None, target="< 5000 ms",
            passed=ready_seconds < 5),
    ]
    _print(results, console)
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def _print(results: list[Row], console: Console) -> None:
    table = Table(title="copilot bench (2 ratios: copilot / floor, MLflow / copilot)")
    for column in ("metric", "copilot", "in-process floor", "MLflow server", "vs floor",
                   "MLflow / copilot", "target", "ok"):
        table.add_column(column, justify="left" if column in {"metric", "target"} else "right")

    def cell(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value:,.2f} {unit}"

    for row in results:
        higher_is_better = row.unit == "req/s"
        vs_floor = vs_mlflow = "-"
        if row.copilot and row.floor:
            vs_floor = f"{row.copilot / row.floor:.2f}x"
        if row.copilot and row.mlflow:
            ratio = row.copilot / row.mlflow if higher_is_better else row.mlflow / row.copilot
            vs_mlflow = f"{ratio:.1f}x {'faster' if ratio >= 1 else 'slower'}"
        ok = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[row.passed]
        table.add_row(row.metric, cell(row.copilot, row.unit), cell(row.floor, row.unit),
                      cell(row.mlflow, row.unit), vs_floor, vs_mlflow, row.target, ok)
    console.print(table)
