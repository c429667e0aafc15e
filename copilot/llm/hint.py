"""The offline grammar's reading of a request, offered to a real LLM as a hint to check.

The built-in grammar (`offline.intents.understand`) reads a request into a tool call in a
few milliseconds, from the dataset card and the tool schemas. A small local model checks a
reading more reliably than it chooses among twenty tools, and a large one is free to
overrule it. In two-step routing the model's first step is to judge the reading right or
wrong (`for_confirm`; wrong only when it is sure: `two_step.OVERRULE_AT`): right, and the
grammar's arguments are used if they pass every check a model's answer must pass (else the
model fills them, with the reading as a draft; a 1.5B model given the reading as a draft
dropped most of a patient's values); wrong, and the model chooses and fills alone.
One-step routing (tools, json) shows the reading (tool and arguments) as a guess beside the
tools. A question back (a patient's missing values, which
patient, which site) is a reading too: confirmed, it is the answer (a question for missing
values is remembered as always). When the grammar is unsure, the readings it would offer a
person ("Did you mean ...?") are offered to the model as likely readings, each with the
tool it reads as, to choose among; an "I'm not sure" with no readings is not passed on.

A request the grammar declines (out of scope by the card's categories: clinical advice,
deleting records, anything outside the tools; or a claim of approval with nothing to do)
is declined in code, whatever the model: measured with a 1.5B model, asked to confirm a
decline, it said wrong and proposed a retrain for "book me a table" and a rollback for
"wipe the old experiments" (`declines`).

`COPILOT_LLM_READER_HINT=false` turns it off (the model then reads every request alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from copilot.facts import NOTHING_LEFT, RouteRequest
from copilot.llm.offline.intents import Intent, understand
from copilot.suggestions import suggestions_in
from model_service.cards import DatasetCard

MAX_HINT_CHARACTERS = 1_500  # a long patient still fits; a pathological reading does not


@dataclass(frozen=True)
class Hint:
    """What the grammar read: a tool and its arguments, or (tool None) a reply: a decline,
    or a question back (`asks`: the request lacks what a tool needs); or, when it is unsure,
    its likely readings (`options`: the tool each offered request reads as, and that
    request; `unsure`, with none when it has no reading to offer), for the model to choose
    among (nothing to confirm), with its question back (`reply`) should the model be unsure
    too."""

    tool: str | None
    arguments: dict[str, Any]
    reply: str | None = None
    asks: bool = False
    options: tuple[tuple[str, str], ...] = ()
    unsure: bool = False

    @property
    def declines(self) -> bool:
        """The grammar declines the request (out of scope, or a claim of approval with nothing
        to do): final, whatever a model would choose."""
        return (
            self.tool is None
            and not self.asks
            and not self.unsure
            and (self.reply not in (None, NOTHING_LEFT))
        )

    def for_choice(self) -> str:
        """The line added when the model chooses the tool (none when the grammar is unsure
        and has no reading to offer: its doubt is not passed on)."""
        if self.unsure and not self.options:
            return ""
        if self.options:
            listed = "; ".join(f"{tool} ({json.dumps(said)})" for tool, said in self.options)
            return (
                f"A rule-based reader was unsure about this message; its likely readings: "
                f"{listed}. Choose the tool of the one the user means, another tool, or reply "
                "to ask which they mean when the message does not say."
            )
        if self.tool is None:  # a question back (a decline never reaches a model)
            return (
                "A rule-based reader found that this message lacks what a tool needs and would "
                f"ask the user: {json.dumps(self.reply)}. Choose reply if that is right."
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

    def for_confirm(self, summaries: dict[str, str]) -> str:
        """The reading in words, for the model to confirm or reject (two-step routing)."""
        if self.reply == NOTHING_LEFT:
            return "every step of the user's request is done: no tool is needed"
        if self.tool is None:  # a question back (a decline never reaches a model)
            return (
                "the request lacks what a tool needs, so no tool can run yet; the copilot "
                f"should ask the user {json.dumps(self.reply)}"
            )
        shown = json.dumps(self.arguments, sort_keys=True)
        if len(shown) > MAX_HINT_CHARACTERS:
            shown = "(arguments too long to show)"
        summary = summaries.get(self.tool, "")
        return (
            f'the user asks for the tool "{self.tool}" ({summary.rstrip(".")}) with the '
            f"arguments {shown}"
        )

    def for_call(self) -> str:
        """Both, for routing that chooses and fills in one answer (tools, json)."""
        if self.tool is None:
            return self.for_choice()
        return f"{self.for_choice()} {self.for_arguments(self.tool)}"


def read_hint(request: RouteRequest, card: DatasetCard) -> Hint | None:
    """The grammar's reading of `request` as a hint, or None when it is unsure (CPU work:
    call it from a worker thread)."""
    intent: Intent = understand(request.text, request.memory, card, request.done)
    if intent.tool is not None:
        return Hint(intent.tool, intent.arguments)
    if intent.unsure:
        return _options(request, card, suggestions_in(intent.reply or ""), intent.reply or "")
    if not intent.reply:
        return None
    asks = not intent.declined and intent.reply != NOTHING_LEFT
    return Hint(None, {}, reply=intent.reply, asks=asks)


def _options(request: RouteRequest, card: DatasetCard, offered: list[str], question: str) -> Hint:
    """The grammar's likely readings of a request it is unsure about: each offered request
    read again in the same conversation, kept when it reads as a tool (none, when it offers
    none); with the grammar's answer, the question back that offers them (the reply when
    the model is not sure either)."""
    options: list[tuple[str, str]] = []
    for said in offered:
        tool = understand(said, request.memory, card).tool
        if tool is not None and all(tool != known for known, _ in options):
            options.append((tool, said))
    return Hint(None, {}, reply=question, asks=True, options=tuple(options), unsure=True)
