"""The model service's routes about many rows: cohorts of the card's own data.

Summary, rows by id, performance and mistakes on the rows the champion never trained on,
global importance and interactions, a cohort what-if, and one patient's counterfactual.
The work runs in worker threads (never on the event loop); inputs are bounded (10
conditions, 50 rows or ids, 5 changes) and every failure names field, value and rule.
"""

# No `from __future__ import annotations`: the counterfactual request is built from the
# card's patient model at app creation, and FastAPI must see it as a real object.

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import orjson
import pandas as pd
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from model_service import registry, serving
from model_service.cards import DatasetCard
from model_service.cohorts import (
    MAX_CONDITIONS,
    ROW_ID,
    Cohort,
    CohortError,
    Condition,
    training_mask,
    with_row_ids,
)
from model_service.cohorts import select as select_rows
from model_service.counterfactuals import MAX_CHANGES, Change, cohort_what_if, counterfactual
from model_service.data_summary import (
    MAX_ROWS_SHOWN,
    feature_statistics,
    json_value,
    label_balance,
    rows_by_id,
)
from model_service.http_errors import ServiceError, invalid
from model_service.importance import (
    COHORT_SHAP_ARTIFACT,
    INTERACTION_CHUNK_ROWS,
    MAX_TOP,
    SHAP_CHUNK_ROWS,
    chunked,
    importance,
    interaction_values,
    interactions,
    read_dataset_shap,
    shap_values,
)
from model_service.performance import performance
from model_service.registry import LoadedModel
from model_service.risk_model import Columns, RiskModel, columns_from_frame
from model_service.schemas import json_safe

Result = TypeVar("Result")
KEPT_VERSIONS = 3  # model versions whose per-row values are kept


class CohortRequest(BaseModel):
    """Rows matching every condition (none: all rows)."""

    model_config = ConfigDict(extra="forbid")

    where: list[Condition] = Field(default_factory=list, max_length=MAX_CONDITIONS)


class SummaryRequest(CohortRequest):
    features: list[str] = Field(default_factory=list, max_length=20)


class RowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row_ids: list[int] = Field(min_length=1, max_length=MAX_ROWS_SHOWN)


class MistakesRequest(CohortRequest):
    kind: Literal["both", "false_negative", "false_positive"] = "both"
    limit: int = Field(default=10, ge=1, le=MAX_ROWS_SHOWN)


class ImportanceRequest(CohortRequest):
    top: int = Field(default=5, ge=1, le=MAX_TOP)
    interactions: bool = False


class WhatIfRequest(CohortRequest):
    changes: list[Change] = Field(min_length=1, max_length=MAX_CHANGES)


def _errors(errors: dict[int | str, dict[str, Any]], *statuses: int) -> dict[int | str, Any]:
    return {status: errors[status] for status in statuses}


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def install_cohort_routes(  # noqa: PLR0915 - the routes live here
    app: FastAPI,
    card: DatasetCard,
    holder: serving.ModelHolder,
    patient: type[BaseModel],
    read_logged: Callable[[str], Any],
    errors: dict[int | str, dict[str, Any]],
) -> None:
    """Adds the `/v1/cohort/...` and `/v1/counterfactual` routes to the service (`errors`:
    the service's documented error responses by status)."""
    counterfactual_request = create_model(
        "CounterfactualRequest",
        __config__=ConfigDict(extra="forbid"),
        patient=(patient | None, None),  # type: ignore[arg-type]
        prediction_id=(str | None, Field(default=None, max_length=64)),
        row_id=(int | None, None),
    )
    cache: dict[str, Any] = {}
    versions: OrderedDict[str, dict[str, Any]] = OrderedDict()  # run id -> its values
    lock = threading.Lock()

    @app.exception_handler(CohortError)
    async def cohort_error(_: Request, error: CohortError) -> JSONResponse:
        return invalid(error.field, error.rule, json_safe(error.value), error.message)

    def data() -> pd.DataFrame:
        with lock:
            if "data" not in cache:
                cache["data"] = with_row_ids(card.load_raw())
                cache["sites"] = card.sites(cache["data"])
            frame: pd.DataFrame = cache["data"]
            return frame

    def select(
        frame: pd.DataFrame, where: list[Condition], of: str = "rows"
    ) -> tuple[pd.DataFrame, Cohort]:
        data()  # the card's sites are read with the data
        return select_rows(card, frame, where, of, cache["sites"])

    def slot(loaded: LoadedModel, what: str) -> tuple[dict[str, Any], threading.Lock]:
        """One version's kept values and the lock of `what` among them (the newest few
        versions are kept)."""
        with lock:
            values = versions.setdefault(loaded.run_id, {})
            versions.move_to_end(loaded.run_id)
            while len(versions) > KEPT_VERSIONS:
                versions.popitem(last=False)
            return values, values.setdefault(f"lock:{what}", threading.Lock())

    def per_version(
        loaded: LoadedModel, what: str, compute: Callable[[LoadedModel], np.ndarray]
    ) -> np.ndarray:
        """Values over the whole dataset for one model version, computed once (concurrent
        requests wait for the one computation)."""
        values, guard = slot(loaded, what)
        with guard:
            if what not in values:
                values[what] = compute(loaded)
        return np.asarray(values[what])

    def per_version_rows(
        loaded: LoadedModel,
        what: str,
        compute: Callable[[RiskModel, Columns], np.ndarray],
        rows: np.ndarray,
        chunk: int,
    ) -> np.ndarray:
        """Values at the dataset positions `rows` for one model version: rows computed
        before are reused, the others computed now (`chunk` rows per call) and kept."""
        frame = data()
        values, guard = slot(loaded, what)
        with guard:
            done = values.setdefault(f"{what}:done", np.zeros(len(frame), bool))
            missing = np.unique(rows[~done[rows]])
            if len(missing):
                columns = columns_from_frame(loaded.model.card, frame)
                computed = chunked(compute, loaded.model, columns, missing, chunk)
                if what not in values:
                    values[what] = np.zeros((len(frame), *computed.shape[1:]))
                values[what][missing] = computed
                done[missing] = True
            return np.asarray(values[what][rows])

    def dataset_shap(loaded: LoadedModel) -> np.ndarray:
        """Every row's SHAP values: those logged with the version's training run when they
        are for exactly these rows, else computed from the model (older runs)."""
        frame = data()
        content = registry.run_artifact(holder.tracking_uri, loaded.run_id, COHORT_SHAP_ARTIFACT)
        stored = None if content is None else read_dataset_shap(content, card, frame)
        if stored is not None:
            return stored
        columns = columns_from_frame(loaded.model.card, frame)
        return chunked(shap_values, loaded.model, columns, np.arange(len(frame)), SHAP_CHUNK_ROWS)

    def trained_on(loaded: LoadedModel) -> np.ndarray:
        return per_version(loaded, "trained", lambda v: training_mask(card, data(), v))

    def held_out(
        loaded: LoadedModel, where: list[Condition]
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        frame = data()
        trained = trained_on(loaded)
        unseen = frame[~trained]
        selected, cohort = select(unseen, where, of="held-out rows")
        sites: list[str] = (
            sorted(frame.loc[trained, card.site_column].unique().tolist())
            if card.site_column
            else []
        )
        note = {
            "held_out_rows": len(unseen),
            "training_rows_excluded": int(trained.sum()),
            "training_sites": sites,
        }
        return selected, cohort.model_dump() | note

    def probabilities(loaded: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
        return loaded.model.probabilities(columns_from_frame(loaded.model.card, frame))

    async def in_thread(work: Callable[[], Result]) -> Result:
        return await run_in_threadpool(work)

    @app.post("/v1/cohort/summary", responses=_errors(errors, 408, 422))
    async def cohort_summary(body: SummaryRequest) -> Response:
        """Statistics per feature, the label balance and the model's mean risk over a cohort."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            selected, cohort = select(data(), body.where)
            names = body.features or card.feature_names
            features = []
            for index, name in enumerate(names):
                found = [f for f in card.features if f.name.lower() == name.strip().lower()]
                if not found:
                    raise CohortError(
                        f"features[{index}]",
                        name,
                        "known_feature",
                        f'"features[{index}]": {name!r} is not a feature of {card.name}; '
                        f"known: {', '.join(card.feature_names)}",
                    )
                features.append(feature_statistics(found[0], selected[found[0].name].tolist()))
            risk = probabilities(loaded, selected)
            return {
                "cohort": cohort.model_dump(),
                "label_balance": label_balance(card, selected),
                "mean_risk": float(risk.mean()),
                "predicted_positive": int((risk >= loaded.model.threshold).sum()),
                "threshold": loaded.model.threshold,
                "features": features,
                "model": serving.model_ref(loaded),
            }

        return _json(await in_thread(work))

    @app.post("/v1/cohort/rows", responses=_errors(errors, 408, 422))
    async def cohort_rows(body: RowsRequest) -> Response:
        """Rows of the dataset by id: their values, outcome and the model's risk."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            frame = data()
            shown = rows_by_id(frame, body.row_ids)
            risk = probabilities(loaded, shown)
            trained = trained_on(loaded)
            outcome = card.target(shown)
            rows = [
                {
                    "row_id": int(row[ROW_ID]),
                    "site": json_value(row[card.site_column]) if card.site_column else None,
                    "values": {f.name: json_value(row.get(f.name)) for f in card.features},
                    "outcome": int(outcome[i]),
                    "probability": float(risk[i]),
                    "predicted_label": int(risk[i] >= loaded.model.threshold),
                    "trained_on": bool(trained[int(row[ROW_ID]) - 1]),
                }
                for i, (_, row) in enumerate(shown.iterrows())
            ]
            return {
                "rows": rows,
                "threshold": loaded.model.threshold,
                "outcome": card.outcome,
                "model": serving.model_ref(loaded),
            }

        return _json(await in_thread(work))

    @app.post("/v1/cohort/performance", responses=_errors(errors, 408, 422))
    async def cohort_performance(body: CohortRequest) -> Response:
        """ROC AUC, sensitivity, specificity, accuracy and calibration, with 95% intervals,
        on the cohort's rows the champion never trained on."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            selected, cohort = held_out(loaded, body.where)
            metrics = performance(
                card.target(selected), probabilities(loaded, selected), loaded.model.threshold
            )
            return {"cohort": cohort, **metrics, "model": serving.model_ref(loaded)}

        return _json(await in_thread(work))

    @app.post("/v1/cohort/mistakes", responses=_errors(errors, 408, 422))
    async def cohort_mistakes(body: MistakesRequest) -> Response:
        """False negatives and false positives among the cohort's held-out rows: counts, per
        site, and the most confident mistakes."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            selected, cohort = held_out(loaded, body.where)
            y = card.target(selected)
            risk = probabilities(loaded, selected)
            predicted = risk >= loaded.model.threshold
            false_negative = (y == 1) & ~predicted
            false_positive = (y == 0) & predicted
            ids = selected[ROW_ID].to_numpy()

            def listed(chosen: np.ndarray, order: np.ndarray) -> list[dict[str, Any]]:
                picked = [i for i in order.tolist() if chosen[i]][: body.limit]
                return [
                    {"row_id": int(ids[i]), "probability": float(risk[i]), "outcome": int(y[i])}
                    for i in picked
                ]

            by_site = []
            if card.site_column:
                site_values = selected[card.site_column].to_numpy()
                for site in sorted(set(site_values.tolist())):
                    here = site_values == site
                    by_site.append(
                        {
                            "site": site,
                            "rows": int(here.sum()),
                            "false_negatives": int((false_negative & here).sum()),
                            "false_positives": int((false_positive & here).sum()),
                        }
                    )
            kinds = {"false_negative", "false_positive"} if body.kind == "both" else {body.kind}
            ascending = np.argsort(risk, kind="stable")
            return {
                "cohort": cohort,
                "rows": len(y),
                "threshold": loaded.model.threshold,
                "false_negatives": int(false_negative.sum()),
                "false_positives": int(false_positive.sum()),
                "error_rate": float((false_negative | false_positive).mean()),
                "by_site": by_site,
                "false_negative_rows": listed(false_negative, ascending)
                if "false_negative" in kinds
                else [],
                "false_positive_rows": listed(false_positive, ascending[::-1])
                if "false_positive" in kinds
                else [],
                "model": serving.model_ref(loaded),
            }

        return _json(await in_thread(work))

    @app.post("/v1/cohort/importance", responses=_errors(errors, 408, 422))
    async def cohort_importance(body: ImportanceRequest) -> Response:
        """Mean |SHAP| per feature over a cohort (exact, log-odds), and optionally the
        strongest feature interactions (SHAP interaction values)."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            selected, cohort = select(data(), body.where)
            rows = selected.index.to_numpy()  # positions in the whole dataset
            top = min(body.top, len(card.features))
            contributions = per_version(loaded, "shap", dataset_shap)[rows]
            answer: dict[str, Any] = {
                "cohort": cohort.model_dump(),
                "scale": "log-odds",
                "kind": loaded.model.kind,
                "importance": importance(card, contributions, top),
                "model": serving.model_ref(loaded),
            }
            if body.interactions:
                grouped = per_version_rows(
                    loaded, "interactions", interaction_values, rows, INTERACTION_CHUNK_ROWS
                )
                answer["interactions"] = interactions(card, grouped, body.top)
            return answer

        return _json(await in_thread(work))

    @app.post("/v1/cohort/what-if", responses=_errors(errors, 408, 422))
    async def cohort_what_if_route(body: WhatIfRequest) -> Response:
        """Every row of a cohort re-scored with some values changed: the mean change in
        risk and how many predicted labels flip."""
        loaded = holder.require()

        def work() -> dict[str, Any]:
            selected, cohort = select(data(), body.where)
            columns = columns_from_frame(loaded.model.card, selected)
            result = cohort_what_if(loaded.model, card, columns, body.changes)
            return {"cohort": cohort.model_dump(), **result, "model": serving.model_ref(loaded)}

        return _json(await in_thread(work))

    @app.post("/v1/counterfactual", responses=_errors(errors, 404, 408, 422))
    async def counterfactual_route(
        body: Annotated[counterfactual_request, Body()],
    ) -> Response:
        """The smallest change to actionable features (within the card's plausible ranges)
        that brings one patient's risk under the threshold; never age or sex."""
        loaded = holder.require()
        given = [
            name
            for name in ("patient", "prediction_id", "row_id")
            if getattr(body, name) is not None
        ]
        if len(given) != 1:
            raise ServiceError(
                422,
                "body: give exactly one of patient, prediction_id or row_id "
                f"(got {', '.join(given) or 'none'})",
                rule="one_of",
                value=given,
            )
        source: dict[str, Any] = {}
        if body.patient is not None:  # type: ignore[attr-defined]
            record = dict(body.patient)  # type: ignore[attr-defined]
        elif body.prediction_id is not None:  # type: ignore[attr-defined]
            prediction_id = body.prediction_id  # type: ignore[attr-defined]
            logged = await run_in_threadpool(read_logged, prediction_id)
            if logged is None or logged["dataset"] != card.name:
                raise ServiceError(
                    404, f"prediction {prediction_id!r} not found in the prediction log"
                )
            record, source = dict(logged["features"]), {"prediction_id": prediction_id}
        else:
            row_id = body.row_id  # type: ignore[attr-defined]
            shown = rows_by_id(data(), [row_id])
            record = {f.name: json_value(shown.iloc[0].get(f.name)) for f in card.features}
            source = {"row_id": row_id}

        def work() -> dict[str, Any]:
            result = counterfactual(loaded.model, card, record)
            return {**source, **result, "patient": record, "model": serving.model_ref(loaded)}

        return _json(await in_thread(work))
