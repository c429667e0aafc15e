"""Argument grading of sets written as lists: a cohort's conditions (a conjunction) and a
retrain's sites and model kinds are graded in any order; everything else keeps its order."""

from evals.grading import contains

HUNGARIAN_WOMEN = [
    {"feature": "site", "op": "==", "value": "Hungary"},
    {"feature": "sex", "op": "==", "value": "Female"},
]


def test_conditions_match_in_any_order() -> None:
    actual = {"where": list(reversed(HUNGARIAN_WOMEN)), "features": []}
    assert contains(actual, {"where": HUNGARIAN_WOMEN})


def test_conditions_must_all_match_once() -> None:
    doubled = {"where": [HUNGARIAN_WOMEN[0], HUNGARIAN_WOMEN[0]]}
    assert not contains(doubled, {"where": HUNGARIAN_WOMEN})
    assert not contains({"where": HUNGARIAN_WOMEN[:1]}, {"where": HUNGARIAN_WOMEN})
    other = {"where": [HUNGARIAN_WOMEN[0], {"feature": "sex", "op": "==", "value": "Male"}]}
    assert not contains(other, {"where": HUNGARIAN_WOMEN})


def test_other_lists_keep_their_order() -> None:
    changes = [
        {"feature": "chol", "op": "add", "value": -10},
        {"feature": "trestbps", "op": "set", "value": 120},
    ]
    assert not contains({"changes": list(reversed(changes))}, {"changes": changes})
    assert not contains({"row_ids": [2, 1]}, {"row_ids": [1, 2]})


def test_a_retrains_sites_and_kinds_are_sets() -> None:
    said = {"sites": ["VA Long Beach", "Cleveland"], "model_kinds": ["xgboost", "random_forest"]}
    expected = {
        "sites": ["Cleveland", "VA Long Beach"],
        "model_kinds": ["random_forest", "xgboost"],
    }
    assert contains(said, expected)
    assert not contains({"sites": ["Cleveland"]}, {"sites": ["Cleveland", "VA Long Beach"]})
