"""The read-only tools by the names the LLM and the eval suites see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tools.cohorts import (
    CohortInput,
    CohortWhatIfInput,
    CounterfactualInput,
    DefineFeatureInput,
    DescribeDataInput,
    ImportanceInput,
    MistakesInput,
    ShowRowsInput,
    cohort_what_if,
    counterfactual,
    define_feature,
    describe_data,
    feature_importance,
    feature_interactions,
    model_mistakes,
    model_performance,
    show_rows,
)
from tools.context import ToolContext
from tools.drift import CheckDriftInput, check_drift
from tools.monitoring import MonitoringHistoryInput, monitoring_history
from tools.predictions import (
    ExplainInput,
    PredictRiskInput,
    WhatIfInput,
    explain_prediction,
    predict_risk,
    what_if,
)
from tools.runs import CompareRunsInput, ListRunsInput, compare_runs, list_runs, model_info


class NoArguments(BaseModel):
    """This tool takes no arguments."""


async def _model_info(ctx: ToolContext, _: Any) -> BaseModel:
    return await model_info(ctx)


@dataclass(frozen=True)
class ReadOnlyTool:
    name: str
    input_model: type[BaseModel]
    run: Callable[[ToolContext, Any], Awaitable[BaseModel]]
    description: str


def _tool(
    name: str,
    input_model: type[BaseModel],
    run: Callable[..., Awaitable[Any]],
    documented: Callable[..., Any] | None = None,
) -> ReadOnlyTool:
    return ReadOnlyTool(name, input_model, run, ((documented or run).__doc__ or "").strip())


READ_ONLY: dict[str, ReadOnlyTool] = {
    tool.name: tool
    for tool in (
        _tool("predict_risk", PredictRiskInput, predict_risk),
        _tool("explain_prediction", ExplainInput, explain_prediction),
        _tool("what_if", WhatIfInput, what_if),
        _tool("check_drift", CheckDriftInput, check_drift),
        _tool("list_runs", ListRunsInput, list_runs),
        _tool("compare_runs", CompareRunsInput, compare_runs),
        _tool("model_info", NoArguments, _model_info, model_info),
        _tool("monitoring_history", MonitoringHistoryInput, monitoring_history),
        _tool("describe_data", DescribeDataInput, describe_data),
        _tool("show_rows", ShowRowsInput, show_rows),
        _tool("define_feature", DefineFeatureInput, define_feature),
        _tool("model_performance", CohortInput, model_performance),
        _tool("model_mistakes", MistakesInput, model_mistakes),
        _tool("feature_importance", ImportanceInput, feature_importance),
        _tool("feature_interactions", ImportanceInput, feature_interactions),
        _tool("counterfactual", CounterfactualInput, counterfactual),
        _tool("cohort_what_if", CohortWhatIfInput, cohort_what_if),
    )
}
