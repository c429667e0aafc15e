"""Retry prompts a small model can act on: the field, the bad value, and what is allowed
(categories, range and unit from the dataset card; the shape of ids and versions)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from model_service.cards import DatasetCard, Feature
from model_service.schemas import describe_error, patient_model

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
VERSION = re.compile(r"^[1-9][0-9]{0,5}$")


def feature_rule(feature: Feature) -> str:
    """What a feature accepts, in words ("thalch (maximum heart rate): a number of bpm from
    40 to 250")."""
    label = f"{feature.name} ({feature.display_name})"
    if feature.kind == "boolean":
        return f"{label}: true or false"
    if feature.kind == "categorical":
        allowed = ", ".join(repr(c) for c in feature.categories or ())
        return f"{label}: one of {allowed}"
    kind = "a whole number" if feature.integer else "a number"
    unit = f" of {feature.unit}" if feature.unit else ""
    if feature.limits is None:
        return f"{label}: {kind}{unit}"
    return f"{label}: {kind}{unit} from {feature.limits.low:g} to {feature.limits.high:g}"


def _feature_in(detail: ErrorDetails, names: set[str]) -> str | None:
    return next((str(p) for p in reversed(detail["loc"]) if str(p) in names), None)


def patient_problems(card: DatasetCard) -> Callable[[Any, Collection[str]], list[str]]:
    """What is wrong with the patients in a tool call, by the card's rules (the model
    service's own validation), each with what the feature accepts. A missing feature is a
    problem only when the user named it (`said`): else the model could only guess it, and
    the model service tells the user what is missing."""
    patient = TypeAdapter(patient_model(card))
    names = [f.name for f in card.features]
    units = {f.name: f.unit for f in card.features}

    def problems(output: Any, said: Collection[str]) -> list[str]:
        found: list[str] = []
        for field, partial in (("patient", False), ("changes", True)):
            values = output.get(field) if isinstance(output, dict) else getattr(output, field, None)
            if not isinstance(values, dict):
                continue
            try:
                patient.validate_python(values)
            except ValidationError as error:
                for detail in error.errors():
                    missing = detail["type"] == "missing"
                    if missing and (partial or _feature_in(detail, set(said)) is None):
                        continue
                    message = describe_error(detail, names, units).message
                    name = _feature_in(detail, set(names))
                    rule = f" ({feature_rule(card.feature(name))})" if name else ""
                    hint = "; leave it out if the user did not give it" if name else ""
                    found.append(f"{field}: {message}{rule}{hint}")
        return found

    return problems


def id_problems(tool: str, arguments: dict[str, Any]) -> list[str]:
    """Run ids and versions that cannot be what the tool needs (an MLflow run id is 32 hex
    characters; a model version is a number)."""
    found: list[str] = []
    if tool == "compare_runs":
        for run_id in arguments.get("run_ids") or []:
            if not isinstance(run_id, str) or not RUN_ID.match(run_id):
                found.append(
                    f"run_ids: {run_id!r} is not an MLflow run id (32 hex characters, as "
                    "list_runs shows them); to compare the latest runs leave run_ids out "
                    "and give last"
                )
    if tool == "promote_model":
        version = arguments.get("version")
        if version is not None and not (isinstance(version, str) and VERSION.match(version)):
            found.append(
                f"version: {version!r} is not a version number (digits only); leave version "
                "out to promote the @challenger"
            )
    return found


def validation_feedback(error: ValidationError, card: DatasetCard | None) -> list[str]:
    """A tool input's validation errors as `field: value: rule` lines (card rules added)."""
    names = {f.name for f in card.features} if card else set()
    lines = []
    for detail in error.errors(include_url=False):
        path = ".".join(str(p) for p in detail["loc"]) or "arguments"
        value = detail.get("input")
        shown = "" if isinstance(value, dict) or detail["type"] == "missing" else f" {value!r}"
        line = f"{path}:{shown} {detail['msg']}"
        name = _feature_in(detail, names)
        if card is not None and name is not None:
            line += f" ({feature_rule(card.feature(name))})"
        lines.append(line)
    return lines


def model_fields(model: type[BaseModel]) -> str:
    """The argument names a tool takes, for a retry that names a field it does not know."""
    return ", ".join(model.model_fields) or "none"
