"""What the service does per request, free of HTTP: hold the champion, predict, explain.

`ModelHolder` serves `<model>@champion` and follows the alias: a background poll notices
when `@champion` moves to another version and swaps the model in without a restart.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_service import registry
from model_service.cards import DatasetCard
from model_service.predictions import now_utc
from model_service.registry import LoadedModel
from model_service.risk_model import columns_from_frame, columns_from_records

logger = logging.getLogger(__name__)

VERSION_CACHE_SIZE = 3


class NotReady(RuntimeError):
    """No model is loaded; the message says why."""


class ModelHolder:
    """The served model plus a few recently used versions (to explain old predictions)."""

    def __init__(self, card: DatasetCard, tracking_uri: str) -> None:
        self.card = card
        self.tracking_uri = tracking_uri
        self.current: LoadedModel | None = None
        self.reason = "loading the champion model"
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def require(self) -> LoadedModel:
        current = self.current
        if current is None:
            raise NotReady(self.reason)
        return current

    def refresh(self) -> bool:
        """Loads the version behind `@champion` if it is not the one served. Blocking;
        returns True when the served model changed."""
        name = self.card.model_name
        try:
            version = registry.alias_version(
                registry.client(self.tracking_uri), name, registry.CHAMPION
            )
        except Exception as error:
            self._unavailable(f"model registry at {self.tracking_uri} unreachable: {error}")
            return False
        if version is None:
            self._unavailable(
                f"no version of model {name!r} has the alias @{registry.CHAMPION} in the "
                f"registry at {self.tracking_uri}; run `copilot train` first"
            )
            return False
        if self.current is not None and self.current.version == str(version.version):
            return False
        loaded = self.version(str(version.version), alias=registry.CHAMPION)
        if loaded.model.card.name != self.card.name:
            self._unavailable(
                f"model {name!r} version {loaded.version} was trained on dataset "
                f"{loaded.model.card.name!r}, but this service serves {self.card.name!r}"
            )
            return False
        previous = self.current.version if self.current else None
        self.current = loaded
        self.reason = ""
        logger.info(
            "serving model",
            extra={"model": name, "version": loaded.version, "previous_version": previous},
        )
        return True

    def version(self, version: str, alias: str | None = None) -> LoadedModel:
        """A loaded model version, from the cache when possible (blocking on a miss)."""
        with self._lock:
            cached = self._cache.get(version)
            if cached is not None:
                self._cache.move_to_end(version)
                return cached
        loaded = registry.load_version(self.tracking_uri, self.card.model_name, version, alias)
        # Score and explain a few reference rows here, in the loader thread: a version that
        # cannot is never served, and lazy parts (a forest's tree explainer) are built now
        # rather than on the event loop during someone's request.
        sample = columns_from_frame(loaded.model.card, loaded.reference.head(5))
        loaded.model.probabilities(sample)
        loaded.model.explain(sample)
        with self._lock:
            self._cache[version] = loaded
            while len(self._cache) > VERSION_CACHE_SIZE:
                self._cache.popitem(last=False)
        return loaded

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


def input_warnings(
    loaded: LoadedModel, records: Sequence[Mapping[str, Any]]
) -> list[list[dict[str, str]]]:
    """Per record: missing inputs (imputed), impossible zeros, values outside the training range."""
    warnings: list[list[dict[str, str]]] = [[] for _ in records]
    encoder = loaded.model.encoder
    for feature in loaded.model.card.features:
        values = [record.get(feature.name) for record in records]
        fill = encoder.fill[feature.name]
        shown_fill = (
            ("yes" if fill else "no")
            if feature.kind == "boolean"
            else feature.describe_value(round(fill, 2) if isinstance(fill, float) else fill)
        )
        statistic = "median" if feature.kind == "numeric" else "most common value"
        imputed = f"imputed as {shown_fill} (the training {statistic})"
        if feature.kind != "numeric":
            for row in (i for i, value in enumerate(values) if value is None):
                warnings[row].append(
                    {
                        "feature": feature.name,
                        "code": "missing_imputed",
                        "message": f"{feature.display_name} missing; {imputed}",
                    }
                )
            continue
        array = np.asarray(values, dtype=float)
        for row in np.flatnonzero(np.isnan(array)).tolist():
            warnings[row].append(
                {
                    "feature": feature.name,
                    "code": "missing_imputed",
                    "message": f"{feature.display_name} missing; {imputed}",
                }
            )
        if feature.zero_means_missing:
            for row in np.flatnonzero(array == 0).tolist():
                warnings[row].append(
                    {
                        "feature": feature.name,
                        "code": "zero_read_as_missing",
                        "message": f"{feature.display_name} recorded as 0, which is impossible; "
                        f"read as missing and {imputed}",
                    }
                )
            array = np.where(array == 0, np.nan, array)
        training = feature.training_range
        if training is not None:
            outside = np.flatnonzero((array < training.low) | (array > training.high))
            for row in outside.tolist():
                warnings[row].append(
                    {
                        "feature": feature.name,
                        "code": "outside_training_range",
                        "message": f"{feature.display_name} "
                        f"{feature.describe_value(float(array[row]))} "
                        f"is outside the training range {training.low:g}-{training.high:g}"
                        f"{' ' + feature.unit if feature.unit else ''}; low confidence",
                    }
                )
    return warnings


def predict(
    loaded: LoadedModel, records: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scores records: (response payloads, prediction-log rows), in input order."""
    model = loaded.model
    probabilities = model.probabilities(columns_from_records(model.card, records))
    labels = probabilities >= model.threshold
    warnings = input_warnings(loaded, records)
    ids = new_ids(len(records))
    ref = model_ref(loaded)
    outcome = model.card.outcome
    created = now_utc()
    payloads, log_rows = [], []
    for index, record in enumerate(records):
        probability = float(probabilities[index])
        label = int(labels[index])
        payloads.append(
            {
                "prediction_id": ids[index],
                "probability": probability,
                "label": label,
                "label_name": outcome if label else f"no {outcome}",
                "threshold": model.threshold,
                "model": ref,
                "warnings": warnings[index],
            }
        )
        log_rows.append(
            {
                "prediction_id": ids[index],
                "created_at": created,
                "dataset": model.card.name,
                "model_name": loaded.name,
                "model_version": loaded.version,
                "probability": probability,
                "label": label,
                "threshold": model.threshold,
                "features": dict(record),
            }
        )
    return payloads, log_rows


def explain(
    loaded: LoadedModel, record: Mapping[str, Any], prediction_id: str | None
) -> dict[str, Any]:
    """Exact SHAP contributions in log-odds, largest effect first."""
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
    return {
        "prediction_id": prediction_id,
        "probability": 1.0 / (1.0 + math.exp(-float(logits[0]))),
        "base_value": float(base_value),
        "scale": "log-odds",
        "contributions": rows,
        "model": model_ref(loaded),
        "warnings": input_warnings(loaded, [record])[0],
    }
