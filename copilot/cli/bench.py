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
from typing import IO, Any

import anyio
import httpx
from rich.console import Console
from rich.table import Table

from copilot.errors import CopilotError
from copilot.settings import Settings
from model_service import registry
from model_service.cards import DatasetCard, get_card
from model_service.risk_model import columns_from_records
from tools.context import ToolContext

THROUGHPUT_SECONDS = 5.0
THROUGHPUT_CLIENTS = 4
STARTUP_TIMEOUT_SECONDS = 120.0
COMMIT_WAIT = "model_service_prediction_log_commit_wait_seconds"


class BenchError(CopilotError, RuntimeError):
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


def model_service_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """`copilot serve model` as a subprocess of this interpreter (no PATH lookup)."""
    return [
        sys.executable,
        "-c",
        "from copilot.cli.main import main; main()",
        "serve",
        "model",
        "--host",
        host,
        "--port",
        str(port),
    ]


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
    records: list[dict[str, Any]] = [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
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
        try:
            return self._post(path, body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed an idle keep-alive connection (uvicorn: after 5 s)
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            return self._post(path, body)

    def _post(self, path: str, body: bytes) -> tuple[int, bytes, http.client.HTTPResponse]:
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
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(process, log, port, ready_path, start)
            yield time.perf_counter() - start
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(
    process: subprocess.Popen[bytes], log: IO[bytes], port: int, path: str, start: float
) -> None:
    while True:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-1500:]
            raise BenchError(f"server on port {port} exited with {process.returncode}: {tail}")
        if time.perf_counter() - start > STARTUP_TIMEOUT_SECONDS:
            raise BenchError(
                f"server on port {port} not ready after {STARTUP_TIMEOUT_SECONDS:.0f} s"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            client = Client(port)
            status = client.get(path)
            client.close()
            if status == 200:
                return
        time.sleep(0.05)


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


def _commit_wait(port: int) -> tuple[float, float]:
    """Seconds waited for prediction-log commits in total, and how many waits (/metrics)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    lines = connection.getresponse().read().decode().splitlines()
    connection.close()
    values = dict(line.split(" ", 1) for line in lines if line.startswith(COMMIT_WAIT + "_"))
    return float(values[f"{COMMIT_WAIT}_sum"]), float(values[f"{COMMIT_WAIT}_count"])


def _mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    waits = after[1] - before[1]
    return (after[0] - before[0]) / waits * 1000 if waits else None


def _server_ms(response: http.client.HTTPResponse) -> float | None:
    timing = response.getheader("server-timing") or ""
    for part in timing.split(";"):
        if part.startswith("dur="):
            return float(part[4:])
    return None


@dataclass
class _Measured:
    p50: float
    p99: float
    throughput: float
    batch_wall_ms: float
    ready_seconds: float
    batch_server_ms: float | None = None
    explain_p50: float | None = None
    drift_cold_ms: float | None = None
    drift_warm_ms: float | None = None
    agent_turn_overhead_ms: float | None = None
    agent_promote_ms: float | None = None
    hostile_stall_ms: float | None = None
    commit_wait_ms: float | None = None
    commit_wait_loaded_ms: float | None = None
    monitor_pass_ms: float | None = None
    cohort_importance_cold_ms: float | None = None
    cohort_importance_ms: float | None = None
    cohort_interactions_cold_ms: float | None = None
    cohort_interactions_ms: float | None = None
    cohort_rows: int | None = None
    counterfactual_ms: float | None = None


def _high_risk_row(client: Client) -> int:
    """Of the dataset's first 50 rows, the one the model scores highest: a counterfactual
    for a risk over the threshold is a full search."""
    body = json.dumps({"row_ids": list(range(1, 51))}).encode()
    status, payload, _ = client.post("/v1/cohort/rows", body)
    if status != 200:
        raise BenchError(f"/v1/cohort/rows answered {status}: {payload[:300]!r}")
    rows = json.loads(payload)["rows"]
    return int(max(rows, key=lambda row: row["probability"])["row_id"])


def _timed(call: Callable[[], None], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _measure_copilot(
    settings: Settings,
    card: DatasetCard,
    env: dict[str, str],
    requests: int,
    rows: int,
    console: Console,
) -> _Measured:
    patient = benchmark_records(card, 1, complete=True)[0]
    port = _free_port()
    command = model_service_command(port)
    console.print("starting the model service ...")
    with _server(command, env, port, "/ready") as ready_seconds:
        client = Client(port)
        waits = [_commit_wait(port)]
        latency = _latency(_ok(client, "/v1/predict", json.dumps(patient).encode()), requests)
        waits.append(_commit_wait(port))
        console.print("throughput ...")
        throughput = _throughput(port, "/v1/predict", json.dumps(patient).encode())
        waits.append(_commit_wait(port))
        batch = json.dumps({"patients": benchmark_records(card, rows, complete=False)}).encode()
        server_times, wall_times = [], []
        for _ in range(5):
            start = time.perf_counter()
            status, payload, response = client.post("/v1/predict/batch", batch)
            wall_times.append((time.perf_counter() - start) * 1000)
            if status != 200:
                raise BenchError(f"batch answered {status}: {payload[:300]!r}")
            server_times.append(_server_ms(response) or wall_times[-1])
        explain_body = json.dumps({"patient": patient}).encode()
        explain = _latency(_ok(client, "/v1/explain", explain_body), max(100, requests // 4))
        console.print("cohort importance, interactions and a counterfactual search ...")
        importance_body = json.dumps({"top": len(card.features)}).encode()
        importance_call = _ok(client, "/v1/cohort/importance", importance_body)
        cold_importance = _timed(importance_call, 1)[0]  # the version's first question
        importance = _timed(importance_call, 5)
        interactions_body = json.dumps({"top": len(card.features), "interactions": True}).encode()
        interactions_call = _ok(client, "/v1/cohort/importance", interactions_body)
        cold_interactions = _timed(interactions_call, 1)[0]
        status, payload, _ = client.post("/v1/cohort/importance", interactions_body)
        if status != 200:
            raise BenchError(f"cohort importance answered {status}: {payload[:300]!r}")
        cohort_rows = int(json.loads(payload)["cohort"]["matched"])
        interactions = _timed(interactions_call, 5)
        counterfactual_body = json.dumps({"row_id": _high_risk_row(client)}).encode()
        counterfactual = _timed(_ok(client, "/v1/counterfactual", counterfactual_body), 10)
        console.print("drift (the first call imports Evidently) ...")
        if card.site_column:
            drift_body = json.dumps({"site": "VA Long Beach"}).encode()
        else:
            drift_body = json.dumps({"patients": benchmark_records(card, 200, False)}).encode()
        drift_call = _ok(client, "/v1/drift", drift_body)
        cold = _timed(drift_call, 1)[0]
        warm = _timed(drift_call, 3)
        client.close()
        console.print("agent turns with the offline provider ...")
        turn_overhead, promote, stall, monitor_pass = anyio.run(
            _measure_agent, settings, f"http://127.0.0.1:{port}", max(20, requests // 20)
        )
    return _Measured(
        monitor_pass_ms=monitor_pass,
        agent_turn_overhead_ms=turn_overhead,
        agent_promote_ms=promote,
        hostile_stall_ms=stall,
        p50=statistics.median(latency),
        p99=_percentile(latency, 0.99),
        throughput=throughput,
        batch_wall_ms=statistics.median(wall_times),
        ready_seconds=ready_seconds,
        batch_server_ms=statistics.median(server_times),
        explain_p50=statistics.median(explain),
        drift_cold_ms=cold,
        drift_warm_ms=statistics.median(warm),
        commit_wait_ms=_mean_ms(waits[0], waits[1]),
        commit_wait_loaded_ms=_mean_ms(waits[1], waits[2]),
        cohort_importance_cold_ms=cold_importance,
        cohort_importance_ms=statistics.median(importance),
        cohort_interactions_cold_ms=cold_interactions,
        cohort_interactions_ms=statistics.median(interactions),
        cohort_rows=cohort_rows,
        counterfactual_ms=statistics.median(counterfactual),
    )


def _measure_mlflow(
    card: DatasetCard, version: str, env: dict[str, str], requests: int, rows: int, console: Console
) -> _Measured:
    patient = benchmark_records(card, 1, complete=True)[0]
    console.print("starting MLflow's scoring server on the same version ...")
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    mlflow_bin = shutil.which("mlflow", path=str(bin_dir)) or "mlflow"
    env = env | {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    command = [
        mlflow_bin,
        "models",
        "serve",
        "-m",
        f"models:/{card.model_name}/{version}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with _server(command, env, port, "/ping") as ready_seconds:
        client = Client(port)
        body = json.dumps({"dataframe_records": [patient]}).encode()
        latency = _latency(_ok(client, "/invocations", body), requests)
        console.print("MLflow throughput ...")
        throughput = _throughput(port, "/invocations", body)
        batch = json.dumps({"dataframe_records": benchmark_records(card, rows, True)}).encode()
        batch_times = _timed(_ok(client, "/invocations", batch), 3)
        client.close()
    return _Measured(
        p50=statistics.median(latency),
        p99=_percentile(latency, 0.99),
        throughput=throughput,
        batch_wall_ms=statistics.median(batch_times),
        ready_seconds=ready_seconds,
    )


AGENT_PATIENT = "63 yo M, asymptomatic CP, BP 145/90, chol 233 mg/dl, max HR 150, ST dep 2.3"


async def _measure_agent(
    settings: Settings, service_url: str, turns: int
) -> tuple[float, float | None, float, float]:
    """Agent turn overhead (route + tool call over loopback + narrate + checkpoint, minus the
    model service's own time), propose -> approve -> execute for promote_model, the
    longest stall of the event loop while four hostile messages are read at once (what a
    /health request would wait), and one monitor pass over every row of the dataset
    logged with its site.

    Runs on a scratch copilot database and a copy of a SQLite registry: the benchmark
    changes nothing of the user's."""
    from copilot.deps import build_deps  # noqa: PLC0415
    from graphs.session import open_copilot  # noqa: PLC0415
    from model_service.database import make_engine  # noqa: PLC0415

    server_ms: list[float] = []

    async def record(response: httpx.Response) -> None:
        timing = response.headers.get("server-timing", "")
        if "dur=" in timing:
            server_ms.append(float(timing.split("dur=")[1]))

    with tempfile.TemporaryDirectory() as scratch:
        tracking = settings.tracking_uri
        can_promote = tracking.startswith("sqlite:///")
        if can_promote:
            copy = Path(scratch) / "mlflow.db"
            shutil.copy(tracking.removeprefix("sqlite:///"), copy)
            tracking = f"sqlite:///{copy}"
        database_url = f"sqlite:///{scratch}/copilot.db"
        bench_settings = settings.model_copy(
            update={
                "copilot_database_url": database_url,
                "mlflow_tracking_uri": tracking,
                "model_service_url": service_url,
                "copilot_llm": "offline",
                "copilot_webhook_url": None,  # the benchmark tells nobody
            }
        )
        engine = make_engine(database_url)
        async with httpx.AsyncClient(
            base_url=service_url, timeout=60, event_hooks={"response": [record]}
        ) as client:
            deps = build_deps(bench_settings, engine, client, audit_key=b"bench")
            tools = deps.tools
            async with open_copilot(deps) as copilot:
                await copilot.send("warm-up", AGENT_PATIENT, "bench")
                overheads = []
                for turn in range(turns):
                    server_ms.clear()
                    start = time.perf_counter()
                    await copilot.send(f"turn-{turn}", AGENT_PATIENT, "bench")
                    overheads.append((time.perf_counter() - start) * 1000 - sum(server_ms))
                promote = await _promote_cycle(copilot, tools) if can_promote else None
                stall = await _loop_stall(copilot)
            monitor_pass = await _monitor_pass(deps, client)
        engine.dispose()
    return statistics.median(overheads), promote, stall, monitor_pass


async def _monitor_pass(deps: Any, client: httpx.AsyncClient) -> float:
    """The median of three monitor passes (ms) after every row of the dataset was
    predicted with its site (or as one batch for a card without sites)."""
    from copilot.cli.monitor import build_monitor  # noqa: PLC0415

    card = deps.tools.card
    records = benchmark_records(card, len(card.load_raw()), complete=False)
    site_of = card.load_raw()[card.site_column].tolist() if card.site_column else []
    by_site: dict[str | None, list[dict[str, Any]]] = {}
    for index, record in enumerate(records):
        by_site.setdefault(site_of[index] if site_of else None, []).append(record)
    for site, patients in by_site.items():
        params = {"site": site} if site else {}
        answer = await client.post("/v1/predict/batch", params=params, json={"patients": patients})
        if answer.status_code != 200:
            raise BenchError(f"batch for the monitor answered {answer.status_code}")
    monitor = build_monitor(deps)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        if await monitor.run_pass() is None:
            raise BenchError("the monitor's lease was held by another process")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# Messages built to make a reader backtrack or scan for long: unclosed quotes, runs of
# spaces, repeated words (each at the 4,000-character limit).
HOSTILE = (
    '"' + " " * 3_999,
    "what if " * 500,
    "'a" + " b" * 1_999,
    "chol " + "1" * 3_995,
)


async def _loop_stall(copilot: Any) -> float:
    """The longest time the event loop was busy (ms) while the hostile messages were read."""
    tick, stalls, done = 0.005, [0.0], anyio.Event()

    async def watch() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(tick)
            stalls.append((time.perf_counter() - start - tick) * 1000)

    async def hostile(index: int, text: str) -> None:
        await copilot.send(f"hostile-{index}", text, "bench")

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        async with anyio.create_task_group() as senders:
            for index, text in enumerate(HOSTILE):
                senders.start_soon(hostile, index, text)
        done.set()
    return max(stalls)


async def _promote_cycle(copilot: Any, tools: ToolContext) -> float | None:
    """Promote back and forth between the champion and another version, timed end to end."""
    client = registry.client(tools.tracking_uri)
    name = tools.card.model_name
    versions = sorted({str(v.version) for v in client.search_model_versions(f"name='{name}'")})
    if len(versions) < 2:
        return None
    times = []
    for cycle in range(6):
        current = registry.alias_version(client, name, registry.CHAMPION)
        champion = str(current.version) if current is not None else None
        target = next(v for v in reversed(versions) if v != champion)
        start = time.perf_counter()
        turn = await copilot.send(
            f"promote-{cycle}", f"promote version {target} even if the gate fails", "bench"
        )
        action_id = turn.pending_actions[0]["id"]
        copilot.deps.actions.decide(action_id, "approve", "bench-approver")
        await copilot.continue_after_decision(action_id)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


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
    loaded = registry.load_version(settings.tracking_uri, card.model_name, version, "champion")
    console.print(
        f"benchmarking {card.model_name} version {version} (@champion, {loaded.model.kind}); "
        f"machine load {_load()}"
    )
    load_before = os.getloadavg()[0]
    patient = benchmark_records(card, 1, complete=True)[0]

    def in_process() -> None:
        loaded.model.probabilities(columns_from_records(card, [patient]))

    floor = _latency(in_process, requests)
    floor_p50, floor_p99 = statistics.median(floor), _percentile(floor, 0.99)

    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | {  # a scratch prediction log: the benchmark is not clinical data
            "COPILOT_DATABASE_URL": f"sqlite:///{scratch}/bench.db",
            "COPILOT_HOME": str(settings.home),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        ours = _measure_copilot(settings, card, env, requests, rows, console)
        theirs = (
            _measure_mlflow(card, version, env, requests, rows, console) if with_mlflow else None
        )

    results = [
        Row(
            "predict p50 (1 row)",
            ours.p50,
            floor_p50,
            theirs.p50 if theirs else None,
            target="<= floor + 1.5 ms",
            passed=ours.p50 <= floor_p50 + 1.5,
        ),
        Row("predict p99 (1 row)", ours.p99, floor_p99, theirs.p99 if theirs else None),
        Row(
            f"throughput (1 row, {THROUGHPUT_CLIENTS} clients)",
            ours.throughput,
            1000 / floor_p50,
            theirs.throughput if theirs else None,
            unit="req/s",
            target=">= 3x MLflow",
            passed=None if theirs is None else ours.throughput >= 3 * theirs.throughput,
        ),
        Row("predict: durable log commit wait, mean (1 row)", ours.commit_wait_ms),
        Row(
            f"predict: durable log commit wait, mean ({THROUGHPUT_CLIENTS} clients)",
            ours.commit_wait_loaded_ms,
        ),
        Row(
            f"batch {rows} rows, server time",
            ours.batch_server_ms,
            target="< 150 ms",
            passed=(ours.batch_server_ms or 0) < 150,
        ),
        Row(
            f"batch {rows} rows, client wall time",
            ours.batch_wall_ms,
            None,
            theirs.batch_wall_ms if theirs else None,
        ),
        Row(
            "explain p50 (1 row)",
            ours.explain_p50,
            target="< 5 ms",
            passed=(ours.explain_p50 or 0) < 5,
        ),
        Row(
            f"cohort importance, all {ours.cohort_rows} rows, first call of the version",
            ours.cohort_importance_cold_ms,
            target="< 1000 ms",
            passed=_under(ours.cohort_importance_cold_ms, 1000),
        ),
        Row(
            f"cohort importance, all {ours.cohort_rows} rows, p50",
            ours.cohort_importance_ms,
            target="< 1000 ms",
            passed=_under(ours.cohort_importance_ms, 1000),
        ),
        Row(
            f"+ interactions, all {ours.cohort_rows} rows, first call (every row's values "
            "computed)",
            ours.cohort_interactions_cold_ms,
        ),
        Row(
            f"+ interactions, all {ours.cohort_rows} rows, p50",
            ours.cohort_interactions_ms,
            target="< 1000 ms",
            passed=_under(ours.cohort_interactions_ms, 1000),
        ),
        Row(
            "counterfactual search (1 patient), p50",
            ours.counterfactual_ms,
            target="< 1000 ms",
            passed=_under(ours.counterfactual_ms, 1000),
        ),
        Row("drift 200 rows, cold (imports Evidently)", ours.drift_cold_ms),
        Row(
            "drift 200 rows, warm",
            ours.drift_warm_ms,
            target="< 1500 ms",
            passed=(ours.drift_warm_ms or 0) < 1500,
        ),
        Row(
            "agent turn overhead p50 (offline)",
            ours.agent_turn_overhead_ms,
            target="< 50 ms",
            passed=(ours.agent_turn_overhead_ms or 0) < 50,
        ),
        Row(
            "propose -> approve -> execute promote p50",
            ours.agent_promote_ms,
            target="< 200 ms",
            passed=None if ours.agent_promote_ms is None else ours.agent_promote_ms < 200,
        ),
        Row(
            "event loop stall while 4 hostile messages are read",
            ours.hostile_stall_ms,
            target="< 100 ms",
            passed=None if ours.hostile_stall_ms is None else ours.hostile_stall_ms < 100,
        ),
        Row(
            "monitor pass (drift, quality, performance; 4 sites with their 920 rows, and all "
            "sites: every prediction the bench logged)",
            ours.monitor_pass_ms,
            target="< 1000 ms",
            passed=_under(ours.monitor_pass_ms, 1000),
        ),
        Row(
            "start to ready",
            ours.ready_seconds * 1000,
            None,
            theirs.ready_seconds * 1000 if theirs else None,
            target="< 5000 ms",
            passed=ours.ready_seconds < 5,
        ),
        Row("machine load: 1-minute average, before", load_before, unit=_cores()),
        Row("machine load: 1-minute average, after", os.getloadavg()[0], unit=_cores()),
    ]
    _print(results, console)
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def _cores() -> str:
    return f"runnable / {os.cpu_count()} cores"


def _load() -> str:
    """The 1, 5 and 15-minute load averages against the cores: other work on the machine
    slows every number here."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _under(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _print(results: list[Row], console: Console) -> None:
    table = Table(title="copilot bench (2 ratios: copilot / floor, MLflow / copilot)")
    for column in (
        "metric",
        "copilot",
        "in-process floor",
        "MLflow server",
        "vs floor",
        "MLflow / copilot",
        "target",
        "ok",
    ):
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
        table.add_row(
            row.metric,
            cell(row.copilot, row.unit),
            cell(row.floor, row.unit),
            cell(row.mlflow, row.unit),
            vs_floor,
            vs_mlflow,
            row.target,
            ok,
        )
    console.print(table)
