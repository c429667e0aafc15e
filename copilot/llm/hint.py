"""The offline grammar's reading of a request, offered to a real LLM as a hint to check.

The built-in grammar (`offline.intents.understand`) reads a request into a tool call in a
few milliseconds, from the dataset card and the tool schemas. A small local model chooses
far better when it checks a reading than when it starts from nothing, and a large one is
free to overrule it: the hint is marked as a guess and the model still decides. In
two-step routing, when the model chooses the tool the grammar read, the grammar's
arguments are used if they pass every check a model's answer must pass (measured with a
1.5B model: given the reading as a draft, it dropped most of a patient's values); when it
chooses another tool, or they fail a check, the model fills the arguments itself (with the
reading as a draft when the tool is the same). One-step routing (tools, json) shows tool
and arguments at once. The grammar's own "I'm not sure" is not passed
on: the model reads such a request alone. A request the grammar declines (out of scope,
or a claim of approval with nothing to do) is passed on as a decline to weigh.

`COPILOT_LLM_READER_HINT=false` turns it off (the model then reads every request alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from copilot.facts import RouteRequest
from copilot.llm.offline.intents import Intent, understand
from model_service.cards import DatasetCard

MAX_HINT_CHARACTERS = 1_500  # a long patient still fits; a pathological reading does not


@dataclass(frozen=True)
class Hint:
    """What the grammar read: a tool and its arguments, or a decline (tool None)."""

    tool: str | None
    arguments: dict[str, Any]
    declined: str | None = None

    def for_choice(self) -> str:
        """The line added when the model chooses the tool."""
        if self.tool is None:
            return (
                "A rule-based reader found no tool for this message and would answer: "
                f"{json.dumps(self.declined)}. Choose reply if that is right."
            )
        return (
            f'A rule-based reader read this message as the tool "{self.tool}". It is usually '
            "right about plain requests and can misread unusual wording: choose it unless "
            "the user asks for something else."
        )

    def for_arguments(self, tool: str) -> str:
        """The line added when the model fills `tool`'s arguments (empty for another tool)."""
        if tool != self.tool:
            return ""
        shown = json.dumps(self.arguments, sort_keys=True)
        if len(shown) > MAX_HINT_CHARACTERS:
            return ""
        return (
            f"A rule-based reader filled these arguments: {shown}. Check each one against "
            "the user's words and the conversation context: keep what is right, correct "
            "what is wrong, add what it missed."
        )

    def for_call(self) -> str:
        """Both, for routing that chooses and fills in one answer (tools, json)."""
        if self.tool is None:
            return self.for_choice()
        return f"{self.for_choice()} {self.for_arguments(self.tool)}"


def read_hint(request: RouteRequest, card: DatasetCard) -> Hint | None:
    """The grammar's reading of `request` as a hint, or None when it is unsure or only
    asks a question back (CPU work: call it from a worker thread)."""
    intent: Intent = understand(request.text, request.memory, card, request.done)
    if intent.tool is not None:
        return Hint(intent.tool, intent.arguments)
    if intent.declined and intent.reply:
        return Hint(None, {}, declined=intent.reply)
    return None
