"""Who calls the agent API: Bearer keys from COPILOT_API_KEYS, compared in constant time.

A caller is recorded as "NAME via api-key:NAME"; the four-eyes rule compares the account
(api-key:NAME). Missing, malformed or unknown keys get 401 with WWW-Authenticate: Bearer;
a `user` key on an approver's route gets 403. An address that sent too many unknown keys
lately gets 429 with Retry-After before its key is compared (copilot.throttle).
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from copilot.api.errors import ApiError
from copilot.errors import CopilotError
from copilot.settings import ApiKey
from copilot.throttle import FailureThrottle

ACCOUNT_KIND = "api-key"


class ApiConfigError(CopilotError, ValueError):
    """The API cannot start with this configuration; the message says what to set."""


def check_keys(keys: list[ApiKey]) -> tuple[ApiKey, ...]:
    """The keys the API accepts; ApiConfigError when none, or when names or keys repeat."""
    if not keys:
        raise ApiConfigError(
            "COPILOT_API_KEYS is not set: the agent API does not start without keys "
            "(name:role:key,... with role user or approver; `copilot up` makes a local one)"
        )
    names = [k.name for k in keys]
    for name in names:
        if names.count(name) > 1:
            raise ApiConfigError(f"COPILOT_API_KEYS names {name!r} more than once")
    if len({k.key for k in keys}) < len(keys):
        raise ApiConfigError("COPILOT_API_KEYS gives the same key to two names")
    return tuple(keys)


@dataclass(frozen=True)
class Caller:
    name: str
    role: Literal["user", "approver"]

    @property
    def account(self) -> str:
        return f"{ACCOUNT_KIND}:{self.name}"

    @property
    def identity(self) -> str:
        """As recorded in actions and the audit log ("NAME via api-key:NAME")."""
        return f"{self.name} via {self.account}"


_bearer = HTTPBearer(auto_error=False, scheme_name="api-key", description="Your API key.")


def _unauthorized(detail: str, error: str | None = None) -> ApiError:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return ApiError(401, detail, headers={"WWW-Authenticate": challenge})


def _match(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """The key equal to `presented`; every key is compared, each in constant time."""
    found = None
    candidate = presented.encode()
    for key in keys:
        if hmac.compare_digest(key.key.encode(), candidate):
            found = key
    return found


async def _caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "missing Authorization header: send 'Authorization: Bearer <key>' with your API key"
        )
    source = request.client.host if request.client else "unknown"
    throttle: FailureThrottle = request.app.state.key_throttle
    wait = throttle.wait_seconds(source)
    if wait:
        raise ApiError(
            429,
            f"too many requests with unknown API keys from {source}; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    scheme, _sep, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized(
            f"Authorization header must be 'Bearer <key>' (got scheme {scheme[:20]!r})",
            "invalid_request",
        )
    key = _match(request.app.state.api_keys, presented.strip())
    if key is None:
        throttle.failed(source)
        raise _unauthorized("the API key is not valid", "invalid_token")
    return Caller(key.name, key.role)


CallerDep = Annotated[Caller, Depends(_caller)]


async def _approver(request: Request, caller: CallerDep) -> Caller:
    if caller.role != "approver":
        raise ApiError(
            403,
            f"{request.method} {request.url.path} needs the approver role; key "
            f"{caller.name!r} has the {caller.role} role",
        )
    return caller


ApproverDep = Annotated[Caller, Depends(_approver)]
