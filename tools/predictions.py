"""Tools about one patient: predict the risk, explain it, and ask what if."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from model_service.cards import DatasetCard
from tools.context import ToolContext
from tools.errors import InvalidToolInput
from tools.service import call

Patient = dict[str, float | int | str | bool | None]

# No example values: models copy them as if the user had given them.
_PATIENT_HELP = (
    "Feature values by the dataset card's names, only those the user gave; optional "
    "features may be left out."
)


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str | None


class InputWarning(BaseModel):
    feature: str
    display_name: str
    code: str
    message: str


FILLED_IN = frozenset({"missing_imputed", "zero_read_as_missing"})


class Information(BaseModel):
    """How much of the patient the model was given; it filled in the rest."""

    confidence: Literal["high", "low", "insufficient"] = Field(
        description="high: every input recorded and inside the training range; low: some "
        "filled in or outside it; insufficient: too few recorded for a risk."
    )
    recorded: int = Field(description="Inputs given.")
    missing: int = Field(description="Inputs the model filled in (missing, or an impossible 0).")
    total: int = Field(description="Inputs the model takes.")
    needed: int = Field(description="Inputs that must be recorded for a risk (the card's minimum).")
    filled_in: list[str] = Field(description="Display names of the inputs filled in.")


def _warnings(card: DatasetCard, answer: dict[str, Any]) -> list[InputWarning]:
    return [
        InputWarning(display_name=card.feature(w["feature"]).display_name, **w)
        for w in answer["warnings"]
    ]


def information(card: DatasetCard, warnings: list[InputWarning]) -> Information:
    """What the warnings say about how much of the patient was recorded."""
    filled = {w.feature for w in warnings if w.code in FILLED_IN}
    outside = any(w.code == "outside_training_range" for w in warnings)
    return Information(
        confidence=card.confidence(filled, outside),
        recorded=len(card.features) - len(filled),
        missing=len(filled),
        total=len(card.features),
        needed=card.needed_features,
        filled_in=[f.display_name for f in card.features if f.name in filled],
    )


class PredictRiskInput(BaseModel):
    """One patient to score."""

    patient: Patient = Field(description=_PATIENT_HELP)


class RiskPrediction(BaseModel):
    """The model's risk for one patient, or none when too little of the patient is known."""

    prediction_id: str = Field(description="Refer to this prediction later (explain, what if).")
    outcome: str
    probability: float | None = Field(
        description="Predicted probability of the outcome, 0 to 1; null when there is not "
        "enough information for a risk (see information)."
    )
    label: int | None = Field(description="1 when probability >= threshold.")
    label_name: str | None
    threshold: float
    model: ModelRef
    warnings: list[InputWarning] = Field(
        description="Missing, impossible or out-of-training-range inputs: trust the risk less."
    )
    information: Information


async def predict_risk(ctx: ToolContext, args: PredictRiskInput) -> RiskPrediction:
    """Predict the risk of the outcome (heart disease by default) for one patient.

    Use when someone describes a patient and asks for their risk. Values outside the
    training range are scored but flagged in `warnings`; impossible values are refused.
    With fewer inputs recorded than the dataset card's minimum, no risk is given.
    """
    answer = await call(ctx, "POST", "/v1/predict", args.patient)
    warnings = _warnings(ctx.card, answer)
    known = information(ctx.card, warnings)
    enough = known.confidence != "insufficient"
    return RiskPrediction(
        prediction_id=answer["prediction_id"],
        outcome=ctx.card.outcome,
        probability=answer["probability"] if enough else None,
        label=answer["label"] if enough else None,
        label_name=answer["label_name"] if enough else None,
        threshold=answer["threshold"],
        model=answer["model"],
        warnings=warnings,
        information=known,
    )


class _PatientOrPrediction(BaseModel):
    prediction_id: str | None = Field(
        default=None, description="An earlier prediction to reuse (from predict_risk)."
    )
    patient: Patient | None = Field(default=None, description=_PATIENT_HELP)

    @model_validator(mode="after")
    def _exactly_one(self) -> _PatientOrPrediction:
        if (self.prediction_id is None) == (self.patient is None):
            raise ValueError("give exactly one of prediction_id or patient")
        return self

    def request(self) -> dict[str, Any]:
        if self.prediction_id is not None:
            return {"prediction_id": self.prediction_id}
        return {"patient": self.patient}


class ExplainInput(_PatientOrPrediction):
    """The prediction (or patient) to explain."""


class Driver(BaseModel):
    """One feature's share in this patient's risk."""

    rank: int = Field(description="1 = the largest effect on this patient's risk.")
    feature: str
    display_name: str
    value: Any = Field(description="The patient's value (null when missing and imputed).")
    unit: str | None
    contribution: float = Field(description="SHAP value in log-odds; > 0 raises the risk.")
    direction: Literal["raises risk", "lowers risk", "no effect"]


class Explanation(BaseModel):
    """Why the model gave this risk: exact SHAP contributions in log-odds."""

    prediction_id: str | None
    probability: float
    log_odds: float = Field(description="base_value + the sum of all contributions.")
    base_value: float = Field(description="Log-odds of the average patient in training.")
    base_probability: float = Field(description="The base value as a probability.")
    drivers: list[Driver] = Field(description="Every feature, largest effect first.")
    model: ModelRef
    warnings: list[InputWarning]
    information: Information = Field(
        description="With too little recorded, the numbers show only what the model did "
        "with the values it filled in: no risk is given for the patient."
    )


def _direction(contribution: float) -> Literal["raises risk", "lowers risk", "no effect"]:
    if abs(contribution) < 1e-9:
        return "no effect"
    return "raises risk" if contribution > 0 else "lowers risk"


def _explanation(ctx: ToolContext, answer: dict[str, Any]) -> Explanation:
    drivers = []
    for rank, item in enumerate(answer["contributions"], start=1):
        feature = ctx.card.feature(item["feature"])
        drivers.append(
            Driver(
                rank=rank,
                feature=feature.name,
                display_name=feature.display_name,
                value=item["value"],
                unit=feature.unit,
                contribution=item["contribution"],
                direction=_direction(item["contribution"]),
            )
        )
    base = answer["base_value"]
    warnings = _warnings(ctx.card, answer)
    return Explanation(
        prediction_id=answer["prediction_id"],
        probability=answer["probability"],
        log_odds=answer["log_odds"],
        base_value=base,
        base_probability=1 / (1 + math.exp(-base)),
        drivers=drivers,
        model=answer["model"],
        warnings=warnings,
        information=information(ctx.card, warnings),
    )


async def explain_prediction(ctx: ToolContext, args: ExplainInput) -> Explanation:
    """Explain a prediction: which features raise or lower this patient's risk, and by how
    much (exact SHAP contributions in log-odds, largest first).

    Use for "why?" after a prediction, or to explain a described patient directly.
    """
    return _explanation(ctx, await call(ctx, "POST", "/v1/explain", args.request()))


class WhatIfInput(_PatientOrPrediction):
    """A patient (or an earlier prediction) and the feature values to change."""

    changes: Patient = Field(
        min_length=1,
        description="Feature values to change, by the dataset card's names.",
    )


class FeatureChange(BaseModel):
    feature: str
    display_name: str
    unit: str | None
    before: Any = Field(description="null when it was missing and the model filled it in.")
    after: Any
    contribution_before: float
    contribution_after: float


class WhatIfResult(BaseModel):
    """How the risk moves when some inputs change, and which changes move it."""

    probability_before: float
    probability_after: float
    delta: float = Field(description="probability_after - probability_before.")
    threshold: float
    label_before: int
    label_after: int
    changes: list[FeatureChange]
    other_features_shift: float = Field(
        description="Log-odds change in features that were not changed (interactions in "
        "tree models; 0 for a linear model)."
    )
    model: ModelRef
    information: Information = Field(
        description="Of the patient before or after the change, whichever has fewer inputs "
        "recorded; insufficient: no risk is given."
    )


async def what_if(ctx: ToolContext, args: WhatIfInput) -> WhatIfResult:
    """Re-score a patient with some feature values changed and say how the risk moves.

    Use for "what if his cholesterol were lower?" or "and for a woman?" after a prediction.
    """
    unknown = sorted(set(args.changes) - set(ctx.card.feature_names))
    if unknown:
        raise InvalidToolInput(
            [
                f'"{name}" is not a feature of {ctx.card.name}; features: '
                f"{', '.join(ctx.card.feature_names)}"
                for name in unknown
            ]
        )
    before = await call(ctx, "POST", "/v1/explain", args.request())
    patient = {c["feature"]: c["value"] for c in before["contributions"] if c["value"] is not None}
    changed = {**patient, **args.changes}
    after = await call(ctx, "POST", "/v1/explain", {"patient": changed})
    if after["model"]["version"] != before["model"]["version"]:
        # the champion moved since that prediction: compare like with like
        before = await call(ctx, "POST", "/v1/explain", {"patient": patient})
    threshold = (await call(ctx, "GET", "/v1/model"))["threshold"]
    contributions_before = {c["feature"]: c["contribution"] for c in before["contributions"]}
    contributions_after = {c["feature"]: c["contribution"] for c in after["contributions"]}
    filled = {w["feature"] for w in before["warnings"] if w["code"] in FILLED_IN}
    changes = [
        FeatureChange(
            feature=name,
            display_name=ctx.card.feature(name).display_name,
            unit=ctx.card.feature(name).unit,
            before=None if name in filled else patient.get(name),
            after=value,
            contribution_before=contributions_before[name],
            contribution_after=contributions_after[name],
        )
        for name, value in args.changes.items()
    ]
    shift = sum(
        contributions_after[f] - contributions_before[f]
        for f in contributions_after
        if f not in args.changes
    )
    known = min(
        (information(ctx.card, _warnings(ctx.card, answer)) for answer in (before, after)),
        key=lambda found: found.recorded,
    )
    return WhatIfResult(
        probability_before=before["probability"],
        probability_after=after["probability"],
        delta=after["probability"] - before["probability"],
        threshold=threshold,
        label_before=int(before["probability"] >= threshold),
        label_after=int(after["probability"] >= threshold),
        changes=changes,
        other_features_shift=shift,
        model=after["model"],
        information=known,
    )
