"""The offline provider on the categories of round T, each by the rule that reads it (none
of these sentences is in an eval suite): hospitals and groups the data does not have, a
retrain asked to change the inputs, a what-if on a group whose change is no input, the
drift statistics' names, "run" as the verb of a check, MLflow and runs trained lately,
what changed between runs, hyphenated phrases, models moved to production or swapped back,
measures creeping up, the model's health over a period, follow-ups over time on the last
answer, "compare those" after a list, "what can be done about it?", and an explanation
asked for a patient not yet described."""

from typing import Any

import pytest

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

SCORED = Memory(
    prediction_id="p-1",
    patient={"age": 61, "sex": "Male", "trestbps": 160, "chol": 300},
    last_tool="predict_risk",
)


def _call(text: str, card: DatasetCard, memory: Memory | None = None) -> tuple[Any, Any]:
    intent = understand(text, memory or Memory(), card)
    return intent.tool, intent.arguments


# --- what the data does not have ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("how has the AUC moved at Boston General over the last month?", "boston"),
        ("sensitivity trend at Toronto General please", "toronto"),
        ("drift history from Glasgow Royal Infirmary", "glasgow"),
    ],
)
def test_a_hospital_by_its_name_is_passed_on_for_the_monitor_to_refuse(
    text: str, place: str, card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "monitoring_history"
    assert arguments["site"] == place


@pytest.mark.parametrize(
    "text", ["retrain on data from Springfield Memorial", "list the runs from St Luke's General"]
)
def test_a_hospital_by_its_name_is_asked_back_for_runs_and_retrains(
    text: str, card: DatasetCard
) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "I don't know a site called" in (intent.reply or "")


@pytest.mark.parametrize(
    "text",
    [
        "how has the AUC moved for smokers over the last month?",
        "show me the feature importance for black patients",
        "how well does the model do on uninsured patients?",
        "is the sensitivity lower in hispanic women?",
    ],
)
def test_a_group_by_a_trait_the_data_lacks_is_asked_back(text: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "not one of the model's inputs" in (intent.reply or "")


def test_a_trait_word_before_no_people_picks_out_no_group(card: DatasetCard) -> None:
    assert _call("which features carry the most weight for women", card)[0] is not None


@pytest.mark.parametrize(
    "text",
    [
        "what if all the diabetics at VA took metformin?",
        "what if every woman over 60 took aspirin daily?",
        "suppose all the Swiss patients took up yoga",
    ],
)
def test_a_what_if_on_a_group_with_no_input_changed_is_asked_back(
    text: str, card: DatasetCard
) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "model's inputs" in (intent.reply or "")


@pytest.mark.parametrize(
    "text",
    [
        "retrain the model with BMI and smoking status added as features",
        "refit it adding LDL as an input",
        "retrain without the cholesterol feature",
    ],
)
def test_a_retrain_that_changes_the_inputs_is_asked_back(text: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "can't add or drop inputs" in (intent.reply or "")


@pytest.mark.parametrize(
    ("text", "sites"),
    [("retrain on Hungary", ["Hungary"]), ("retrain including Switzerland", None)],
)
def test_a_retrain_on_sites_is_still_proposed(text: str, sites: Any, card: DatasetCard) -> None:
    tool, arguments = _call(text, card)
    assert tool == "retrain_model"
    assert sites is None or arguments["sites"] == sites


# --- drift, runs, the lifecycle -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "site"),
    [
        ("population stability check for Cleveland", "Cleveland"),
        ("run the KS tests on Cleveland against the reference data", "Cleveland"),
        ("what's the PSI at Hungary?", "Hungary"),
        ("run a Kolmogorov-Smirnov on the Swiss data", "Switzerland"),
    ],
)
def test_the_drift_statistics_names_check_drift(text: str, site: str, card: DatasetCard) -> None:
    assert _call(text, card) == ("check_drift", {"site": site})


@pytest.mark.parametrize(
    "text",
    ["any new models trained this week?", "pull up the mlflow history", "what's in mlflow?"],
)
def test_runs_trained_lately_and_mlflow_list_the_runs(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == "list_runs"


@pytest.mark.parametrize(
    ("text", "last"),
    [
        ("what's changed between the previous run and this one?", 2),
        ("what changed between the last 3 runs?", 3),
        ("diff the two newest training runs", 2),
        ("head-to-head on the last four runs please, brier and AUC", 4),
        ("put the last two runs side-by-side", 2),
    ],
)
def test_what_changed_between_runs_compares_them(text: str, last: int, card: DatasetCard) -> None:
    assert _call(text, card) == ("compare_runs", {"last": last})


@pytest.mark.parametrize(
    "text",
    ["bump the challenger to prod", "move version 2 into production", "greenlight the challenger"],
)
def test_a_model_moved_to_production_is_promoted(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == "promote_model"


@pytest.mark.parametrize(
    "text", ["swap the old model back in", "switch the previous champion back please"]
)
def test_a_model_swapped_back_is_a_rollback(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == "rollback_model"


# --- the monitor's history ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "has Hungary's drift been creeping up over the last month?",
            {"site": "Hungary", "metric": "share_drifted"},
        ),
        ("is the AUC at Cleveland edging down?", {"site": "Cleveland", "metric": "auc"}),
        ("is sensitivity sagging at VA Long Beach?", {"site": "VA Long Beach"}),
    ],
)
def test_a_measure_creeping_is_its_history(
    text: str, expected: dict[str, str], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "monitoring_history"
    assert expected.items() <= arguments.items()


@pytest.mark.parametrize(
    "text",
    [
        "how's the model been holding up over the last two weeks?",
        "how has the champion been doing over the past month?",
    ],
)
def test_the_models_health_over_a_period_is_every_series(text: str, card: DatasetCard) -> None:
    tool, arguments = _call(text, card)
    assert tool == "monitoring_history"
    assert "metric" not in arguments


@pytest.mark.parametrize(
    "text", ["and how has that looked over time?", "how has it moved over the past few weeks?"]
)
def test_over_time_after_a_drift_check_is_that_sites_drift(text: str, card: DatasetCard) -> None:
    after = Memory(last_tool="check_drift", last_arguments={"site": "VA Long Beach"})
    assert _call(text, card, after) == (
        "monitoring_history",
        {"site": "VA Long Beach", "metric": "share_drifted"},
    )
    assert _call(text, card, Memory())[0] != "monitoring_history"


# --- follow-ups -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "last"),
    [("compare those", 3), ("now compare them side by side", 3), ("compare the top two", 2)],
)
def test_compare_those_after_a_list_compares_as_many(
    text: str, last: int, card: DatasetCard
) -> None:
    listed = Memory(last_tool="list_runs", last_arguments={"limit": 3})
    assert _call(text, card, listed) == ("compare_runs", {"last": last})


@pytest.mark.parametrize(
    "text", ["ok, what can be done about it?", "what could he do to lower it?"]
)
def test_what_can_be_done_after_a_prediction_is_a_counterfactual(
    text: str, card: DatasetCard
) -> None:
    assert _call(text, card, SCORED) == ("counterfactual", {"prediction_id": "p-1"})


def test_what_can_you_do_is_still_about_the_copilot(card: DatasetCard) -> None:
    reply = understand("what can you do?", Memory(), card).reply or ""
    assert reply.startswith("I can predict")


@pytest.mark.parametrize(
    "text",
    ["why is the risk so high for my patient?", "how come my patient came out so high?"],
)
def test_an_explanation_for_a_patient_not_yet_described_waits_for_them(
    text: str, card: DatasetCard
) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert intent.pending_tool == "explain_prediction"


def test_a_bare_why_with_nothing_before_waits_for_no_explanation(card: DatasetCard) -> None:
    assert understand("why?", Memory(), card).pending_tool is None


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        (
            "I might be wrong, but I think the VA data looks off - can you confirm?",
            "check_drift",
            {"site": "VA Long Beach"},
        ),
        (
            "correct me if I'm wrong, but has anything changed at Cleveland?",
            "check_drift",
            {"site": "Cleveland"},
        ),
        (
            "Sorry to bother you, could you list the last 3 runs? No worries if not.",
            "list_runs",
            {"limit": 3},
        ),
    ],
)
def test_courtesies_and_hedges_are_not_the_request(
    text: str, tool: str, arguments: dict[str, Any], card: DatasetCard
) -> None:
    assert _call(text, card) == (tool, arguments)


def test_a_correction_still_starts_with_sorry(card: DatasetCard) -> None:
    assert _call("sorry, I meant chol 200", card, SCORED) == (
        "what_if",
        {"prediction_id": "p-1", "changes": {"chol": 200}},
    )


@pytest.mark.parametrize(
    "text",
    [
        "the ward says scores look off lately, can you check if the incoming data has shifted?",
        "could you find out if the recent patients have drifted?",
    ],
)
def test_check_if_is_whether_not_a_condition(text: str, card: DatasetCard) -> None:
    tool, arguments = _call(text, card)
    assert tool == "check_drift"
    assert "since" in arguments


def test_retrain_if_it_drifted_is_still_a_condition(card: DatasetCard) -> None:
    assert _call("check drift at VA and retrain if it drifted", card) == (
        "check_drift",
        {"site": "VA Long Beach"},
    )


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        ("has performance tanked at VA recently?", "auc"),
        ("has the sensitivity at Hungary plummeted?", "sensitivity"),
    ],
)
def test_a_measure_that_crashed_is_its_history(text: str, metric: str, card: DatasetCard) -> None:
    tool, arguments = _call(text, card)
    assert tool == "monitoring_history"
    assert arguments["metric"] == metric


@pytest.mark.parametrize("text", ["and for her?", "what about her?", "and her?"])
def test_her_after_a_mans_prediction_is_the_same_patient_as_a_woman(
    text: str, card: DatasetCard
) -> None:
    assert _call(text, card, SCORED) == (
        "what_if",
        {"prediction_id": "p-1", "changes": {"sex": "Female"}},
    )
    assert _call("and for him?", card, SCORED)[0] != "what_if"  # the same patient


@pytest.mark.parametrize(
    "text", ["what about cholesterol specifically?", "and his max heart rate?"]
)
def test_an_input_named_after_an_explanation_is_its_part_in_it(
    text: str, card: DatasetCard
) -> None:
    explained = Memory(prediction_id="p-1", patient=SCORED.patient, last_tool="explain_prediction")
    assert _call(text, card, explained) == ("explain_prediction", {"prediction_id": "p-1"})
    assert _call("and what if his chol were 200?", card, explained)[0] == "what_if"
