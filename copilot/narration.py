"""Deterministic narration of tool results: every number shown comes from the result.

(The PydanticAI narrator with verified claims builds on these; they are its fallback.)
"""

from __future__ import annotations

from typing import Any

from copilot.facts import Focus


def _pct(value: float) -> str:
    return f"{value:.0%}" if abs(value) >= 0.01 else f"{value:.1%}"


def shown_value(driver: dict[str, Any]) -> str:
    """A driver's value as people read it: with its unit, "missing (imputed)", yes/no."""
    value, unit = driver["value"], driver.get("unit")
    if value is None:
        return "missing (imputed)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value} {unit}" if unit else str(value)


def _warnings(result: dict[str, Any]) -> str:
    warnings = result.get("warnings") or []
    if not warnings:
        return ""
    return " Caveats: " + "; ".join(w["message"] for w in warnings[:4]) + "."


def _model(result: dict[str, Any]) -> str:
    model = result["model"]
    return f"{model['name']} version {model['version']}"


def predict_risk(result: dict[str, Any]) -> str:
    verdict = "above" if result["label"] else "below"
    return (
        f"Predicted risk of {result['label_name'].removeprefix('no ')}: "
        f"{_pct(result['probability'])} ({verdict} the decision threshold of "
        f"{_pct(result['threshold'])}), from {_model(result)}. The model shows "
        f"association, not causation.{_warnings(result)}"
    )


def explain_prediction(result: dict[str, Any]) -> str:
    drivers = result["drivers"][:3]
    parts = [
        f"{d['display_name']} ({shown_value(d)}) {d['direction']} "
        f"({d['contribution']:+.2f} log-odds)"
        for d in drivers
    ]
    names = {d["feature"]: d["display_name"] for d in result["drivers"]}
    missing = [
        names[w["feature"]]
        for w in result["warnings"]
        if w["code"] in {"missing_imputed", "zero_read_as_missing"}
    ]
    outside = [
        names[w["feature"]] for w in result["warnings"] if w["code"] == "outside_training_range"
    ]
    caveats = "".join(
        [
            f" Missing inputs (imputed): {', '.join(missing)}." if missing else "",
            f" Outside the training range (low confidence): {', '.join(outside)}."
            if outside
            else "",
        ]
    )
    return (
        f"Risk {_pct(result['probability'])} against a baseline of "
        f"{_pct(result['base_probability'])}. Largest drivers: "
        + "; ".join(parts)
        + f". From {_model(result)}; association, not causation.{caveats}"
    )


def what_if(result: dict[str, Any]) -> str:
    changes = ", ".join(
        f"{c['display_name']} {c['before'] if c['before'] is not None else 'missing'}"
        f" -> {c['after']}"
        for c in result["changes"]
    )
    direction = "rises" if result["delta"] > 0 else "falls" if result["delta"] < 0 else "stays"
    return (
        f"With {changes}, the risk {direction} from {_pct(result['probability_before'])} "
        f"to {_pct(result['probability_after'])} ({result['delta']:+.1%} points), "
        f"from {_model(result)}."
    )


def check_drift(result: dict[str, Any]) -> str:
    where = result["current"].get("site") or result["current"].get("since") or "the batch"
    if result["drift_detected"]:
        drifted = ", ".join(
            f"{f['display_name']} (adjusted p {f['p_value_adjusted']:.2g})"
            for f in result["drifted"][:5]
        )
        head = (
            f"Drift detected for {where}: {result['features_drifted']} of "
            f"{result['features_tested']} tested features, e.g. {drifted}."
        )
    else:
        head = f"No drift detected for {where} after Benjamini-Hochberg correction."
    quality = "; ".join(f["detail"] for f in result["data_quality"][:4])
    return (
        head
        + (f" Data quality: {quality}." if quality else "")
        + f" Full report: {result['report_url']}"
    )


def list_runs(result: dict[str, Any]) -> str:
    if not result["runs"]:
        return "No training runs yet."
    lines = []
    for run in result["runs"]:
        auc = run["metrics"].get("holdout_roc_auc")
        tag = f" @{', @'.join(run['aliases'])}" if run["aliases"] else ""
        lines.append(
            f"- {run['run_id'][:8]} {run['best_kind']} on {' + '.join(run['sites'])}"
            + (f", holdout ROC AUC {auc:.3f}" if auc is not None else "")
            + (f", version {run['version']}{tag}" if run["version"] else "")
        )
    return "Training runs, newest first:\n" + "\n".join(lines)


def compare_runs(result: dict[str, Any]) -> str:
    names = {
        run["run_id"]: f"{run['run_id'][:8]} ({' + '.join(run['sites'])})" for run in result["runs"]
    }
    lines = [
        f"- {m['metric']}: "
        + ", ".join(f"{names[r]} {v:.3f}" for r, v in m["values"].items())
        + f"; better: {names[m['best_run']]}"
        for m in result["metrics"][:6]
    ]
    return "Runs compared:\n" + "\n".join(lines)


def model_info(result: dict[str, Any]) -> str:
    auc = result["metrics"].get("holdout_roc_auc")
    return (
        f"Serving {result['name']} version {result['version']} (@{result['alias']}), a "
        f"{result['kind'].replace('_', ' ')} on {result['dataset']} with threshold "
        f"{result['threshold']:.3f}"
        + (f" and holdout ROC AUC {auc:.3f}" if auc else "")
        + f"; its inputs: {', '.join(f['name'] for f in result['features'])}."
    )


def action_proposed(action: dict[str, Any]) -> str:
    return (
        f"Proposed: {action['summary']}. Nothing has changed yet: a person with the "
        f"approver role must approve action {action['id']} (expires "
        f"{action['expires_at']})."
    )


def action_outcome(action: dict[str, Any]) -> str:
    status, result = action["status"], action.get("result") or {}
    if status == "executed":
        details = ", ".join(
            f"{k} {v}"
            for k, v in result.items()
            if v is not None and not isinstance(v, (list, dict))
        )
        return f"Done: {action['summary']} (approved by {action['decided_by']}). {details}."
    if status == "failed":
        return f"Approved but it did not complete: {result.get('error', 'unknown error')}."
    if status == "rejected":
        return f"Not done: {action['decided_by']} rejected it" + (
            f" ({action['comment']})." if action.get("comment") else "."
        )
    if status == "expired":
        return "Not done: the proposal expired before anyone decided."
    if status == "approved" and action.get("executing"):
        return f"Action {action['id']} is running (started elsewhere); ask again for its outcome."
    return f"Action {action['id']} is {status}."


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _driver(result: dict[str, Any], feature: str) -> dict[str, Any]:
    return next(d for d in result["drivers"] if d["feature"] == feature)


def _stated(driver: dict[str, Any]) -> str:
    return f"{driver['display_name']} ({shown_value(driver)})"


def _effect(driver: dict[str, Any]) -> str:
    return f"{driver['direction']} ({driver['contribution']:+.2f} log-odds)"


def _explanation_caveats(result: dict[str, Any]) -> str:
    """The model, association not causation, and every missing or out-of-range input."""
    names = {d["feature"]: d["display_name"] for d in result["drivers"]}
    missing = [
        names[w["feature"]]
        for w in result["warnings"]
        if w["code"] in {"missing_imputed", "zero_read_as_missing"}
    ]
    outside = [
        names[w["feature"]] for w in result["warnings"] if w["code"] == "outside_training_range"
    ]
    return (
        f" From {_model(result)}; association, not causation."
        + (f" Missing inputs (imputed): {', '.join(missing)}." if missing else "")
        + (
            f" Outside the training range (low confidence): {', '.join(outside)}."
            if outside
            else ""
        )
    )


def top_drivers(result: dict[str, Any], count: int) -> str:
    """The `count` largest drivers of one explanation, in rank order."""
    drivers = result["drivers"][:count]
    listed = "; ".join(f"{d['rank']}. {_stated(d)} {_effect(d)}" for d in drivers)
    head = (
        "The largest driver for this patient"
        if len(drivers) == 1
        else f"The top {len(drivers)} drivers for this patient, largest first"
    )
    return f"{head}: {listed}. Risk {_pct(result['probability'])}." + _explanation_caveats(result)


def feature_rank(result: dict[str, Any], feature: str) -> str:
    """Where one feature ranks among this patient's drivers (1 = largest effect)."""
    driver = _driver(result, feature)
    return (
        f"{_stated(driver)} {_effect(driver)} and ranks {driver['rank']} of "
        f"{len(result['drivers'])} drivers ({_ordinal(driver['rank'])} largest effect) for "
        "this patient." + _explanation_caveats(result)
    )


def feature_direction(result: dict[str, Any], feature: str) -> str:
    """Whether one feature raises or lowers this patient's risk, and by how much."""
    driver = _driver(result, feature)
    return (
        f"For this patient {_stated(driver)} {_effect(driver)}, rank {driver['rank']} of "
        f"{len(result['drivers'])} drivers." + _explanation_caveats(result)
    )


def compare_importance(result: dict[str, Any], first: str, second: str, relation: str) -> str:
    """Whether `first` matters more (or less, per `relation`) than `second` for this patient:
    the larger absolute contribution is the more important."""
    a, b = _driver(result, first), _driver(result, second)
    more = abs(a["contribution"]) > abs(b["contribution"])
    holds = more if relation == "more" else abs(a["contribution"]) < abs(b["contribution"])
    bigger, smaller = (a, b) if more else (b, a)
    return (
        f"{'Yes' if holds else 'No'}. For this patient {_stated(bigger)} matters more than "
        f"{_stated(smaller)}, rank {bigger['rank']} against rank {smaller['rank']} "
        f"(absolute contributions {abs(bigger['contribution']):.2f} and "
        f"{abs(smaller['contribution']):.2f} log-odds)." + _explanation_caveats(result)
    )


def focused_answer(tool: str, result: dict[str, Any], focus: Focus | None) -> str | None:
    """The answer to what an explanation question asked (the top N drivers, one feature's
    rank or direction, two features compared), computed from the result; None when the
    question asks nothing more specific than "why?"."""
    if tool != "explain_prediction":
        return None
    known = {d["feature"] for d in result.get("drivers", [])}
    if focus is None or not set(focus.features) <= known:
        return None
    if focus.kind == "top":
        return top_drivers(result, focus.count)
    if focus.kind == "rank":
        return feature_rank(result, focus.features[0])
    if focus.kind == "direction":
        return feature_direction(result, focus.features[0])
    return compare_importance(result, focus.features[0], focus.features[1], focus.relation)


NARRATORS = {
    "predict_risk": predict_risk,
    "explain_prediction": explain_prediction,
    "what_if": what_if,
    "check_drift": check_drift,
    "list_runs": list_runs,
    "compare_runs": compare_runs,
    "model_info": model_info,
}
