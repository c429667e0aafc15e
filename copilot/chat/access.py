"""Who uses the chat UI and what they may decide.

People sign in with a name and key from `COPILOT_API_KEYS`. Their identity in the audit
log is "NAME via ui:NAME", so the four-eyes rule compares UI accounts. The role is read
from the configuration again at every decision (copilot/ui_turns.py): a session, a button
or a crafted request from the browser never grants it.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread

from copilot.actions import InvalidArguments, PendingAction
from copilot.errors import CopilotError
from copilot.settings import Settings
from graphs.session import Copilot

Role = Literal["user", "approver"]


@dataclass(frozen=True)
class Person:
    name: str
    role: Role

    @property
    def identity(self) -> str:
        """How the audit log names them (the account after "via" is what four eyes compares)."""
        return f"{self.name} via ui:{self.name}"

    @property
    def can_decide(self) -> bool:
        return self.role == "approver"


def sign_in(settings: Settings, name: str, key: str) -> Person | None:
    """The person whose name and key match an entry of COPILOT_API_KEYS, else None."""
    found = None
    for entry in settings.api_keys():
        # every entry is compared in constant time: timing tells nothing about which matched
        name_matches = hmac.compare_digest(entry.name.encode(), name.encode())
        key_matches = hmac.compare_digest(entry.key.encode(), key.encode())
        if name_matches and key_matches:
            found = Person(entry.name, entry.role)
    return found


def current_role(settings: Settings, name: str) -> Role | None:
    """The role `name` has in the configuration now (None when they have no key)."""
    return next((entry.role for entry in settings.api_keys() if entry.name == name), None)


class KeyWithdrawn(CopilotError):
    """The signed-in name has no key in the configuration any more."""


def current_person(settings: Settings, name: str) -> Person:
    """The signed-in person with the role the configuration gives them now.

    A chat session outlives a configuration change (its token stays valid until it
    expires), so a name whose key was removed is refused here, at every message and click,
    instead of carrying on as a `user`."""
    role = current_role(settings, name)
    if role is None:
        raise KeyWithdrawn(
            f"{name or 'this session'!r} has no key in COPILOT_API_KEYS any more, so nothing "
            "was sent or decided; sign in again with a current name and key"
        )
    return Person(name, role)


async def visible_pending(copilot: Copilot, person: Person) -> list[PendingAction]:
    """Pending actions the person sees: all for approvers, their own requests for users."""
    requested_by = None if person.can_decide else person.identity
    store = copilot.deps.actions
    return await anyio.to_thread.run_sync(lambda: store.list("pending", requested_by=requested_by))


def parse_arguments(tool: str, text: str) -> dict[str, Any]:
    """Edited arguments typed as a JSON object (validated against the tool later)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArguments(
            tool, [f"arguments: not JSON ({error.msg} at character {error.pos})"]
        ) from None
    if not isinstance(value, dict):
        raise InvalidArguments(
            tool, [f'arguments: must be a JSON object such as {{"force": true}}, not {text!r}']
        )
    return value
