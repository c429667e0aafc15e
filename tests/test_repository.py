"""The repository holds sources: no local state or secrets are committed, or can be."""

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_SKIPPED

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


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def test_the_gate_says_what_it_needs_and_runs_without_postgresql_or_root() -> None:
    """README (Test it): `bash .ci/run` expects PostgreSQL and, for chromium, root; the
    command it gives for the gate without them keeps the PostgreSQL variable empty, so the
    PostgreSQL tests skip, and chromium is installed only by root (else the browser test
    skips). Each skip says why."""
    test_it = _section((ROOT / "README.md").read_text(), "Test it")
    commands = re.findall(r"```sh\n(.*?)\n```", test_it, flags=re.DOTALL)
    assert "COPILOT_TEST_POSTGRES_URL= bash .ci/run" in commands
    flat = " ".join(test_it.split())
    assert "is `bash .ci/run`" in flat and "PostgreSQL at 127.0.0.1:5432" in flat
    assert "root only to `apt-get install chromium`" in flat

    gate = (ROOT / ".ci" / "run").read_text()
    (postgres,) = [line for line in gate.splitlines() if line.startswith("export COPILOT_TEST_")]
    said = 'printf %s "$COPILOT_TEST_POSTGRES_URL"'
    bash = shutil.which("bash")
    assert bash is not None
    empty = subprocess.run(
        [bash, "-c", f"{postgres}; {said}"],
        env={"PATH": "/usr/bin:/bin", "COPILOT_TEST_POSTGRES_URL": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert empty.stdout == ""  # set empty: stays empty, the PostgreSQL tests skip
    unset = subprocess.run(
        [bash, "-c", f"{postgres}; {said}"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert unset.stdout == "postgresql://postgres@127.0.0.1:5432/test"
    (install,) = [line for line in gate.splitlines() if "chromium" in line and "if " in line]
    assert '"$(id -u)" = 0' in install  # apt-get only as root

    from tests.conftest import POSTGRES_SKIPPED
    from tests.system import test_browser

    assert POSTGRES_SKIPPED.startswith("COPILOT_TEST_POSTGRES_URL is not set (or set empty)")
    marks = test_browser.pytestmark
    (skip,) = [m for m in (marks if isinstance(marks, list) else [marks]) if m.name == "skipif"]
    assert skip.kwargs["reason"].startswith(
        "Debian's chromium is not installed at /usr/bin/chromium: browser test skipped"
    )


def test_without_postgresql_its_tests_skip_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.copilot import test_postgres

    monkeypatch.setenv("COPILOT_TEST_POSTGRES_URL", "")  # as `COPILOT_TEST_POSTGRES_URL= ...`
    skipping = importlib.reload(test_postgres)
    try:
        marks = skipping.pytestmark
        (skip,) = [m for m in (marks if isinstance(marks, list) else [marks]) if m.name == "skipif"]
        assert skip.args == (True,) and skip.kwargs["reason"] == POSTGRES_SKIPPED
    finally:
        monkeypatch.undo()
        importlib.reload(test_postgres)


def test_the_project_documents_itself_without_links_outside_it() -> None:
    """No tracked file points to `../shared/` (or anything else beside the repository)."""
    if shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree").returncode:
        pytest.skip("not a git checkout")
    found = _git(
        "grep", "-n", "-I", "-e", "\\.\\./shared/", "--", ".", ":!tests/test_repository.py"
    )
    assert found.returncode == 1, found.stdout  # 1: no match


def test_the_modules_started_first_in_parallel_runs_exist() -> None:
    """tests/conftest.py names the longest modules for pytest-xdist to start first; a
    renamed one would silently fall back to its place in the collection."""
    from tests.conftest import LONGEST_MODULES

    assert [name for name in LONGEST_MODULES if not (ROOT / name).is_file()] == []
