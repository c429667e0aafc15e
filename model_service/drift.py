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
from collections import Counter
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
    `report`, the same tests run directly (`_numeric`, `_categorical`: no HTML, ~100x
    faster)."""
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
    compared: dict[str, tuple[float | None, str, float, str]] = {}
    direct: dict[str, float] = {}
    for feature in tested:  # each feature's values prepared once for every number
        ref, cur = reference[feature.name].dropna(), current[feature.name].dropna()
        if feature.kind == "numeric":
            direct[feature.name], compared[feature.name] = _numeric(ref, cur)
        else:
            direct[feature.name], compared[feature.name] = _categorical(ref, cur)
    p_values = (
        _evidently_p_values(card, tested, reference, current, report_directory, report_id)
        if report
        else direct
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
        statistic, method, effect, effect_method = compared[feature.name]
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
    return features, data_quality(card, reference, current, current_raw)


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


def _prune_reports(directory: Path) -> None:
    """Keeps the newest `MAX_REPORTS` reports (each is a few MB of HTML)."""
    reports = sorted(directory.glob("drift-*.html"), key=lambda path: path.name, reverse=True)
    for old in reports[MAX_REPORTS:]:
        old.unlink(missing_ok=True)


def _text_counts(values: pd.Series) -> Counter[str]:
    """How often each category occurs, by its text (distinct values are turned into text
    once, not every row)."""
    counts: Counter[str] = Counter()
    for value, count in Counter(values.to_numpy().tolist()).items():
        counts[_category_text(value)] += count
    return counts


def _category_text(value: object) -> str:
    if isinstance(value, float):
        return "true" if value == 1.0 else "false"  # booleans are cleaned to 0/1
    return str(value)


def _numeric(ref: pd.Series, cur: pd.Series) -> tuple[float, tuple[float, str, float, str]]:
    """Evidently's `ks_stattest` p-value (two-sample Kolmogorov-Smirnov), its statistic, and
    the Wasserstein distance in reference standard deviations (one KS test for both)."""
    spread = float(ref.std()) or 1.0
    ref_values, cur_values = ref.to_numpy(), cur.to_numpy()
    tested = stats.ks_2samp(ref_values, cur_values)
    p_value = float(tested[1])
    effect = float(stats.wasserstein_distance(ref_values, cur_values) / spread)
    return (
        1.0 if math.isnan(p_value) else p_value,
        (float(tested.statistic), "ks", effect, "wasserstein_sd"),
    )


def _categorical(
    ref: pd.Series, cur: pd.Series
) -> tuple[float, tuple[float | None, str, float, str]]:
    """Evidently's `chisquare_stattest` p-value (the current counts against the reference's
    scaled to the current rows), the chi-squared statistic (None when the current batch has
    a category the reference never saw: it is infinite) and the Jensen-Shannon distance of
    the two category shares; the categories are counted once."""
    ref_counts, cur_counts = _text_counts(ref), _text_counts(cur)
    keys = sorted(ref_counts.keys() | cur_counts.keys())
    ref_k = np.array([ref_counts.get(key, 0) for key in keys], float)
    cur_k = np.array([cur_counts.get(key, 0) for key in keys], float)
    ref_n, cur_n = len(ref), len(cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = float(stats.chisquare(cur_k, ref_k * (cur_n / ref_n))[1])
    expected = ref_k * cur_n / ref_n
    statistic = None if (expected == 0).any() else float(((cur_k - expected) ** 2 / expected).sum())
    from scipy.spatial.distance import jensenshannon  # noqa: PLC0415

    effect = float(jensenshannon(ref_k / ref_n, cur_k / cur_n, base=2))
    return (
        1.0 if math.isnan(p_value) else p_value,
        (statistic, "chisquare", effect, "jensen_shannon"),
    )


def data_quality(
    card: DatasetCard, reference: pd.DataFrame, current: pd.DataFrame, current_raw: pd.DataFrame
) -> list[DataQualityFinding]:
    """Raw-value problems: impossible zeros, jumps in missingness, unseen categories,
    values outside the training range (`reference` and `current` cleaned by the card)."""
    findings = []
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
