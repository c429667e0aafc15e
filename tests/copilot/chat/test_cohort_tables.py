"""The chat shows the cohort tools' results as tables too (the narration stays): each cell
is the number of the real model service's answer."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from copilot.chat import views as ui_views
from tools.cohorts import DataDescription, Importance, Mistakes, ShownRows


def _table(tool: str, result: dict[str, Any]) -> list[str]:
    table = ui_views.table_for({"tool": tool, "arguments": {}, "result": result})
    assert table is not None
    return table.splitlines()


def test_describe_data_is_a_table_of_features(service: TestClient) -> None:
    where = [{"feature": "site", "value": "Hungary"}]
    answer = service.post("/v1/cohort/summary", json={"where": where}).json()
    result = DataDescription.model_validate(answer).model_dump(mode="json")
    lines = _table("describe_data", result)
    assert lines[0] == "| Feature | Mean | Median | Range | Categories | Missing |"
    age = next(f for f in result["features"] if f["feature"] == "age")
    low, high = int(age["min"]), int(age["max"])
    unit = f" {age['unit']}" if age["unit"] else ""
    assert any(
        line.startswith(f"| {age['display_name']} | {age['mean']:.1f}{unit} |")
        and f"| {low} to {high} |" in line
        for line in lines
    ), lines
    chol = next(f for f in result["features"] if f["feature"] == "chol")
    assert chol["missing"] > 0
    assert any(f"| {chol['missing']} ({chol['missing_share']:.0%}) |" in line for line in lines)
    sex = next(f for f in result["features"] if f["feature"] == "sex")
    counts = ", ".join(f"{level} {count}" for level, count in sex["counts"].items())
    assert any(f"| {counts} |" in line for line in lines)
    assert len(lines) == 2 + len(result["features"])


def test_show_rows_mistakes_and_importance_are_tables(service: TestClient) -> None:
    shown = ShownRows.model_validate(
        service.post("/v1/cohort/rows", json={"row_ids": [1, 2]}).json()
    ).model_dump(mode="json")
    lines = _table("show_rows", shown)
    assert lines[0].startswith("| Row | Site | age | sex |")
    first = shown["rows"][0]
    assert lines[2].startswith(f"| 1 | {first['site']} | {first['values']['age']} |")
    assert lines[2].endswith(
        f"| {first['probability']:.0%} | {'yes' if first['trained_on'] else 'no'} |"
    )

    mistakes = Mistakes.model_validate(
        service.post("/v1/cohort/mistakes", json={"limit": 3}).json()
    ).model_dump(mode="json")
    lines = _table("model_mistakes", mistakes)
    assert lines[0] == "| Site | Held-out rows | False negatives | False positives |"
    for site in mistakes["by_site"]:
        assert (
            f"| {site['site']} | {site['rows']} | {site['false_negatives']} | "
            f"{site['false_positives']} |"
        ) in lines
    missed = mistakes["false_negative_rows"][0]
    assert f"| {missed['row_id']} | false negative | {missed['probability']:.0%} | 1 |" in lines

    importance = Importance.model_validate(
        service.post("/v1/cohort/importance", json={"top": 3}).json()
    ).model_dump(mode="json")
    lines = _table("feature_importance", importance)
    assert lines[0] == "| Rank | Feature | Mean \\|SHAP\\| (log-odds) | Usually |"
    top = importance["importance"][0]
    direction = "raises" if top["mean_shap"] > 0 else "lowers"
    assert lines[2] == (
        f"| 1 | {top['display_name']} | {top['mean_abs_shap']:.3f} | {direction} the risk |"
    )
    assert len(lines) == 2 + 3
