"""Readings offered for an unclear request: one format, written and read back."""

import pytest

from copilot.suggestions import did_you_mean, suggestions_in


def test_readings_are_written_and_read_back() -> None:
    text = did_you_mean(
        ["list the recent runs", "compare the last two runs", "list the recent runs"]
    )
    assert text == (
        "I'm not sure what you mean. Did you mean: "
        '"list the recent runs" or "compare the last two runs"?'
    )
    assert suggestions_in(text) == ["list the recent runs", "compare the last two runs"]
    three = did_you_mean(["a", "b", "c", "d"], "I don't know a site 'Paris'.")
    assert three.endswith('Did you mean: "a", "b" or "c"?') and suggestions_in(three) == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    "text",
    [
        'The risk is 72% ("high").',
        'Did you mean: "a" and then something else',
        "I can't do that; I can predict, explain and check drift.",
        'He said "why?" twice. Did you mean that?',
    ],
)
def test_answers_that_offer_no_reading_have_no_suggestions(text: str) -> None:
    assert suggestions_in(text) == []


def test_a_reading_with_a_quote_in_it_is_not_offered() -> None:
    assert did_you_mean(['say "hi"'], "Unsure.") == "Unsure."
