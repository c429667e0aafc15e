"""Configuration: the environment variables of docs/interfaces.md, read by one class.

Every field has an offline default; nothing here runs at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_service.cards import dataset_names

_LLM = re.compile(r"^(offline|openai:.+|openai-compatible:.+)$")
LOCAL_APPROVER_KEY_FILE = "local-approver.key"  # `copilot up`'s key when none is configured

Routing = Literal["tools", "json", "two-step"]
# By the kind of COPILOT_LLM (the part before ":"); see the fields' descriptions.
DEFAULT_ROUTING: dict[str, Routing] = {
    "offline": "tools",
    "openai": "tools",
    "openai-compatible": "two-step",
}
DEFAULT_TIMEOUT_SECONDS = {"offline": 60.0, "openai": 60.0, "openai-compatible": 300.0}


class ApiKey(BaseModel):
    name: str
    role: Literal["user", "approver"]
    key: str


class Settings(BaseSettings):
    """The copilot's configuration, from the environment (names as in docs/interfaces.md)."""

    model_config = SettingsConfigDict(
        extra="ignore", protected_namespaces=(), frozen=True, hide_input_in_errors=True
    )

    copilot_home: Path = Path(".copilot")
    mlflow_tracking_uri: str | None = None
    copilot_database_url: str | None = None
    model_service_url: str = "http://127.0.0.1:8000"
    copilot_llm: str = "offline"
    copilot_llm_base_url: str | None = None
    copilot_llm_routing: Routing | None = Field(
        default=None,
        description="How the router asks the LLM for a tool: 'tools' (native tool calling), "
        "'json' (one JSON schema over every tool, response_format json_object) or "
        "'two-step' (choose the tool from a short list, then fill only its arguments, both "
        f"as constrained JSON). Default: {DEFAULT_ROUTING['openai-compatible']!r} for "
        f"openai-compatible servers (measured best with small local models), "
        f"{DEFAULT_ROUTING['openai']!r} for openai.",
    )
    copilot_llm_reader_hint: bool = Field(
        default=True,
        description="Offer a real LLM the offline grammar's reading of each request (a tool "
        "and its arguments, a decline or a question back, marked as a guess to check); in "
        "two-step routing the model first judges it right or wrong, and overrules it only "
        "when sure (P(wrong) >= 0.85, where the server sends log-probabilities); where the "
        "grammar is unsure, the model's choice is taken only when as sure, else the grammar "
        "asks back; false: the model reads every request alone. No effect with the offline "
        "provider.",
    )
    copilot_llm_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=1800,
        description="Seconds one LLM request may take, all retries included; then it is "
        "cancelled (its connection closed, so the server stops generating). Default: "
        f"{DEFAULT_TIMEOUT_SECONDS['openai-compatible']:g} for openai-compatible servers (a "
        "cold 2,500-token prompt on a CPU), "
        f"{DEFAULT_TIMEOUT_SECONDS['openai']:g} for openai.",
    )
    # on 429 and 5xx (never a format error), within COPILOT_LLM_TIMEOUT_SECONDS
    copilot_llm_max_retries: int = Field(default=3, ge=0, le=10)
    openai_api_key: SecretStr | None = None  # OPENAI_API_KEY, as the OpenAI client reads it
    copilot_traces: bool = False  # trace each turn (LangGraph + PydanticAI) to MLflow
    copilot_api_keys: SecretStr | None = None  # never shown in a repr or an error
    copilot_action_ttl_seconds: int = Field(default=900, gt=0)
    copilot_four_eyes: bool = False
    copilot_dataset: str = "heart-disease"
    copilot_audit_key: SecretStr | None = None  # else COPILOT_HOME/audit.key (one host only)
    # `copilot monitor`: how often it checks, over which window, and when it proposes
    copilot_monitor_interval_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    copilot_monitor_window_hours: int = Field(default=168, ge=1, le=366 * 24)
    copilot_monitor_drift_share: float = Field(default=0.3, gt=0, le=1)
    copilot_monitor_min_auc: float = Field(default=0.7, ge=0.5, le=1)
    copilot_monitor_min_labels: int = Field(default=30, ge=1, le=10_000)
    copilot_webhook_url: str | None = None
    copilot_webhook_secret: SecretStr | None = None  # sent in X-Copilot-Webhook-Secret

    @field_validator("copilot_dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in dataset_names():
            raise ValueError(
                f"COPILOT_DATASET={value!r} is not a known dataset; known: {dataset_names()}"
            )
        return value

    @field_validator("copilot_llm")
    @classmethod
    def _llm_format(cls, value: str) -> str:
        if not _LLM.match(value):
            raise ValueError(
                f"COPILOT_LLM={value!r} must be 'offline', 'openai:<model>' or "
                "'openai-compatible:<model>'"
            )
        return value

    @field_validator("model_service_url", "copilot_llm_base_url", "copilot_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        name = (info.field_name or "").upper()
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{name}={value!r} must be an http(s) URL with a host")
        try:
            parts.port  # noqa: B018 - urlsplit checks the range only when asked
        except ValueError:
            raise ValueError(f"{name}={value!r} has a port outside 1-65535") from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.copilot_llm.startswith("openai-compatible:") and not self.copilot_llm_base_url:
            raise ValueError("COPILOT_LLM=openai-compatible:... needs COPILOT_LLM_BASE_URL")
        if self.copilot_llm.startswith("openai:") and not self.openai_api_key:
            raise ValueError("COPILOT_LLM=openai:... needs OPENAI_API_KEY")
        self.api_keys()  # validates the format
        return self

    @property
    def llm_kind(self) -> str:
        """offline, openai or openai-compatible."""
        return self.copilot_llm.partition(":")[0]

    @property
    def llm_routing(self) -> Routing:
        """COPILOT_LLM_ROUTING, or the default for this kind of LLM."""
        return self.copilot_llm_routing or DEFAULT_ROUTING[self.llm_kind]

    @property
    def llm_timeout_seconds(self) -> float:
        """COPILOT_LLM_TIMEOUT_SECONDS, or the default for this kind of LLM."""
        return self.copilot_llm_timeout_seconds or DEFAULT_TIMEOUT_SECONDS[self.llm_kind]

    @property
    def home(self) -> Path:
        return self.copilot_home.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def database_url(self) -> str:
        return self.copilot_database_url or f"sqlite:///{self.home / 'copilot.db'}"

    def audit_key(self) -> bytes:
        """The audit log's HMAC key (created under COPILOT_HOME when not configured)."""
        from copilot.audit import load_key  # noqa: PLC0415

        configured = self.copilot_audit_key.get_secret_value() if self.copilot_audit_key else None
        return load_key(self.home, configured)

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def local_approver_key_path(self) -> Path:
        """Where `copilot up` keeps the approver key it makes when COPILOT_API_KEYS is unset."""
        return self.home / LOCAL_APPROVER_KEY_FILE

    def api_keys(self) -> list[ApiKey]:
        """`COPILOT_API_KEYS` parsed: `name:role:key,name:role:key`."""
        if not self.copilot_api_keys:
            return []
        keys: list[ApiKey] = []
        for entry in self.copilot_api_keys.get_secret_value().split(","):
            parts = entry.strip().split(":", 2)
            if len(parts) != 3 or not all(parts) or parts[1] not in {"user", "approver"}:
                name = parts[0] if len(parts) > 1 and parts[0] else "?"
                raise ValueError(  # the entry itself is not shown: it may hold a key
                    f"COPILOT_API_KEYS entry {len(keys) + 1} (name {name!r}) must be "
                    "name:role:key with role 'user' or 'approver'"
                )
            if any(k.name == parts[0] for k in keys):  # one person, one role, on every surface
                raise ValueError(f"COPILOT_API_KEYS names {parts[0]!r} more than once")
            if any(k.key == parts[2] for k in keys):
                raise ValueError("COPILOT_API_KEYS gives the same key to two names")
            keys.append(
                ApiKey.model_validate({"name": parts[0], "role": parts[1], "key": parts[2]})
            )
        return keys
