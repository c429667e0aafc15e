"""What the chat shows besides text: approval cards, the SHAP chart and tables.

Plain functions of the persisted action and of tool results (JSON dicts), so they are
tested without Chainlit; `copilot/chat/app.py` wraps their output in Chainlit messages. Every
value that came from a person or a tool is escaped before it enters Markdown.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

from copilot.actions import PendingAction
from copilot.narration import FILLED_IN, shown_value
from tools.drift import shown_p_value

CHART_FEATURES = 8  # drivers drawn one by one; the rest are summed into one bar
RAISES_COLOUR = "#c0392b"
LOWERS_COLOUR = "#2471a3"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")
_DIRECTIVE = re.compile(r":(?=[A-Za-z])")

STARTERS: list[tuple[str, str]] = [
    (
        "Risk for a patient",
        "What is the risk for a 63 year old man with asymptomatic chest pain, blood pressure "
        "145, cholesterol 233, max heart rate 150, ST depression 2.3 and no exercise angina?",
    ),
    ("Has VA Long Beach drifted?", "Has the data from VA Long Beach drifted?"),
    ("Compare the last two runs", "Compare the last two training runs"),
    ("Which model is live?", "Which model is live?"),
    ("Promote the challenger", "Promote the challenger"),
]


def escape(text: object) -> str:
    """`text` as literal Markdown (no links, emphasis or tables sneak in; bare URLs are
    broken with a zero-width space, since the chat would otherwise make them links)."""
    literal = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
    return chat_text(_AUTOLINK.sub(lambda m: m.group(0)[:-1] + "\u200b" + m.group(0)[-1], literal))


_AUTOLINK = re.compile(r"://|(?<![\w.])www\.", re.IGNORECASE)


def message_text(text: str) -> str:
    """An assistant message as literal Markdown with its line breaks: words that come from
    MLflow (run names, tags, reasons) or from people cannot become links, images or markup."""
    return "\n".join(escape(line) for line in text.split("\n"))


def chat_text(text: str) -> str:
    """An assistant message for the chat's Markdown, which reads ":name" (as in
    "ann via ui:ann") as a directive and drops it; times and URLs are unaffected."""
    return _DIRECTIVE.sub(r"\\:", text)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def json_block(value: Any) -> str:
    """`value` as a fenced JSON block that nothing inside can close."""
    # a fence longer than any backtick run inside keeps the block closed
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}json\n{text}\n{fence}"


_DECIDED = {
    "approved": "Approved by {by}, running",
    "executed": "Done, approved by {by}",
    "failed": "Failed after approval by {by}",
    "rejected": "Rejected by {by}",
    "expired": "Expired before anyone decided",
}


def decision_payload(action: PendingAction) -> dict[str, str]:
    """What a card's decision buttons carry: the action and the arguments hash the card
    shows, so that a decision on a card shown before an edit is refused."""
    return {"action_id": action.id, "arguments_sha256": action.arguments_sha256}


def approval_card(
    action: PendingAction, *, can_decide: bool, four_eyes: bool = False, now: datetime | None = None
) -> str:
    """The approval card of a persisted action: tool, arguments, what changes, expiry; an
    edited one says who edited it and that the new arguments wait for approval."""
    now = now or datetime.now(UTC)
    lines = [f"**Approval needed: `{action.tool}`** (action `{action.id}`)"]
    if action.status != "pending":
        decided = _DECIDED[action.status].format(by=escape(action.decided_by or "someone"))
        lines[0] = f"**{decided}: `{action.tool}`** (action `{action.id}`)"
    elif action.edited_by is not None:
        lines[0] = f"**Edited, approval needed: `{action.tool}`** (action `{action.id}`)"
        who = (
            f" by someone other than {escape(action.requested_by)} and "
            f"{escape(action.edited_by)} (four-eyes rule)"
            if four_eyes
            else ""
        )
        lines += [
            "",
            f"**Edited by** {escape(action.edited_by)}: nothing has run. Approve the new "
            f"arguments below to run them{who}.",
        ]
    lines += ["", f"**What will change:** {escape(action.summary)}"]
    if action.preview is not None and action.status == "pending":
        heading = "Will be refused as things stand" if action.preview.will_fail else "Now"
        lines += ["", f"**{heading}:** {escape(action.preview.note)}"]
    lines += [
        "",
        f"**Requested by** {escape(action.requested_by)} at {_when(action.created_at)}",
    ]
    if action.status == "pending":
        minutes = max(0, int((action.expires_at - now).total_seconds() // 60))
        lines.append(f"**Expires** {_when(action.expires_at)} (in {minutes} min)")
    if action.comment:
        lines.append(f"**Comment:** {escape(action.comment)}")
    lines += ["", "**Arguments**", json_block(action.arguments)]
    if action.original_arguments is not None:
        lines += ["**Proposed as**", json_block(action.original_arguments)]
    if action.status == "pending" and not can_decide:
        lines.append("Waiting for a person with the approver role to decide.")
    return "\n".join(lines)


def chart_bars(explanation: dict[str, Any]) -> list[tuple[str, float]]:
    """The chart's bars, largest effect first: "feature = the patient's value" and its SHAP
    contribution; features past CHART_FEATURES are summed into one bar."""
    drivers = explanation["drivers"]
    bars = [
        (f"{d['display_name']} = {shown_value(d)}", float(d["contribution"]))
        for d in drivers[:CHART_FEATURES]
    ]
    rest = drivers[CHART_FEATURES:]
    if rest:
        bars.append((f"{len(rest)} other features", sum(float(d["contribution"]) for d in rest)))
    return bars


def filled_in_bars(explanation: dict[str, Any]) -> list[bool]:
    """Per bar of `chart_bars`: whether it is an input the model filled in (missing, or an
    impossible 0) rather than one of the patient's own values."""
    filled = {w["feature"] for w in explanation["warnings"] if w["code"] in FILLED_IN}
    drivers = explanation["drivers"]
    shown = [d["feature"] in filled for d in drivers[:CHART_FEATURES]]
    return shown + ([False] if drivers[CHART_FEATURES:] else [])


def shap_chart_png(explanation: dict[str, Any]) -> bytes:
    """A bar chart of the SHAP contributions with the patient's values, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    bars = chart_bars(explanation)
    labels = [label for label, _ in bars]
    values = [value for _, value in bars]
    figure = Figure(figsize=(9, 0.42 * len(values) + 1.8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(values)))[::-1]  # the largest effect on top
    drawn = axes.barh(
        positions,
        values,
        color=[RAISES_COLOUR if v > 0 else LOWERS_COLOUR for v in values],
    )
    filled = filled_in_bars(explanation)
    for bar, imputed in zip(drawn, filled, strict=True):
        if imputed:  # the model's filled-in value, not the patient's: drawn apart
            bar.set_hatch("//")
            bar.set_alpha(0.45)
    axes.set_yticks(positions, labels)
    axes.axvline(0, color="#555555", linewidth=0.8)
    for position, value in zip(positions, values, strict=True):
        axes.annotate(
            f"{value:+.2f}",
            (value, position),
            xytext=(4 if value >= 0 else -4, 0),
            textcoords="offset points",
            ha="left" if value >= 0 else "right",
            va="center",
            fontsize=8,
        )
    axes.margins(x=0.2)
    axes.set_xlabel(
        "SHAP contribution (log-odds): red raises the risk, blue lowers it"
        + ("; hatched: missing, filled in by the model" if any(filled) else "")
    )
    model = explanation["model"]
    figure.suptitle(
        f"Risk {explanation['probability']:.0%} against a baseline of "
        f"{explanation['base_probability']:.0%} ({model['name']} v{model['version']})",
        fontsize=11,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def history_chart_png(history: dict[str, Any]) -> bytes | None:
    """The monitor's series over time as PNG: one panel per metric, one line per model
    version; estimates drawn hollow. None when no series has a measured value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.dates import date2num  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    metrics: dict[str, list[dict[str, Any]]] = {}
    for series in history["series"]:
        if series["last"] is not None:
            metrics.setdefault(series["metric"], []).append(series)
    if not metrics:
        return None
    figure = Figure(figsize=(9, 2.3 * len(metrics) + 0.8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    for index, group in enumerate(metrics.values()):
        axes = figure.add_subplot(len(metrics), 1, index + 1)
        for series in group:
            points = [p for p in series["points"] if p["value"] is not None]
            times = date2num(  # type: ignore[no-untyped-call]
                [datetime.fromisoformat(p["checked_at"]) for p in points]
            )
            values = [p["value"] for p in points]
            label = f"version {series['model_version']}" if series["model_version"] else None
            (line,) = axes.plot(times, values, marker="o", linewidth=1.5, label=label)
            hollow = [i for i, p in enumerate(points) if p["estimated"]]
            if hollow:
                axes.scatter(
                    times[hollow],
                    [values[i] for i in hollow],
                    s=60,
                    facecolors="white",
                    edgecolors=line.get_color(),
                    zorder=3,
                )
        axes.xaxis_date()
        axes.set_ylabel(group[0]["metric_name"], fontsize=9)
        axes.grid(alpha=0.3)
        if any(s["model_version"] for s in group):
            axes.legend(fontsize=8, loc="best")
    where = "all sites" if history["site"] == "all" else history["site"]
    figure.suptitle(
        f"Monitoring history: {where} (hollow points: estimated from probabilities)",
        fontsize=11,
    )
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _cell(value: object) -> str:
    return escape(value) if value is not None else ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def drift_table(summary: dict[str, Any]) -> str:
    """The drift result as a table of features (by their display names; p-values below
    0.001 as "< 0.001"), with the link to the Evidently report."""
    names: dict[str, str] = summary.get("display_names") or {}

    def named(feature: str) -> str:
        return _cell(names.get(feature, feature))

    rows = [
        [
            _cell(f["display_name"]),
            _cell(f["method"]),
            _cell(shown_p_value(f["p_value_adjusted"])),
            f"{f['effect_size']:.2f} ({_cell(f['effect_size_method'])})"
            if f["effect_size"] is not None
            else "",
            "**drifted**",
        ]
        for f in summary["drifted"]
    ]
    rows += [[named(name), "", "", "", "stable"] for name in summary["stable"]]
    rows += [[named(name), "", "", "", "too few values to test"] for name in summary["untested"]]
    parts = [
        _table(["Feature", "Test", "Adjusted p", "Effect size", "Result"], rows),
    ]
    if summary["data_quality"]:
        parts.append(
            _table(
                ["Feature", "Data-quality issue", "Rows"],
                [
                    [named(q["feature"]), _cell(q["detail"]), str(q["count"])]
                    for q in summary["data_quality"]
                ],
            )
        )
    parts.append(f"[Open the full Evidently drift report]({summary['report_url']})")
    return "\n\n".join(parts)


def _run_label(run: dict[str, Any]) -> str:
    label = f"{run['run_id'][:8]} ({' + '.join(run['sites'])})"
    if run.get("version"):
        label += f" v{run['version']}"
    if run.get("aliases"):
        label += " @" + ", @".join(run["aliases"])
    return _cell(label)


def run_comparison_table(comparison: dict[str, Any]) -> str:
    """Runs side by side: one row per metric, the better value in bold."""
    runs = comparison["runs"]
    header = ["Metric", *[_run_label(r) for r in runs]]
    two = len(runs) == 2
    if two:
        header.append("Change")
    rows = []
    for metric in comparison["metrics"]:
        row = [_cell(metric["metric"].replace("_", " "))]
        for run in runs:
            value = metric["values"].get(run["run_id"])
            shown = f"{value:.3f}" if value is not None else ""
            row.append(f"**{shown}**" if run["run_id"] == metric["best_run"] else shown)
        if two:
            row.append(f"{metric['delta']:+.3f}" if metric["delta"] is not None else "")
        rows.append(row)
    parts = [_table(header, rows)]
    # the training setup differs in a handful of params; hyperparameters of different model
    # kinds differ by the dozen and belong in MLflow, so they are only counted
    differing = comparison["params_differing"]
    setup = {k: v for k, v in differing.items() if not k.startswith("model.")}
    if setup:
        parts.append(
            _table(
                ["Parameter", *[_run_label(r) for r in runs]],
                [
                    [_cell(name), *[_cell(values.get(r["run_id"], "")) for r in runs]]
                    for name, values in setup.items()
                ],
            )
        )
    if len(differing) > len(setup):
        parts.append(
            f"{len(differing) - len(setup)} model hyperparameters differ too (see MLflow)."
        )
    return "\n\n".join(parts)


def runs_table(listing: dict[str, Any]) -> str:
    """Training runs, newest first."""
    return _table(
        ["Run", "Started", "Best model", "Holdout ROC AUC", "Reason"],
        [
            [
                _run_label(run),
                _cell(str(run["started_at"])[:16].replace("T", " ")),
                _cell(run["best_kind"]),
                f"{run['metrics']['holdout_roc_auc']:.3f}"
                if "holdout_roc_auc" in run["metrics"]
                else "",
                _cell(run["reason"]),
            ]
            for run in listing["runs"]
        ],
    )


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.{digits}f}"


def data_table(description: dict[str, Any]) -> str:
    """A cohort's statistics: one row per feature (numbers: mean, median, range; categories:
    their counts), with the share missing."""
    rows = []
    for stat in description["features"]:
        unit = f" {stat['unit']}" if stat.get("unit") else ""
        if stat.get("counts") is not None:
            summary = ", ".join(f"{level} {count}" for level, count in stat["counts"].items())
            numbers = ["", "", ""]
        elif stat.get("mean") is None:
            summary, numbers = "no values recorded", ["", "", ""]
        else:
            summary = ""
            numbers = [
                f"{stat['mean']:.1f}{unit}",
                _number(stat["median"]),
                f"{_number(stat['min'])} to {_number(stat['max'])}",
            ]
        rows.append(
            [
                _cell(stat["display_name"]),
                *[_cell(n) for n in numbers],
                _cell(summary),
                f"{stat['missing']} ({stat['missing_share']:.0%})" if stat["missing"] else "0",
            ]
        )
    return _table(["Feature", "Mean", "Median", "Range", "Categories", "Missing"], rows)


def rows_table(shown: dict[str, Any]) -> str:
    """Rows of the dataset by id: their values, outcome and the model's risk."""
    names = list(shown["rows"][0]["values"]) if shown["rows"] else []
    return _table(
        ["Row", "Site", *[_cell(n) for n in names], _cell(shown["outcome"]), "Risk", "Trained on"],
        [
            [
                str(row["row_id"]),
                _cell(row["site"]),
                *[_cell(_shown_value(row["values"].get(n))) for n in names],
                "yes" if row["outcome"] else "no",
                f"{row['probability']:.0%}",
                "yes" if row["trained_on"] else "no",
            ]
            for row in shown["rows"]
        ],
    )


def _shown_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _number(value)
    return None if value is None else str(value)


def mistakes_table(mistakes: dict[str, Any]) -> str:
    """The model's mistakes per site, then the most confident ones by row."""
    parts = []
    if mistakes["by_site"]:
        parts.append(
            _table(
                ["Site", "Held-out rows", "False negatives", "False positives"],
                [
                    [
                        _cell(s["site"]),
                        str(s["rows"]),
                        str(s["false_negatives"]),
                        str(s["false_positives"]),
                    ]
                    for s in mistakes["by_site"]
                ],
            )
        )
    listed = [("false negative", r) for r in mistakes["false_negative_rows"]] + [
        ("false positive", r) for r in mistakes["false_positive_rows"]
    ]
    if listed:
        parts.append(
            _table(
                ["Row", "Mistake", "Predicted risk", "Outcome"],
                [
                    [str(r["row_id"]), kind, f"{r['probability']:.0%}", str(r["outcome"])]
                    for kind, r in listed
                ],
            )
        )
    return "\n\n".join(parts)


def importance_table(result: dict[str, Any]) -> str:
    """Features by mean |SHAP| over the cohort, largest first."""
    return _table(
        ["Rank", "Feature", "Mean \\|SHAP\\| (log-odds)", "Usually"],
        [
            [
                str(f["rank"]),
                _cell(f["display_name"]),
                f"{f['mean_abs_shap']:.3f}",
                "raises the risk" if f["mean_shap"] > 0 else "lowers the risk",
            ]
            for f in result["importance"]
        ],
    )


TABLES = {
    "check_drift": drift_table,
    "compare_runs": run_comparison_table,
    "list_runs": runs_table,
    "describe_data": data_table,
    "show_rows": rows_table,
    "model_mistakes": mistakes_table,
    "feature_importance": importance_table,
}


def table_for(call: dict[str, Any]) -> str | None:
    """The table that goes with a tool call's result, if the tool has one."""
    render = TABLES.get(call["tool"])
    result = call.get("result")
    if render is None or not isinstance(result, dict):
        return None
    if call["tool"] == "list_runs" and not result["runs"]:
        return None
    if call["tool"] == "show_rows" and not result["rows"]:
        return None
    return render(result) or None
