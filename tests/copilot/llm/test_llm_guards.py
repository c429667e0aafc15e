"""The router's guards, as pure functions: protocol text, grounding in the conversation,
actionable feedback, ids, and what a model is shown."""

from __future__ import annotations

from typing import Any

import pytest

from copilot.facts import Memory, RouteRequest
from copilot.llm.feedback import feature_rule, id_problems, patient_problems
from copilot.llm.grounding import (
    canonical_values,
    named_features,
    resolve_reference,
    unmentioned,
)
from copilot.llm.protocol import looks_like_protocol, recover_tool_call
from copilot.llm.shown import plain
from model_service.cards import get_card

CARD = get_card("heart-disease")
PATIENT = {"age": 63, "sex": "Male", "cp": "asymptomatic", "trestbps": 145, "chol": 233}


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "list_runs", "arguments": {}}',
        "<tools>list_runs</tools>",
        "<function=list_runs></function>",
        "Sure.<|im_end|>",
        "<|im_start|>assistant",
        "Fix these values: patient: chol",
        "That looks like a tool call I could not read.",
        "<retry_feedback>x</retry_feedback>",
        'I will call {"name": "check_drift", "arguments": {"site": "Hungary"}}',
        "```json\n{}\n```",
    ],
)
def test_protocol_text_is_recognised(text: str) -> None:
    assert looks_like_protocol(text)


@pytest.mark.parametrize(
    "text",
    [
        "I can't delete patient records; I can predict, explain and check drift.",
        "Ages run from 0 to 120.",
        "The champion is version 2 (xgboost).",
    ],
)
def test_words_for_people_are_not_protocol(text: str) -> None:
    assert not looks_like_protocol(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<function=model_info></function>", ("model_info", {})),
        (
            "<function=list_runs>\n<parameter=limit>\n3\n</parameter>\n"
            "<parameter=site>\nHungary\n</parameter>\n</function>",
            ("list_runs", {"limit": 3, "site": "Hungary"}),
        ),
        ('{{"name": "list_runs", "arguments": {"limit": 2}}}', ("list_runs", {"limit": 2})),
        ("no call in here {not json}", None),
        (
            '<tools>\n  <function name="list_runs" arguments=\'{"limit": 2}\'/>\n</tools>',
            ("list_runs", {"limit": 2}),
        ),
        ('<tools>{"name": "model_info", "arguments": null}</tools>', ("model_info", {})),
        (
            '<tools>\n  <function name="list_runs">\n    <arguments>\n      {"limit": 2}\n'
            "    </arguments>\n  </function>\n</tools>",
            ("list_runs", {"limit": 2}),
        ),
    ],
)
def test_recovered_shapes(text: str, expected: tuple[str, dict[str, Any]] | None) -> None:
    assert recover_tool_call(text) == expected


def _request(text: str, memory: Memory | None = None) -> RouteRequest:
    return RouteRequest(text, memory or Memory())


def test_values_in_the_text_are_grounded_with_units_and_words() -> None:
    text = "63 yo man, asymptomatic chest pain, BP 145/90, cholesterol 6.03 mmol/l"
    assert unmentioned("predict_risk", {"patient": PATIENT}, _request(text), CARD) == []


def test_values_nobody_gave_are_named() -> None:
    arguments = {"patient": {**PATIENT, "thalch": 150, "exang": True}}
    missing = unmentioned("predict_risk", arguments, _request("63 yo man, BP 145, chol 233"), CARD)
    assert missing == ["patient.cp='asymptomatic'", "patient.thalch=150", "patient.exang=True"]


def test_the_remembered_patient_and_earlier_steps_count_as_the_conversation() -> None:
    remembered = Memory(patient=PATIENT, prediction_id="p1")
    assert (
        unmentioned("explain_prediction", {"patient": PATIENT}, _request("why?", remembered), CARD)
        == []
    )
    done = RouteRequest(
        "and explain it",
        done=[{"tool": "predict_risk", "arguments": {"patient": PATIENT}, "facts": {}}],
    )
    assert unmentioned("explain_prediction", {"patient": PATIENT}, done, CARD) == []


def test_changes_relative_to_the_remembered_patient() -> None:
    remembered = Memory(patient=PATIENT, prediction_id="p1")
    request = _request(
        "what if his cholesterol were 20% lower and he were 5 years younger", remembered
    )
    changes = {"changes": {"chol": 186.4, "age": 58}}
    assert unmentioned("what_if", changes, request, CARD) == []
    assert unmentioned("what_if", {"changes": {"chol": 150}}, request, CARD) == ["changes.chol=150"]


def test_other_tools_are_not_checked_for_patients_but_a_drift_site_must_be_said() -> None:
    patient = {"site": "Hungary", "patient": PATIENT}
    assert unmentioned("list_runs", patient, _request("runs?"), CARD) == []
    assert unmentioned("check_drift", {"site": "Hungary"}, _request("drift?"), CARD) == [
        "site='Hungary'"
    ]
    for said in ("drift at the hungarian site?", "drift at hungray?"):
        assert unmentioned("check_drift", {"site": "Hungary"}, _request(said), CARD) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"changes": {"sex": "Female"}}, {"changes": {"sex": "Female"}, "prediction_id": "p1"}),
        ({"prediction_id": "p1", "patient": PATIENT}, {"prediction_id": "p1"}),
        ({"prediction_id": "last_prediction_id"}, {"prediction_id": "p1"}),
        (
            {"patient": PATIENT, "changes": {"chol": 180}},
            {"changes": {"chol": 180}, "prediction_id": "p1"},
        ),
        (  # the last patient with other values and no changes: those are the changes
            {"prediction_id": "p1", "patient": {**PATIENT, "sex": "Female"}, "changes": {}},
            {"prediction_id": "p1", "changes": {"sex": "Female"}},
        ),
        (  # a different patient and changes: left for validation to refuse
            {"prediction_id": "p1", "patient": {"age": 40}, "changes": {"chol": 180}},
            {"prediction_id": "p1", "patient": {"age": 40}, "changes": {"chol": 180}},
        ),
    ],
)
def test_follow_up_references_are_resolved(data: dict[str, Any], expected: dict[str, Any]) -> None:
    request = _request("and for a woman?", Memory(patient=PATIENT, prediction_id="p1"))
    assert resolve_reference("what_if", data, request) == expected


def test_without_a_last_prediction_nothing_is_filled_in() -> None:
    data = {"changes": {"sex": "Female"}}
    assert resolve_reference("what_if", data, _request("and for a woman?")) == data
    copied = {"prediction_id": "last_prediction_id", "patient": PATIENT}
    assert resolve_reference("explain_prediction", copied, _request("x")) == {"patient": PATIENT}


def test_feedback_names_field_value_and_what_is_allowed() -> None:
    problems = patient_problems(CARD)
    found = problems({"patient": {**PATIENT, "thalch": "normal", "sex": "man"}}, {"thalch"})
    assert any('"thalch": "normal"' in p and "a number of bpm from 40 to 250" in p for p in found)
    assert any("sex (sex): one of 'Male', 'Female'" in p for p in found)
    assert all("leave it out if the user did not give it" in p for p in found)


def test_a_missing_feature_is_a_problem_only_when_the_user_gave_it() -> None:
    problems = patient_problems(CARD)
    assert problems({"patient": {"age": 63, "sex": "Male"}}, set()) == []
    assert any(
        '"cp" is required' in p for p in problems({"patient": {"age": 63, "sex": "Male"}}, {"cp"})
    )


def test_feature_rules() -> None:
    assert feature_rule(CARD.feature("ca")) == (
        "ca (vessels coloured by fluoroscopy): a whole number of vessels from 0 to 3"
    )
    assert feature_rule(CARD.feature("fbs")).endswith("true or false")


def test_run_ids_and_versions() -> None:
    good = "0123456789abcdef0123456789abcdef"
    assert id_problems("compare_runs", {"run_ids": [good, good.upper()]}) != []
    assert id_problems("compare_runs", {"run_ids": [good, "f" * 32]}) == []
    assert id_problems("promote_model", {"version": "3"}) == []
    for version in ("@challenger", "challenger", "v3", "0", "3.0"):
        assert id_problems("promote_model", {"version": version}) != []


def test_example_clauses_are_cut() -> None:
    assert plain("Training sites, e.g. ['Cleveland', 'Hungary'].") == "Training sites."
    assert plain("e.g. 'VA Long Beach', 'Hungary'.") == ""
    assert plain("Names, e.g. {'age': 63}; optional ones may be left out.") == (
        "Names; optional ones may be left out."
    )


def test_values_are_read_in_the_cards_spelling_when_unambiguous() -> None:
    said = {"cp": "non-anginal chest pain", "sex": "woman", "fbs": "true", "thal": "Fixed Defect"}
    assert canonical_values(said, CARD) == {
        "cp": "non-anginal",
        "sex": "Female",
        "fbs": True,
        "thal": "fixed defect",
    }
    unclear = {"cp": "angina", "slope": "upward", "thalch": "normal"}
    assert canonical_values(unclear, CARD) == unclear  # left for validation to refuse


def test_the_features_a_request_gives() -> None:
    text = "Score this patient: 54 yo female, atypical angina, resting BP 130, chol 250, max HR 160"
    assert named_features(_request(text), CARD) == [
        "age",
        "sex",
        "cp",
        "trestbps",
        "chol",
        "thalch",
    ]
    remembered = _request("and for a woman?", Memory(patient={"age": 63, "chol": 233}))
    assert named_features(remembered, CARD) == ["age", "sex", "chol"]
