"""The repository holds sources: no local state or secrets are committed, or can be."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*arguments: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    assert git is not None
    return subprocess.run([git, *arguments], cwd=ROOT, capture_output=True, text=True, check=False)


def test_no_local_state_or_secret_is_committed_or_committable() -> None:
    if shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree").returncode:
        pytest.skip("not a git checkout")
    tracked = set(_git("ls-files").stdout.splitlines())
    assert not {"mlflow.db", ".env"} & tracked
    for private in (".env", "mlflow.db", ".copilot/copilot.db"):
        assert _git("check-ignore", "-q", "--no-index", private).returncode == 0, private
    assert _git("check-ignore", "-q", "--no-index", ".env.example").returncode == 1


def test_the_readme_commands_work_as_written() -> None:
    """After `uv run copilot up` the `copilot` script is in the project's environment, not
    on PATH: every command the reader is told to run says `uv run copilot`."""
    readme = (ROOT / "README.md").read_text()
    run_it = readme.split("## Run it", 1)[1].split("\n## ", 1)[0]
    told = re.findall(r"`((?:[\w. -]+ )?copilot [^`]*)`", run_it)
    assert told, "the Run it section names no copilot command"
    assert [command for command in told if " uv run copilot " not in f" {command}"] == []
