"""Every suite asks for arguments the tools can take: each asserted argument is a field of
the tool's input model and validates there, patients and what-if changes validate against
the dataset card, and cohort conditions, sites, features and row ids are the card's, spelled
as the card spells them (the graders compare values exactly). A case that fails here could
never pass, whatever the provider."""

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from copilot.actions import STATE_CHANGING
from evals.cases import Expect
from evals.datasets import DATASET, SUITES, load_suite
from model_service.cards import DatasetCard, get_card
from model_service.cohorts import CohortError, Condition, check
from model_service.schemas import patient_model
from tools.catalog import READ_ONLY

# Values for required fields a case leaves unasserted, so that the asserted ones can be
# validated by the whole input model (its model-level rules included).
FILLERS: dict[str, Any] = {
    "reason": "a reason the request gave",
    "sites": ["Cleveland"],
    "feature": "age",
    "row_ids": [1],
}
CHANGES_FILLERS: dict[str, Any] = {
    "what_if": {"age": 50},
    "cohort_what_if": [{"feature": "age", "op": "add", "value": 1}],
}
# Models that take exactly one of these: the first stands in when a case asserts none.
ONE_OF: dict[str, tuple[Any, tuple[str, ...]]] = {
    "prediction_id": ("a-prediction-id", ("prediction_id", "patient", "row_id")),
    "site": ("Cleveland", ("site", "since", "patients")),
}


def _stand_in(value: Any) -> Any:
    """The expected value with the graders' placeholders replaced by values of the right
    shape: a version number for $version:<alias>, the name itself for $prediction and
    $run:<alias> (ids: distinct placeholders stay distinct)."""
    if isinstance(value, dict):
        return {k: _stand_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v) for v in value]
    if isinstance(value, str) and value.startswith("$"):
        return "1" if value.startswith("$version:") else value.removeprefix("$")
    return value


def _input_model(tool: str) -> type[BaseModel]:
    if tool in READ_ONLY:
        return READ_ONLY[tool].input_model
    return STATE_CHANGING[tool].input_model


def _completed(tool: str, model: type[BaseModel], arguments: dict[str, Any]) -> dict[str, Any]:
    filled = _stand_in(arguments)
    for name, (stand_in, group) in ONE_OF.items():
        if name in model.model_fields and not any(n in filled for n in group):
            filled[name] = stand_in
    for name, field in model.model_fields.items():
        if field.is_required() and name not in filled:
            filled[name] = CHANGES_FILLERS[tool] if name == "changes" else FILLERS[name]
    return filled


@cache
def _data_facts(dataset: str) -> tuple[tuple[str, ...], int]:
    """The card's sites and its number of rows (row ids run from 1)."""
    card = get_card(dataset)
    return tuple(card.sites()), len(card.load_raw())


def _patient_problems(card: DatasetCard, values: dict[str, Any], what: str) -> list[str]:
    """A patient (or a what-if's changes) against the card, required features aside: the
    case may assert a patient the copilot has to ask more about."""
    stand_ins = {"age": 50, "sex": "Male", "cp": "asymptomatic"}
    required = {f.name for f in card.features if f.required}
    whole = {n: stand_ins[n] for n in required if n not in values} | values
    try:
        checked = TypeAdapter(patient_model(card)).validate_python(whole)
    except ValidationError as error:
        return [f"{what}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    return [
        f"{what}: {name} {value!r} is spelled {checked[name]!r} on the card"
        for name, value in values.items()
        if isinstance(value, str) and checked[name] != value
    ]


def _condition_problems(card: DatasetCard, sites: tuple[str, ...], where: list[Any]) -> list[str]:
    given = [Condition.model_validate(c) for c in where]
    try:
        checked = check(card, given, sites)
    except CohortError as error:
        return [f"where: {error.message}"]
    return [
        f"where: {g.value!r} is spelled {c.value!r} on the card"
        for g, c in zip(given, checked, strict=True)
        if isinstance(g.value, str | list) and g.value != c.value
    ]


def _cohort_change_problems(card: DatasetCard, changes: list[dict[str, Any]]) -> list[str]:
    problems = []
    for change in changes:
        name, op, value = change["feature"], change.get("op", "add"), change["value"]
        if name not in card.feature_names:
            problems.append(f"changes: {name!r} is not a feature of {card.name}")
            continue
        feature = card.feature(name)
        if feature.kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"changes: {name} takes a number, not {value!r}")
        elif op != "set":
            problems.append(f"changes: {name} is {feature.kind}: op 'set', not {op!r}")
        elif feature.kind == "boolean" and not isinstance(value, bool):
            problems.append(f"changes: {name} takes true or false, not {value!r}")
        elif feature.kind == "categorical" and value not in (feature.categories or ()):
            problems.append(f"changes: {name} takes one of {feature.categories}, not {value!r}")
    return problems


def _card_problems(card: DatasetCard, arguments: dict[str, Any]) -> list[str]:
    sites, rows = _data_facts(card.name)
    problems = []
    if isinstance(arguments.get("patient"), dict):
        problems += _patient_problems(card, arguments["patient"], "patient")
    changes = arguments.get("changes")
    if isinstance(changes, dict):
        problems += _patient_problems(card, changes, "changes")
    elif isinstance(changes, list):
        problems += _cohort_change_problems(card, changes)
    if "where" in arguments:
        problems += _condition_problems(card, sites, arguments["where"])
    named_sites = arguments.get("sites", []) + ([arguments["site"]] if "site" in arguments else [])
    problems += [f"site {s!r} is not one of {sites}" for s in named_sites if s not in sites]
    row_ids = arguments.get("row_ids", []) + (
        [arguments["row_id"]] if "row_id" in arguments else []
    )
    problems += [f"row {r} is not between 1 and {rows}" for r in row_ids if not 1 <= r <= rows]
    if "feature" in arguments:
        words = {w for f in card.features for w in (f.name, f.display_name, *f.synonyms)}
        if arguments["feature"].strip().lower() not in {w.lower() for w in words}:
            problems.append(f"feature {arguments['feature']!r} is no word of the card")
    return problems


def problems_with(tool: str, arguments: dict[str, Any], card: DatasetCard) -> list[str]:
    """What is wrong with a case's expected arguments for `tool` (nothing: they can be met)."""
    model = _input_model(tool)
    unknown = sorted(set(arguments) - set(model.model_fields))
    if unknown:
        return [f"{tool} has no argument {', '.join(unknown)}"]
    try:
        model.model_validate(_completed(tool, model, arguments))
    except ValidationError as error:
        return [f"{tool}: {e['loc']}: {e['msg']}" for e in error.errors()]
    return _card_problems(card, _stand_in(arguments))


def _expected_arguments(name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, tool, arguments) of every expectation in the suite that names arguments; a
    step expecting an error may name arguments the tool refuses, on purpose."""
    for case in load_suite(name).cases:
        expect = case.metadata or Expect()
        for index, step in enumerate(expect.steps):
            if step is not None and step.arguments and step.error is None:
                assert isinstance(step.tool, str)
                yield f"{case.name} step {index + 1}", step.tool, step.arguments
        for index, action in enumerate(expect.actions or []):
            if action.arguments:
                yield f"{case.name} action {index + 1}", action.tool, action.arguments


@pytest.mark.parametrize("suite", SUITES)
def test_every_expected_argument_is_one_the_tools_accept(suite: str) -> None:
    card = get_card(DATASET)
    found = [
        f"{where}: {problem}"
        for where, tool, arguments in _expected_arguments(suite)
        for problem in problems_with(tool, arguments, card)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("predict_risk", {"patient": {"age": 50, "sex": "female"}}, "spelled 'Female'"),
        ("predict_risk", {"patient": {"age": 50, "bmi": 31}}, "bmi"),
        ("predict_risk", {"patient": {"age": 50, "chol": 900}}, "chol"),
        ("what_if", {"changes": {"cp": "angina"}}, "cp"),
        ("what_if", {"change": {"chol": 200}}, "no argument change"),
        ("check_drift", {"site": "Berlin"}, "'Berlin' is not one of"),
        ("retrain_model", {"sites": ["Hungary", "Hungary"]}, "once"),
        ("promote_model", {"version": "@challenger"}, "not a version number"),
        ("monitoring_history", {"metric": "f1"}, "metric"),
        ("describe_data", {"where": [{"feature": "bmi", "value": 30}]}, "'bmi' is not a feature"),
        ("describe_data", {"where": [{"feature": "site", "value": "hungary"}]}, "spelled"),
        ("model_mistakes", {"where": [{"feature": "sex", "op": ">", "value": "Male"}]}, "op"),
        ("cohort_what_if", {"changes": [{"feature": "cp", "value": "typical angina"}]}, "set"),
        ("show_rows", {"row_ids": [0]}, "row 0"),
        ("counterfactual", {"row_id": 100000}, "row 100000"),
        ("define_feature", {"feature": "smoking"}, "no word of the card"),
        ("feature_importance", {"top": 0}, "top"),
    ],
)
def test_arguments_no_tool_could_take_are_found(tool: str, arguments: dict, problem: str) -> None:
    found = problems_with(tool, arguments, get_card(DATASET))
    assert any(problem in p for p in found), found


def test_arguments_the_tools_take_pass() -> None:
    card = get_card(DATASET)
    good = [
        ("what_if", {"prediction_id": "$prediction", "changes": {"chol": 200, "fbs": False}}),
        ("explain_prediction", {"patient": {"age": 63, "sex": "Male", "cp": "typical angina"}}),
        ("check_drift", {"site": "VA Long Beach"}),
        ("retrain_model", {"sites": ["Cleveland", "Hungary"], "model_kinds": ["xgboost"]}),
        ("promote_model", {"version": "$version:challenger", "force": True}),
        ("model_mistakes", {"kind": "false_negative", "limit": 5, "where": []}),
        ("cohort_what_if", {"changes": [{"feature": "exang", "op": "set", "value": False}]}),
        ("describe_data", {"where": [{"feature": "age", "op": ">", "value": 60}]}),
        ("define_feature", {"feature": "cholesterol"}),
        ("model_info", {}),
    ]
    assert [(tool, problems_with(tool, arguments, card)) for tool, arguments in good] == [
        (tool, []) for tool, _ in good
    ]
