"""Drift without the HTML report: Evidently's own tests computed directly, the same p-values."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from model_service import drift
from model_service.cards import DatasetCard


@pytest.mark.parametrize("site", ["Hungary", "Switzerland", "VA Long Beach"])
def test_direct_p_values_are_evidentlys(site: str, heart_card: DatasetCard, tmp_path: Path) -> None:
    raw = heart_card.load_raw()
    reference = heart_card.select_sites(raw, ["Cleveland"])
    current = heart_card.select_sites(raw, [site])
    with_report, quality = drift.check_drift(
        heart_card, reference, current, tmp_path, drift.new_report_id()
    )
    report_id = drift.new_report_id()
    direct, direct_quality = drift.check_drift(
        heart_card, reference, current, tmp_path, report_id, report=False
    )
    for ours, theirs in zip(direct, with_report, strict=True):
        assert ours.model_dump(exclude={"p_value", "p_value_adjusted"}) == theirs.model_dump(
            exclude={"p_value", "p_value_adjusted"}
        )
        if theirs.p_value is None:  # not tested
            assert ours.p_value is None and not ours.tested
            continue
        assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-9, abs=1e-300)
        assert ours.p_value_adjusted == pytest.approx(theirs.p_value_adjusted, rel=1e-9)
    assert direct_quality == quality
    assert not (tmp_path / f"{report_id}.html").exists()


def test_a_drift_check_without_a_report(service: TestClient) -> None:
    answer = service.post("/v1/drift", json={"site": "Hungary", "report": False})
    assert answer.status_code == 200, answer.text
    assert answer.json()["report_url"] is None and answer.json()["features"]


def test_each_number_is_the_textbook_one(heart_card: DatasetCard, tmp_path: Path) -> None:
    """Every feature's values are prepared once (one KS test for the p-value and the
    statistic, categories counted once); the numbers are those of the plain formulas."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    raw = heart_card.load_raw()
    reference = heart_card.clean(heart_card.select_sites(raw, ["Cleveland"]))
    current_raw = heart_card.select_sites(raw, ["VA Long Beach"])
    current = heart_card.clean(current_raw)
    found, _ = drift.check_drift(
        heart_card, reference, current_raw, tmp_path, drift.new_report_id(), report=False
    )
    kinds = {f.name: f.kind for f in heart_card.features}
    assert {kinds[f.feature] for f in found if f.tested} == {"numeric", "categorical", "boolean"}
    for feature in (f for f in found if f.tested):
        ref, cur = reference[feature.feature].dropna(), current[feature.feature].dropna()
        if kinds[feature.feature] == "numeric":
            ks = stats.ks_2samp(ref, cur)
            assert (feature.statistic, feature.p_value) == (ks.statistic, ks.pvalue)
            effect = stats.wasserstein_distance(ref, cur) / (ref.std() or 1.0)
            assert feature.effect_size == pytest.approx(effect, rel=1e-12)
            continue
        ref_text, cur_text = ref.map(str), cur.map(str)
        if ref.dtype == float:  # booleans, cleaned to 0/1
            ref_text, cur_text = (s.map({1.0: "true", 0.0: "false"}) for s in (ref, cur))
        keys = sorted(set(ref_text) | set(cur_text))
        p = ref_text.value_counts(normalize=True).reindex(keys, fill_value=0)
        q = cur_text.value_counts(normalize=True).reindex(keys, fill_value=0)
        expected = p.to_numpy() * len(cur)
        observed = q.to_numpy() * len(cur)
        assert feature.effect_size == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)
        assert feature.p_value == pytest.approx(stats.chisquare(observed, expected)[1], rel=1e-9)
        if (expected > 0).all():
            statistic = ((observed - expected) ** 2 / expected).sum()
            assert feature.statistic == pytest.approx(statistic, rel=1e-9)
        else:
            assert feature.statistic is None
