"""The offline grammar of groups, cohort what-ifs and the monitor's series, by category:
comparators before and after the number, age groups named by a bound or a decade, counts
said before a feature's name, sites left out, a group given a yes/no value, the data's
size, patients by id, definitions, mistakes listed by count, and the monitor's alerts,
checks and steadiness. Each category is checked on several wordings, and on the wordings
that must not be read that way."""

from typing import Any

import pytest

from copilot.facts import Memory, RouteRequest
from copilot.llm.grounding import cannot_fill, unmentioned
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard


def _where(arguments: dict[str, Any]) -> set[tuple[str, str, Any]]:
    return {
        (c["feature"], c["op"], tuple(c["value"]) if isinstance(c["value"], list) else c["value"])
        for c in arguments.get("where", [])
    }


def _call(card: DatasetCard, text: str) -> tuple[str | None, dict[str, Any]]:
    intent = understand(text, Memory(), card)
    return intent.tool, {k: v for k, v in intent.arguments.items() if k != "reason"}


GROUPS = [
    # comparators before the number
    ("patients whose ST depression exceeds 2", {("oldpeak", ">", 2)}),
    ("patients with cholesterol in excess of 300", {("chol", ">", 300)}),
    ("men with resting bp no more than 120", {("sex", "==", "Male"), ("trestbps", "<=", 120)}),
    ("patients with max heart rate greater than or equal to 150", {("thalch", ">=", 150)}),
    ("women not over 50", {("sex", "==", "Female"), ("age", "<=", 50)}),
    # comparators after the number
    ("patients 70 and over", {("age", ">=", 70)}),
    ("men aged 45+", {("sex", "==", "Male"), ("age", ">=", 45)}),
    ("women 65 or older", {("sex", "==", "Female"), ("age", ">=", 65)}),
    ("patients with oldpeak of 2 or more", {("oldpeak", ">=", 2)}),
    ("people with chol 200 or less", {("chol", "<=", 200)}),
    # age groups named by a bound or a decade
    ("tell me about the over-60s", {("age", ">", 60)}),
    ("describe the under 50s", {("age", "<", 50)}),
    ("women in their fifties", {("sex", "==", "Female"), ("age", ">=", 50), ("age", "<", 60)}),
    ("patients in their 40s", {("age", ">=", 40), ("age", "<", 50)}),
    # a count said before the feature's name (integer features)
    ("patients with 2 or more vessels coloured", {("ca", ">=", 2)}),
    ("people with no major vessels coloured", {("ca", "==", 0)}),
    ("patients with fewer than 2 vessels", {("ca", "<", 2)}),
    # sites left out
    (
        "cholesterol above 300 but not at Cleveland",
        {("chol", ">", 300), ("site", "!=", "Cleveland")},
    ),
    ("everyone except the Swiss", {("site", "!=", "Switzerland")}),
    ("non-Cleveland patients", {("site", "!=", "Cleveland")}),
    (
        "patients with chol below 200 excluding VA",
        {("chol", "<", 200), ("site", "!=", "VA Long Beach")},
    ),
    (
        "patients outside Hungary and Cleveland",
        {("site", "in", ("Switzerland", "VA Long Beach"))},
    ),
    # a feature's yes/no value with no number is no age
    ("patients with fasting sugar under 120", {("fbs", "==", False)}),
]


@pytest.mark.parametrize(("text", "where"), GROUPS, ids=[g[0] for g in GROUPS])
def test_groups_are_read_from_the_ways_people_bound_them(
    card: DatasetCard, text: str, where: set[tuple[str, str, Any]]
) -> None:
    tool, arguments = _call(card, text)
    assert tool == "describe_data", (text, tool, arguments)
    conditions = _where(arguments)
    if text == "patients with fasting sugar under 120":  # the patient parser's reading of fbs
        assert not any(c[0] == "age" for c in conditions), conditions
        return
    assert conditions == where


WHAT_IFS = [
    (
        "what if everyone over 60 had chol 20 lower",
        {("age", ">", 60)},
        [{"feature": "chol", "op": "add", "value": -20}],
    ),
    (
        "suppose nobody at Cleveland had high fasting blood sugar",
        {("site", "==", "Cleveland")},
        [{"feature": "fbs", "op": "set", "value": False}],
    ),
    (
        "suppose all Hungarian patients had exercise angina",
        {("site", "==", "Hungary")},
        [{"feature": "exang", "op": "set", "value": True}],
    ),
    (
        "what if none of the women had exercise-induced angina",
        {("sex", "==", "Female")},
        [{"feature": "exang", "op": "set", "value": False}],
    ),
    (
        "Set cholesterol to 200 for all patients over 50: how do the predictions shift?",
        {("age", ">", 50)},
        [{"feature": "chol", "op": "set", "value": 200}],
    ),
    (
        "if everyone with diabetes had their bp reduced to 120",
        {("fbs", "==", True)},
        [{"feature": "trestbps", "op": "set", "value": 120}],
    ),
    (
        "imagine the Cleveland patients were all 5 years older",
        {("site", "==", "Cleveland")},
        [{"feature": "age", "op": "add", "value": 5}],
    ),
    (
        "what happens to the over-60s if their max heart rate was 20 higher",
        {("age", ">", 60)},
        [{"feature": "thalch", "op": "add", "value": 20}],
    ),
]


@pytest.mark.parametrize(("text", "where", "changes"), WHAT_IFS, ids=[w[0] for w in WHAT_IFS])
def test_cohort_what_ifs_set_values_of_a_group(
    card: DatasetCard, text: str, where: set[tuple[str, str, Any]], changes: list[dict[str, Any]]
) -> None:
    tool, arguments = _call(card, text)
    assert tool == "cohort_what_if", (text, tool, arguments)
    assert _where(arguments) == where
    assert arguments["changes"] == changes


CALLS = [
    # the data's size
    ("how many rows does the dataset have?", "describe_data", {}),
    ("how big is the dataset", "describe_data", {}),
    # patients by id; ages are no ids
    ("pull up patients 10, 11 and 12 from the data", "show_rows", {"row_ids": [10, 11, 12]}),
    ("show me patient 17", "show_rows", {"row_ids": [17]}),
    # definitions
    ("explain what the ca feature is", "define_feature", {"feature": "ca"}),
    ("what values can thal take", "define_feature", {"feature": "thal"}),
    ("tell me what oldpeak means", "define_feature", {"feature": "oldpeak"}),
    # the model on a group
    ("what's the AUC on the over-60s", "model_performance", {}),
    ("does it work as well for Swiss patients?", "model_performance", {}),
    (
        "strongest feature interactions among patients with exercise angina",
        "feature_interactions",
        {},
    ),
    # mistakes listed by count, with or without a group
    (
        "list 5 missed cases at Cleveland",
        "model_mistakes",
        {"kind": "false_negative", "limit": 5},
    ),
    ("what are the 10 worst false negatives", "model_mistakes", {"limit": 10}),
    (
        "which patients were wrongly flagged as high risk",
        "model_mistakes",
        {"kind": "false_positive"},
    ),
    ("who was incorrectly cleared at VA?", "model_mistakes", {"kind": "false_negative"}),
    # importance, the outcome's rate and statistics of a site's data
    ("what matters most for predicting disease in women?", "feature_importance", {}),
    ("what's the disease rate in Switzerland", "describe_data", {}),
    ("prevalence of heart disease among diabetics", "describe_data", {}),
    ("give me summary stats for the Hungarian data", "describe_data", {}),
    ("how much data is missing at VA", "describe_data", {}),
    ("what do the values of cp mean", "define_feature", {"feature": "cp"}),
    ("show records 1 through 5", "show_rows", {"row_ids": [1, 2, 3, 4, 5]}),
    # the monitor's series
    ("any alerts this week", "monitoring_history", {}),
    ("did the monitor raise any alarms?", "monitoring_history", {}),
    (
        "How many features have drifted at Hungary over time?",
        "monitoring_history",
        {"site": "Hungary", "metric": "features_drifted"},
    ),
    (
        "is VA drifting more than before",
        "monitoring_history",
        {"site": "VA Long Beach", "metric": "share_drifted"},
    ),
    ("how stable has the AUC been", "monitoring_history", {"metric": "auc"}),
    ("what was the AUC at the last check", "monitoring_history", {"metric": "auc"}),
    ("propose promoting v2 even though the gate fails", "promote_model", {"force": True}),
    # sites added to the usual training data, or all of them
    ("retrain it including Switzerland", "retrain_model", {"sites": ["Cleveland", "Switzerland"]}),
    (
        "retrain on Hungary, adding Switzerland",
        "retrain_model",
        {"sites": ["Hungary", "Switzerland"]},
    ),
    (
        "retrain on all sites including Switzerland",
        "retrain_model",
        {"sites": ["Cleveland", "Hungary", "Switzerland", "VA Long Beach"]},
    ),
]


@pytest.mark.parametrize(("text", "tool", "arguments"), CALLS, ids=[c[0] for c in CALLS])
def test_requests_route_with_their_slots(
    card: DatasetCard, text: str, tool: str, arguments: dict[str, Any]
) -> None:
    routed, said = _call(card, text)
    assert routed == tool, (text, routed, said)
    assert {k: said.get(k) for k in arguments} == arguments, said


NOT_THESE = [
    ("patients 40 to 60", "show_rows"),  # ages, not row ids
    ("any false alarms in women over 55?", "monitoring_history"),  # mistakes, not alerts
    ("check drift at Hungary", "cohort_what_if"),
    ("has the Cleveland data drifted?", "monitoring_history"),  # now, not over time
]


@pytest.mark.parametrize(("text", "tool"), NOT_THESE, ids=[n[0] for n in NOT_THESE])
def test_wordings_that_are_not_read_that_way(card: DatasetCard, text: str, tool: str) -> None:
    routed, said = _call(card, text)
    assert routed != tool, (text, routed, said)


GROUNDED = [
    ("what's the AUC on the over-60s", "model_performance"),  # "-60" is no minus sixty
    ("women in their fifties", "describe_data"),  # a decade says both its bounds
    ("patients in their 40s", "describe_data"),
    ("people with no major vessels coloured", "describe_data"),
]


@pytest.mark.parametrize(("text", "tool"), GROUNDED, ids=[g[0] for g in GROUNDED])
def test_group_numbers_are_grounded_in_the_text(card: DatasetCard, text: str, tool: str) -> None:
    routed, said = _call(card, text)
    assert routed == tool, (text, routed, said)
    assert unmentioned(tool, said, RouteRequest(text), card) == []
    assert unmentioned(
        tool, {"where": [{"feature": "age", "op": ">", "value": 70}]}, RouteRequest(text), card
    )


ROWS_GROUNDED = [
    "pull up patients 10, 11 and 12 from the data",
    "show me patient 17",
    "show records 1 through 5",
]


@pytest.mark.parametrize("text", ROWS_GROUNDED)
def test_numbered_patients_and_row_ranges_are_row_ids(card: DatasetCard, text: str) -> None:
    routed, said = _call(card, text)
    assert routed == "show_rows", (text, routed, said)
    assert unmentioned("show_rows", said, RouteRequest(text), card) == []
    assert cannot_fill("show_rows", RouteRequest(text)) is None


def test_an_age_is_no_patient_number() -> None:
    assert cannot_fill("show_rows", RouteRequest("patient 67 years old, chol 250")) is not None


# A feature of more than two categories: several values named together are either of them
# (a patient has one), a value said negated is any other.
@pytest.mark.parametrize(
    ("text", "tool", "where"),
    [
        (
            "how many patients have typical or atypical angina?",
            "describe_data",
            {("cp", "in", ("typical angina", "atypical angina"))},
        ),
        (
            "accuracy for patients with either non-anginal pain or asymptomatic chest pain",
            "model_performance",
            {("cp", "in", ("non-anginal", "asymptomatic"))},
        ),
        (
            "what are the top features for people with a flat or downsloping slope",
            "feature_importance",
            {("slope", "in", ("flat", "downsloping"))},
        ),
        (
            "how accurate is the model on patients whose chest pain is not asymptomatic",
            "model_performance",
            {("cp", "!=", "asymptomatic")},
        ),
        (
            "mean risk of men whose thal isn't normal",
            "describe_data",
            {("sex", "==", "Male"), ("thal", "!=", "normal")},
        ),
        (
            "describe patients whose ecg is not normal",
            "describe_data",
            {("restecg", "!=", "normal")},
        ),
        (
            "patients with neither typical nor atypical angina",
            "describe_data",
            {("cp", "in", ("non-anginal", "asymptomatic"))},
        ),
        (
            "non-anginal patients at Cleveland",
            "describe_data",
            {("cp", "==", "non-anginal"), ("site", "==", "Cleveland")},
        ),
    ],
)
def test_categories_said_together_or_negated(
    card: DatasetCard, text: str, tool: str, where: set[tuple[str, str, Any]]
) -> None:
    found, arguments = _call(card, text)
    assert (found, _where(arguments)) == (tool, where)


def test_a_patients_value_said_negated_is_no_value(card: DatasetCard) -> None:
    text = "57 yo male, thal isn't normal, cp asymptomatic, bp 140, chol 250, max hr 150"
    tool, arguments = _call(card, text)
    assert tool == "predict_risk"
    assert "thal" not in arguments["patient"] and arguments["patient"]["cp"] == "asymptomatic"


# A category by its number in the source data's coding, after the feature's name only.
@pytest.mark.parametrize(
    ("text", "values"),
    [
        (
            "45 yr old man: cp 4, trestbps 142, chol 309, restecg 2, thalach 147, slope 2, thal 7",
            {"cp": "asymptomatic", "restecg": "lv hypertrophy", "slope": "flat"},
        ),
        (
            "age=63, sex=1, cp=1, trestbps=145, chol=233, thalach=150, slope=3, thal=6",
            {"sex": "Male", "cp": "typical angina", "slope": "downsloping", "thal": "fixed defect"},
        ),
    ],
)
def test_a_category_by_its_code(card: DatasetCard, text: str, values: dict[str, Any]) -> None:
    tool, arguments = _call(card, text)
    assert tool == "predict_risk"
    assert {k: arguments["patient"].get(k) for k in values} == values


def test_a_number_after_a_name_that_is_no_code(card: DatasetCard) -> None:
    tool, _ = _call(card, "58 yo woman, chest pain 2 days, bp 130, chol 240, hr max 150")
    assert tool is None  # the chest pain type is still asked for, not read as a code
