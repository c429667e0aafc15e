"""A pytest whose shell names a real LLM still runs every test offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = {
    "COPILOT_LLM": "openai:gpt-4.1-mini",
    "OPENAI_API_KEY": "sk-from-the-shell",
    "COPILOT_LLM_BASE_URL": "http://127.0.0.1:9/v1",
    "COPILOT_LLM_ROUTING": "json",
}


def test_a_shell_naming_a_real_llm_changes_nothing_in_the_tests() -> None:
    """tests/test_no_real_llm.py, run by a pytest whose shell names OpenAI, a key and a base URL."""
    env = {**os.environ, **SHELL, "MLFLOW_DISABLE_TELEMETRY": "true"}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",  # one file: no workers to start (pyproject's addopts ask for them)
            "tests/test_no_real_llm.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "3 passed" in ran.stdout
