"""Tools about groups of patients (cohorts of the dataset's own rows) and the data itself.

Every number is computed by the model service from the served model and the card's data;
these tools only shape its answers. A cohort is a list of conditions (`where`), each
(feature, op, value) over the card's features or `site`; an unknown feature or value, or
a cohort with no rows, is refused with a message naming field, value and rule.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from model_service.cohorts import MAX_CONDITIONS, Condition
from model_service.counterfactuals import MAX_CHANGES, Change
from model_service.data_summary import MAX_ROWS_SHOWN
from model_service.importance import MAX_TOP
from tools.context import ToolContext
from tools.errors import InvalidToolInput
from tools.predictions import ModelRef, Patient
from tools.service import call

_WHERE_HELP = (
    "Conditions every row must meet, each {feature, op, value}: feature is a card feature's "
    "name or 'site'; op one of ==, !=, <, <=, >, >=, in; value a number, a category as the "
    "card spells it, true/false, or a list for 'in'. Empty: all rows."
)


class CohortInput(BaseModel):
    """A cohort of the dataset's rows."""

    where: list[Condition] = Field(
        default_factory=list, max_length=MAX_CONDITIONS, description=_WHERE_HELP
    )


class CohortInfo(BaseModel):
    """Which rows were used: the conditions in words and how many rows matched."""

    conditions: list[Condition]
    description: str = Field(description="The conditions in words ('sex Female, age > 60').")
    matched: int = Field(description="Rows matching every condition.")
    total: int = Field(description="Rows the conditions were applied to.")
    held_out_rows: int | None = Field(
        default=None, description="Rows the served model never trained on (performance only)."
    )
    training_rows_excluded: int | None = None
    training_sites: list[str] | None = None


# --- data ------------------------------------------------------------------------------


class DescribeDataInput(CohortInput):
    features: list[str] = Field(
        default_factory=list, max_length=20, description="Card feature names; empty: all."
    )


class FeatureStatistics(BaseModel):
    feature: str
    display_name: str
    kind: str
    unit: str | None
    rows: int
    missing: int
    missing_share: float
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    counts: dict[str, int] | None = Field(default=None, description="Rows per category.")


class LabelBalance(BaseModel):
    outcome: str
    positive: int = Field(description="Rows with the outcome.")
    negative: int
    positive_share: float


class DataDescription(BaseModel):
    """A cohort of the dataset: its size, outcome balance, the model's risk and statistics."""

    cohort: CohortInfo
    label_balance: LabelBalance
    mean_risk: float = Field(description="The served model's mean predicted risk, 0 to 1.")
    predicted_positive: int = Field(description="Rows at or above the threshold.")
    threshold: float
    features: list[FeatureStatistics]
    model: ModelRef


async def describe_data(ctx: ToolContext, args: DescribeDataInput) -> DataDescription:
    """Describe the dataset or a cohort of it ("women over 60 at Hungary", "patients with
    exercise angina and oldpeak > 2"): how many rows match (of how many), how many have the
    outcome, the model's mean predicted risk, and per feature the mean, median and range,
    the count of each category and the share missing."""
    answer = await call(ctx, "POST", "/v1/cohort/summary", args.model_dump(mode="json"))
    return DataDescription.model_validate(answer)


class ShowRowsInput(BaseModel):
    row_ids: list[int] = Field(
        min_length=1, max_length=MAX_ROWS_SHOWN, description="Row ids (1-based, as in the dataset)."
    )


class DataRow(BaseModel):
    row_id: int
    site: str | None
    values: dict[str, Any]
    outcome: int = Field(description="1 when the outcome was observed.")
    probability: float
    predicted_label: int
    trained_on: bool = Field(description="Whether the served model trained on this row.")


class ShownRows(BaseModel):
    """Rows of the dataset by id, with the served model's risk."""

    rows: list[DataRow]
    threshold: float
    outcome: str
    model: ModelRef


async def show_rows(ctx: ToolContext, args: ShowRowsInput) -> ShownRows:
    """Show rows of the dataset by id ("show me row 12", "patients 3 and 7"): their values,
    the observed outcome, the model's risk and whether the model trained on them."""
    return ShownRows.model_validate(await call(ctx, "POST", "/v1/cohort/rows", args.model_dump()))


class DefineFeatureInput(BaseModel):
    feature: str = Field(description="A card feature's name or a word for it ('cholesterol').")


class Code(BaseModel):
    """A value and its number in the source data's coding."""

    code: int
    value: str


class FeatureDefinition(BaseModel):
    """What one feature means, from the dataset card."""

    feature: str
    display_name: str
    description: str
    kind: str
    unit: str | None
    allowed: list[str] | None
    codes: list[Code] | None = Field(
        default=None, description="The values' numbers in the source data's coding (UCI)."
    )
    limits: dict[str, float] | None = Field(description="Physiological limits (refused outside).")
    actionable: dict[str, float] | None = Field(
        description="The plausible range a counterfactual may move it within; null: never changed."
    )
    dataset: str


async def define_feature(ctx: ToolContext, args: DefineFeatureInput) -> FeatureDefinition:
    """What a feature means ("what is oldpeak?", "what does thal mean?"), from the dataset
    card: its description, unit, allowed values and limits."""
    wanted = args.feature.strip().lower()
    for feature in ctx.card.features:
        words = {feature.name.lower(), feature.display_name.lower(), *feature.synonyms}
        if wanted in words:
            return FeatureDefinition(
                feature=feature.name,
                display_name=feature.display_name,
                description=feature.description,
                kind=feature.kind,
                unit=feature.unit,
                allowed=list(feature.categories) if feature.categories else None,
                codes=[Code(code=c, value=v) for c, v in sorted(feature.codes.items())] or None,
                limits=feature.limits.model_dump() if feature.limits else None,
                actionable=feature.actionable.model_dump() if feature.actionable else None,
                dataset=ctx.card.name,
            )
    raise InvalidToolInput(
        [
            f'"feature": {args.feature!r} is not a feature of {ctx.card.name}; known: '
            + ", ".join(ctx.card.feature_names)
        ]
    )


# --- the model on a cohort ---------------------------------------------------------------


class Rate(BaseModel):
    value: float | None = Field(description="The proportion; null without rows to judge.")
    count: int
    of: int
    ci_low: float | None = Field(description="95% Wilson interval.")
    ci_high: float | None


class Auc(BaseModel):
    value: float | None
    ci_low: float | None = Field(description="95% bootstrap interval (fixed seed).")
    ci_high: float | None
    method: str


class CalibrationBin(BaseModel):
    low: float
    high: float
    rows: int
    mean_predicted: float
    observed_rate: float


class Performance(BaseModel):
    """How well the served model did on the cohort's rows it never trained on."""

    cohort: CohortInfo
    rows: int
    positives: int
    negatives: int
    threshold: float
    confidence_level: float = Field(description="Of every interval here (0.95).")
    roc_auc: Auc
    sensitivity: Rate
    specificity: Rate
    accuracy: Rate
    false_negatives: int
    false_positives: int
    brier: float | None
    calibration_error: float | None = Field(description="Expected calibration error, 10 bins.")
    mean_predicted: float | None
    observed_rate: float | None
    calibration: list[CalibrationBin]
    model: ModelRef


async def model_performance(ctx: ToolContext, args: CohortInput) -> Performance:
    """How accurate the served model is, overall or on a cohort ("how accurate is the model
    on women?"): ROC AUC, sensitivity, specificity and accuracy at its threshold, and
    calibration, each with 95% confidence intervals, on held-out rows with labels (rows the
    model never trained on)."""
    answer = await call(ctx, "POST", "/v1/cohort/performance", args.model_dump(mode="json"))
    return Performance.model_validate(answer)


class MistakesInput(CohortInput):
    kind: Literal["both", "false_negative", "false_positive"] = "both"
    limit: int = Field(default=10, ge=1, le=MAX_ROWS_SHOWN, description="Rows listed per kind.")


class MistakenRow(BaseModel):
    row_id: int
    probability: float
    outcome: int


class SiteMistakes(BaseModel):
    site: str
    rows: int
    false_negatives: int
    false_positives: int


class Mistakes(BaseModel):
    """The served model's mistakes on the cohort's held-out rows."""

    cohort: CohortInfo
    rows: int
    threshold: float
    false_negatives: int = Field(description="Had the outcome, predicted below the threshold.")
    false_positives: int = Field(description="Did not, predicted at or above it.")
    error_rate: float
    by_site: list[SiteMistakes]
    false_negative_rows: list[MistakenRow] = Field(description="Lowest predicted risk first.")
    false_positive_rows: list[MistakenRow] = Field(description="Highest predicted risk first.")
    model: ModelRef


async def model_mistakes(ctx: ToolContext, args: MistakesInput) -> Mistakes:
    """Where the model makes mistakes, overall or on a cohort: false negatives and false
    positives on held-out rows, per site, and the most confident ones by row id."""
    answer = await call(ctx, "POST", "/v1/cohort/mistakes", args.model_dump(mode="json"))
    return Mistakes.model_validate(answer)


class ImportanceInput(CohortInput):
    top: int = Field(default=5, ge=1, le=MAX_TOP, description="How many to list.")


class FeatureImportance(BaseModel):
    rank: int
    feature: str
    display_name: str
    mean_abs_shap: float = Field(description="Mean |SHAP| over the cohort, log-odds.")
    mean_shap: float = Field(description="Mean signed SHAP: its usual direction.")


class Importance(BaseModel):
    """Which features the model leans on most across a cohort."""

    cohort: CohortInfo
    scale: str
    kind: str
    importance: list[FeatureImportance]
    model: ModelRef


async def feature_importance(ctx: ToolContext, args: ImportanceInput) -> Importance:
    """The most important features for the model overall or on a cohort (mean |SHAP| over
    its rows, exact, in log-odds): "most important features", "top 3 features for women"."""
    body = args.model_dump(mode="json") | {"interactions": False}
    return Importance.model_validate(await call(ctx, "POST", "/v1/cohort/importance", body))


class Interaction(BaseModel):
    rank: int
    features: list[str]
    display_names: list[str]
    mean_abs_interaction: float = Field(
        description="Mean |SHAP interaction| of the pair, log-odds."
    )


class Interactions(BaseModel):
    """Which pairs of features act together most in the model over a cohort."""

    cohort: CohortInfo
    scale: str
    kind: str
    interactions: list[Interaction]
    model: ModelRef


async def feature_interactions(ctx: ToolContext, args: ImportanceInput) -> Interactions:
    """The strongest feature interactions over a cohort (SHAP interaction values; exactly
    zero for a logistic regression, which adds its features' effects)."""
    body = args.model_dump(mode="json") | {"interactions": True}
    answer = await call(ctx, "POST", "/v1/cohort/importance", body)
    return Interactions.model_validate(answer)


class CohortWhatIfInput(CohortInput):
    changes: list[Change] = Field(
        min_length=1,
        max_length=MAX_CHANGES,
        description="Each {feature, op, value}: op 'add' (negative lowers) for numbers, or "
        "'set' to a value.",
    )


class AppliedChange(BaseModel):
    feature: str
    display_name: str
    unit: str | None
    op: str
    value: float | bool | str
    rows_changed: int


class CohortWhatIf(BaseModel):
    """A cohort re-scored with some values changed."""

    cohort: CohortInfo
    changes: list[AppliedChange]
    rows: int
    rows_changed: int = Field(description="Rows where a value changed (missing values stay).")
    mean_risk_before: float
    mean_risk_after: float
    mean_change: float
    predicted_positive_before: int
    predicted_positive_after: int
    flipped_to_positive: int
    flipped_to_negative: int
    threshold: float
    model: ModelRef


async def cohort_what_if(ctx: ToolContext, args: CohortWhatIfInput) -> CohortWhatIf:
    """What if everyone in a cohort had some values changed ("what if everyone's
    cholesterol were 20 lower?"): the mean change in risk and how many labels flip."""
    answer = await call(ctx, "POST", "/v1/cohort/what-if", args.model_dump(mode="json"))
    return CohortWhatIf.model_validate(answer)


class CounterfactualInput(BaseModel):
    """Exactly one of: an earlier prediction, a patient, or a dataset row."""

    prediction_id: str | None = Field(default=None, description="An earlier prediction's id.")
    patient: Patient | None = Field(default=None, description="Feature values by card name.")
    row_id: int | None = Field(default=None, description="A dataset row id.")


class CounterfactualChange(BaseModel):
    feature: str
    display_name: str
    unit: str | None
    from_value: float | int | bool
    to_value: float | int | bool


class SearchedFeature(BaseModel):
    feature: str
    display_name: str
    unit: str | None
    low: float | None
    high: float | None


class Counterfactual(BaseModel):
    """The smallest change to actionable features that brings the risk under the threshold."""

    found: bool = Field(description="False when no change within the plausible ranges does.")
    original_probability: float
    probability: float | None = Field(description="The risk after the changes.")
    threshold: float
    changes: list[CounterfactualChange]
    size: float | None = Field(description="Sum of |change| / plausible range width.")
    searched: list[SearchedFeature] = Field(description="The actionable features searched.")
    combinations: int
    prediction_id: str | None = None
    row_id: int | None = None
    model: ModelRef


async def counterfactual(ctx: ToolContext, args: CounterfactualInput) -> Counterfactual:
    """What would bring a patient's risk under the threshold: the smallest change to the
    actionable features (within the card's plausible ranges; never age or sex), with the
    new probability. Give the last prediction's id, a patient, or a dataset row."""
    body = args.model_dump(mode="json", exclude_none=True)
    return Counterfactual.model_validate(await call(ctx, "POST", "/v1/counterfactual", body))
