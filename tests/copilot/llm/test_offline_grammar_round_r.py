"""The offline provider on the categories of round R, each by the rule that reads it (none
of these sentences is in an eval suite): groups picked out or changed by inputs the model
does not have, runs from a place that is none of the sites, "just N" runs, changes to a
group said with verbs before the features, data-quality checks that name a statistic, and
words that are never typos (months, risk factors)."""

from typing import Any

import pytest

from copilot.facts import Memory, RouteRequest
from copilot.llm.offline.intents import understand
from copilot.llm.offline.text import normalise
from copilot.llm.providers import offline_model
from copilot.llm.router import build_router, route
from model_service.cards import DatasetCard


def _call(text: str, card: DatasetCard) -> tuple[str | None, dict[str, Any]]:
    intent = understand(text, Memory(), card)
    return intent.tool, intent.arguments


@pytest.mark.parametrize(
    "text",
    [
        "what share of the smokers does the model get right?",
        "false negatives among heavy drinkers",
        "drivers of risk for people with high LDL at Cleveland",
        "how many of the obese women have exercise angina?",
        "top features for people with a high BMI",
        "what's the AUC for patients whose BMI is above 35?",
    ],
)
def test_a_group_picked_out_by_a_missing_input_is_asked_back(text: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "not one of the model's inputs" in (intent.reply or "")


@pytest.mark.parametrize(
    "text",
    [
        "suppose every man over 50 quit smoking",
        "what if the Swiss patients all gave up alcohol?",
        "imagine everyone lost 10 kg",
    ],
)
def test_a_group_given_only_missing_changes_is_asked_back(text: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "not one of the model's inputs" in (intent.reply or "")


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        (
            "suppose all women quit smoking and had their cholesterol 15 lower",
            [{"feature": "chol", "op": "add", "value": -15}],
        ),
        (
            "if everyone at Hungary gained 3 kg and their max HR was 5 higher",
            [{"feature": "thalch", "op": "add", "value": 5}],
        ),
    ],
)
def test_a_group_change_beside_a_missing_one_is_done(
    text: str, changes: list[dict[str, Any]], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == changes


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "unused"),
    [
        ("what if everyone at Cleveland gave up smoking and had chol 10 lower", ["smoking"]),
        ("suppose all the women lost 4 kg and their BP was 5 lower", ["lost 4 kg"]),
    ],
)
async def test_a_group_change_names_what_was_not_used(
    text: str, unused: list[str], card: DatasetCard
) -> None:
    decided = await route(build_router(offline_model(card), card=card), RouteRequest(text))
    assert decided.tool == "cohort_what_if" and decided.not_in_model == unused


@pytest.mark.parametrize(
    "text",
    [
        "which features carry the most weight for women",
        "58 yo man, smoker, BMI 31, typical angina, BP 140, chol 250: his risk?",
    ],
)
def test_missing_inputs_that_pick_out_no_group_change_nothing(text: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] is not None


@pytest.mark.parametrize(
    "text",
    ["list the runs trained with the Boston clinic data", "runs that included the Leeds site"],
)
def test_runs_from_an_unknown_place_are_asked_back(text: str, card: DatasetCard) -> None:
    intent = understand(text, Memory(), card)
    assert intent.tool is None
    assert "I don't know a site called" in (intent.reply or "")


@pytest.mark.parametrize(
    ("text", "limit"),
    [("show the training runs, only 2", 2), ("list runs, limit it to 7", 7)],
)
def test_just_n_runs(text: str, limit: int, card: DatasetCard) -> None:
    assert _call(text, card) == ("list_runs", {"limit": limit})


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        (
            "what if all the Cleveland patients dropped their cholesterol by 20 and raised "
            "their max heart rate by 15",
            [
                {"feature": "chol", "op": "add", "value": -20},
                {"feature": "thalch", "op": "add", "value": 15},
            ],
        ),
        (
            "suppose everyone over 55 increased their max HR by 12 and their oldpeak by 1",
            [
                {"feature": "thalch", "op": "add", "value": 12},
                {"feature": "oldpeak", "op": "add", "value": 1},
            ],
        ),
        (
            "what if every woman brought her blood pressure up to 140",
            [{"feature": "trestbps", "op": "set", "value": 140}],
        ),
        (
            "imagine all the men at Hungary got their chol down to 210",
            [{"feature": "chol", "op": "set", "value": 210}],
        ),
        (
            "what if we lowered the blood pressure of all diabetics by 10",
            [{"feature": "trestbps", "op": "add", "value": -10}],
        ),
        (
            "a 5 mmHg BP increase for the entire Swiss cohort",
            [{"feature": "trestbps", "op": "add", "value": 5}],
        ),
        (
            "a 30 point cholesterol reduction for every woman",
            [{"feature": "chol", "op": "add", "value": -30}],
        ),
        (
            "knock 10 off everyone's max HR at Cleveland",
            [{"feature": "thalch", "op": "add", "value": -10}],
        ),
        ("all men: chol -15", [{"feature": "chol", "op": "add", "value": -15}]),
        ("everyone over 50, oldpeak +0.5", [{"feature": "oldpeak", "op": "add", "value": 0.5}]),
        (
            "simulate everyone at Hungary with a max heart rate of 140",
            [{"feature": "thalch", "op": "set", "value": 140}],
        ),
        (
            "rescore all the women with their cholesterol fixed at 220",
            [{"feature": "chol", "op": "set", "value": 220}],
        ),
    ],
)
def test_group_changes_said_with_verbs(
    text: str, changes: list[dict[str, Any]], card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "cohort_what_if"
    assert arguments["changes"] == changes


@pytest.mark.parametrize(
    ("text", "site"),
    [
        ("data quality problems at Hungary: many missing thal values?", "Hungary"),
        ("check the Swiss data quality, especially the average cholesterol", "Switzerland"),
    ],
)
def test_quality_checks_naming_a_statistic_are_drift(
    text: str, site: str, card: DatasetCard
) -> None:
    assert _call(text, card) == ("check_drift", {"site": site})


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("has anything drifted since 3 march", "march"),
        ("drift since june", "june"),
        ("patients on statins", "statins"),
        ("people who smoke", "smoke"),
        ("heavy drinkers", "drinkers"),
    ],
)
def test_words_that_are_no_typos(text: str, kept: str, card: DatasetCard) -> None:
    assert kept in normalise(text, card).split()


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("what features matter for the diabetics?", "feature_importance"),
        ("which variables count for women over 60", "feature_importance"),
        ("error rate for men at Hungary", "model_performance"),
        ("what's the misclassification rate among the Swiss patients", "model_performance"),
        ("show the misclassified women", "model_mistakes"),
        ("errors at Cleveland", "model_mistakes"),
    ],
)
def test_the_model_on_a_group(text: str, tool: str, card: DatasetCard) -> None:
    assert _call(text, card)[0] == tool


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        ("show me how many features drifted at VA each day", "features_drifted"),
        ("accuracy per week at Cleveland", "accuracy"),
    ],
)
def test_a_measure_per_day_or_week_is_its_history(
    text: str, metric: str, card: DatasetCard
) -> None:
    tool, arguments = _call(text, card)
    assert tool == "monitoring_history" and arguments["metric"] == metric
