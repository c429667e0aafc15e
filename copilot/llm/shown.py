"""The tool schemas a model is shown: no example values, because small models copy them
(an example patient in a description was explained as if the user had given it).

`shown(input_model, name, description)` is a subclass of the tool's input model (so its
instances validate and dump the same) whose JSON schema has every `examples` dropped and
every "e.g. ..." / "for example ..." clause cut from its descriptions; a `site` or `sites`
field lists the dataset's sites instead: the allowed values, not an example. Validated
with the turn's `RouteRequest` as context, a follow-up's reference to the last prediction
is resolved first (`grounding.resolve_reference`), a new patient's values are the ones
its message states (`grounding.as_stated`), patient values are read in the card's
spelling ("Asymptomatic" is "asymptomatic") and in its units (a number copied from "BP 17.3
kPa" becomes 130 mmHg: `units.in_card_units`), and an optional field written empty (null, [],
{}: constrained JSON's way of not giving it) is left out, as are run ids the user never
typed (`grounding.without_invented_run_ids`), model kinds a retrain's request never
named (`grounding.without_unnamed_kinds`), and times and history sites nobody said
(`grounding.without_invented_times`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from copilot.facts import RouteRequest
from copilot.llm.grounding import (
    as_stated,
    canonical_values,
    resolve_reference,
    without_invented_run_ids,
    without_invented_times,
    without_unnamed_kinds,
)
from copilot.llm.offline.patients import fasting_glucose_above
from copilot.llm.offline.text import normalise
from copilot.units import in_card_units
from model_service.cards import DatasetCard

_EXAMPLE = re.compile(r",?\s*\(?\b(?:e\.g\.|for example|such as)[^;]*", re.I)


def plain(description: str) -> str:
    """A description without its example clauses."""
    cut = _EXAMPLE.sub("", description).strip()
    return cut if not cut or cut.endswith((".", ")")) else cut + "."


def _walk(node: Any, sites: tuple[str, ...]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, sites)
        return
    if not isinstance(node, dict):
        return
    node.pop("examples", None)
    node.pop("example", None)
    if isinstance(node.get("description"), str):
        node["description"] = plain(node["description"])
        if not node["description"]:
            del node["description"]
    for key, value in (node.get("properties") or {}).items():
        if key in {"site", "sites"} and sites and isinstance(value, dict):
            known = "One of the dataset's sites: " + ", ".join(sites) + "."
            value["description"] = f"{plain(value.get('description', ''))} {known}".strip()
    for key, value in node.items():
        if key != "description":
            _walk(value, sites)


def _empty(value: Any) -> bool:
    """null, [] or {}: what constrained JSON writes for an optional field nobody gave."""
    return value is None or (isinstance(value, (list, dict)) and not value)


def _in_card_units(text: str, data: dict[str, Any], card: DatasetCard) -> dict[str, Any]:
    """A call's patient, changes and cohort conditions with the numbers the model copied in
    the user's units ("cholesterol above 7 mmol/l") in the card's (`units.in_card_units`)."""
    converted = dict(data)
    glucose = fasting_glucose_above(normalise(text, card)) if "fbs" in card.feature_names else None
    for field in ("patient", "changes"):
        if isinstance(data.get(field), dict):
            converted[field] = in_card_units(text, data[field], card)
            if glucose is not None and (field == "patient" or "fbs" in data[field]):
                converted[field]["fbs"] = glucose  # "fasting glucose 88 mg/dl": not above 120
    where = data.get("where")
    if isinstance(where, list):
        converted["where"] = [_condition_in_card_units(text, c, card) for c in where]
    return converted


def _condition_in_card_units(text: str, condition: Any, card: DatasetCard) -> Any:
    if not isinstance(condition, dict) or not isinstance(condition.get("feature"), str):
        return condition
    name, value = condition["feature"], condition.get("value")
    if isinstance(value, list):
        values = [in_card_units(text, {name: v}, card)[name] for v in value]
        return {**condition, "value": values}
    return {**condition, "value": in_card_units(text, {name: value}, card)[name]}


def _reader(tool: str, card: DatasetCard | None) -> Any:
    """A before-validator: optional fields written empty left out, patient values in the
    card's spelling, then (with the turn's request as context) a follow-up's reference
    resolved."""

    def read(cls: type[BaseModel], data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        optional = {n for n, f in cls.model_fields.items() if not f.is_required()}
        data = {k: v for k, v in data.items() if not (k in optional and _empty(v))}
        if card is not None:
            data = {
                k: canonical_values(v, card)
                if k in {"patient", "changes"} and isinstance(v, dict)
                else v
                for k, v in data.items()
            }
        if isinstance(info.context, RouteRequest) and card is not None:
            data = _in_card_units(info.context.text, data, card)
            data = as_stated(tool, data, info.context, card)
        if isinstance(info.context, RouteRequest):
            data = resolve_reference(tool, data, info.context)
            if tool == "compare_runs":
                data = without_invented_run_ids(data, info.context)
            if tool == "retrain_model" and card is not None:
                data = without_unnamed_kinds(data, info.context, card)
            if tool in {"check_drift", "monitoring_history"} and card is not None:
                data = without_invented_times(tool, data, info.context, card)
        return data

    return model_validator(mode="before")(classmethod(read))  # type: ignore[arg-type]


def shown(
    input_model: type[BaseModel], name: str, description: str, card: DatasetCard | None = None
) -> type[BaseModel]:
    """`input_model` as a model sees it: named after its tool, described, no examples."""
    sites = tuple(card.sites()) if card is not None and card.site_column else ()

    def scrub(schema: dict[str, Any]) -> None:
        _walk(schema, sites)

    config = ConfigDict(**{**input_model.model_config, "json_schema_extra": scrub})
    namespace = {"__doc__": description, "model_config": config, "_read": _reader(name, card)}
    made: type[BaseModel] = type(name, (input_model,), namespace)
    return made
