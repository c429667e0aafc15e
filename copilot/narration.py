"""Deterministic narration of tool results: every number shown comes from the result.

(The PydanticAI narrator with verified claims builds on these; they are its fallback.)
"""

from __future__ import annotations

import json
from typing import Any

from copilot import cohort_narration
from copilot.facts import Focus
from tools.drift import shown_p_value

FILLED_IN = frozenset({"missing_imputed", "zero_read_as_missing"})
QUALITY_SHOWN = 4  # data-quality findings told in words; the table and report hold the rest


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


def _name(item: dict[str, Any]) -> str:
    return str(item.get("display_name") or item["feature"])


def caveats(warnings: list[dict[str, Any]]) -> list[str]:
    """Every input warning, grouped: the inputs filled in by name, each value outside the
    training range with its range."""
    missing = [_name(w) for w in warnings if w["code"] == "missing_imputed"]
    zeros = [_name(w) for w in warnings if w["code"] == "zero_read_as_missing"]
    outside = [
        str(w["message"]).removesuffix("; low confidence")
        for w in warnings
        if w["code"] == "outside_training_range"
    ]
    grouped = [f"missing, filled in by the model: {', '.join(missing)}"] if missing else []
    if zeros:
        grouped.append(
            f"recorded as 0, which is impossible, so filled in by the model: {', '.join(zeros)}"
        )
    return grouped + outside


def _warnings(result: dict[str, Any]) -> str:
    shown = caveats(result.get("warnings") or [])
    return " Caveats: " + "; ".join(shown) + "." if shown else ""


def insufficient(result: dict[str, Any]) -> bool:
    """Whether a result is about a patient with too little recorded for a risk."""
    return bool((result.get("information") or {}).get("confidence") == "insufficient")


def not_enough_information(result: dict[str, Any]) -> str:
    """The refusal: how much is recorded, how much is needed, and what is missing."""
    known = result["information"]
    return (
        f"Not enough information for a risk: only {known['recorded']} of {known['total']} "
        f"inputs are recorded, and at least {known['needed']} are needed; the model would "
        f"have to fill in the rest. Missing: {', '.join(known['filled_in'])}. Give what is "
        "known of them and ask again."
    )


def _low_confidence(result: dict[str, Any]) -> str:
    known = result.get("information") or {}
    if known.get("confidence") != "low":
        return ""
    reasons = []
    if known["missing"]:
        reasons.append(
            f"{known['missing']} of {known['total']} inputs were missing and filled in by the model"
        )
    if any(w["code"] == "outside_training_range" for w in result.get("warnings") or []):
        reasons.append("some inputs are outside the training range")
    return " Low confidence: " + " and ".join(reasons) + "."


def _model(result: dict[str, Any]) -> str:
    model = result["model"]
    return f"{model['name']} version {model['version']}"


def predict_risk(result: dict[str, Any]) -> str:
    if insufficient(result) or result["probability"] is None:
        return not_enough_information(result)
    verdict = "above" if result["label"] else "below"
    outcome = result.get("outcome") or str(result["label_name"]).removeprefix("no ")
    return (
        f"Predicted risk of {outcome}: "
        f"{_pct(result['probability'])} ({verdict} the decision threshold of "
        f"{_pct(result['threshold'])}), from {_model(result)}.{_low_confidence(result)} "
        f"The model shows association, not causation.{_warnings(result)}"
    )


def _filled_in(result: dict[str, Any]) -> set[str]:
    return {w["feature"] for w in result["warnings"] if w["code"] in FILLED_IN}


def _driver_effects(drivers: list[dict[str, Any]]) -> str:
    return "; ".join(f"{d['display_name']} {_effect(d)}" for d in drivers)


def explain_prediction(result: dict[str, Any]) -> str:
    """The risk, the largest drivers among the patient's own values, and apart from them
    the inputs the model filled in, with how many there were."""
    if insufficient(result):
        return not_enough_information(result)
    filled = _filled_in(result)
    own = [d for d in result["drivers"] if d["feature"] not in filled]
    parts = [f"{_stated(d)} {_effect(d)}" for d in own[:3]]
    text = (
        f"Risk {_pct(result['probability'])} against a baseline of "
        f"{_pct(result['base_probability'])}. "
        + ("Largest drivers among the patient's own values: " if filled else "Largest drivers: ")
        + "; ".join(parts)
        + "."
    )
    imputed = [d for d in result["drivers"] if d["feature"] in filled]
    if imputed:
        total = sum(d["contribution"] for d in imputed)
        together = "raise" if total > 1e-9 else "lower" if total < -1e-9 else "do not change"
        text += (
            f" {len(imputed)} of {len(result['drivers'])} inputs were missing and filled in "
            f"by the model, so these effects rest on the values it filled in: "
            f"{_driver_effects(imputed)}"
            + (f"; together they {together} the risk." if len(imputed) > 1 else ".")
        )
    outside = ", ".join(_outside(result))
    return (
        text
        + f" From {_model(result)}; association, not causation."
        + (f" Outside the training range (low confidence): {outside}." if outside else "")
    )


def _changed_value(value: Any, unit: str | None) -> str:
    if value is None:
        return "missing (filled in by the model)"
    return shown_value({"value": value, "unit": unit})


def what_if(result: dict[str, Any]) -> str:
    """How the risk moves, each changed value with its unit, and that the model shows an
    association: changing a value in the model is not treating the patient."""
    if insufficient(result):
        return not_enough_information(result)
    changes = ", ".join(
        f"{c['display_name']} {_changed_value(c['before'], c['unit'])}"
        f" -> {_changed_value(c['after'], c['unit'])}"
        for c in result["changes"]
    )
    direction = "rises" if result["delta"] > 0 else "falls" if result["delta"] < 0 else "stays"
    return (
        f"With {changes}, the risk {direction} from {_pct(result['probability_before'])} "
        f"to {_pct(result['probability_after'])} ({result['delta']:+.1%} points), "
        f"from {_model(result)}.{_low_confidence(result)} The model shows association, not "
        "causation: it does not say that changing this in the patient would change their "
        "risk."
    )


def check_drift(result: dict[str, Any]) -> str:
    where = result["current"].get("site") or result["current"].get("since") or "the batch"
    if result["drift_detected"]:
        drifted = ", ".join(
            f"{f['display_name']} (adjusted p {shown_p_value(f['p_value_adjusted'])})"
            for f in result["drifted"][:5]
        )
        head = (
            f"Drift detected for {where}: {result['features_drifted']} of "
            f"{result['features_tested']} tested features, e.g. {drifted}."
        )
    else:
        head = f"No drift detected for {where} after Benjamini-Hochberg correction."
    findings = result["data_quality"]
    quality = "; ".join(f"{_name(f)}: {f['detail']}" for f in findings[:QUALITY_SHOWN])
    more = len(findings) > QUALITY_SHOWN
    return (
        head
        + (f" Data quality: {quality}." if quality else "")
        + (" The other data-quality findings are in the table and the report." if more else "")
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


def _evaluation_set(found: dict[str, Any]) -> str:
    """`184 rows (Cleveland 61, Hungary 58, ...)`, as `EvaluationSet.describe` says it."""
    where = ", ".join(f"{site} {count}" for site, count in found["sites"].items())
    return f"{found['rows']} rows" + (f" ({where})" if where else "")


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
    shared = result.get("evaluation_set")
    where = (
        f"holdout metrics on the same evaluation set, {_evaluation_set(shared)}, which "
        "neither run trained on; cv_ metrics on each run's own training rows"
        if shared
        else "they were not measured on the same rows, so their holdout metrics are left "
        "out; cv_ metrics are on each run's own training rows"
    )
    return f"Runs compared ({where}):\n" + "\n".join(lines)


def model_info(result: dict[str, Any]) -> str:
    auc = result["metrics"].get("holdout_roc_auc")
    return (
        f"Serving {result['name']} version {result['version']} (@{result['alias']}), a "
        f"{result['kind'].replace('_', ' ')} on {result['dataset']} with threshold "
        f"{result['threshold']:.3f}"
        + (f" and holdout ROC AUC {auc:.3f}" if auc else "")
        + f"; its inputs: {', '.join(f['name'] for f in result['features'])}."
    )


def preview(action: dict[str, Any]) -> str:
    """What the registry said of a proposal when it was made ("" when nothing)."""
    found = action.get("preview")
    if not found:
        return ""
    if found["will_fail"]:
        return f"It will be refused as things stand: {found['note']}."
    return f"As things stand: {found['note']}."


def action_proposed(action: dict[str, Any]) -> str:
    ahead = preview(action)
    return (
        f"Proposed: {action['summary']}."
        + (f" {ahead}" if ahead else "")
        + " Nothing has changed yet: a person with the approver role must approve action "
        f"{action['id']} (expires {action['expires_at']})."
    )


def action_edited(action: dict[str, Any], *, four_eyes: bool) -> str:
    """An edit: the new arguments, what they will change, and that nothing ran: the edited
    action waits for its own approval (under four eyes, by someone who did not request or
    edit it)."""
    ahead = preview(action)
    who = (
        f" by someone other than {action['requested_by']} and {action['edited_by']} "
        "(four-eyes rule)"
        if four_eyes
        else ""
    )
    return (
        f"{action['edited_by']} edited action {action['id']}: it would now "
        f"{action['summary']}. Arguments now {json.dumps(action['arguments'], sort_keys=True)}"
        f" (proposed as {json.dumps(action['original_arguments'], sort_keys=True)})."
        + (f" {ahead}" if ahead else "")
        + f" Nothing has run: the edited action waits for approval{who}, a separate step "
        f"(expires {action['expires_at']})."
    )


_METRIC_NAMES = {
    "holdout_roc_auc": "ROC AUC",
    "holdout_pr_auc": "PR AUC",
    "holdout_brier": "Brier score (lower is better)",
    "holdout_calibration_error": "calibration error (lower is better)",
    "holdout_sensitivity": "sensitivity",
    "holdout_specificity": "specificity",
}


def trained(result: dict[str, Any]) -> str:
    """A retrain's new version and its holdout metrics against the champion's."""
    head = (
        f"New version {result['version']} (@{result['alias']}): {result['best_kind']} on "
        f"{' + '.join(result['sites'])}, run {result['run_id'][:8]}."
    )
    compared = result.get("against_champion") or []
    champion = result.get("champion_version")
    found = result.get("evaluation_set")
    where = _evaluation_set(found) if found else "its holdout"
    if champion is None or not compared:
        metrics = result.get("metrics") or {}
        shown = ", ".join(
            f"{label} {metrics[key]:.3f}" for key, label in _METRIC_NAMES.items() if key in metrics
        )
        return head + (
            f" On the evaluation set, {where}: {shown}; there is no champion to compare with."
            if shown
            else ""
        )
    lines = [
        f"{_METRIC_NAMES.get(m['metric'], m['metric'])} {m['new']:.3f} against "
        f"{m['champion']:.3f} ({m['change']:+.3f})"
        for m in compared
        if m["champion"] is not None and m["change"] is not None
    ]
    if not lines:
        return (
            head + f" The champion, version {champion}, was measured on other rows, so the "
            "two cannot be compared. The champion is unchanged."
        )
    return (
        head + f" Against the champion, version {champion}, on the same evaluation set, "
        f"{where}, which neither trained on: "
        + "; ".join(lines)
        + ". The champion is unchanged; promoting the challenger is a separate proposal."
    )


def promoted(result: dict[str, Any]) -> str:
    """A promotion's new champion, what it replaced, and the gate's checks."""
    replaced = result.get("previous_champion")
    serving = result.get("serving")
    checks = "; ".join(
        f"{c['name']} {'passed' if c['passed'] else 'failed'}: {c['detail']}"
        for c in result["checks"]
    )
    return (
        f"Version {result['champion']} is the @champion"
        + (f"; version {replaced} is kept as @previous-champion" if replaced else "")
        + (" (forced past a failed gate)" if result.get("forced") else "")
        + f". Gate: {checks}."
        + (f" The model service now scores with version {serving}." if serving else "")
    )


def _executed(action: dict[str, Any]) -> str:
    result = action.get("result") or {}
    done = f"Done: {action['summary']} (approved by {action['decided_by']})."
    if action["tool"] == "retrain_model" and "best_kind" in result:
        return f"{done} {trained(result)}"
    if action["tool"] == "promote_model" and "checks" in result:
        return f"{done} {promoted(result)}"
    details = ", ".join(
        f"{k} {v}" for k, v in result.items() if v is not None and not isinstance(v, (list, dict))
    )
    return f"{done} {details}."


def action_outcome(action: dict[str, Any]) -> str:
    status, result = action["status"], action.get("result") or {}
    if status == "executed":
        return _executed(action)
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


def _outside(result: dict[str, Any]) -> list[str]:
    names = {d["feature"]: d["display_name"] for d in result["drivers"]}
    return [
        names[w["feature"]] for w in result["warnings"] if w["code"] == "outside_training_range"
    ]


def _explanation_caveats(result: dict[str, Any]) -> str:
    """The model, association not causation, and every filled-in or out-of-range input."""
    names = {d["feature"]: d["display_name"] for d in result["drivers"]}
    filled = [names[d["feature"]] for d in result["drivers"] if d["feature"] in _filled_in(result)]
    outside = _outside(result)
    return (
        f" From {_model(result)}; association, not causation."
        + (
            f" {len(filled)} of {len(result['drivers'])} inputs were missing and filled in by "
            f"the model: {', '.join(filled)}."
            if filled
            else ""
        )
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
    if tool != "explain_prediction" or insufficient(result):
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


HISTORY_SERIES_TOLD = 8  # series told in words; the chart and the result hold the rest


def _history_value(value: float, metric: str) -> str:
    return (
        str(int(value))
        if metric in {"features_drifted", "data_quality_findings"}
        else f"{value:.3g}"
    )


def _history_line(series: dict[str, Any]) -> str:
    name = series["metric_name"]
    if series["model_version"] is not None:
        name += f" of version {series['model_version']}"
    if series["last"] is None:
        notes = [p["note"] for p in series["points"] if p["note"]]
        return f"{name}: not measured ({notes[-1] if notes else 'no value'})"
    first = _history_value(series["first"], series["metric"])
    last = _history_value(series["last"], series["metric"])
    measured = [p for p in series["points"] if p["value"] is not None]
    if len(measured) == 1:
        told = f"{name}: {last} (one check)"
    else:
        change = series["change"]
        moved = "unchanged" if change == 0 else ("up" if change > 0 else "down")
        told = f"{name}: {first} at the first check, {last} at the latest ({moved}"
        told += f", {change:+.3g})" if change else ")"
    newest = measured[-1]
    if newest["estimated"]:
        told += (
            f", estimated from the model's probabilities ({newest['labels']} observed "
            "outcomes so far)"
        )
    elif series["metric"] in {"auc", "sensitivity", "specificity", "accuracy"}:
        told += f", observed on {newest['labels']} outcomes"
    return told


def monitoring_history(result: dict[str, Any]) -> str:
    where = "all sites together" if result["site"] == "all" else result["site"]
    if not result["series"]:
        return (
            f"No monitor checks are stored for {where} in that window. `copilot monitor` "
            "stores one every COPILOT_MONITOR_INTERVAL_SECONDS (`copilot monitor --once` runs "
            "one now)."
        )
    told = result["series"][:HISTORY_SERIES_TOLD]
    lines = "; ".join(_history_line(series) for series in told)
    more = len(result["series"]) > HISTORY_SERIES_TOLD
    return f"Monitoring history for {where} over {result['checks']} stored checks: {lines}." + (
        " The other series are in the chart and the result." if more else ""
    )


NARRATORS = {
    "predict_risk": predict_risk,
    "explain_prediction": explain_prediction,
    "what_if": what_if,
    "check_drift": check_drift,
    "list_runs": list_runs,
    "compare_runs": compare_runs,
    "model_info": model_info,
    "monitoring_history": monitoring_history,
    **cohort_narration.NARRATORS,
}
