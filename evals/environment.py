"""The scratch world the suites run in, owned by the runner and removed afterwards.

A temporary directory holds two registry templates trained on the real data (`trained`:
the demo model v1 @champion on Cleveland and v2 @challenger on Cleveland + Hungary;
`promoted`: v2 @champion with v1 kept as @previous-champion), the model service serving
its own copy over loopback HTTP (uvicorn in a thread), and one directory per case with a
fresh copy of a template and a fresh copilot database: cases are independent and
repeatable, and nothing of the user's state is touched. The monitoring suite's cases start
from a copy of a copilot database with a real monitor history, made once when first needed
(evals.monitor_seed).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import httpx

from copilot.deps import Deps, build_deps
from copilot.settings import Settings
from evals.errors import EvalError
from model_service import registry
from model_service.cards import DatasetCard, get_card
from model_service.database import make_engine

SERVICE_START_SECONDS = 120.0
Progress = Callable[[str], None]


class SetupFailed(EvalError, RuntimeError):
    """The scratch world could not be built (training failed, the service did not start)."""


class Agent(Protocol):
    """What the harness talks to: the copilot (graphs.session.Copilot) or a stand-in."""

    async def send(self, conversation_id: str, text: str, user: str) -> Any: ...

    async def continue_after_decision(self, action_id: str) -> Any: ...


AgentFactory = Callable[[Deps], AbstractAsyncContextManager[Agent]]


@dataclass(frozen=True)
class Environment:
    """Templates, the running model service and the settings every case starts from."""

    root: Path
    card: DatasetCard
    templates: dict[str, Path]  # name -> mlflow.db
    service_url: str
    settings: Settings
    client: httpx.AsyncClient
    audit_key: bytes
    monitored: MonitoredTemplate

    async def monitored_database(self, progress: Progress = lambda _: None) -> Path:
        """The copilot database with the monitoring suite's history (evals.monitor_seed),
        made on first use: a model service of its own is seeded and monitored, then stopped."""
        async with self.monitored.lock:
            if self.monitored.database is None:
                self.monitored.database = await self._seed_monitored(progress)
            return self.monitored.database

    async def _seed_monitored(self, progress: Progress) -> Path:
        from evals.monitor_seed import seed_history  # noqa: PLC0415 - only this suite

        home = self.root / "templates" / f"monitored-{uuid.uuid4().hex[:8]}"  # a fresh try
        home.mkdir(parents=True)
        shutil.copy(self.templates["trained"], home / "mlflow.db")
        tracking = f"sqlite:///{home / 'mlflow.db'}"
        settings = self.settings.model_copy(update={"mlflow_tracking_uri": tracking})
        with _model_service(home / "service", self.card, tracking) as url:
            database = home / "copilot.db"
            try:
                await seed_history(settings, self.card, url, database, self.audit_key, progress)
            except Exception as error:
                raise SetupFailed(f"the monitored world could not be seeded: {error}") from error
        return database

    @contextlib.asynccontextmanager
    async def case(
        self,
        agent_factory: AgentFactory,
        *,
        registry_template: str = "trained",
        ttl_seconds: int = 900,
        four_eyes: bool = False,
        own_service: bool = False,
        monitored: bool = False,
    ) -> AsyncIterator[CaseWorld]:
        """A fresh registry copy, copilot database and agent for one case; with
        `own_service`, a model service of its own that follows this copy's @champion (for
        cases that promote or roll back: the tools confirm what the service then serves);
        with `monitored`, the copilot database starts as a copy of the monitored one."""
        directory = self.root / "cases" / uuid.uuid4().hex
        directory.mkdir(parents=True)
        shutil.copy(self.templates[registry_template], directory / "mlflow.db")
        if monitored:
            shutil.copy(await self.monitored_database(), directory / "copilot.db")
        tracking = f"sqlite:///{directory / 'mlflow.db'}"
        database = f"sqlite:///{directory / 'copilot.db'}"
        engine = make_engine(database)
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = self.client
                if own_service:
                    url = stack.enter_context(
                        _model_service(directory / "service", self.card, tracking, 0.2)
                    )
                    client = await stack.enter_async_context(
                        httpx.AsyncClient(base_url=url, timeout=120)
                    )
                settings = self.settings.model_copy(
                    update={
                        "copilot_home": directory,
                        "copilot_database_url": database,
                        "mlflow_tracking_uri": tracking,
                        "model_service_url": str(client.base_url).rstrip("/"),
                        "copilot_action_ttl_seconds": ttl_seconds,
                        "copilot_four_eyes": four_eyes,
                    }
                )
                deps = build_deps(settings, engine, client, audit_key=self.audit_key)
                agent = await stack.enter_async_context(agent_factory(deps))
                yield CaseWorld(deps=deps, agent=agent, tracking_uri=tracking)
        finally:
            engine.dispose()
            shutil.rmtree(directory, ignore_errors=True)


@dataclass
class MonitoredTemplate:
    """The monitoring suite's copilot database, made once when first needed."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    database: Path | None = None


@dataclass(frozen=True)
class CaseWorld:
    deps: Deps
    agent: Agent
    tracking_uri: str


def _train_templates(root: Path, card: DatasetCard, progress: Progress) -> dict[str, Path]:
    from model_service.training import train  # noqa: PLC0415 - seconds of imports

    trained = root / "templates" / "trained"
    trained.mkdir(parents=True)
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    progress("training the demo model (v1 @champion, Cleveland)")
    train(card, tracking_uri=uri, reason="eval demo model")
    progress("training a challenger (v2 @challenger, Cleveland + Hungary, xgboost)")
    sites = list(dict.fromkeys([*card.default_training_sites, *card.sites()[1:2]]))
    train(card, tracking_uri=uri, sites=sites, kinds=["xgboost"], reason="eval challenger")
    return {"trained": trained / "mlflow.db", **_promoted(root, trained / "mlflow.db", card)}


def _promoted(root: Path, trained: Path, card: DatasetCard) -> dict[str, Path]:
    """`trained` with v2 promoted: v2 @champion, v1 @previous-champion, no @challenger."""
    directory = root / "templates" / "promoted"
    directory.mkdir(parents=True)
    shutil.copy(trained, directory / "mlflow.db")
    client = registry.client(f"sqlite:///{directory / 'mlflow.db'}")
    name = card.model_name
    champion = registry.alias_version(client, name, registry.CHAMPION)
    challenger = registry.alias_version(client, name, registry.CHALLENGER)
    if champion is None or challenger is None:
        raise SetupFailed(f"the trained template of {name!r} lacks a champion or challenger")
    client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, str(champion.version))
    client.set_registered_model_alias(name, registry.CHAMPION, str(challenger.version))
    client.delete_registered_model_alias(name, registry.CHALLENGER)
    return {"promoted": directory / "mlflow.db"}


@contextlib.contextmanager
def _model_service(
    home: Path, card: DatasetCard, tracking_uri: str, reload_seconds: float = 2.0
) -> Iterator[str]:
    """The model service over `tracking_uri` on a free loopback port (its prediction log
    and drift reports in `home`); it follows @champion every `reload_seconds`."""
    import uvicorn  # noqa: PLC0415

    from model_service.app import ServiceConfig, create_app  # noqa: PLC0415

    home.mkdir(parents=True, exist_ok=True)
    config = ServiceConfig(
        card=card,
        tracking_uri=tracking_uri,
        database_url=f"sqlite:///{home / 'service.db'}",
        reports_dir=home / "reports",
        reload_interval_seconds=reload_seconds,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host="127.0.0.1", port=0, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="eval-model-service", daemon=True)
    thread.start()
    try:
        url = _wait_started(server, thread)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait_started(server: Any, thread: threading.Thread) -> str:
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SetupFailed("the model service did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return url
        if time.monotonic() > deadline:
            raise SetupFailed(f"the model service at {url} did not become ready")
        time.sleep(0.1)


@contextlib.asynccontextmanager
async def open_environment(
    settings: Settings, progress: Progress, *, template: Path | None = None
) -> AsyncIterator[Environment]:
    """Train (or copy `template`, an mlflow.db with v1 @champion and v2 @challenger), start
    the model service, yield the world; remove it all on exit."""
    registry.disable_mlflow_telemetry()
    card = get_card(settings.copilot_dataset)
    with tempfile.TemporaryDirectory(prefix="copilot-eval-") as scratch:
        root = Path(scratch)
        if template is None:
            templates = await anyio.to_thread.run_sync(_train_templates, root, card, progress)
        else:
            (root / "templates" / "trained").mkdir(parents=True)
            shutil.copy(template, root / "templates" / "trained" / "mlflow.db")
            trained = root / "templates" / "trained" / "mlflow.db"
            templates = {"trained": trained, **_promoted(root, trained, card)}
        progress("starting the model service")
        service = root / "service"
        service.mkdir()
        shutil.copy(templates["trained"], service / "mlflow.db")
        with _model_service(service, card, f"sqlite:///{service / 'mlflow.db'}") as url:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                yield Environment(
                    root=root,
                    card=card,
                    templates=templates,
                    service_url=url,
                    settings=settings,
                    client=client,
                    audit_key=secrets.token_bytes(32),
                    monitored=MonitoredTemplate(),
                )
