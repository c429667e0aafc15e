"""What the graph remembers after each tool: typed facts from tool calls, never from text."""

from graphs.graph import _remember


def test_a_prediction_starts_a_new_patient() -> None:
    before = {"patient": {"age": 50}, "prediction_id": "x", "last_changes": {"chol": 190}}
    after = _remember("predict_risk", {"patient": {"age": 60}}, {"prediction_id": "y"}, before)
    assert after == {"patient": {"age": 60}, "prediction_id": "y", "last_tool": "predict_risk"}


def test_a_what_if_on_the_last_prediction_keeps_its_changes() -> None:
    before = {"patient": {"age": 50}, "prediction_id": "x"}
    after = _remember("what_if", {"prediction_id": "x", "changes": {"chol": 190}}, {}, before)
    assert after == {**before, "last_tool": "what_if", "last_changes": {"chol": 190}}


def test_a_what_if_on_another_patient_keeps_no_changes() -> None:
    before = {"patient": {"age": 50}, "prediction_id": "x"}
    arguments = {"patient": {"age": 70, "sex": "Male"}, "changes": {"chol": 190}}
    after = _remember("what_if", arguments, {}, before)
    assert after == {**before, "last_tool": "what_if"}


def test_any_other_tool_is_the_last_tool_with_its_arguments() -> None:
    before = {"patient": {"age": 50}, "prediction_id": "x"}
    after = _remember("list_runs", {"limit": 5}, {}, before)
    assert after == {**before, "last_tool": "list_runs", "last_arguments": {"limit": 5}}


def test_a_patient_tool_forgets_the_last_arguments() -> None:
    before = {"prediction_id": "x", "last_tool": "check_drift", "last_arguments": {"site": "A"}}
    after = _remember("explain_prediction", {"prediction_id": "x"}, {}, before)
    assert after == {"prediction_id": "x", "last_tool": "explain_prediction"}


def test_a_prediction_keeps_the_last_question_about_a_patient() -> None:
    before = {"patient": {"age": 50}, "prediction_id": "x", "last_tool": "explain_prediction"}
    after = _remember("predict_risk", {"patient": {"age": 60}}, {"prediction_id": "y"}, before)
    assert after["last_question"] == {"tool": "explain_prediction"}
    what_if = {**before, "last_tool": "what_if", "last_changes": {"chol": 180}}
    after = _remember("predict_risk", {"patient": {"age": 60}}, {"prediction_id": "y"}, what_if)
    assert after["last_question"] == {"tool": "what_if", "changes": {"chol": 180}}
