"""Dataset cards: one typed object per dataset, the single source of truth for its schema.

Validation, the HTTP schema, training, drift checks and the narrator all read the card:
feature names, kinds, units, human descriptions, allowed categories, hard physiological
limits (values outside are rejected) and the training range (values outside are scored
but flagged). The training range is filled in at training time from the rows the model
learned from, and the filled-in card is stored next to the model in MLflow.

One module per dataset (`heart_disease`, `breast_cancer`), each with `card()`, `load()` and
`target()`; imported when first asked for. The card types live here, so models saved
with them keep their module path.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Collection
from types import ModuleType
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from model_service.errors import ModelServiceError

FeatureKind = Literal["numeric", "categorical", "boolean"]
# How far a risk can be trusted: every input recorded and inside the training range; some
# filled in (or outside the range); too few recorded for a risk at all.
Confidence = Literal["high", "low", "insufficient"]


class CardError(ModelServiceError, ValueError):
    """A request names a dataset, site or column the card does not know."""


class Range(BaseModel):
    """A closed interval [low, high]."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


class Feature(BaseModel):
    """One input feature of a dataset, as a clinician and a validator need to know it."""

    model_config = ConfigDict(frozen=True)

    name: str
    display_name: str
    kind: FeatureKind
    description: str
    unit: str | None = None
    required: bool = False
    integer: bool = False
    categories: tuple[str, ...] | None = None
    limits: Range | None = None
    zero_means_missing: bool = False
    measurement_error: float = 0.0
    training_range: Range | None = None
    # Changeable by treatment or lifestyle, within this plausible range (a boolean: [0, 1]);
    # None: never changed by a counterfactual (age, sex, test findings).
    actionable: Range | None = None
    synonyms: tuple[str, ...] = ()  # what people call it in free text ("cholesterol", "tc")
    value_words: dict[str, str | bool] = {}  # free-text words for a value ("lvh": "lv hypertrophy")
    # A category's number in the source data's own coding (UCI: chest pain 1-4, thal 3/6/7),
    # as people who know those files write it ("cp 4", "thal=7"): read after the name only.
    codes: dict[int, str] = {}

    def describe_value(self, value: object) -> str:
        """The value with its unit, as a person would write it (`233 mg/dl`)."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"{value} {self.unit}" if self.unit else str(value)


class DatasetCard(BaseModel):
    """Everything the service and the copilot know about one dataset."""

    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    description: str
    source: str
    model_name: str
    features: tuple[Feature, ...]
    target_column: str
    target_rule: str
    outcome: str
    site_column: str | None = None
    default_training_sites: tuple[str, ...] = ()
    # The minimum information for a risk: with fewer inputs recorded (the rest would be
    # filled in by the model) no risk is given; None: the required features are enough.
    min_known_features: int | None = None

    @model_validator(mode="after")
    def _minimum_within_features(self) -> DatasetCard:
        required = sum(feature.required for feature in self.features)
        minimum = self.min_known_features
        if minimum is not None and not required <= minimum <= len(self.features):
            raise ValueError(
                f"dataset {self.name!r}: min_known_features {minimum} must be between the "
                f"{required} required features and all {len(self.features)}"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def needed_features(self) -> int:
        """How many inputs must be recorded for a risk."""
        if self.min_known_features is not None:
            return self.min_known_features
        return sum(feature.required for feature in self.features)

    def confidence(self, missing: Collection[str], outside_training_range: bool) -> Confidence:
        """How far a risk can be trusted when the `missing` features are filled in by the
        model: "insufficient" below the minimum information, "low" with any input filled
        in or outside the training range, else "high"."""
        if len(self.features) - len(set(missing)) < self.needed_features:
            return "insufficient"
        return "low" if missing or outside_training_range else "high"

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise CardError(f"dataset {self.name!r} has no feature {name!r}")

    def load_raw(self) -> pd.DataFrame:
        """All rows of the dataset as shipped, with the site column when there is one."""
        loaded: pd.DataFrame = _dataset(self.name).load()
        return loaded

    def sites(self, frame: pd.DataFrame | None = None) -> list[str]:
        if self.site_column is None:
            return []
        frame = self.load_raw() if frame is None else frame
        return sorted(frame[self.site_column].dropna().unique().tolist())

    def select_sites(self, frame: pd.DataFrame, sites: list[str] | None) -> pd.DataFrame:
        """Rows of the given sites (all rows when `sites` is empty or the card has none)."""
        if not sites:
            return frame
        if self.site_column is None:
            raise CardError(f"dataset {self.name!r} has no sites; got sites {sites!r}")
        known = self.sites(frame)
        unknown = [site for site in sites if site not in known]
        if unknown:
            raise CardError(
                f"unknown site {unknown[0]!r} for dataset {self.name!r}; known: {known}"
            )
        return frame[frame[self.site_column].isin(sites)].reset_index(drop=True)

    def target(self, frame: pd.DataFrame) -> np.ndarray:
        """The binary outcome (1 = `outcome` present) by the card's target rule."""
        return np.asarray(_dataset(self.name).target(frame[self.target_column]), dtype=np.int64)

    def clean(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature columns with the card's semantics applied (see `clean_values`)."""
        columns = {
            feature.name: clean_values(
                feature,
                frame[feature.name].tolist() if feature.name in frame else [None] * len(frame),
            )
            for feature in self.features
        }
        return pd.DataFrame(columns, index=frame.index)

    def digest(self, frame: pd.DataFrame) -> str:
        """A short content digest of the rows, to tie a model to the exact data it saw."""
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]

    def with_training_ranges(self, frame: pd.DataFrame) -> DatasetCard:
        """A copy whose numeric features carry the [min, max] seen in `frame` (cleaned)."""
        cleaned = self.clean(frame)
        features = []
        for feature in self.features:
            training_range = None
            if feature.kind == "numeric" and cleaned[feature.name].notna().any():
                column = cleaned[feature.name]
                training_range = Range(low=float(column.min()), high=float(column.max()))
            features.append(feature.model_copy(update={"training_range": training_range}))
        return self.model_copy(update={"features": tuple(features)})


def clean_values(feature: Feature, values: list[object]) -> np.ndarray:
    """One column with the card's semantics: numbers and booleans as floats (booleans 0/1),
    impossible zeros and gaps as NaN; categories as an object array with None for gaps."""
    if feature.kind == "categorical":
        return np.array([None if _is_missing(value) else str(value) for value in values], object)
    try:
        floats = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        floats = np.array([_as_float(value) for value in values], dtype=float)
    if feature.zero_means_missing:
        floats[floats == 0] = np.nan
    return floats


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_float(value: object) -> float:
    if _is_missing(value):
        return np.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "false"}:
            return 1.0 if text == "true" else 0.0
        try:
            return float(text)
        except ValueError:
            return np.nan
    if isinstance(value, (bool, int, float, np.number)):
        return float(value)
    return np.nan


_DATASETS = {"heart-disease": "heart_disease", "breast-cancer": "breast_cancer"}


def _dataset(name: str) -> ModuleType:
    module = _DATASETS.get(name)
    if module is None:
        raise CardError(f"unknown dataset {name!r}; known: {sorted(_DATASETS)}")
    return importlib.import_module(f"model_service.cards.{module}")


def get_card(name: str) -> DatasetCard:
    """The card of a dataset by name (`heart-disease`, `breast-cancer`)."""
    card: DatasetCard = _dataset(name).card()
    return card


def dataset_names() -> list[str]:
    return sorted(_DATASETS)
