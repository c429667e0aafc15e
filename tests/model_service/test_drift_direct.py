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
