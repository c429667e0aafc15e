"""Readings of an unclear request, offered back as requests a person can click or type.

One format, written by `did_you_mean` and read back by `suggestions_in`: the chat shows each
reading as a button that sends it, the agent API lists them in a turn's `suggestions`.
"""

from __future__ import annotations

import re

MAX_SUGGESTIONS = 3
_QUOTED = re.compile(r'"([^"]{1,200})"')
_OFFER = re.compile(r'Did you mean: ((?:"[^"]{1,200}"(?:, | or )?){1,3})\?\s*$')


def did_you_mean(options: list[str], lead: str = "I'm not sure what you mean.") -> str:
    """`lead` and up to three distinct readings, each in double quotes."""
    quoted = [f'"{o}"' for o in dict.fromkeys(options) if o and '"' not in o][:MAX_SUGGESTIONS]
    if not quoted:
        return lead
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"{lead} Did you mean: {listed}?"


def suggestions_in(text: str) -> list[str]:
    """The readings a reply offers (empty when it offers none)."""
    offer = _OFFER.search(text.strip())
    return _QUOTED.findall(offer.group(1)) if offer else []
