"""Shared fixtures: one registry trained on the real data, reused by every test."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from filelock import FileLock
from sqlalchemy import create_engine, text

from model_service.app import ServiceConfig, create_app
from model_service.cards import DatasetCard, get_card
from model_service.database import normalize_url
from model_service.risk_model import Columns, RiskModel
from model_service.training import TrainingResult, train
from tools.context import ToolContext

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

# What a shell may say about a real LLM; tests never read it (their settings are offline
# unless a test names a provider itself, and then respx answers for the server).
SHELL_LLM_VARIABLES = (
    "COPILOT_LLM",
    "COPILOT_LLM_BASE_URL",
    "COPILOT_LLM_ROUTING",
    "COPILOT_LLM_TIMEOUT_SECONDS",
    "COPILOT_LLM_MAX_RETRIES",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


def pytest_configure(config: pytest.Config) -> None:
    """Tests never reach a real LLM, whatever the shell says: its LLM settings are dropped
    (processes the tests start inherit that too) and PydanticAI refuses model requests
    for the whole session. A test replaying a server's wire shape with respx opts in with
    the `allow_model_requests` fixture."""
    from pydantic_ai import models

    for name in SHELL_LLM_VARIABLES:
        os.environ.pop(name, None)
    models.ALLOW_MODEL_REQUESTS = False


# pytest-xdist (`-n auto` in pyproject's addopts) hands each worker whole modules; these,
# the longest by far, go out first so none is left for the end while the other worker
# idles (the README walk alone is a third of a 2-core run). Longest first.
LONGEST_MODULES = (
    "tests/system/test_readme_conversation.py",
    "tests/system/test_launcher.py",
    "tests/system/test_processes.py",
    "tests/model_service/test_schemathesis.py",
    "tests/system/test_browser.py",
    "tests/system/test_prediction_durability.py",
    "tests/evals/test_evals.py",
)
MAX_WORKERS = 4  # each worker holds its own trained models and services (~1-2 GB)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per CPU this process may run on, at most MAX_WORKERS."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def xdist_worker(config: pytest.Config) -> bool:
    """Whether this pytest is a pytest-xdist worker (not its controller, not a serial run;
    a pytest that a test starts inherits PYTEST_XDIST_WORKER but is none of them)."""
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the LONGEST_MODULES first (every worker collects, and sorts, the
    same); a serial run keeps the usual order."""
    if not xdist_worker(config):
        return
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture
def allow_model_requests() -> Iterator[None]:
    """Model requests allowed for one test whose server is respx (never the network)."""
    from pydantic_ai.models import override_allow_model_requests

    with override_allow_model_requests(True):
        yield


@dataclass(frozen=True)
class TrainedRegistry:
    """An MLflow store with heart-disease v1 (@champion, Cleveland) and v2 (@challenger)."""

    root: Path
    tracking_uri: str
    champion: TrainingResult
    challenger: TrainingResult

    def copy(self, destination: Path) -> str:
        """A private copy of the store (aliases may be moved there freely)."""
        shutil.copy(self.root / "mlflow.db", destination / "mlflow.db")
        return f"sqlite:///{destination / 'mlflow.db'}"


@pytest.fixture(scope="session")
def heart_card() -> DatasetCard:
    return get_card("heart-disease")


def _train_registry(root: Path, card: DatasetCard) -> TrainedRegistry:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    champion = train(card, tracking_uri=uri, sites=["Cleveland"], reason="test champion")
    challenger = train(
        card,
        tracking_uri=uri,
        sites=["Cleveland", "Hungary"],
        kinds=["xgboost"],
        reason="test challenger",
    )
    return TrainedRegistry(root, uri, champion, challenger)


def shared_by_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Path | None:
    """Under pytest-xdist, a folder of this run that every worker sees (each worker's own
    basetemp sits in it), else None: a serial run has nobody to share with."""
    if not xdist_worker(request.config):
        return None
    return tmp_path_factory.getbasetemp().parent / name


@pytest.fixture(scope="session")
def trained_registry(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    heart_card: DatasetCard,
) -> TrainedRegistry:
    """Trained once per run: under pytest-xdist the first worker to ask trains it and the
    others wait on a file lock, then read the same store (tests that move aliases copy it)."""
    root = shared_by_workers(request, tmp_path_factory, "registry")
    if root is None:
        return _train_registry(tmp_path_factory.mktemp("registry"), heart_card)
    done = root / "trained.json"
    with FileLock(f"{root}.lock"):
        if not done.exists():
            root.mkdir()
            trained = _train_registry(root, heart_card)
            done.write_text(
                json.dumps([trained.champion.model_dump(), trained.challenger.model_dump()])
            )
    champion, challenger = (TrainingResult.model_validate(r) for r in json.loads(done.read_text()))
    return TrainedRegistry(root, f"sqlite:///{root / 'mlflow.db'}", champion, challenger)


@pytest.fixture(scope="session", autouse=True)
def interaction_values_kept(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The model service's SHAP interaction values (a forest's take ~20 ms a row) computed
    once per run for each model and chunk of rows, and read back by every later service
    (each test module starts its own): on disk, so pytest-xdist's workers share them. Only
    the service's reference is wrapped; its chunking and per-version cache run as they are,
    and tests that call `interaction_values` themselves compute it afresh."""
    from model_service.importance import interaction_values

    folder = shared_by_workers(request, tmp_path_factory, "interactions")
    if folder is None:
        folder = tmp_path_factory.mktemp("interactions")
    folder.mkdir(exist_ok=True)
    fingerprints: dict[int, tuple[RiskModel, bytes]] = {}

    def kept(model: RiskModel, columns: Columns) -> np.ndarray:
        if id(model) not in fingerprints:  # the model is kept, so its id is not reused
            what = (model.kind, model.slope, model.encoder.output_owner, model.estimator)
            fingerprints[id(model)] = (model, pickle.dumps(what))
        matrix = np.ascontiguousarray(model.encoder.transform(columns), float)
        digest = hashlib.sha256(fingerprints[id(model)][1])
        digest.update(f"{len(model.card.features)} {matrix.shape}".encode())
        digest.update(matrix.tobytes())
        path = folder / f"{digest.hexdigest()}.npy"
        # a worker asking for a chunk another is computing waits for it, then reads it
        with FileLock(path.with_suffix(".lock")):
            if not path.exists():
                with path.with_suffix(".partial").open("wb") as file:
                    np.save(file, interaction_values(model, columns))
                path.with_suffix(".partial").replace(path)
        return np.asarray(np.load(path), float)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("model_service.cohort_routes.interaction_values", kept)
        yield


# How long a test waits for a process it started to answer: a fresh interpreter imports
# MLflow or Chainlit first, which on a loaded machine (other runs, the other xdist worker)
# takes a minute or more. A deadline that catches a hang, not a speed check.
PROCESS_START_SECONDS = 180


class Clock:
    """A settable clock for the stores (ActionStore, ConversationStore): time passes when a
    test says so, never by sleeping."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def service_client(config: ServiceConfig, *, wait_ready: bool = True) -> Iterator[TestClient]:
    """The model service in process, lifespan running; optionally wait until it is ready."""
    with TestClient(create_app(config)) as client:
        if wait_ready:
            wait_until(lambda: client.get("/ready").status_code == 200, what="/ready")
        yield client


@pytest.fixture(scope="module")
def service_config(
    trained_registry: TrainedRegistry,
    heart_card: DatasetCard,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServiceConfig:
    home = tmp_path_factory.mktemp("service")
    return ServiceConfig(
        card=heart_card,
        tracking_uri=trained_registry.tracking_uri,
        database_url=f"sqlite:///{home / 'copilot.db'}",
        reports_dir=home / "reports",
        reload_interval_seconds=0.2,
    )


@pytest.fixture(scope="module")
def service(service_config: ServiceConfig) -> Iterator[TestClient]:
    """The model service over the shared registry, in process (lifespan included)."""
    with service_client(service_config) as client:
        yield client


@pytest.fixture
def patient() -> dict[str, object]:
    """The first Cleveland patient, as a clinician would send it."""
    return {
        "age": 63,
        "sex": "Male",
        "cp": "typical angina",
        "trestbps": 145,
        "chol": 233,
        "fbs": True,
        "restecg": "lv hypertrophy",
        "thalch": 150,
        "exang": False,
        "oldpeak": 2.3,
        "slope": "downsloping",
        "ca": 0,
        "thal": "fixed defect",
    }


@pytest.fixture(scope="module")
def live_service(service_config: ServiceConfig) -> Iterator[str]:
    """The model service on a real port, served by uvicorn in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service_config), host="127.0.0.1", port=0, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while httpx.get(f"{url}/ready").status_code != 200:
        assert time.monotonic() < deadline, "the model service did not become ready"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


# Why the PostgreSQL variants did not run (README, "Test it": the gate without PostgreSQL)
POSTGRES_SKIPPED = (
    "COPILOT_TEST_POSTGRES_URL is not set (or set empty): PostgreSQL tests skipped; "
    "bash .ci/run sets it to postgresql://postgres@127.0.0.1:5432/test unless it is set empty"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh copilot database: a SQLite file, or a PostgreSQL schema of its own (skipped
    without COPILOT_TEST_POSTGRES_URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'copilot.db'}"
        return
    postgres_url = os.environ.get("COPILOT_TEST_POSTGRES_URL")
    if not postgres_url:
        pytest.skip(POSTGRES_SKIPPED)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(postgres_url))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry_ctx(
    tmp_path: Path, trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> ToolContext:
    """Tools over a private copy of the trained registry (aliases may move freely). No model
    service runs behind the client: the lifecycle tools never call it."""
    return ToolContext(
        httpx.AsyncClient(base_url="http://127.0.0.1:9"),
        trained_registry.copy(tmp_path),
        heart_card,
    )
