"""Deterministic narration of the cohort and data tools: every number shown comes from the
result (the verifier checks it), each answer says which rows it rests on."""

from __future__ import annotations

from typing import Any


def _pct(value: float) -> str:
    return f"{value:.0%}" if abs(value) >= 0.01 or value == 0 else f"{value:.1%}"


def _rows(cohort: dict[str, Any]) -> str:
    where = cohort["description"]
    return f"{where}: {cohort['matched']} of {cohort['total']} rows"


def _value(value: Any, unit: str | None = None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value} {unit}" if unit else str(value)


def _statistics(stat: dict[str, Any]) -> str:
    name = stat["display_name"]
    missing = f", {_pct(stat['missing_share'])} missing" if stat["missing"] else ""
    if stat.get("counts") is not None:
        counts = ", ".join(f"{level} {count}" for level, count in stat["counts"].items())
        return f"{name}: {counts}{missing}"
    if stat.get("mean") is None:
        return f"{name}: no values recorded"
    unit = f" {stat['unit']}" if stat.get("unit") else ""
    return (
        f"{name}: mean {stat['mean']:.1f}{unit}, median {_value(stat['median'])}, range "
        f"{_value(stat['min'])} to {_value(stat['max'])}{missing}"
    )


def describe_data(result: dict[str, Any]) -> str:
    balance = result["label_balance"]
    lines = [f"- {_statistics(stat)}" for stat in result["features"]]
    return (
        f"Cohort {_rows(result['cohort'])}. {balance['positive']} have {balance['outcome']} "
        f"({_pct(balance['positive_share'])}), {balance['negative']} do not. The model's mean "
        f"predicted risk is {_pct(result['mean_risk'])}; {result['predicted_positive']} rows "
        f"are at or above the threshold {result['threshold']:.3f}.\n" + "\n".join(lines)
    )


def show_rows(result: dict[str, Any]) -> str:
    lines = []
    for row in result["rows"]:
        values = ", ".join(
            f"{name} {_value(value)}" for name, value in row["values"].items() if value is not None
        )
        seen = "trained on" if row["trained_on"] else "not trained on"
        lines.append(
            f"- row {row['row_id']} ({row['site']}): {values}; {result['outcome']} "
            f"{'yes' if row['outcome'] else 'no'}; predicted risk {_pct(row['probability'])} "
            f"({seen})"
        )
    return "Rows:\n" + "\n".join(lines)


def define_feature(result: dict[str, Any]) -> str:
    unit = f" in {result['unit']}" if result["unit"] else ""
    allowed = f" Values: {', '.join(result['allowed'])}." if result["allowed"] else ""
    if result.get("codes"):
        coded = ", ".join(f"{c['code']} = {c['value']}" for c in result["codes"])
        allowed += f" Coded in the source data as {coded}."
    limits = result["limits"]
    shown = (
        f" Accepted from {_value(limits['low'])} to {_value(limits['high'])}{unit}."
        if limits
        else ""
    )
    return (
        f"{result['feature']} ({result['display_name']}): {result['description']}{unit}."
        + allowed
        + shown
    )


def _interval(metric: dict[str, Any]) -> str:
    if metric["value"] is None:
        return "not measurable on these rows"
    if metric["ci_low"] is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} (CI {metric['ci_low']:.3f} to {metric['ci_high']:.3f})"


def _rate(metric: dict[str, Any]) -> str:
    if metric["value"] is None:
        return "not measurable (none to judge)"
    return (
        f"{_pct(metric['value'])} ({metric['count']} of {metric['of']}; CI "
        f"{_pct(metric['ci_low'])} to {_pct(metric['ci_high'])})"
    )


def model_performance(result: dict[str, Any]) -> str:
    cohort = result["cohort"]
    calibration = (
        f" Calibration: mean predicted risk {_pct(result['mean_predicted'])} against an "
        f"observed rate of {_pct(result['observed_rate'])} (calibration error "
        f"{result['calibration_error']:.3f})."
        if result["mean_predicted"] is not None
        else ""
    )
    return (
        f"On {result['rows']} held-out rows ({cohort['description']}; the "
        f"{cohort['training_rows_excluded']} rows the model trained on are left out), "
        f"{result['positives']} with the outcome: ROC AUC {_interval(result['roc_auc'])}; at "
        f"the threshold {result['threshold']:.3f}, sensitivity {_rate(result['sensitivity'])}, "
        f"specificity {_rate(result['specificity'])}, accuracy {_rate(result['accuracy'])}."
        + calibration
        + f" Intervals are at the {_pct(result['confidence_level'])} level."
    )


def model_mistakes(result: dict[str, Any]) -> str:
    cohort = result["cohort"]
    sites = "; ".join(
        f"{s['site']}: {s['false_negatives']} false negatives and {s['false_positives']} false "
        f"positives of {s['rows']}"
        for s in result["by_site"]
    )
    missed = ", ".join(
        f"row {r['row_id']} ({_pct(r['probability'])})" for r in result["false_negative_rows"]
    )
    alarmed = ", ".join(
        f"row {r['row_id']} ({_pct(r['probability'])})" for r in result["false_positive_rows"]
    )
    return (
        f"On {result['rows']} held-out rows ({cohort['description']}) at the threshold "
        f"{result['threshold']:.3f}: {result['false_negatives']} false negatives (disease "
        f"missed) and {result['false_positives']} false positives, an error rate of "
        f"{_pct(result['error_rate'])}."
        + (f" By site: {sites}." if sites else "")
        + (f" Most confident misses: {missed}." if missed else "")
        + (f" Most confident false alarms: {alarmed}." if alarmed else "")
    )


def feature_importance(result: dict[str, Any]) -> str:
    lines = [
        f"{f['rank']}. {f['display_name']}: mean |SHAP| {f['mean_abs_shap']:.3f} log-odds, "
        f"usually {'raising' if f['mean_shap'] > 0 else 'lowering'} the risk"
        for f in result["importance"]
    ]
    return (
        f"Most important features over {_rows(result['cohort'])} (exact SHAP):\n"
        + "\n".join(lines)
        + "\nImportance says what the model leans on, not what causes the disease."
    )


def feature_interactions(result: dict[str, Any]) -> str:
    if all(pair["mean_abs_interaction"] == 0 for pair in result["interactions"]):
        return (
            f"The served {result['kind'].replace('_', ' ')} adds its features' effects: no "
            f"feature interacts with another over {_rows(result['cohort'])}."
        )
    lines = [
        f"{pair['rank']}. {' and '.join(pair['display_names'])}: mean |interaction| "
        f"{pair['mean_abs_interaction']:.3f} log-odds"
        for pair in result["interactions"]
    ]
    return (
        f"Strongest feature interactions over {_rows(result['cohort'])} (SHAP interaction "
        "values):\n" + "\n".join(lines)
    )


def counterfactual(result: dict[str, Any]) -> str:
    searched = ", ".join(
        f"{f['display_name']} ({_value(f['low'])} to {_value(f['high'])}"
        + (f" {f['unit']}" if f["unit"] else "")
        + ")"
        for f in result["searched"]
    )
    before = _pct(result["original_probability"])
    if result["found"] and not result["changes"]:
        return (
            f"The risk is already {before}, under the threshold {_pct(result['threshold'])}; "
            "nothing needs to change."
        )
    if not result["found"]:
        return (
            f"No change within the plausible ranges of the actionable features ({searched}) "
            f"brings the risk of {before} under the threshold {_pct(result['threshold'])}; "
            f"{result['combinations']} combinations were scored. Age and sex are never changed."
        )
    changes = ", ".join(
        f"{c['display_name']} from {_value(c['from_value'], c['unit'])} to "
        f"{_value(c['to_value'], c['unit'])}"
        for c in result["changes"]
    )
    return (
        f"The smallest change that brings the risk under the threshold "
        f"{_pct(result['threshold'])}: {changes}. The risk would go from {before} to "
        f"{_pct(result['probability'])}. Searched: {searched}; age and sex are never changed. "
        "This is what the model would predict, not a treatment plan."
    )


def _cohort_change(change: dict[str, Any]) -> str:
    value, unit = change["value"], change["unit"]
    if change["op"] == "add" and not isinstance(value, (bool, str)):
        shown = f"{'+' if value > 0 else '-'}{_value(abs(value), unit)}"
        return f"{change['display_name']} {shown} ({change['rows_changed']} rows changed)"
    return (
        f"{change['display_name']} set to {_value(value, unit)} "
        f"({change['rows_changed']} rows changed)"
    )


def cohort_what_if(result: dict[str, Any]) -> str:
    changes = ", ".join(_cohort_change(c) for c in result["changes"])
    return (
        f"With {changes} over {_rows(result['cohort'])}: mean predicted risk "
        f"{_pct(result['mean_risk_before'])} -> {_pct(result['mean_risk_after'])} (mean change "
        f"{result['mean_change']:+.3f}); predicted positive {result['predicted_positive_before']}"
        f" -> {result['predicted_positive_after']}: {result['flipped_to_negative']} fell under "
        f"the threshold and {result['flipped_to_positive']} rose above it. Rows with the value "
        "missing, or pushed past the physiological limits, keep their value."
    )


NARRATORS = {
    "describe_data": describe_data,
    "show_rows": show_rows,
    "define_feature": define_feature,
    "model_performance": model_performance,
    "model_mistakes": model_mistakes,
    "feature_importance": feature_importance,
    "feature_interactions": feature_interactions,
    "counterfactual": counterfactual,
    "cohort_what_if": cohort_what_if,
}
