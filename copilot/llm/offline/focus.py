"""What a question about one explanation asks for: "the top three drivers", "what rank does
cholesterol have", "does age raise his risk", "is age more important than cholesterol"."""

from __future__ import annotations

import re

from copilot.facts import Focus
from copilot.llm.offline import patterns as rx
from copilot.llm.offline.text import normalise, number, without_notes
from model_service.cards import DatasetCard

_COMPARE = re.compile(
    r"\b(?P<relation>more|less|bigger|smaller|larger|greater|stronger|weaker) "
    r"(?:important|influential|(?:of an? )?(?:driver|factor|effect|impact|contributor))\s+than\b|"
    r"\b(?:matters?|counts?|weighs?|contributes?) (?P<relation2>more|less)\b[^.?]{0,80}?\bthan\b"
)

_RANK = re.compile(
    r"\brank(?:s|ed|ing)?\b|\bwhere does\b|\bposition\b|\bhow important\b|\bwhich place\b|"
    r"\bhow (?:much|big a role) (?:does|do|did|is)\b|\b(?:effect|impact|influence|role) of\b"
)

_DIRECTION = re.compile(
    r"\b(?:raise|raising|increase|increasing|lower|lowering|reduce|reducing|decrease|"
    r"decreasing|push|pushing)\b"
)

_TOP = re.compile(
    r"\btop[ -]?(?P<count>\d{1,2}|one)\b|"
    r"\b(?P<count2>\d{1,2}|one) (?:(?:most important|most influential|biggest|largest|"
    r"strongest|main|key|top|leading|major) )?(?:drivers?|factors?|features?|reasons?|"
    r"contributors?)\b|"
    r"\b(?:top|main|key|biggest|largest|strongest|most important|leading) "
    r"(?P<what>drivers?|factors?|features?|reasons?|contributors?)\b"
)


def mentioned(text: str, card: DatasetCard) -> list[str]:
    """The card's features named in `text`, in order of appearance."""
    found: list[tuple[int, str]] = []
    for feature in card.features:
        names = {*feature.synonyms, feature.display_name, feature.name.replace("_", " ")}
        pattern = "|".join(re.escape(n.lower()) for n in sorted(names, key=len, reverse=True))
        match = rx.search(rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])", text)
        if match:
            found.append((match.start(), feature.name))
    return [name for _, name in sorted(found)]


def question_focus(text: str, card: DatasetCard) -> Focus | None:  # noqa: PLR0911
    """What an explanation question asks for: the top N drivers, one feature's rank or
    direction, or which of two features matters more (None: a plain "why?")."""
    lowered = without_notes(normalise(text, card))
    compare = _COMPARE.search(lowered)
    if compare:
        left = mentioned(lowered[: compare.start()], card)
        right = mentioned(lowered[compare.end() :], card)
        relation = compare.group("relation") or compare.group("relation2")
        if left and right and left[-1] != right[0]:
            less = relation in {"less", "smaller", "weaker"}
            return Focus(
                kind="compare", features=[left[-1], right[0]], relation="less" if less else "more"
            )
    named = mentioned(lowered, card)
    if len(named) == 1 and _RANK.search(lowered):
        return Focus(kind="rank", features=named)
    if len(named) == 1 and _DIRECTION.search(lowered):
        return Focus(kind="direction", features=named)
    top = _TOP.search(lowered)
    if top:
        count = top.group("count") or top.group("count2")
        if count:
            most = len(card.features)
            return Focus(kind="top", count=max(1, min(int(number(count)), most)))
        plural = top.group("what").endswith("s")
        return Focus(kind="top", count=3 if plural else 1)
    if rx.search(r"\b(?:most important|biggest|largest|strongest|main) (?:thing|one)\b", lowered):
        return Focus(kind="top", count=1)
    return None
