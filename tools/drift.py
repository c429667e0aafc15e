"""The drift tool: has new data moved away from what the champion was trained on?"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from tools.context import ToolContext
from tools.predictions import Patient
from tools.service import call


class CheckDriftInput(BaseModel):
    """Exactly one of: a site's data, the predictions logged since a time, or a batch."""

    site: str | None = Field(default=None, description="e.g. 'VA Long Beach', 'Hungary'.")
    since: datetime | None = Field(
        default=None, description="Use the patients scored since this time (ISO 8601)."
    )
    patients: list[Patient] | None = Field(default=None, description="A batch of patients.")

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckDriftInput:
        given = [n for n in ("site", "since", "patients") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of site, since or patients (got {given or 'none'})")
        return self


P_VALUE_FLOOR = 0.001  # smaller p-values are written "< 0.001"


def shown_p_value(value: float) -> str:
    """A p-value as people read it: "< 0.001" below 0.001 (0 included), else two digits."""
    return f"< {P_VALUE_FLOOR}" if value < P_VALUE_FLOOR else f"{value:.2g}"


class DriftedFeature(BaseModel):
    feature: str
    display_name: str
    method: str = Field(description="ks (numbers) or chisquare (categories).")
    p_value_adjusted: float = Field(description="Benjamini-Hochberg adjusted p-value.")
    p_value_shown: str = Field(description='The adjusted p-value as shown ("< 0.001").')
    effect_size: float | None
    effect_size_method: str | None


class QualityFinding(BaseModel):
    feature: str
    display_name: str
    issue: str
    count: int
    detail: str


class DriftSummary(BaseModel):
    """Drift of the current data against the champion's training data."""

    drift_detected: bool = Field(description="True when any feature drifted (after correction).")
    share_drifted: float = Field(description="Drifted features / tested features.")
    features_drifted: int = Field(description="How many tested features drifted.")
    features_tested: int = Field(description="How many features had enough values to test.")
    drifted: list[DriftedFeature] = Field(description="Most significant first.")
    stable: list[str] = Field(description="Tested features that did not drift.")
    untested: list[str] = Field(description="Features with too few recorded values to test.")
    display_names: dict[str, str] = Field(description="Each feature's name as people read it.")
    data_quality: list[QualityFinding]
    reference: dict[str, Any]
    current: dict[str, Any]
    report_url: str = Field(description="The full Evidently report (HTML).")


async def check_drift(ctx: ToolContext, args: CheckDriftInput) -> DriftSummary:
    """Check whether a site's data, recent predictions or a batch have drifted from the data
    the champion model was trained on, and list data-quality problems (impossible zeros,
    jumps in missing values, unseen categories, values outside the training range).

    Use for "has the data from VA Long Beach drifted?" or "any drift since Monday?".
    """
    body = args.model_dump(mode="json", exclude_none=True)
    report = await call(ctx, "POST", "/v1/drift", body)
    tested = [f for f in report["features"] if f["tested"]]
    drifted = sorted((f for f in tested if f["drifted"]), key=lambda f: f["p_value_adjusted"])
    return DriftSummary(
        drift_detected=report["drift_detected"],
        share_drifted=report["share_drifted"],
        features_drifted=len(drifted),
        features_tested=len(tested),
        drifted=[
            DriftedFeature(
                feature=f["feature"],
                display_name=ctx.card.feature(f["feature"]).display_name,
                method=f["method"],
                p_value_adjusted=f["p_value_adjusted"],
                p_value_shown=shown_p_value(f["p_value_adjusted"]),
                effect_size=f["effect_size"],
                effect_size_method=f["effect_size_method"],
            )
            for f in drifted
        ],
        stable=[f["feature"] for f in tested if not f["drifted"]],
        untested=[f["feature"] for f in report["features"] if not f["tested"]],
        display_names={f.name: f.display_name for f in ctx.card.features},
        data_quality=[
            QualityFinding(display_name=ctx.card.feature(q["feature"]).display_name, **q)
            for q in report["data_quality"]
        ],
        reference=report["reference"],
        current=report["current"],
        report_url=str(ctx.model_service.base_url).rstrip("/") + report["report_url"],
    )
