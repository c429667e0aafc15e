"""The offline provider on a blind check set of requests about groups of patients,
counterfactuals, cohort what-ifs, monitoring history and declines (data/groups_blind.yaml),
written from the dataset card and the tool table before the grammar was changed for them.
Each case names the tool and the arguments the request fixes."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from copilot.facts import Memory
from copilot.llm.offline.intents import understand
from model_service.cards import DatasetCard

LAST = "c" * 32
MEMORIES = {
    "fresh": Memory(),
    "after": Memory(
        prediction_id=LAST,
        patient={"age": 57, "sex": "Female", "cp": "asymptomatic", "trestbps": 150, "chol": 276},
        last_tool="predict_risk",
    ),
}
CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "groups_blind.yaml").read_text()
)["cases"]


def _conditions(where: list[dict[str, Any]]) -> set[tuple[str, str, Any]]:
    return {
        (c["feature"], c["op"], tuple(c["value"]) if isinstance(c["value"], list) else c["value"])
        for c in where
    }


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c["say"][:60],
            marks=[pytest.mark.xfail(reason=c["known_limit"], strict=True)]
            if "known_limit" in c
            else [],
        )
        for c in CASES
    ],
)
def test_blind_request(case: dict[str, Any], card: DatasetCard) -> None:
    intent = understand(case["say"], MEMORIES[case.get("memory", "fresh")], card)
    seen = (intent.tool, intent.arguments, intent.reply)
    assert intent.tool == case["tool"], seen
    if case["tool"] is None:
        assert intent.reply, seen
        return
    arguments = dict(intent.arguments)
    if "where_includes" in case:
        assert _conditions(case["where_includes"]) <= _conditions(arguments.get("where", [])), seen
    for key, expected in case.get("arguments", {}).items():
        if key == "where":
            assert _conditions(expected) == _conditions(arguments.get("where", [])), seen
        elif expected == "any":
            assert arguments.get(key), seen
        elif expected == "LAST":
            assert arguments.get(key) == LAST, seen
        else:
            assert arguments.get(key) == expected, seen
    if "where" not in case.get("arguments", {}) and "where_includes" not in case:
        assert not arguments.get("where"), seen  # no group the request did not name
