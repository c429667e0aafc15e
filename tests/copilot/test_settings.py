import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from copilot.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "COPILOT_HOME",
        "MLFLOW_TRACKING_URI",
        "COPILOT_DATABASE_URL",
        "MODEL_SERVICE_URL",
        "COPILOT_LLM",
        "COPILOT_LLM_BASE_URL",
        "COPILOT_API_KEYS",
        "COPILOT_DATASET",
    ):
        monkeypatch.delenv(name, raising=False)


def test_offline_defaults_live_under_copilot_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == tmp_path / ".copilot"
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/.copilot/mlflow.db"
    assert settings.database_url == f"sqlite:///{tmp_path}/.copilot/copilot.db"
    assert settings.copilot_llm == "offline" and settings.api_keys() == []
    assert settings.copilot_action_ttl_seconds == 900 and settings.copilot_four_eyes is False


def test_explicit_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("COPILOT_DATABASE_URL", "postgresql://copilot@db/copilot")
    monkeypatch.setenv("COPILOT_API_KEYS", "ann:approver:k1, bob:user:k:2")
    monkeypatch.setenv("COPILOT_LLM", "openai-compatible:qwen")
    monkeypatch.setenv("COPILOT_LLM_BASE_URL", "http://127.0.0.1:8080/v1")
    settings = Settings()
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.database_url == "postgresql://copilot@db/copilot"
    assert [(k.name, k.role, k.key) for k in settings.api_keys()] == [
        ("ann", "approver", "k1"),
        ("bob", "user", "k:2"),
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COPILOT_LLM", "openai-compatible:qwen", "needs COPILOT_LLM_BASE_URL"),
        ("MODEL_SERVICE_URL", "localhost:8000", "must be an http(s) URL"),
        ("COPILOT_ACTION_TTL_SECONDS", "0", "greater than 0"),
        ("COPILOT_API_KEYS", "ann:approver:", "must be name:role:key"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()
