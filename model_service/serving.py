"""What the service does per request, free of HTTP: hold the champion, predict, explain.

`ModelHolder` serves `<model>@champion` and follows the alias: a background poll notices
when `@champion` moves to another version and swaps the model in without a restart.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from model_service import registry
from model_service.cards import Confidence, DatasetCard, Feature
from model_service.errors import ModelServiceError
from model_service.predictions import PredictionBatch, now_utc
from model_service.registry import LoadedModel
from model_service.risk_model import columns_from_frame, columns_from_records

logger = logging.getLogger(__name__)

VERSION_CACHE_SIZE = 3
FAILED_LOAD_RETRY_SECONDS = 60.0


class NotReady(ModelServiceError, RuntimeError):
    """No model is loaded; the message says why."""


class ModelHolder:
    """The served model plus a few recently used versions (to explain old predictions)."""

    def __init__(self, dataset: str, model_name: str, tracking_uri: str) -> None:
        self.dataset = dataset
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.current: LoadedModel | None = None
        self.reason = "loading the champion model"
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._failed: tuple[str, float] | None = None

    def require(self) -> LoadedModel:
        current = self.current
        if current is None:
            raise NotReady(self.reason)
        return current

    def refresh(self) -> bool:
        """Serves the version behind `@champion` if it is not the one served. Blocking;
        returns True when the served model changed."""
        number = self._champion_version()
        if number is None or (self.current is not None and self.current.version == number):
            return False
        if self._failed and self._failed[0] == number and time.monotonic() < self._failed[1]:
            return False
        loaded = self._load_champion(number)
        if loaded is None:
            return False
        previous = self.current.version if self.current else None
        self.current = loaded
        self.reason = ""
        # The imported libraries and the model are long-lived: take them out of the
        # garbage collector's full scans, which otherwise stall large batch requests.
        gc.collect()
        gc.freeze()
        logger.info(
            "serving model",
            extra={"model": self.model_name, "version": number, "previous_version": previous},
        )
        return True

    def _champion_version(self) -> str | None:
        try:
            version = registry.alias_version(
                registry.client(self.tracking_uri), self.model_name, registry.CHAMPION
            )
        except Exception as error:  # a registry outage must not kill the poller
            self._unavailable(f"model registry at {self.tracking_uri} unreachable: {error}")
            return None
        if version is None:
            self._unavailable(
                f"no version of model {self.model_name!r} has the alias @{registry.CHAMPION} "
                f"in the registry at {self.tracking_uri}; run `copilot train` first"
            )
            return None
        return str(version.version)

    def _load_champion(self, number: str) -> LoadedModel | None:
        try:
            loaded = self.version(number)
        except Exception as error:  # report it and keep what is served
            logger.exception("loading the champion failed", extra={"version": number})
            self._failed = (number, time.monotonic() + FAILED_LOAD_RETRY_SECONDS)
            self._unavailable(
                f"champion version {number} of {self.model_name!r} failed to load: {error}"
            )
            return None
        if loaded.model.card.name != self.dataset:
            self._unavailable(
                f"model {self.model_name!r} version {number} was trained on dataset "
                f"{loaded.model.card.name!r}, but this service serves {self.dataset!r}"
            )
            return None
        return dataclasses.replace(loaded, alias=registry.CHAMPION)

    def version(self, version: str) -> LoadedModel:
        """A loaded model version (alias as it stands now), from the cache when possible.
        Blocking on a miss; raises `registry.VersionNotFound` for an unknown version."""
        with self._lock:
            loaded = self._cache.get(version)
            if loaded is not None:
                self._cache.move_to_end(version)
        if loaded is None:
            loaded = registry.load_version(self.tracking_uri, self.model_name, version, None)
            # Score and explain a few reference rows here, in the loader thread: a version
            # that cannot is never served, and lazy parts (a forest's tree explainer) are
            # built now rather than on the event loop during someone's request.
            sample = columns_from_frame(loaded.model.card, loaded.reference.head(5))
            loaded.model.probabilities(sample)
            loaded.model.explain(sample)
            with self._lock:
                self._cache[version] = loaded
                while len(self._cache) > VERSION_CACHE_SIZE:
                    self._cache.popitem(last=False)
        current = self.current
        alias = registry.CHAMPION if current is not None and current.version == version else None
        return dataclasses.replace(loaded, alias=alias)

    def _unavailable(self, reason: str) -> None:
        if self.current is None:
            self.reason = reason
        else:
            logger.warning("keeping the served model", extra={"reason": reason})


def new_ids(count: int) -> list[str]:
    """Random 128-bit ids as hex, drawn with one system call for the whole batch."""
    raw = os.urandom(16 * count).hex()
    return [raw[i * 32 : (i + 1) * 32] for i in range(count)]


def model_ref(loaded: LoadedModel) -> dict[str, Any]:
    return {"name": loaded.name, "version": loaded.version, "alias": loaded.alias}


def _imputed(feature: Feature, fill: Any) -> str:
    if feature.kind == "boolean":
        shown = "yes" if fill else "no"
    else:
        shown = feature.describe_value(round(fill, 2) if isinstance(fill, float) else fill)
    statistic = "median" if feature.kind == "numeric" else "most common value"
    return f"imputed as {shown} (the training {statistic})"


def input_warnings(
    loaded: LoadedModel, records: Sequence[Mapping[str, Any]]
) -> list[list[dict[str, str]]]:
    """Per record: missing inputs (imputed), impossible zeros, values outside the training
    range. Identical warnings share one (read-only) object."""
    warnings: list[list[dict[str, str]]] = [[] for _ in records]
    encoder = loaded.model.encoder
    for feature in loaded.model.card.features:
        values = [record.get(feature.name) for record in records]
        imputed = _imputed(feature, encoder.fill[feature.name])
        missing = {
            "feature": feature.name,
            "code": "missing_imputed",
            "message": f"{feature.display_name} missing; {imputed}",
        }
        if feature.kind != "numeric":
            for row, value in enumerate(values):
                if value is None:
                    warnings[row].append(missing)
            continue
        array = np.asarray(values, dtype=float)
        for row in np.flatnonzero(np.isnan(array)).tolist():
            warnings[row].append(missing)
        if feature.zero_means_missing:
            zero = {
                "feature": feature.name,
                "code": "zero_read_as_missing",
                "message": f"{feature.display_name} recorded as 0, which is impossible; "
                f"read as missing and {imputed}",
            }
            for row in np.flatnonzero(array == 0).tolist():
                warnings[row].append(zero)
            array = np.where(array == 0, np.nan, array)
        training = feature.training_range
        if training is not None:
            unit = f" {feature.unit}" if feature.unit else ""
            outside = np.flatnonzero((array < training.low) | (array > training.high))
            for row in outside.tolist():
                shown = feature.describe_value(float(array[row]))
                warnings[row].append(
                    {
                        "feature": feature.name,
                        "code": "outside_training_range",
                        "message": f"{feature.display_name} {shown} is outside the training range "
                        f"{training.low:g}-{training.high:g}{unit}; low confidence",
                    }
                )
    return warnings


_FILLED_IN = frozenset({"missing_imputed", "zero_read_as_missing"})


def confidence(card: DatasetCard, warnings: list[dict[str, str]]) -> Confidence:
    """How far one record's risk can be trusted, from its warnings and the card's minimum
    information (`card`: the service's own, since a stored model's card may predate it)."""
    missing = {w["feature"] for w in warnings if w["code"] in _FILLED_IN}
    outside = any(w["code"] == "outside_training_range" for w in warnings)
    return card.confidence(missing, outside)


def predict(
    loaded: LoadedModel, records: list[dict[str, Any]], card: DatasetCard, site: str | None = None
) -> tuple[list[dict[str, Any]], PredictionBatch]:
    """Scores records: (response payloads in input order, the batch for the prediction log,
    which records the `site` that asked). Every record is scored; its `confidence` says
    whether it had enough information."""
    model = loaded.model
    probabilities = model.probabilities(columns_from_records(model.card, records)).tolist()
    threshold = model.threshold
    labels = [int(p >= threshold) for p in probabilities]
    warnings = input_warnings(loaded, records)
    ids = new_ids(len(records))
    ref = model_ref(loaded)
    names = (f"no {model.card.outcome}", model.card.outcome)
    payloads = [
        {
            "prediction_id": i,
            "probability": p,
            "label": label,
            "label_name": names[label],
            "threshold": threshold,
            "model": ref,
            "warnings": w,
            "confidence": confidence(card, w),
        }
        for i, p, label, w in zip(ids, probabilities, labels, warnings, strict=True)
    ]
    batch = PredictionBatch(
        ids=ids,
        created_at=now_utc(),
        dataset=model.card.name,
        model_name=loaded.name,
        model_version=loaded.version,
        threshold=threshold,
        probabilities=probabilities,
        labels=labels,
        records=records,
        site=site,
    )
    return payloads, batch


def explain(
    loaded: LoadedModel, record: Mapping[str, Any], prediction_id: str | None, card: DatasetCard
) -> dict[str, Any]:
    """Exact SHAP contributions in log-odds, largest effect first.

    `log_odds` is what the contributions sum to; `probability` is its logistic, which
    float64 cannot tell from 1.0 once the log-odds pass ~37."""
    model = loaded.model
    base_value, contributions, logits = model.explain(columns_from_records(model.card, [record]))
    features = model.card.features
    largest_first = np.argsort(-np.abs(contributions[0]), kind="stable").tolist()
    rows = [
        {
            "feature": features[index].name,
            "value": record.get(features[index].name),
            "contribution": float(contributions[0, index]),
        }
        for index in largest_first
    ]
    log_odds = float(logits[0])
    warnings = input_warnings(loaded, [record])[0]
    return {
        "prediction_id": prediction_id,
        "probability": float(expit(log_odds)),
        "log_odds": log_odds,
        "base_value": float(base_value),
        "scale": "log-odds",
        "contributions": rows,
        "model": model_ref(loaded),
        "warnings": warnings,
        "confidence": confidence(card, warnings),
    }
