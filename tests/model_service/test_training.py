import tempfile
from pathlib import Path

import pandas as pd
import pytest

from model_service import registry
from model_service.cards import DatasetCard, get_card
from model_service.training import (
    TrainingDataTooSmall,
    TrainingError,
    evaluation_split,
    run_evaluation_set,
    train,
)
from tests.conftest import TrainedRegistry

METRICS = [
    "cv_roc_auc",
    "holdout_roc_auc",
    "holdout_pr_auc",
    "holdout_brier",
    "holdout_f1",
    "holdout_sensitivity",
    "holdout_specificity",
    "holdout_calibration_error",
    "train_roc_auc",
    "overfit_gap",
    "noise_flip_rate",
    "noise_robustness",
    "threshold",
]


def test_every_candidate_reports_the_clinical_metrics(trained_registry: TrainedRegistry) -> None:
    result = trained_registry.champion
    assert [c.kind for c in result.candidates] == [
        "logistic_regression",
        "random_forest",
        "xgboost",
    ]
    for candidate in result.candidates:
        assert set(METRICS) <= set(candidate.metrics)
        m = candidate.metrics
        assert 0.75 < m["holdout_roc_auc"] <= 1 and 0 < m["holdout_brier"] < 0.25
        assert m["overfit_gap"] == pytest.approx(m["train_roc_auc"] - m["cv_roc_auc"])
        assert 0 <= m["noise_flip_rate"] <= 1
        assert 0 < candidate.threshold < 1
    assert (
        result.candidates[2].calibrated
        or result.candidates[2].metrics["brier_platt"]
        >= result.candidates[2].metrics["brier_uncalibrated"]
    )
    assert all(c.calibrated for c in result.candidates if c.kind == "random_forest")
    best = max(result.candidates, key=lambda c: round(c.metrics["cv_roc_auc"], 4))
    assert result.best_kind == best.kind
    # Cleveland's 304 rows less its share of the evaluation set; judged on all four sites
    assert result.rows_train == 304 - result.evaluation_set.sites["Cleveland"]
    assert result.rows_holdout == result.evaluation_set.rows == 184


def test_every_run_is_judged_on_one_shared_evaluation_set_it_never_trained_on(
    trained_registry: TrainedRegistry, heart_card: DatasetCard
) -> None:
    full = heart_card.load_raw()
    pool, evaluation, described = evaluation_split(heart_card, full)
    again = evaluation_split(heart_card, full)[2]
    assert described == again  # fixed: the same rows every time
    assert len(pool) + len(evaluation) == len(full) == 920
    assert described.sites == {
        "Cleveland": 61,
        "Hungary": 58,
        "Switzerland": 25,
        "VA Long Beach": 40,
    }
    assert described.describe() == (
        "184 rows (Cleveland 61, Hungary 58, Switzerland 25, VA Long Beach 40)"
    )
    client = registry.client(trained_registry.tracking_uri)
    evaluation_keys = set(pd.util.hash_pandas_object(evaluation, index=False))
    for result in (trained_registry.champion, trained_registry.challenger):
        assert result.evaluation_set == described
        run = client.get_run(result.run_id)
        assert run_evaluation_set(run.data.tags) == described
        with tempfile.TemporaryDirectory() as directory:
            path = client.download_artifacts(result.run_id, registry.REFERENCE_ARTIFACT, directory)
            trained_on = pd.read_csv(path)
        assert len(trained_on) == result.rows_train
        # no row of the evaluation set is among the rows the run trained on
        trained_keys = set(
            pd.util.hash_pandas_object(trained_on.astype(full.dtypes.to_dict()), index=False)
        )
        assert len(trained_keys) > 0 and not trained_keys & evaluation_keys
        assert trained_keys <= set(pd.util.hash_pandas_object(pool, index=False))


def test_the_run_holds_params_digest_plots_and_reference(trained_registry: TrainedRegistry) -> None:
    client = registry.client(trained_registry.tracking_uri)
    run = client.get_run(trained_registry.champion.run_id)
    assert run.data.params["sites"] == "Cleveland"
    assert run.data.tags["copilot.dataset_digest"] == trained_registry.champion.dataset_digest
    assert (
        run.data.metrics["holdout_roc_auc"] == trained_registry.champion.metrics["holdout_roc_auc"]
    )
    assert "xgboost.cv_roc_auc" in run.data.metrics
    assert run.inputs.dataset_inputs[0].dataset.digest == trained_registry.champion.dataset_digest
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "reference", "card.json", "candidates.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/roc.png", "plots/calibration.png", "plots/confusion_matrix.png"}
    assert (trained_registry.root / "artifacts").is_dir()  # next to the store, not in the cwd


def test_first_version_is_champion_and_later_ones_challengers(
    trained_registry: TrainedRegistry,
) -> None:
    client = registry.client(trained_registry.tracking_uri)
    name = trained_registry.champion.model_name
    assert (trained_registry.champion.version, trained_registry.champion.alias) == ("1", "champion")
    assert (trained_registry.challenger.version, trained_registry.challenger.alias) == (
        "2",
        "challenger",
    )
    assert str(registry.alias_version(client, name, "champion").version) == "1"
    assert str(registry.alias_version(client, name, "challenger").version) == "2"
    assert client.get_model_version(name, "2").tags["sites"] == "Cleveland,Hungary"


def test_training_is_deterministic_and_not_tied_to_one_dataset(
    trained_registry: TrainedRegistry, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    uri = trained_registry.copy(tmp_path)
    card = get_card("breast-cancer")
    first = train(card, tracking_uri=uri, kinds=["logistic_regression", "xgboost"], seed=7)
    second = train(card, tracking_uri=uri, kinds=["logistic_regression", "xgboost"], seed=7)
    # registering prints nothing that could reach a chat ("Registered model ... already
    # exists. Creating a new version of this model...", "Created version '2' ...")
    printed = capfd.readouterr()
    assert "egistered model" not in printed.err + printed.out
    assert "Created version" not in printed.err + printed.out
    assert first.metrics == second.metrics and first.threshold == second.threshold
    assert (first.alias, second.alias) == ("champion", "challenger")
    assert first.metrics["holdout_roc_auc"] > 0.95
    loaded = registry.load_version(uri, card.model_name, first.version, "champion")
    assert loaded.model.card.name == "breast-cancer" and len(loaded.reference) == first.rows_train


def test_too_little_data_is_refused_with_the_counts(
    heart_card: DatasetCard, tmp_path: Path
) -> None:
    with pytest.raises(
        TrainingDataTooSmall,
        match=r"98 rows from Switzerland outside the shared evaluation set "
        r"\(92 with heart disease, 6 without\)",
    ):
        train(heart_card, tracking_uri=f"sqlite:///{tmp_path}/never.db", sites=["Switzerland"])
    with pytest.raises(TrainingError, match="unknown model kind"):
        train(heart_card, tracking_uri=f"sqlite:///{tmp_path}/never.db", kinds=["svm"])  # type: ignore[list-item]
    assert not (tmp_path / "never.db").exists()  # nothing half-written
