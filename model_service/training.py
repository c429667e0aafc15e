"""`copilot train`: fit the candidates, evaluate them honestly, log everything, register the best.

Protocol (seeded, deterministic): one shared evaluation set is set aside from the whole
dataset, every site included (a fixed, seeded, stratified share by site and outcome; the
same rows for every run, whatever sites it trains on or seed it uses), and no run ever
trains on it. Of the requested sites' other rows, stratified k-fold cross-validation gives
out-of-fold scores, from which the Platt link (when it lowers the cross-validated Brier
score) and the operating threshold (Youden's J) are fitted. The final model is refit on
all those rows and judged on the shared evaluation set (the `holdout_*` metrics), so any
two runs, and the promotion gate, compare models on the same rows. The best candidate by
cross-validated ROC AUC (ties: Brier) is registered.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from model_service import registry
from model_service.cards import DatasetCard
from model_service.errors import ModelServiceError
from model_service.evaluation import (
    classification_metrics,
    noise_flip_rate,
    save_plots,
    youden_threshold,
)
from model_service.importance import COHORT_SHAP_ARTIFACT, dataset_shap_artifact
from model_service.risk_model import (
    MODEL_KINDS,
    FeatureEncoder,
    ModelKind,
    RiskModel,
    columns_from_frame,
    sigmoid,
)

FOLDS = 5
EVALUATION_FRACTION = 0.2
# Fixed, and independent of a run's seed: every run is judged on the same rows.
EVALUATION_SEED = 20_240_601
EVALUATION_SET_TAG = "copilot.evaluation_set"
MIN_ROWS = 60
MIN_ROWS_PER_CLASS = 15

# MLflow saves scikit-learn models with skops, which refuses types it does not know.
SKOPS_TRUSTED_TYPES = [
    "model_service.cards.DatasetCard",
    "model_service.cards.Feature",
    "model_service.cards.Range",
    "model_service.risk_model.FeatureEncoder",
    "model_service.risk_model.RiskModel",
    "sklearn.tree._tree.Tree",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]

ProgressCallback = Callable[[str, int, int], None]


class TrainingError(ModelServiceError, ValueError):
    """Training cannot run with what was asked (sites, data size, model kinds)."""


class TrainingDataTooSmall(TrainingError):
    """The selected rows are too few, or one outcome is too rare, to train and evaluate."""


class EvaluationSet(BaseModel):
    """The rows every training run is judged on and none trains on: which, and from where."""

    rows: int
    positives: int = Field(description="Rows with the outcome.")
    sites: dict[str, int] = Field(description="Rows per site (empty: the dataset has none).")
    digest: str = Field(description="Content digest: equal digests mean the same rows.")

    def describe(self) -> str:
        """In words: `184 rows (Cleveland 61, Hungary 59, ...)`."""
        where = ", ".join(f"{site} {count}" for site, count in self.sites.items())
        return f"{self.rows} rows" + (f" ({where})" if where else "")


class CandidateSummary(BaseModel):
    kind: ModelKind
    calibrated: bool
    threshold: float
    metrics: dict[str, float]


class TrainingResult(BaseModel):
    """What a training run produced and where it is registered."""

    run_id: str
    model_name: str
    version: str
    alias: str
    dataset: str
    sites: list[str]
    dataset_digest: str
    best_kind: ModelKind
    threshold: float
    metrics: dict[str, float]
    candidates: list[CandidateSummary]
    rows_train: int
    rows_holdout: int
    evaluation_set: EvaluationSet


@dataclass
class _Candidate:
    kind: ModelKind
    model: RiskModel
    calibrated: bool
    metrics: dict[str, float]
    holdout_probability: np.ndarray = field(repr=False)


def make_estimator(kind: ModelKind, seed: int) -> Any:
    """A fresh, untrained estimator of `kind` with the project's fixed hyperparameters."""
    if kind == "logistic_regression":
        return LogisticRegression(C=0.5, max_iter=5000)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415

        return RandomForestClassifier(
            n_estimators=200, min_samples_leaf=3, max_features="sqrt", random_state=seed, n_jobs=1
        )
    from xgboost import XGBClassifier  # noqa: PLC0415

    return XGBClassifier(
        n_estimators=200,
        learning_rate=0.05,
        max_depth=3,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=2,
        random_state=seed,
        n_jobs=1,
        tree_method="hist",
        eval_metric="logloss",
    )


def _fit(
    kind: ModelKind, card: DatasetCard, frame: pd.DataFrame, y: np.ndarray, seed: int
) -> RiskModel:
    encoder = FeatureEncoder(card, standardize=kind == "logistic_regression")
    columns = columns_from_frame(card, frame)
    matrix = encoder.fit(columns).transform(columns)
    estimator = make_estimator(kind, seed).fit(matrix, y)
    return RiskModel(
        card=card,
        kind=kind,
        encoder=encoder,
        estimator=estimator,
        background_mean=matrix.mean(axis=0),
    )


def _platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(scores[:, None], y)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def _cross_validated_platt(scores: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Platt-scaled probabilities, each from a link fitted on the other folds."""
    calibrated = np.empty_like(scores)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed + 1)
    for fit_index, eval_index in folds.split(scores, y):
        slope, intercept = _platt(scores[fit_index], y[fit_index])
        calibrated[eval_index] = sigmoid(slope * scores[eval_index] + intercept)
    return calibrated


def _evaluate_candidate(
    kind: ModelKind,
    card: DatasetCard,
    train: pd.DataFrame,
    y_train: np.ndarray,
    strata: np.ndarray,
    holdout: pd.DataFrame,
    y_holdout: np.ndarray,
    seed: int,
    step: Callable[[str], None],
) -> _Candidate:
    out_of_fold = np.empty(len(train))
    train_aucs = []
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    for fold, (fit_index, eval_index) in enumerate(folds.split(train, strata), start=1):
        step(f"{kind}: fold {fold}/{FOLDS}")
        fold_model = _fit(kind, card, train.iloc[fit_index], y_train[fit_index], seed)
        fit_columns = columns_from_frame(card, train.iloc[fit_index])
        train_aucs.append(roc_auc_score(y_train[fit_index], fold_model.logits(fit_columns)))
        eval_columns = columns_from_frame(card, train.iloc[eval_index])
        out_of_fold[eval_index] = fold_model.score(fold_model.encoder.transform(eval_columns))

    step(f"{kind}: calibration and final fit")
    # A forest's vote share is not on a log-odds scale: it always gets the Platt link.
    raw_probability = out_of_fold if kind == "random_forest" else sigmoid(out_of_fold)
    raw_brier = float(brier_score_loss(y_train, np.clip(raw_probability, 0, 1)))
    platt_probability = _cross_validated_platt(out_of_fold, y_train, seed)
    platt_brier = float(brier_score_loss(y_train, platt_probability))
    calibrated = kind == "random_forest" or platt_brier < raw_brier
    slope, intercept = _platt(out_of_fold, y_train) if calibrated else (1.0, 0.0)
    oof_probability = sigmoid(slope * out_of_fold + intercept)
    threshold = round(youden_threshold(y_train, oof_probability), 4)

    model = _fit(kind, card, train, y_train, seed)
    model.slope, model.intercept, model.threshold = slope, intercept, threshold
    holdout_columns = columns_from_frame(card, holdout)
    holdout_probability = model.probabilities(holdout_columns)
    cv_auc = float(roc_auc_score(y_train, out_of_fold))
    metrics = {
        f"holdout_{k}": v
        for k, v in classification_metrics(y_holdout, holdout_probability, threshold).items()
    }
    noise = noise_flip_rate(model, holdout_columns, seed)
    metrics |= {
        "cv_roc_auc": cv_auc,
        # judged out of fold, the link included (no optimism from fitting Platt on it)
        "cv_brier": platt_brier if calibrated else raw_brier,
        "train_roc_auc": float(np.mean(train_aucs)),
        "overfit_gap": float(np.mean(train_aucs)) - cv_auc,
        "brier_uncalibrated": raw_brier,
        "brier_platt": platt_brier,
        "noise_flip_rate": noise,
        "noise_robustness": 1.0 - noise,
        "threshold": threshold,
    }
    return _Candidate(kind, model, calibrated, metrics, holdout_probability)


def _strata(card: DatasetCard, frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Site x outcome when every such group can fill the folds, else outcome alone."""
    if card.site_column is not None:
        combined = frame[card.site_column].astype(str).to_numpy() + "|" + y.astype(str)
        if pd.Series(combined).value_counts().min() >= FOLDS * 2:
            return np.asarray(combined)
    return y


def evaluation_mask(card: DatasetCard, frame: pd.DataFrame) -> np.ndarray:
    """Which rows (all rows as shipped) are in the shared evaluation set. Stratified by site
    and outcome (by outcome alone when a site has a single row of an outcome), seeded by
    `EVALUATION_SEED`: the same split every time. Identical rows go to the same side."""
    y = card.target(frame)
    strata: np.ndarray = y
    if card.site_column is not None:
        combined = frame[card.site_column].astype(str).to_numpy() + "|" + y.astype(str)
        if pd.Series(combined).value_counts().min() >= 2:
            strata = np.asarray(combined)
    # a record shipped twice (the data has two) stays on one side, never on both
    keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    unique = np.flatnonzero(~pd.Series(keys).duplicated().to_numpy())
    _, evaluation_unique = train_test_split(
        unique,
        test_size=EVALUATION_FRACTION,
        stratify=strata[unique],
        random_state=EVALUATION_SEED,
    )
    return np.isin(keys, keys[evaluation_unique])


def evaluation_split(
    card: DatasetCard, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, EvaluationSet]:
    """All rows as shipped -> (the rows runs may train on, the shared evaluation rows, what
    the latter are); see `evaluation_mask`."""
    y = card.target(frame)
    in_evaluation = evaluation_mask(card, frame)
    train_index, evaluation_index = np.flatnonzero(~in_evaluation), np.flatnonzero(in_evaluation)
    pool = frame.iloc[train_index].reset_index(drop=True)
    evaluation = frame.iloc[evaluation_index].reset_index(drop=True)
    sites: dict[str, int] = {}
    if card.site_column is not None:
        counts = evaluation[card.site_column].value_counts()
        sites = {str(site): int(counts[site]) for site in sorted(counts.index)}
    described = EvaluationSet(
        rows=len(evaluation),
        positives=int(y[evaluation_index].sum()),
        sites=sites,
        digest=card.digest(evaluation),
    )
    return pool, evaluation, described


def run_evaluation_set(tags: dict[str, str]) -> EvaluationSet | None:
    """The evaluation set a run's `holdout_*` metrics were measured on, from its tags (None:
    a run from before the shared evaluation set, judged on a holdout of its own)."""
    recorded = tags.get(EVALUATION_SET_TAG)
    return None if recorded is None else EvaluationSet.model_validate_json(recorded)


def _check_size(card: DatasetCard, sites: Sequence[str], y: np.ndarray) -> None:
    positives = int(y.sum())
    negatives = len(y) - positives
    where = f"from {' + '.join(sites)}" if sites else f"in {card.name}"
    if len(y) < MIN_ROWS or min(positives, negatives) < MIN_ROWS_PER_CLASS:
        raise TrainingDataTooSmall(
            f"training data too small: {len(y)} rows {where} outside the shared evaluation "
            f"set ({positives} with "
            f"{card.outcome}, {negatives} without); need at least {MIN_ROWS} rows and "
            f"{MIN_ROWS_PER_CLASS} of each outcome"
        )


def train(
    card: DatasetCard,
    *,
    tracking_uri: str,
    sites: Sequence[str] | None = None,
    kinds: Sequence[ModelKind] = MODEL_KINDS,
    seed: int = 42,
    reason: str | None = None,
    progress: ProgressCallback | None = None,
    challenger_only: bool = False,
) -> TrainingResult:
    """Trains every candidate kind, logs the run to MLflow and registers the best one.

    The new version gets `@champion` when the registry has none yet, else `@challenger`;
    with `challenger_only` (retraining from the copilot) always `@challenger`.
    """
    unknown = [kind for kind in kinds if kind not in MODEL_KINDS]
    if unknown or not kinds:
        raise TrainingError(
            f"unknown model kind {unknown[:1] or kinds!r}; known: {list(MODEL_KINDS)}"
        )
    site_list = list(sites) if sites else list(card.default_training_sites)
    pool, holdout_frame, evaluation_set = evaluation_split(card, card.load_raw())
    train_frame = card.select_sites(pool, site_list)
    y_train = card.target(train_frame)
    y_holdout = card.target(holdout_frame)
    _check_size(card, site_list, y_train)

    total = len(kinds) * (FOLDS + 1) + 2
    done = 0

    def step(description: str) -> None:
        nonlocal done
        if progress is not None:
            progress(description, done, total)
        done += 1

    strata = _strata(card, train_frame, y_train)
    fitted_card = card.with_training_ranges(train_frame)

    candidates = [
        _evaluate_candidate(
            kind,
            fitted_card,
            train_frame,
            y_train,
            strata,
            holdout_frame,
            y_holdout,
            seed,
            step,
        )
        for kind in kinds
    ]
    best = max(
        candidates, key=lambda c: (round(c.metrics["cv_roc_auc"], 4), -c.metrics["cv_brier"])
    )

    step("logging to MLflow and registering")
    result = _log_and_register(
        fitted_card,
        tracking_uri,
        site_list,
        seed,
        reason,
        train_frame,
        holdout_frame,
        y_holdout,
        evaluation_set,
        candidates,
        best,
        challenger_only,
    )
    step("done")
    return result


def _log_and_register(
    card: DatasetCard,
    tracking_uri: str,
    sites: list[str],
    seed: int,
    reason: str | None,
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    y_holdout: np.ndarray,
    evaluation_set: EvaluationSet,
    candidates: list[_Candidate],
    best: _Candidate,
    challenger_only: bool,
) -> TrainingResult:
    registry.disable_mlflow_telemetry()
    import mlflow  # noqa: PLC0415 - mlflow takes seconds to import
    import mlflow.sklearn  # noqa: PLC0415
    from mlflow.data.pandas_dataset import from_pandas  # noqa: PLC0415

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _use_experiment(mlflow, f"{card.name}-training", tracking_uri)
    digest = card.digest(train_frame)
    summaries = [
        CandidateSummary(
            kind=c.kind, calibrated=c.calibrated, threshold=c.model.threshold, metrics=c.metrics
        )
        for c in candidates
    ]
    run_name = f"{card.name} on {' + '.join(sites) if sites else 'all rows'}"
    tags = {
        "copilot.kind": "training",
        "copilot.dataset": card.name,
        "copilot.sites": json.dumps(sites),
        "copilot.best_kind": best.kind,
        "copilot.reason": reason or "",
        "copilot.dataset_digest": digest,
        EVALUATION_SET_TAG: evaluation_set.model_dump_json(),
    }
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(
            {
                "dataset": card.name,
                "sites": ",".join(sites),
                "seed": seed,
                "folds": FOLDS,
                "evaluation_fraction": EVALUATION_FRACTION,
                "evaluation_seed": EVALUATION_SEED,
                "candidates": ",".join(c.kind for c in candidates),
                "best_kind": best.kind,
                "calibrated": best.calibrated,
                "rows_train": len(train_frame),
                "rows_holdout": len(holdout_frame),
                "prevalence_train": round(float(card.target(train_frame).mean()), 4),
                **{
                    f"model.{k}": v
                    for k, v in best.model.estimator.get_params().items()
                    if isinstance(v, (int, float, str, bool))
                },
            }
        )
        mlflow.log_metrics(best.metrics)
        for candidate in candidates:
            mlflow.log_metrics({f"{candidate.kind}.{k}": v for k, v in candidate.metrics.items()})
        mlflow.log_input(
            from_pandas(
                _floats_for_ints(train_frame),
                name=f"{card.name}[{','.join(sites)}]",
                targets=card.target_column,
                digest=digest,
            ),
            context="training",
        )
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            (root / "plots").mkdir()
            (root / "reference").mkdir()
            save_plots(
                root / "plots",
                y_holdout,
                {c.kind: c.holdout_probability for c in candidates},
                best.kind,
                best.model.threshold,
            )
            train_frame.to_csv(root / registry.REFERENCE_ARTIFACT, index=False)
            (root / "card.json").write_text(card.model_dump_json(indent=2))
            # Every row's SHAP values, for the service's first importance question
            shap_file = root / COHORT_SHAP_ARTIFACT
            shap_file.parent.mkdir()
            shap_file.write_bytes(dataset_shap_artifact(best.model, card.load_raw()))
            (root / "candidates.json").write_text(
                json.dumps([s.model_dump() for s in summaries], indent=2)
            )
            mlflow.log_artifacts(directory)
        info = mlflow.sklearn.log_model(
            best.model,
            name=registry.MODEL_ARTIFACT,
            pyfunc_predict_fn="predict_proba",
            signature=_signature(card),
            pip_requirements=_pip_requirements(),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    client = registry.client(tracking_uri)
    version = registry.register_version(client, card.model_name, info.model_id, run.info.run_id)
    has_champion = (
        challenger_only
        or registry.alias_version(client, card.model_name, registry.CHAMPION) is not None
    )
    alias = registry.CHALLENGER if has_champion else registry.CHAMPION
    client.set_registered_model_alias(card.model_name, alias, version)
    for key, value in {"dataset": card.name, "sites": ",".join(sites), "kind": best.kind}.items():
        client.set_model_version_tag(card.model_name, version, key, value)
    return TrainingResult(
        run_id=run.info.run_id,
        model_name=card.model_name,
        version=version,
        alias=alias,
        dataset=card.name,
        sites=sites,
        dataset_digest=digest,
        best_kind=best.kind,
        threshold=best.model.threshold,
        metrics=best.metrics,
        candidates=summaries,
        rows_train=len(train_frame),
        rows_holdout=len(holdout_frame),
        evaluation_set=evaluation_set,
    )


def _use_experiment(mlflow: Any, name: str, tracking_uri: str) -> None:
    """Activates the experiment, creating it with its artifacts next to a SQLite store
    (MLflow would otherwise write them under the current working directory)."""
    if mlflow.get_experiment_by_name(name) is None:
        location = None
        if tracking_uri.startswith("sqlite:///"):
            database = Path(tracking_uri.removeprefix("sqlite:///"))
            location = (database.parent / "artifacts").resolve().as_uri()
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        with contextlib.suppress(MlflowException):  # another process created it just now
            mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)


def _floats_for_ints(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as floats, so MLflow's schema admits the gaps real data has."""
    return frame.astype(
        {c: float for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])}
    )


def _signature(card: DatasetCard) -> Any:
    from mlflow.models.signature import ModelSignature  # noqa: PLC0415
    from mlflow.types.schema import ColSpec, Schema, TensorSpec  # noqa: PLC0415

    types = {"numeric": "double", "categorical": "string", "boolean": "boolean"}
    inputs = Schema([ColSpec(types[f.kind], f.name, required=f.required) for f in card.features])
    outputs = Schema([TensorSpec(np.dtype("float64"), (-1, 2))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version  # noqa: PLC0415

    packages = ["scikit-learn", "xgboost-cpu", "numpy", "pandas", "pydantic", "shap"]
    return [f"{name}=={version(name)}" for name in packages]
