"""docs/interfaces.md against the code, both ways: settings, CLI commands and their
arguments and options, HTTP routes, tools and event names.

The doc is read as Markdown tables, each under its heading; a table's first row names its
columns, and a cell's values are its `backticked` spans. Nothing here starts a service:
the apps are built without running their lifespans, and their routes read as declared.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from pydantic import AliasChoices, AliasPath

from copilot.actions import STATE_CHANGING
from copilot.api.app import create_api
from copilot.cli.main import app as cli_app
from copilot.settings import Settings
from model_service.app import ServiceConfig, create_app
from model_service.cards import get_card
from tools.catalog import READ_ONLY

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interfaces.md"

Row = dict[str, str]


def read_tables(text: str) -> dict[str, list[Row]]:
    """Each table's rows (column -> cell) by the heading above it (one table per heading)."""
    tables: dict[str, list[Row]] = {}
    columns: list[str]
    heading, columns = "", []
    for line in text.splitlines():
        if line.startswith("#"):
            heading, columns = line.lstrip("#").strip(), []
        elif not line.startswith("|"):
            columns = []
        else:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not columns:
                assert heading not in tables, f"docs/interfaces.md: two tables under {heading!r}"
                columns, tables[heading] = cells, []
            elif not all(set(c) <= set("-: ") for c in cells):  # not the |---| row
                tables[heading].append(dict(zip(columns, cells, strict=True)))
    return tables


def code(cell: str) -> list[str]:
    """The `backticked` spans of a cell."""
    return re.findall(r"`([^`]+)`", cell)


@pytest.fixture(scope="module")
def tables() -> dict[str, list[Row]]:
    return read_tables(DOC.read_text())


def table(tables: dict[str, list[Row]], heading: str) -> list[Row]:
    assert tables.get(heading), f"docs/interfaces.md has no table under the heading {heading!r}"
    return tables[heading]


def first(row: Row) -> str:
    """The row's key: the first backticked span of its first cell."""
    cell = next(iter(row.values()))
    spans = code(cell)
    assert spans, f"docs/interfaces.md: the first cell of a row is not in backticks: {cell!r}"
    return spans[0]


def compare(what: str, documented: set[str], in_code: set[str], code_side: str) -> None:
    """Both directions at once, naming what is missing where."""
    problems = []
    if documented - in_code:
        problems.append(
            f"in docs/interfaces.md but not in {code_side}: {sorted(documented - in_code)}"
        )
    if in_code - documented:
        problems.append(
            f"in {code_side} but not in docs/interfaces.md: {sorted(in_code - documented)}"
        )
    assert not problems, f"{what}: " + "; ".join(problems)


# ---- settings --------------------------------------------------------------------------


def env_names() -> dict[str, str]:
    """Each Settings field's environment variable (as pydantic-settings reads them) -> field."""
    config = Settings.model_config
    names = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            choices = [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, str):
            choices = [alias]
        else:  # no alias (an AliasPath never names a variable): the prefixed field name
            assert not isinstance(alias, AliasPath), f"Settings.{name}: an AliasPath"
            choices = [f"{config.get('env_prefix', '')}{name}"]
        for choice in choices:
            names[choice if config.get("case_sensitive") else choice.upper()] = name
    return names


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_settings_match_the_settings_class(tables: dict[str, list[Row]]) -> None:
    rows = {first(row): row for row in table(tables, "Settings")}
    fields = env_names()
    compare("settings", set(rows), set(fields), "copilot.settings.Settings")
    for variable, row in rows.items():
        default = Settings.model_fields[fields[variable]].default
        cell = row["default"]
        if default is None:
            assert cell.startswith("unset"), (
                f"{variable}: Settings has no default, so docs/interfaces.md should say "
                f"'unset', not {cell!r}"
            )
        else:
            said = code(cell)[0] if code(cell) else cell
            assert said == shown(default), (
                f"{variable}: default {shown(default)!r} in Settings, "
                f"{said!r} in docs/interfaces.md"
            )


def test_other_environment_variables_are_read_where_the_doc_says(
    tables: dict[str, list[Row]],
) -> None:
    settings_names = env_names()
    for row in table(tables, "Other environment variables"):
        variable, where = first(row), ROOT / code(row["read by"])[0]
        assert variable not in settings_names, f"{variable} is a Settings field: list it there"
        files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
        assert any(f'"{variable}"' in f.read_text() for f in files), (
            f"{variable}: not read in {where.relative_to(ROOT)}, as docs/interfaces.md says"
        )


# ---- CLI -------------------------------------------------------------------------------


def cli_commands() -> dict[str, Any]:
    """Every runnable command of the Typer app by its path, e.g. "copilot actions approve"."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        subcommands = getattr(command, "commands", None)  # a group
        if subcommands is None:
            found[path] = command
        for name, sub in (subcommands or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(cli_app), "copilot")
    return found


def test_cli_commands_match_the_typer_app(tables: dict[str, list[Row]]) -> None:
    rows = {first(row): row for row in table(tables, "CLI")}
    commands = cli_commands()
    compare("CLI commands", set(rows), set(commands), "the Typer app (copilot.cli.main)")
    for path, row in rows.items():
        params = commands[path].params
        options = {
            flag
            for p in params
            if p.param_type_name == "option"
            for flag in [*p.opts, *p.secondary_opts]
            if flag != "--help"
        }
        documented = set(re.findall(r"--[a-z0-9][a-z0-9-]*", " ".join(code(row["options"]))))
        compare(f"options of `{path}`", documented, options, "the command")
        arguments = {p.name.upper() for p in params if p.param_type_name == "argument"}
        documented = set(re.findall(r"[A-Z][A-Z0-9_]*", " ".join(code(row["arguments"]))))
        compare(f"arguments of `{path}`", documented, arguments, "the command")


# ---- HTTP ------------------------------------------------------------------------------


def routes(app: FastAPI) -> set[str]:
    """Every route but FastAPI's own docs and schema, as "METHOD /path"."""
    own = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {
        f"{method} {route.path}"
        for route in app.routes
        if getattr(route, "path", None) not in own
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the test's arguments only, whatever this shell has set."""
    for variable in env_names():
        monkeypatch.delenv(variable, raising=False)


def test_model_service_routes_match_the_app(tables: dict[str, list[Row]], tmp_path: Path) -> None:
    config = ServiceConfig(
        card=get_card("heart-disease"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        database_url=f"sqlite:///{tmp_path / 'copilot.db'}",
        reports_dir=tmp_path / "reports",
    )
    documented = {first(row) for row in table(tables, "Model service routes")}
    compare("model service routes", documented, routes(create_app(config)), "model_service.app")


@pytest.mark.usefixtures("clean_env")
def test_agent_api_routes_match_the_app(tables: dict[str, list[Row]], tmp_path: Path) -> None:
    settings = Settings(copilot_home=tmp_path, copilot_api_keys="doc:user:doc-key")
    documented = {first(row) for row in table(tables, "Agent API routes")}
    compare("agent API routes", documented, routes(create_api(settings)), "copilot.api.app")


# ---- tools and events ------------------------------------------------------------------


def test_tools_match_the_catalogs(tables: dict[str, list[Row]]) -> None:
    rows = {first(row): row for row in table(tables, "Tools")}
    kinds = {"read-only": READ_ONLY, "state-changing": STATE_CHANGING}
    for name, row in rows.items():
        assert row["kind"] in kinds, f"{name}: kind {row['kind']!r} is not one of {list(kinds)}"
    for kind, catalog in kinds.items():
        documented = {name for name, row in rows.items() if row["kind"] == kind}
        compare(f"{kind} tools", documented, set(catalog), f"the {kind} catalog")
    for name, row in rows.items():
        model = kinds[row["kind"]][name].input_model
        compare(
            f"arguments of {name}",
            set(code(row["arguments"])),
            set(model.model_fields),
            model.__name__,
        )


def test_events_match_what_the_turns_publish(tables: dict[str, list[Row]]) -> None:
    """Event names as the code publishes them: `yield "name", data` from the graph session,
    `publish("name", ...)` around it."""
    sources = [*ROOT.joinpath("copilot").rglob("*.py"), *ROOT.joinpath("graphs").rglob("*.py")]
    published = {
        name
        for source in sources
        for name in re.findall(r'(?:yield|publish\()\s*"([a-z_]+)",', source.read_text())
    }
    documented = {first(row) for row in table(tables, "Events (SSE)")}
    compare("SSE events", documented, published, "copilot/ and graphs/ (yield or publish)")


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md"])
def test_paths_the_documents_point_to_exist(document: str) -> None:
    """Every file or folder of ours a document names in backticks is in the tree."""
    text = (ROOT / document).read_text(encoding="utf-8")
    tops = ("copilot/", "graphs/", "tools/", "model_service/", "evals/", "prompts/", "docs/")
    named = {
        span
        for span in re.findall(r"`([a-z_/]+(?:\.py|\.md|/))`", text)
        if span.startswith(tops) and "*" not in span
    }
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert named and not missing, f"{document} names paths that do not exist: {missing}"
