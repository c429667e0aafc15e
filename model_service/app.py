"""The model service (FastAPI): serves `<model>@champion`; endpoints as in docs/interfaces.md."""

# No `from __future__ import annotations` here: the request models are built from the
# dataset card at app creation, and FastAPI must see them as real objects.

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pandas as pd
from fastapi import Body, FastAPI, Query
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from model_service import drift, label_metrics, registry, serving
from model_service.admission import RowBudget
from model_service.cards import CardError, DatasetCard
from model_service.cohort_routes import install_cohort_routes
from model_service.database import make_engine
from model_service.http_errors import OrjsonRoute, ServiceError, install_error_handlers
from model_service.http_limits import BodyTimeout, RefuseWhenFull
from model_service.observability import RequestMiddleware, ServiceMetrics
from model_service.outcomes import Outcome, OutcomeConflict, OutcomeLog
from model_service.predictions import (
    MAX_QUEUED_ROWS,
    PredictionLog,
    PredictionLogUnavailable,
    Scored,
)
from model_service.schemas import (
    MAX_BATCH_ROWS,
    BatchPredictions,
    DriftReport,
    ErrorBody,
    Explanation,
    FeatureInfo,
    ModelInfo,
    OutcomeAnswer,
    OutcomeRequest,
    PerformanceReport,
    PerformanceRequest,
    Prediction,
    VersionPerformance,
    batch_request_model,
    drift_request_model,
    explain_request_model,
    patient_model,
)

logger = logging.getLogger(__name__)

BATCH_ROWS_ON_EVENT_LOOP = 200
MAX_PERFORMANCE_ROWS = 100_000  # predictions one performance report reads (the newest)
GC_YOUNG_THRESHOLD = 50_000


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs, passed in explicitly (the CLI builds it from Settings).

    The bounds keep a flood from growing the process: rows being scored or waiting for their
    log commit, rows queued for the database (both answer 429 when full), the wait for a
    commit (503 after it), the time a request body may take to arrive (408), and uvicorn's
    idle keep-alive and open connections (see `server_options`)."""

    card: DatasetCard
    tracking_uri: str
    database_url: str
    reports_dir: Path
    reload_interval_seconds: float = 2.0
    max_rows_in_flight: int = 2 * MAX_BATCH_ROWS
    max_queued_log_rows: int = MAX_QUEUED_ROWS
    log_commit_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: int = 5
    max_connections: int = 256

    def __post_init__(self) -> None:
        for name in ("max_rows_in_flight", "max_queued_log_rows", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServiceConfig.{name}: {getattr(self, name)} must be at least 1")
        for name in ("log_commit_timeout_seconds", "body_timeout_seconds", "keep_alive_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ServiceConfig.{name}: {getattr(self, name)} must be positive")


def server_options(config: ServiceConfig) -> dict[str, Any]:
    """uvicorn's settings for the service: idle keep-alive, and connections at once (past
    them uvicorn answers 503). A body's arrival is bounded by the app (`BodyTimeout`)."""
    return {
        "timeout_keep_alive": config.keep_alive_seconds,
        "limit_concurrency": config.max_connections,
    }


SiteQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=100, description="The site asking (recorded in the log)."),
]


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "The prediction has another observed label"},
    408: {"model": ErrorBody, "description": "The body did not arrive in time"},
    413: {"model": ErrorBody, "description": f"Over {MAX_BATCH_ROWS} rows or too large a body"},
    422: {"model": ErrorBody, "description": "Invalid input: field, value and rule"},
    429: {"model": ErrorBody, "description": "Rows in flight or the log queue full; Retry-After"},
    503: {"model": ErrorBody, "description": "No model loaded, or the prediction log is down"},
}


def create_app(config: ServiceConfig) -> FastAPI:  # noqa: PLR0915 - the routes live here
    """The model service for one dataset card; the champion loads in the background."""
    card = config.card
    patient = patient_model(card)
    explain_request = explain_request_model(patient)
    batch_request = batch_request_model(patient)
    drift_request = drift_request_model(patient)
    metrics = ServiceMetrics()
    holder = serving.ModelHolder(card.name, card.model_name, config.tracking_uri)
    rows_in_flight = RowBudget(config.max_rows_in_flight)

    async def follow_champion() -> None:
        while True:
            try:
                if await run_in_threadpool(holder.refresh) and holder.current is not None:
                    current = holder.current
                    metrics.serving(current.name, current.version, current.alias)
            except Exception:  # the poller must outlive anything a refresh throws
                logger.exception("following @champion failed")
            await asyncio.sleep(config.reload_interval_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A 10,000-row batch allocates ~200k short-lived objects: collect young garbage
        # less often (the long-lived heap is frozen once the model loads; see serving).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
        engine = make_engine(config.database_url)
        app.state.log = PredictionLog(engine, config.max_queued_log_rows)
        app.state.outcomes = OutcomeLog(engine)
        poller = asyncio.create_task(follow_champion())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await run_in_threadpool(app.state.log.close)
            await run_in_threadpool(app.state.outcomes.close)
            engine.dispose()

    app = FastAPI(
        title="mlops-copilot model service",
        version="1",
        summary=f"Risk of {card.outcome} ({card.title}) from the registry's @champion model.",
        lifespan=lifespan,
        responses={503: ERRORS[503]},
    )
    app.router.route_class = OrjsonRoute
    app.state.holder = holder
    app.state.rows_in_flight = rows_in_flight
    # Innermost first: refuse before reading a body, then bound its arrival; RequestMiddleware
    # (outermost) gives every answer its request id, metrics and access-log line.
    app.add_middleware(
        RefuseWhenFull, paths=("/v1/predict", "/v1/predict/batch"), full=rows_in_flight.full
    )
    app.add_middleware(BodyTimeout, seconds=config.body_timeout_seconds)
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        served_version=lambda: holder.current.version if holder.current else None,
    )
    install_error_handlers(
        app,
        card,
        {
            "/v1/predict/batch": ["patients"],
            "/v1/explain": ["patient", "prediction_id"],
            "/v1/drift": ["patients", "site", "since", "report"],
            "/v1/outcomes": ["prediction_id", "label"],
            "/v1/performance": ["since", "until", "site", "min_labels"],
            "/v1/cohort/summary": ["where", "features"],
            "/v1/cohort/rows": ["row_ids"],
            "/v1/cohort/performance": ["where"],
            "/v1/cohort/mistakes": ["where", "kind", "limit"],
            "/v1/cohort/importance": ["where", "top", "interactions"],
            "/v1/cohort/what-if": ["where", "changes"],
            "/v1/counterfactual": ["patient", "prediction_id", "row_id"],
        },
    )
    known_sites: list[str] = []

    def check_site(site: str | None, field: str) -> None:
        """422 unless `site` is None or one of the card's sites (read once, when first asked)."""
        if site is None:
            return
        if card.site_column is None:
            raise ServiceError(
                422,
                f'"{field}": {site!r} given, but dataset {card.name!r} has no sites',
                field=field,
                rule="known_site",
                value=site,
            )
        if not known_sites:
            known_sites.extend(card.sites())
        if site not in known_sites:
            raise ServiceError(
                422,
                f'"{field}": unknown site {site!r} for dataset {card.name!r}; known: {known_sites}',
                field=field,
                rule="known_site",
                value=site,
            )

    @app.get("/health")
    async def health() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: ERRORS[503]})
    async def ready() -> dict[str, Any]:
        """200 when a model is loaded, else 503 with the reason."""
        return {"status": "ready", "model": serving.model_ref(holder.require())}

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The served model: version, metrics and the features it expects."""
        loaded = holder.require()
        model = loaded.model
        features = [
            FeatureInfo(
                name=f.name,
                display_name=f.display_name,
                type=f.kind,
                unit=f.unit,
                description=f.description,
                required=f.required,
                allowed=list(f.categories) if f.categories else None,
                limits=f.limits.model_dump() if f.limits else None,
                training_range=f.training_range.model_dump() if f.training_range else None,
            )
            for f in model.card.features
        ]
        return ModelInfo(
            name=loaded.name,
            version=loaded.version,
            alias=loaded.alias,
            run_id=loaded.run_id,
            kind=model.kind,
            threshold=model.threshold,
            metrics=loaded.metrics,
            dataset=model.card.name,
            outcome=model.card.outcome,
            features=features,
            registry_id=registry.registry_id(config.tracking_uri),
        )

    def _predict(
        loaded: registry.LoadedModel,
        patients: list[Any],
        shape: Callable[[list[Any]], Any],
        site: str | None,
    ) -> tuple[bytes, Future[None]]:
        records = list(patients)  # validated TypedDicts: plain dicts
        payloads, batch = serving.predict(loaded, records, card, site)
        committed = app.state.log.append(batch)
        positives = sum(batch.labels)
        if positives:
            metrics.predictions.labels(label="1").inc(positives)
        if len(payloads) - positives:
            metrics.predictions.labels(label="0").inc(len(payloads) - positives)
        return orjson.dumps(shape(payloads)), committed

    async def _logged(committed: Future[None]) -> None:
        started = time.perf_counter()
        timeout = config.log_commit_timeout_seconds
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(committed)), timeout)
        except TimeoutError:
            raise PredictionLogUnavailable(
                f"the prediction log could not commit these predictions within {timeout:g} s "
                "(the database is slow or down); they were not acknowledged: retry"
            ) from None
        finally:
            metrics.log_commit_wait.observe(time.perf_counter() - started)

    async def _answer(
        patients: list[Any], shape: Callable[[list[Any]], Any], site: str | None
    ) -> Response:
        """Scores, logs and answers only once the log has committed the predictions."""
        check_site(site, "site")
        loaded = holder.require()
        with rows_in_flight.hold(len(patients)):
            app.state.log.check_room(len(patients))  # refuse before scoring, not after
            if len(patients) > BATCH_ROWS_ON_EVENT_LOOP:  # keep the loop free for others
                body, committed = await run_in_threadpool(_predict, loaded, patients, shape, site)
            else:
                body, committed = _predict(loaded, patients, shape, site)
            await _logged(committed)
        return Response(body, media_type="application/json")

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        responses={408: ERRORS[408], 422: ERRORS[422], 429: ERRORS[429]},
    )
    async def predict(
        body: Annotated[patient, Body()],  # type: ignore[valid-type]
        site: SiteQuery = None,
    ) -> Response:
        """Risk for one patient; inputs outside the training range are flagged in `warnings`."""
        return await _answer([body], lambda payloads: payloads[0], site)

    @app.post(
        "/v1/predict/batch",
        response_model=BatchPredictions,
        responses={408: ERRORS[408], 413: ERRORS[413], 422: ERRORS[422], 429: ERRORS[429]},
    )
    async def predict_batch(
        body: batch_request,  # type: ignore[valid-type]
        site: SiteQuery = None,
    ) -> Response:
        """Risk for up to 10,000 patients, in order."""
        patients = body.patients  # type: ignore[attr-defined]
        return await _answer(patients, lambda payloads: {"predictions": payloads}, site)

    @app.post(
        "/v1/explain",
        response_model=Explanation,
        responses={404: ERRORS[404], 408: ERRORS[408], 422: ERRORS[422]},
    )
    async def explain(body: explain_request) -> Response:  # type: ignore[valid-type]
        """Exact SHAP contributions in log-odds for a patient or an earlier prediction."""
        prediction_id = body.prediction_id  # type: ignore[attr-defined]
        if prediction_id is None:
            record = body.patient  # type: ignore[attr-defined]
            return _json(serving.explain(holder.require(), record, None, card))
        holder.require()
        logged = await run_in_threadpool(app.state.log.get, prediction_id)
        if logged is None or logged["dataset"] != card.name:
            raise ServiceError(404, f"prediction {prediction_id!r} not found in the prediction log")
        version = logged["model_version"]
        try:
            loaded = await run_in_threadpool(holder.version, version)
        except registry.VersionNotFound:
            raise ServiceError(
                404,
                f"prediction {prediction_id!r} was made by version {version} of "
                f"{card.model_name!r}, which is no longer in the registry",
            ) from None
        return _json(serving.explain(loaded, logged["features"], prediction_id, card))

    def _drift(current: pd.DataFrame, source: dict[str, Any], report: bool) -> dict[str, Any]:
        loaded = holder.require()
        report_id = drift.new_report_id()
        try:
            features, quality = drift.check_drift(
                loaded.model.card,
                loaded.reference,
                current,
                config.reports_dir,
                report_id,
                report=report,
            )
        except drift.DriftInputError as error:
            raise ServiceError(422, str(error), field="patients", rule="min_rows") from None
        tested = [f for f in features if f.tested]
        drifted = [f for f in tested if f.drifted]
        reference_sites = []
        if card.site_column and card.site_column in loaded.reference:
            reference_sites = sorted(loaded.reference[card.site_column].dropna().unique().tolist())
        return DriftReport(
            report_id=report_id,
            drift_detected=bool(drifted),
            share_drifted=len(drifted) / len(tested) if tested else 0.0,
            features=features,
            data_quality=quality,
            reference={
                "rows": len(loaded.reference),
                "sites": reference_sites,
                "model": serving.model_ref(loaded),
                "run_id": loaded.run_id,
            },
            current={"rows": len(current), **source},
            report_url=f"/v1/drift/{report_id}" if report else None,
        ).model_dump(mode="json")

    @app.post(
        "/v1/drift",
        response_model=DriftReport,
        responses={408: ERRORS[408], 413: ERRORS[413], 422: ERRORS[422], 429: ERRORS[429]},
    )
    async def check_drift(body: drift_request) -> Response:  # type: ignore[valid-type]
        """Drift of a batch, a built-in site batch, or the logged predictions since a time."""
        holder.require()
        if body.site is not None and body.since is None:  # type: ignore[attr-defined]
            site = body.site  # type: ignore[attr-defined]
            try:
                current = card.select_sites(card.load_raw(), [site])
            except CardError as error:
                raise ServiceError(
                    422, f'"site": {error}', field="site", rule="known_site", value=site
                ) from None
            source: dict[str, Any] = {"site": site}
        elif body.since is not None:  # type: ignore[attr-defined]
            since = body.since  # type: ignore[attr-defined]
            logged_site = body.site  # type: ignore[attr-defined]
            check_site(logged_site, "site")
            rows, truncated = await run_in_threadpool(
                app.state.log.since, card.name, since, MAX_BATCH_ROWS, logged_site
            )
            if len(rows) < drift.MIN_ROWS:
                origin = f" from {logged_site}" if logged_site else ""
                raise ServiceError(
                    422,
                    f'"since": only {len(rows)} predictions logged{origin} since '
                    f"{since.isoformat()}; drift needs at least {drift.MIN_ROWS}",
                    field="since",
                    rule="min_rows",
                    value=since.isoformat(),
                )
            current = pd.DataFrame(rows, columns=card.feature_names)
            source = {"since": since.isoformat(), "newest_only": truncated}
            if logged_site is not None:
                source["logged_site"] = logged_site
        else:
            records = list(body.patients)  # type: ignore[attr-defined]
            with rows_in_flight.hold(len(records)):  # posted rows count against the bound
                current = pd.DataFrame(records, columns=card.feature_names)
                source = {"patients": len(records)}
                return _json(await run_in_threadpool(_drift, current, source, body.report))  # type: ignore[attr-defined]
        return _json(await run_in_threadpool(_drift, current, source, body.report))  # type: ignore[attr-defined]

    @app.get("/v1/drift/{report_id}", response_class=FileResponse, responses={404: ERRORS[404]})
    async def drift_report(report_id: str) -> FileResponse:
        """The saved Evidently HTML report of an earlier drift check."""
        path = drift.report_path(config.reports_dir, report_id)
        if path is None or not path.is_file():
            raise ServiceError(404, f"drift report {report_id!r} not found")
        return FileResponse(path, media_type="text/html")

    @app.post(
        "/v1/outcomes",
        response_model=OutcomeAnswer,
        status_code=201,
        responses={
            200: {"model": OutcomeAnswer, "description": "The same label was recorded before"},
            404: ERRORS[404],
            408: ERRORS[408],
            409: ERRORS[409],
            422: ERRORS[422],
        },
    )
    async def record_outcome(body: OutcomeRequest) -> Response:
        """Record the label observed for a logged prediction: 201 when new, 200 when the
        same label was recorded before, 409 when another label was."""
        if body.label not in (0, 1):
            raise ServiceError(
                422,
                f'"label": {body.label} is not 0 (no {card.outcome}) or 1 ({card.outcome}), '
                f"the dataset card's target ({card.target_rule})",
                field="label",
                rule="target_values",
                value=body.label,
            )
        logged = await run_in_threadpool(app.state.log.get, body.prediction_id)
        if logged is None or logged["dataset"] != card.name:
            raise ServiceError(
                404, f"prediction {body.prediction_id!r} not found in the prediction log"
            )
        decided = app.state.outcomes.submit(body.prediction_id, body.label)
        timeout = config.log_commit_timeout_seconds
        try:
            outcome: Outcome = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(decided)), timeout
            )
        except TimeoutError:
            raise PredictionLogUnavailable(
                f"the outcome log could not commit this outcome within {timeout:g} s (the "
                "database is slow or down); it was not acknowledged: retry"
            ) from None
        except OutcomeConflict as error:
            raise ServiceError(409, str(error)) from None
        answer = OutcomeAnswer(
            prediction_id=outcome.prediction_id,
            label=outcome.label,
            label_name=card.outcome if outcome.label else f"no {card.outcome}",
            recorded_at=outcome.recorded_at,
            created=outcome.created,
            predicted={
                "probability": logged["probability"],
                "label": logged["label"],
                "model_version": logged["model_version"],
                "site": logged.get("site"),
            },
        )
        return Response(
            orjson.dumps(answer.model_dump(mode="json")),
            status_code=201 if outcome.created else 200,
            media_type="application/json",
        )

    def _performance(request: PerformanceRequest) -> dict[str, Any]:
        until = request.until or datetime.now(UTC)
        rows, truncated = app.state.log.scored(
            card.name, request.since, until, request.site, MAX_PERFORMANCE_ROWS
        )
        by_version: dict[str, list[Scored]] = {}
        for row in rows:
            by_version.setdefault(row.model_version, []).append(row)
        versions = []
        for version in sorted(by_version, key=_version_order):
            scored = by_version[version]
            threshold = float(scored[0].threshold)
            expected = label_metrics.expected_metrics([r.probability for r in scored], threshold)
            labelled = [r for r in scored if r.observed is not None]
            observed = None
            if len(labelled) >= request.min_labels:
                observed = label_metrics.observed_metrics(
                    [int(r.observed) for r in labelled if r.observed is not None],
                    [r.probability for r in labelled],
                    threshold,
                )
            versions.append(
                VersionPerformance(
                    model_version=version,
                    predictions=len(scored),
                    labels=len(labelled),
                    estimated=observed is None,
                    metrics=(observed or expected).model_dump(),
                    observed=observed.model_dump() if observed else None,
                    expected=expected.model_dump(),
                    threshold=threshold,
                )
            )
        return PerformanceReport(
            since=request.since,
            until=until,
            site=request.site,
            predictions=len(rows),
            newest_only=truncated,
            versions=versions,
        ).model_dump(mode="json")

    @app.post(
        "/v1/performance",
        response_model=PerformanceReport,
        responses={408: ERRORS[408], 422: ERRORS[422]},
    )
    async def performance(body: PerformanceRequest) -> Response:
        """Performance per model version of the predictions logged in a window (one site or
        all): observed once `min_labels` outcomes are in, else expected from the
        probabilities and marked `estimated`."""
        check_site(body.site, "site")
        return _json(await run_in_threadpool(_performance, body))

    def read_logged(prediction_id: str) -> Any:
        return app.state.log.get(prediction_id)  # the log exists once the lifespan runs

    install_cohort_routes(app, card, holder, patient, read_logged, ERRORS)

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
