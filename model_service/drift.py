"""Drift of a batch against the champion's reference snapshot.

Evidently runs the per-feature two-sample tests (Kolmogorov-Smirnov for numbers,
chi-squared for categories and booleans) and renders the HTML report. On top of it:
Benjamini-Hochberg adjusted p-values across features (Evidently applies no correction),
effect sizes (Wasserstein distance in reference standard deviations; Jensen-Shannon
distance for categories), and data-quality findings on the raw values. The batch has
drifted when any feature does after the adjustment.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from model_service.cards import DatasetCard, Feature
from model_service.errors import ModelServiceError
from model_service.schemas import DataQualityFinding, DriftFeature

SIGNIFICANCE = 0.05
MIN_ROWS = 30
MIN_VALUES_PER_FEATURE = 10
MISSING_RATE_JUMP = 0.2
MAX_REPORTS = 200
REPORT_ID = re.compile(r"^drift-\d{8}T\d{6}Z-[0-9a-f]{8}$")


class DriftInputError(ModelServiceError, ValueError):
    """The batch cannot be compared (too few rows)."""


def new_report_id() -> str:
    return f"drift-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def report_path(directory: Path, report_id: str) -> Path | None:
    """Where a report's HTML lives, or None when `report_id` is not one of ours."""
    return directory / f"{report_id}.html" if REPORT_ID.match(report_id) else None


def check_drift(
    card: DatasetCard,
    reference_raw: pd.DataFrame,
    current_raw: pd.DataFrame,
    report_directory: Path,
    report_id: str,
    *,
    report: bool = True,
) -> tuple[list[DriftFeature], list[DataQualityFinding]]:
    """Per-feature drift tests and data-quality findings; saves `<report_id>.html`. Without
    `report`, the same tests run directly (`direct_p_values`: no HTML, ~100x faster)."""
    if len(current_raw) < MIN_ROWS:
        raise DriftInputError(
            f"drift needs at least {MIN_ROWS} rows in the current batch; got {len(current_raw)}"
        )
    reference = card.clean(reference_raw)
    current = card.clean(current_raw)
    tested = [
        f
        for f in card.features
        if current[f.name].notna().sum() >= MIN_VALUES_PER_FEATURE
        and reference[f.name].notna().sum() >= MIN_VALUES_PER_FEATURE
    ]
    p_values = (
        _evidently_p_values(card, tested, reference, current, report_directory, report_id)
        if report
        else direct_p_values(tested, reference, current)
    )
    adjusted = (
        dict(
            zip(
                p_values,
                stats.false_discovery_control(list(p_values.values()), method="bh"),
                strict=True,
            )
        )
        if p_values
        else {}
    )

    features = []
    for feature in card.features:
        if feature not in tested:
            features.append(
                DriftFeature(
                    feature=feature.name,
                    method="not tested",
                    statistic=None,
                    p_value=None,
                    p_value_adjusted=None,
                    threshold=SIGNIFICANCE,
                    drifted=False,
                    effect_size=None,
                    effect_size_method=None,
                    tested=False,
                    note=f"fewer than {MIN_VALUES_PER_FEATURE} recorded values in the reference "
                    "or the current batch",
                )
            )
            continue
        ref, cur = reference[feature.name].dropna(), current[feature.name].dropna()
        statistic, method = _statistic(feature, ref, cur)
        effect, effect_method = _effect_size(feature, ref, cur)
        p_adjusted = float(adjusted[feature.name])
        features.append(
            DriftFeature(
                feature=feature.name,
                method=method,
                statistic=statistic,
                p_value=p_values[feature.name],
                p_value_adjusted=p_adjusted,
                threshold=SIGNIFICANCE,
                drifted=p_adjusted < SIGNIFICANCE,
                effect_size=effect,
                effect_size_method=effect_method,
            )
        )
    return features, data_quality(card, reference_raw, current_raw)


def _evidently_p_values(
    card: DatasetCard,
    tested: list[Feature],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    report_directory: Path,
    report_id: str,
) -> dict[str, float]:
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415 - ~3-6 s to import
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    numeric = [f.name for f in tested if f.kind == "numeric"]
    categorical = [f.name for f in tested if f.kind != "numeric"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def dataset(frame: pd.DataFrame) -> Any:
        frame = frame[columns].copy()
        for name in categorical:  # one dtype per column: strings, gaps as None
            frame[name] = frame[name].map(_category_text, na_action="ignore").astype(object)
        return Dataset.from_pandas(frame, data_definition=definition)

    preset = DataDriftPreset(
        columns=columns, num_method="ks", cat_method="chisquare", threshold=SIGNIFICANCE
    )
    snapshot = Report([preset]).run(
        current_data=dataset(current), reference_data=dataset(reference)
    )
    report_directory.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_directory / f"{report_id}.html"))
    _prune_reports(report_directory)
    p_values: dict[str, float] = {}
    for metric in json.loads(snapshot.json())["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift") and config.get("column") in columns:
            value = float(metric["value"])
            # A column constant in both batches gives chi-squared no degrees of freedom
            # (NaN): there is no evidence of drift.
            p_values[config["column"]] = 1.0 if math.isnan(value) else value
    return {name: p_values[name] for name in columns if name in p_values}


def direct_p_values(
    tested: list[Feature], reference: pd.DataFrame, current: pd.DataFrame
) -> dict[str, float]:
    """The p-values of Evidently's tests computed as Evidently computes them (its
    `ks_stattest` and `chisquare_stattest`), without building a report: two-sample
    Kolmogorov-Smirnov for numbers; for categories, chi-squared of the current counts
    against the reference's, scaled to the current rows."""
    p_values: dict[str, float] = {}
    for feature in tested:
        ref, cur = reference[feature.name].dropna(), current[feature.name].dropna()
        if feature.kind == "numeric":
            value = float(stats.ks_2samp(ref, cur)[1])
        else:
            ref, cur = ref.map(_category_text), cur.map(_category_text)
            keys = list(set(ref.unique()) | set(cur.unique()))
            ref_counts, cur_counts = ref.value_counts(), cur.value_counts()
            scale = len(cur) / len(ref)
            expected = [float(ref_counts.get(key, 0)) * scale for key in keys]
            observed = [float(cur_counts.get(key, 0)) for key in keys]
            with np.errstate(divide="ignore", invalid="ignore"):
                value = float(stats.chisquare(observed, expected)[1])
        p_values[feature.name] = 1.0 if math.isnan(value) else value
    return p_values


def _prune_reports(directory: Path) -> None:
    """Keeps the newest `MAX_REPORTS` reports (each is a few MB of HTML)."""
    reports = sorted(directory.glob("drift-*.html"), key=lambda path: path.name, reverse=True)
    for old in reports[MAX_REPORTS:]:
        old.unlink(missing_ok=True)


def _category_text(value: object) -> str:
    if isinstance(value, float):
        return "true" if value == 1.0 else "false"  # booleans are cleaned to 0/1
    return str(value)


def _statistic(feature: Feature, ref: pd.Series, cur: pd.Series) -> tuple[float | None, str]:
    """The test statistic behind Evidently's p-value, computed the way Evidently does."""
    if feature.kind == "numeric":
        return float(stats.ks_2samp(ref, cur).statistic), "ks"
    keys = sorted(set(ref.map(_category_text)) | set(cur.map(_category_text)))
    ref_counts = ref.map(_category_text).value_counts()
    cur_counts = cur.map(_category_text).value_counts()
    expected = np.array([ref_counts.get(k, 0) for k in keys], float) * len(cur) / len(ref)
    observed = np.array([cur_counts.get(k, 0) for k in keys], float)
    if (expected == 0).any():
        return None, "chisquare"  # a category the reference never saw: statistic is infinite
    return float(((observed - expected) ** 2 / expected).sum()), "chisquare"


def _effect_size(feature: Feature, ref: pd.Series, cur: pd.Series) -> tuple[float, str]:
    if feature.kind == "numeric":
        spread = float(ref.std()) or 1.0
        return float(stats.wasserstein_distance(ref, cur) / spread), "wasserstein_sd"
    keys = sorted(set(ref.map(_category_text)) | set(cur.map(_category_text)))
    p = ref.map(_category_text).value_counts(normalize=True).reindex(keys, fill_value=0)
    q = cur.map(_category_text).value_counts(normalize=True).reindex(keys, fill_value=0)
    from scipy.spatial.distance import jensenshannon  # noqa: PLC0415

    return float(jensenshannon(p.to_numpy(), q.to_numpy(), base=2)), "jensen_shannon"


def data_quality(
    card: DatasetCard, reference_raw: pd.DataFrame, current_raw: pd.DataFrame
) -> list[DataQualityFinding]:
    """Raw-value problems: impossible zeros, jumps in missingness, unseen categories,
    values outside the training range."""
    findings = []
    reference = card.clean(reference_raw)
    current = card.clean(current_raw)
    for feature in card.features:
        raw = current_raw[feature.name] if feature.name in current_raw else pd.Series(dtype=float)
        if feature.zero_means_missing:
            zeros = int((pd.to_numeric(raw, errors="coerce") == 0).sum())
            if zeros:
                findings.append(
                    DataQualityFinding(
                        feature=feature.name,
                        issue="recorded_as_zero",
                        count=zeros,
                        detail=f"{zeros} of {len(current)} rows record "
                        f"{feature.display_name} as 0, "
                        "which is impossible; read as missing",
                    )
                )
        ref_missing = float(reference[feature.name].isna().mean())
        cur_missing = float(current[feature.name].isna().mean())
        if cur_missing - ref_missing >= MISSING_RATE_JUMP:
            findings.append(
                DataQualityFinding(
                    feature=feature.name,
                    issue="missing_rate_jump",
                    count=int(current[feature.name].isna().sum()),
                    detail=f"missing in {cur_missing:.0%} of rows against {ref_missing:.0%} "
                    "in the reference",
                )
            )
        if feature.kind == "categorical":
            seen = set(reference[feature.name].dropna())
            unseen = current[feature.name].dropna()
            unseen = unseen[~unseen.isin(seen)]
            if len(unseen):
                findings.append(
                    DataQualityFinding(
                        feature=feature.name,
                        issue="unseen_category",
                        count=len(unseen),
                        detail=f"categories never seen in the reference: "
                        f"{', '.join(sorted(set(unseen)))}",
                    )
                )
        if feature.training_range is not None:
            values = current[feature.name].dropna()
            outside = values[
                (values < feature.training_range.low) | (values > feature.training_range.high)
            ]
            if len(outside):
                findings.append(
                    DataQualityFinding(
                        feature=feature.name,
                        issue="outside_training_range",
                        count=len(outside),
                        detail=f"{len(outside)} values outside the training range "
                        f"{feature.training_range.low:g}-{feature.training_range.high:g}"
                        f"{' ' + feature.unit if feature.unit else ''}",
                    )
                )
    return findings
