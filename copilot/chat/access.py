"""Who uses the chat UI and what they may decide.

People sign in with a name and key from `COPILOT_API_KEYS`. Their identity in the audit
log is "NAME via ui:NAME", so the four-eyes rule compares UI accounts. The role is read
from the configuration again at every decision (copilot/chat/turns.py): a session, a
button or a crafted request from the browser never grants it.

A session is bound to the key it signed in with (an HMAC fingerprint in its token): when
that key is removed or changed, the session is refused at its next message or click.
Failed sign-ins are throttled per address and per name tried (copilot.throttle).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread

from copilot.actions import InvalidArguments, PendingAction
from copilot.errors import CopilotError
from copilot.settings import Settings
from copilot.throttle import FailureThrottle
from graphs.session import Copilot

Role = Literal["user", "approver"]
log = logging.getLogger(__name__)
# The address of the request being served (set by the chat server around each request).
SIGN_IN_SOURCE: ContextVar[str] = ContextVar("sign_in_source", default="unknown")


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


def key_fingerprint(secret: str, key: str) -> str:
    """What a session token carries of its key: an HMAC under the server's secret, so the
    token (readable by whoever holds it) gives nothing away about the key."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:32]


def throttled_sign_in(
    settings: Settings, throttle: FailureThrottle, source: str, name: str, key: str
) -> Person | None:
    """`sign_in`, refused without comparing the key while the address or the name has
    failed too often lately; a failure counts against both."""
    sources = (f"address:{source}", f"name:{name[:200]}")
    wait = max(throttle.wait_seconds(s) for s in sources)
    if wait:
        log.warning("sign-in refused: too many failures from %s or for that name", source)
        return None
    person = sign_in(settings, name, key)
    if person is None:
        for s in sources:
            throttle.failed(s)
    return person


def current_role(settings: Settings, name: str) -> Role | None:
    """The role `name` has in the configuration now (None when they have no key)."""
    return next((entry.role for entry in settings.api_keys() if entry.name == name), None)


class KeyWithdrawn(CopilotError):
    """The signed-in name has no key in the configuration any more."""


def current_person(settings: Settings, name: str, fingerprint: str | None, secret: str) -> Person:
    """The signed-in person with the role the configuration gives them now.

    A chat session outlives a configuration change (its token stays valid until it
    expires), so a name whose key was removed or changed is refused here, at every message
    and click, instead of carrying on."""
    entry = next((e for e in settings.api_keys() if e.name == name), None)
    if entry is None:
        raise KeyWithdrawn(
            f"{name or 'this session'!r} has no key in COPILOT_API_KEYS any more, so nothing "
            "was sent or decided; sign in again with a current name and key"
        )
    if not hmac.compare_digest(fingerprint or "", key_fingerprint(secret, entry.key)):
        raise KeyWithdrawn(
            f"the key of {name!r} changed since this session signed in, so nothing was sent "
            "or decided; sign in again with the current key"
        )
    return Person(name, entry.role)


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
