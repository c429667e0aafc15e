"""Starting the Chainlit UI (`copilot serve ui`): its files, its config, its sign-in secret.

Chainlit reads `CHAINLIT_APP_ROOT` when it is first imported and writes `.chainlit/`,
`.files/` and `chainlit.md` there, and it loads `.env` from the working directory. So this
module puts its app root under COPILOT_HOME, writes the config we want, and only then
imports Chainlit; nothing lands in the repository or the working directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import sys
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from copilot.chat.access import SIGN_IN_SOURCE
from copilot.errors import CopilotError
from copilot.settings import Settings

UI_NAME = "MLOps Copilot"

# Written at every start (edit it here, not in COPILOT_HOME). File uploads, editing sent
# messages and raw HTML are off: the chat is text in, typed tool calls out.
CONFIG_TOML = """\
# Written by `copilot serve ui` at every start: change copilot/ui_server.py instead.
[project]
user_env = []
session_timeout = 3600
user_session_timeout = 86400
cache = false
# The UI is served from its own origin; no other site may call it with the user's cookie.
allow_origins = []

[features]
unsafe_allow_html = false
latex = false
user_message_markdown = false
edit_message = false

[features.spontaneous_file_upload]
enabled = false

[features.audio]
enabled = false

[features.mcp]
enabled = false

[UI]
name = "{name}"
description = "Ask about patients' risk, drift and training runs; decide model changes."
cot = "full"
default_theme = "light"
language = "en-US"
layout = "wide"
default_sidebar_state = "closed"
confirm_new_chat = true

[meta]
generated_by = "{version}"
"""

README_MD = """\
# MLOps Copilot

Ask in plain language about the clinical risk model in production:

- a patient's risk ("63 year old man, asymptomatic chest pain, cholesterol 233") and why,
- drift of a site's data ("Has the data from VA Long Beach drifted?"),
- training runs ("Compare the last two training runs"), the model being served.

Retraining, promotion and rollback are never done at once: they become pending actions
that a person with the approver role approves, edits or rejects on the card.
"""


# The sign-in form asks for a name and key, not Chainlit's e-mail and password: worded for
# the local approver key `copilot up` made and printed, or for a key given to a person.
SIGN_IN_WORDING = {
    "title": f"Sign in to {UI_NAME}",
    "email": "Name (the one given with your key)",
    "placeholder": "e.g. ann",
    "password": "Key",
}
LOCAL_SIGN_IN_WORDING = {
    "title": f"Sign in to {UI_NAME}",
    "email": "Name (as `copilot up` printed it)",
    "password": "Key (as `copilot up` printed it)",
}


def local_sign_in(settings: Settings) -> str | None:
    """The local approver's name when the only key is the one `copilot up` made (kept in
    COPILOT_HOME), else None: people were given their names and keys."""
    keys = settings.api_keys()
    path = settings.local_approver_key_path
    if len(keys) != 1 or not path.is_file():
        return None
    kept = path.read_text(encoding="utf-8").strip()
    return keys[0].name if secrets.compare_digest(kept, keys[0].key) else None


def sign_in_wording(settings: Settings) -> dict[str, str]:
    """The sign-in form's title, labels and name placeholder."""
    local = local_sign_in(settings)
    if local is None:
        return SIGN_IN_WORDING
    return LOCAL_SIGN_IN_WORDING | {"placeholder": local}


class UiError(CopilotError):
    """The UI cannot start; the message says what to change."""


def app_root(settings: Settings) -> Path:
    """Where Chainlit keeps its files for this COPILOT_HOME."""
    return settings.home / "ui"


def auth_secret(root: Path) -> str:
    """The secret that signs sign-in tokens: CHAINLIT_AUTH_SECRET, else one kept in the
    app root (created once, so a restart does not sign everyone out)."""
    configured = os.environ.get("CHAINLIT_AUTH_SECRET")
    if configured:
        return configured
    path = root / "auth.secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def prepare(settings: Settings) -> Path:
    """The app root with our config and welcome page, and the environment Chainlit reads."""
    if not settings.api_keys():
        raise UiError(
            "COPILOT_API_KEYS is empty: the UI signs people in with its names and keys, "
            "e.g. COPILOT_API_KEYS='ann:approver:<key>,uma:user:<key>'"
        )
    if "chainlit" in sys.modules:
        raise UiError("chainlit was imported before its app root was set")
    from importlib.metadata import version  # noqa: PLC0415

    root = app_root(settings)
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    (root / ".chainlit" / "config.toml").write_text(
        CONFIG_TOML.format(name=UI_NAME, version=version("chainlit"))
    )
    # the English copy is the one served (the UI's language is en-US); the plain name is
    # Chainlit's fallback, and without both it warns on every page load
    for name in ("chainlit.md", "chainlit_en-US.md"):
        (root / name).write_text(README_MD)
    _write_translation(root, sign_in_wording(settings))
    os.environ["CHAINLIT_APP_ROOT"] = str(root)
    os.environ["CHAINLIT_AUTH_SECRET"] = auth_secret(root)
    # Settings come from the environment only; a stray .env must not change the UI alone.
    os.environ["CHAINLIT_ENV_FILE"] = os.devnull
    os.environ.setdefault("PYDANTIC_AI_NO_BANNER", "1")  # logs, not posters
    return root


def _write_translation(root: Path, wording: dict[str, str]) -> None:
    """Chainlit's English texts with our sign-in wording (it copies the others itself)."""
    spec = importlib.util.find_spec("chainlit")
    assert spec is not None and spec.origin is not None
    texts = json.loads((Path(spec.origin).parent / "translations" / "en-US.json").read_text())
    login = texts["auth"]["login"]
    login["title"] = wording["title"]
    login["form"]["email"]["label"] = wording["email"]
    login["form"]["email"]["required"] = "the name is required"
    login["form"]["email"]["placeholder"] = wording["placeholder"]
    login["form"]["password"]["label"] = wording["password"]
    login["form"]["password"]["required"] = "the key is required"
    translations = root / ".chainlit" / "translations"
    translations.mkdir(parents=True, exist_ok=True)
    (translations / "en-US.json").write_text(json.dumps(texts, indent=2, ensure_ascii=False))


def chat_module() -> str:
    """The path of the Chainlit file (Chainlit loads it by path)."""
    spec = importlib.util.find_spec("copilot.chat.app")
    assert spec is not None and spec.origin is not None
    return spec.origin


class RememberSource:
    """Makes each request's address known to the sign-in check (SIGN_IN_SOURCE)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        token = SIGN_IN_SOURCE.set(str(client[0]) if client else "unknown")
        try:
            await self.app(scope, receive, send)
        finally:
            SIGN_IN_SOURCE.reset(token)


def serve_ui(settings: Settings, host: str, port: int) -> None:
    """Runs the Chainlit UI in the foreground until Ctrl-C / SIGTERM."""
    prepare(settings)
    import uvicorn  # noqa: PLC0415
    from chainlit.auth import ensure_jwt_secret  # noqa: PLC0415
    from chainlit.config import config, load_module  # noqa: PLC0415
    from chainlit.server import app  # noqa: PLC0415

    config.run.host = host
    config.run.port = port
    config.run.headless = True  # never open a browser on the server
    config.run.module_name = chat_module()
    load_module(config.run.module_name)
    ensure_jwt_secret()
    server = uvicorn.Server(
        uvicorn.Config(
            RememberSource(app),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
