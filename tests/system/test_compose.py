"""docker-compose.yml, the Dockerfile, .env.example and .dockerignore, checked without Docker.

Each service of our image runs a real `copilot` subcommand (parsed by the CLI itself) or
`mlflow server` with options MLflow has; every variable is a copilot setting or named below
with its reader; ports, health paths and service URLs agree; secrets come from .env.
Routes are read from the sources (`@app.get("/ready")`): importing the apps costs seconds.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from typer.exceptions import TyperException

from copilot.cli.main import app
from copilot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "mlops-copilot:local"
SERVICES = {
    "postgres",
    "mlflow",
    "train",
    "model-service",
    "copilot-api",
    "copilot-ui",
    "monitor",
}

# Variables that are not copilot settings, each with who reads it. Nothing else passes.
NOT_SETTINGS = {
    "MLFLOW_DISABLE_TELEMETRY": "MLflow: telemetry off in everything we start (docs/interfaces.md)",
    "MLFLOW_BACKEND_STORE_URI": "mlflow server's --backend-store-uri, the password kept off argv",
    "POSTGRES_USER": "the postgres image: the superuser it creates",
    "POSTGRES_DB": "the postgres image: the database it creates (ours)",
    "POSTGRES_PASSWORD": "the postgres image; interpolated into the two database URLs",
    "CHAINLIT_AUTH_SECRET": "copilot/chat/server.py: signs the chat's sign-in tokens",
    "PATH": "Dockerfile: the environment's bin/ first",
    "HOME": "Dockerfile: the user's home, where matplotlib keeps its cache and config",
    "PYTHONUNBUFFERED": "Dockerfile: log lines reach `docker logs` at once",
    "UV_COMPILE_BYTECODE": "Dockerfile builder: .pyc files at build time",
    "UV_LINK_MODE": "Dockerfile builder: copy out of the cache mount (no hard links across it)",
    "UV_PYTHON_DOWNLOADS": "Dockerfile builder: the image's Python, never a downloaded one",
    "UV_PROJECT_ENVIRONMENT": "Dockerfile builder: the environment goes to /app/.venv",
}
SECRET = re.compile(r"KEY|SECRET|PASSWORD|TOKEN")
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w./-]*)")
INTERPOLATION = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


# ---- reading the files ----------------------------------------------------------------


def read_dotenv(text: str, commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines (with `commented`, the `# KEY=VALUE` examples instead)."""
    pattern = re.compile(
        r"^# ([A-Z][A-Z0-9_]*)=(\S*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    )
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not commented and line.strip() and not line.startswith("#"):
            assert pattern.match(line), f".env.example line {number}: {line!r} is not KEY=VALUE"
        if match := pattern.match(line):
            values[match[1]] = match[2]
    return values


@cache
def dotenv() -> dict[str, str]:
    return read_dotenv((ROOT / ".env.example").read_text())


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME:?error}` and `$$`, from `env`."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, argument = match[1] or match[4], match[2], match[3]
        found = env.get(name)
        empty = found is None or (operator is not None and operator.startswith(":") and not found)
        if operator and operator.endswith("?") and empty:
            pytest.fail(f"${{{name}}} is required ({argument}) but .env.example does not set it")
        if operator and operator.endswith("-") and empty:
            return argument
        return found or ""

    return INTERPOLATION.sub(one, value)


def raw_environment(service: dict[str, Any]) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "use the mapping form of `environment`"
    return {key: None if value is None else str(value) for key, value in environment.items()}


def environment(
    service: dict[str, Any], dotenv_file: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's variables after `cp .env.example .env` (or with `dotenv_file` as .env):
    keys without a value come from .env when set there and are left unset otherwise."""
    dotenv_file = dotenv() if dotenv_file is None else dotenv_file
    resolved = {}
    for key, value in raw_environment(service).items():
        if value is not None:
            resolved[key] = interpolate(value, dotenv_file)
        elif key in dotenv_file:
            resolved[key] = dotenv_file[key]
    return resolved


def ours() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == IMAGE}


@dataclass(frozen=True)
class Invocation:
    """A `copilot` command line resolved by the CLI's own parser."""

    path: str  # e.g. "serve model"
    params: dict[str, Any]


def invoke(argv: list[str]) -> Invocation:
    """Resolves argv against the typer app: unknown commands or options, or bad values, fail."""
    assert argv[0] == "copilot", f"{argv} does not run the copilot"
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    args = list(argv[1:])
    while getattr(command, "commands", None) is not None:
        assert args, f"`copilot {' '.join(path)}` needs a subcommand"
        known = command.commands
        assert args[0] in known, f"`copilot {' '.join(path)}` has no {args[0]!r}: {sorted(known)}"
        path.append(args.pop(0))
        command = known[path[-1]]
    try:
        context = command.make_context(f"copilot {' '.join(path)}", args)
    except TyperException as error:
        pytest.fail(f"`{' '.join(argv)}`: {error}")
    return Invocation(" ".join(path), dict(context.params))


def routes(source: Path, function: str | None = None) -> set[str]:
    """Paths declared with `@x.get(...)` / `@x.route(...)` (in `function` when given)."""
    tree: ast.AST = ast.parse(source.read_text())
    if function is not None:
        tree = next(
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
        )
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in {"get", "route", "api_route"}
                and decorator.args
            ):
                continue
            path = decorator.args[0]
            if isinstance(path, ast.Call) and len(path.args) == 1:  # _add_static_prefix("/x")
                path = path.args[0]
            if isinstance(path, ast.Constant) and isinstance(path.value, str):
                found.add(path.value)
    return found


def package_file(package: str, *parts: str) -> Path:
    """A file of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    return Path(spec.origin).parent.joinpath(*parts)


@cache
def mlflow_server_options() -> dict[str, str | None]:
    """`mlflow server`'s flags and the variable each one reads, from MLflow's sources."""
    shared = {
        node.targets[0].id: node.value
        for node in ast.parse(package_file("mlflow", "utils", "cli_args.py").read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    cli = ast.parse(package_file("mlflow", "cli", "__init__.py").read_text())
    server = next(n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name == "server")
    options: dict[str, str | None] = {}
    for decorator in server.decorator_list:
        name = ast.unparse(decorator)
        option = (
            shared[name.removeprefix("cli_args.")] if name.startswith("cli_args.") else decorator
        )
        if not (isinstance(option, ast.Call) and ast.unparse(option.func) == "click.option"):
            continue
        envvar = next((k.value for k in option.keywords if k.arg == "envvar"), None)
        for arg in option.args:
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("-"):
                for flag in str(arg.value).split("/"):
                    options[flag] = envvar.value if isinstance(envvar, ast.Constant) else None
    return options


# ---- the services ---------------------------------------------------------------------


def serving_port(name: str) -> int:
    """The port the service's own command listens on."""
    command = compose()["services"][name]["command"]
    if command[0] == "mlflow":
        return int(command[command.index("--port") + 1])
    return int(invoke(command).params["port"])


def test_the_services_are_the_production_shape() -> None:
    assert set(compose()["services"]) == SERVICES
    assert set(ours()) == SERVICES - {"postgres"}, "every other service runs our one image"
    for name, service in ours().items():
        assert service["build"] == {"context": ".", "target": "runtime"}, name
        assert "user" not in service, f"{name}: the image's non-root user must not be overridden"


def test_every_copilot_command_is_a_real_subcommand_with_valid_options() -> None:
    invocations = {
        name: invoke(service["command"])
        for name, service in ours().items()
        if service["command"][0] == "copilot"
    }
    assert {name: i.path for name, i in invocations.items()} == {
        "train": "train",
        "model-service": "serve model",
        "copilot-api": "serve api",
        "copilot-ui": "serve ui",
        "monitor": "monitor",
    }
    # A one-shot that must not stack a new @challenger on every `docker compose up`.
    assert invocations["train"].params["if_missing"] is True
    for name, invocation in invocations.items():
        if invocation.path.startswith("serve"):
            assert invocation.params["host"] == "0.0.0.0", f"{name}: unreachable from the network"


def test_mlflow_runs_its_tracking_server_with_options_it_has() -> None:
    command = compose()["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    options = mlflow_server_options()
    flags = [arg for arg in command[2:] if arg.startswith("-")]
    unknown = [flag for flag in flags if flag not in options]
    assert not unknown, f"mlflow server has no {unknown}; it has {sorted(options)}"
    assert "--serve-artifacts" in flags and "--backend-store-uri" not in flags
    assert options["--backend-store-uri"] == "MLFLOW_BACKEND_STORE_URI"
    # The Host header every other service sends must pass MLflow's DNS-rebinding check.
    tracking = urlsplit(environment(compose()["services"]["train"])["MLFLOW_TRACKING_URI"])
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert tracking.netloc in allowed
    assert tracking.port == serving_port("mlflow")


def test_ports_are_the_ports_the_commands_listen_on() -> None:
    published = []
    for name, service in compose()["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).count(":") == 2, f"{name}: {mapping} is not HOST_IP:PORT:PORT"
            host, host_port, container_port = str(mapping).split(":")
            assert host == "127.0.0.1", f"{name}: {mapping} must publish on 127.0.0.1 only"
            assert int(container_port) == serving_port(name), f"{name}: {mapping}"
            published.append(int(host_port))
    assert len(published) == len(set(published)) == 4


def test_healthchecks_ask_paths_the_services_serve() -> None:
    served = {
        "mlflow": routes(package_file("mlflow", "server", "__init__.py")),
        "model-service": routes(ROOT / "model_service" / "app.py", "create_app"),
        "copilot-api": routes(ROOT / "copilot" / "api" / "app.py", "create_api"),
        # Chainlit answers every unknown path with its page: only a declared route counts.
        "copilot-ui": routes(package_file("chainlit", "server.py")),
    }
    checked = {}
    for name, paths in served.items():
        test = compose()["services"][name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: the slim image has no curl"
        match = HEALTH_URL.search(test[3])
        assert match, f"{name}: no http://127.0.0.1:PORT/PATH in {test[3]!r}"
        assert int(match[1]) == serving_port(name), f"{name} listens on {serving_port(name)}"
        assert match[2] in paths, f"{name} serves no {match[2]}; it has {sorted(paths)}"
        checked[name] = match[2]
    # The services whose readiness means something (a model loaded; database and model up).
    assert checked["model-service"] == checked["copilot-api"] == "/ready"

    postgres = compose()["services"]["postgres"]
    test = postgres["healthcheck"]["test"]
    assert test[1] == "pg_isready"
    assert test[test.index("--username") + 1] == postgres["environment"]["POSTGRES_USER"]
    assert test[test.index("--dbname") + 1] == postgres["environment"]["POSTGRES_DB"]


def test_every_variable_is_a_setting_or_named_with_its_reader() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    assert not settings & set(NOT_SETTINGS), "a setting needs no whitelist entry"
    known = settings | set(NOT_SETTINGS)
    used: set[str] = set()
    for name, service in compose()["services"].items():
        unknown = set(raw_environment(service)) - known
        assert not unknown, f"{name}: {sorted(unknown)} are neither settings nor whitelisted"
        used |= set(raw_environment(service))
    for source, names in (
        (".env.example", set(dotenv())),
        (
            ".env.example (commented examples)",
            set(read_dotenv((ROOT / ".env.example").read_text(), commented=True)),
        ),
        ("Dockerfile ENV", set(dockerfile_env())),
    ):
        unknown = names - known
        assert not unknown, f"{source}: {sorted(unknown)} are neither settings nor whitelisted"
        used |= names
    assert set(NOT_SETTINGS) <= used, f"unused whitelist entries: {set(NOT_SETTINGS) - used}"


def test_env_example_configures_the_stack_and_every_service_validates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    referenced = {m[1] or m[4] for m in INTERPOLATION.finditer(raw) if m[0] != "$$"}
    passed_through = {
        key
        for s in compose()["services"].values()
        for key, v in raw_environment(s).items()
        if v is None
    }
    examples = read_dotenv((ROOT / ".env.example").read_text(), commented=True)
    dead = set(dotenv()) - referenced - passed_through
    assert not dead, f".env.example sets {sorted(dead)}, which no service reads"
    assert set(examples) <= passed_through | referenced, "a commented example no service reads"

    names = {name.upper() for name in Settings.model_fields}
    for name in names:
        monkeypatch.delenv(name, raising=False)

    def settings(env: dict[str, str]) -> Settings:
        """As a service reads them: an invalid value stops it at start."""
        return Settings(**{key.lower(): value for key, value in env.items() if key in names})

    # The .env.example as it is, and a .env with only what Compose requires (the defaults).
    required = {m[1] for m in INTERPOLATION.finditer(raw) if m[2] and m[2].endswith("?")}
    minimal = {key: value for key, value in dotenv().items() if key in required}
    for name, service in ours().items():
        for dotenv_file in (dotenv(), minimal):
            env = environment(service, dotenv_file)
            assert env.get("MLFLOW_DISABLE_TELEMETRY") == "true", f"{name}: telemetry must be off"
            settings(env)
    for key, value in examples.items():
        if key != "COPILOT_LLM":  # its examples need their companions (key, base URL)
            settings({key: value})
    for name in ("copilot-api", "copilot-ui"):
        agent = settings(environment(ours()[name]))
        keys = agent.api_keys()
        assert any(k.role == "approver" for k in keys), f"{name}: nobody could approve"
        assert len({k.name for k in keys}) == len({k.key for k in keys}) == len(keys)
        assert agent.copilot_audit_key, f"{name}: replicas need one audit key"


def test_service_urls_name_services_ports_and_databases_that_exist() -> None:
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    init_sql = compose()["configs"]["postgres-init"]["content"]
    databases = {postgres["POSTGRES_DB"], *re.findall(r"CREATE DATABASE (\w+);", init_sql)}
    used_databases = []
    for name, service in services.items():
        env = environment(service)
        for key in ("MLFLOW_TRACKING_URI", "MODEL_SERVICE_URL"):
            if key in env:
                url = urlsplit(env[key])
                assert url.hostname in services, f"{name}: {key} names no service"
                assert url.port == serving_port(url.hostname), f"{name}: {key}={env[key]}"
                assert url.hostname in service.get("depends_on", {}), f"{name} needs {url.hostname}"
        for key in ("COPILOT_DATABASE_URL", "MLFLOW_BACKEND_STORE_URI"):
            if key in env:
                url = urlsplit(env[key])
                assert url.scheme in {"postgresql", "postgresql+psycopg"}, f"{name}: {key}"
                assert (url.hostname, url.port) == ("postgres", 5432), f"{name}: {key}"
                assert url.username == postgres["POSTGRES_USER"], f"{name}: {key}"
                assert url.password == dotenv()["POSTGRES_PASSWORD"], f"{name}: {key}"
                assert url.path.lstrip("/") in databases, f"{name}: {key} names no database"
                assert "postgres" in service.get("depends_on", {}), f"{name} needs postgres"
                used_databases.append((key, url.path))
    # MLflow's migrations and ours never meet in one database.
    assert len({path for key, path in used_databases if key == "MLFLOW_BACKEND_STORE_URI"}) == 1
    assert len(set(used_databases)) == 2


def test_start_order_waits_for_health_and_for_the_trained_model() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully"
                if "healthcheck" not in services[dependency]
                else "service_healthy"
            )
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
    assert services["train"]["restart"] == "no"
    assert "train" in services["model-service"]["depends_on"]


def test_state_lives_in_declared_volumes() -> None:
    declared = set(compose()["volumes"])
    mounts: dict[str, dict[str, str]] = {}
    for name, service in compose()["services"].items():
        mounts[name] = dict(reversed(str(v).split(":", 1)) for v in service.get("volumes", []))
        unknown = set(mounts[name].values()) - declared
        assert not unknown, f"{name} mounts undeclared volumes {unknown}"
    assert declared == {v for m in mounts.values() for v in m.values()}, "an unused volume"
    for name in ("train", "model-service", "copilot-api", "copilot-ui", "monitor"):
        assert environment(ours()[name])["COPILOT_HOME"] in mounts[name], name
    mlflow = compose()["services"]["mlflow"]["command"]
    assert mlflow[mlflow.index("--artifacts-destination") + 1] in mounts["mlflow"]
    assert "/var/lib/postgresql/data" in mounts["postgres"]


def test_no_secret_is_written_into_the_compose_file() -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    secrets = {key: value for key, value in dotenv().items() if SECRET.search(key)}
    assert set(secrets) == {
        "POSTGRES_PASSWORD",
        "COPILOT_API_KEYS",
        "COPILOT_AUDIT_KEY",
        "CHAINLIT_AUTH_SECRET",
    }
    for key, value in secrets.items():
        # Placeholders only: a real secret never belongs in the repository.
        parts = [e.split(":", 2)[-1] for e in value.split(",")] if key.endswith("KEYS") else [value]
        for part in parts:
            assert part.startswith("change-me"), f".env.example: {key} holds a real secret?"
            assert part not in raw, f"the value of {key} is written into docker-compose.yml"
    for name, service in compose()["services"].items():
        for key, value in raw_environment(service).items():
            if value is None:
                continue
            if SECRET.search(key):
                assert re.fullmatch(rf"\$\{{{key}(:\?[^}}]*)?\}}", value), f"{name}: {key}"
            url = urlsplit(value)
            if url.scheme and url.password is not None:
                assert url.password.startswith("${"), f"{name}: {key} has a password inline"


# ---- the image ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, arguments in dockerfile():
        if keyword == "FROM":
            match = re.search(r"\s+AS\s+(\S+)$", arguments, re.IGNORECASE)
            assert match, f"FROM {arguments}: every stage is named"
            current = found.setdefault(match[1], [])
        current.append((keyword, arguments))
    return found


def dockerfile_env() -> dict[str, str]:
    return {
        key: value
        for keyword, arguments in dockerfile()
        if keyword == "ENV"
        for key, value in re.findall(r"(\w+)=(\S+)", arguments)
    }


def copy_sources(stage: list[tuple[str, str]]) -> list[str]:
    """What a stage's COPY instructions take from the build context."""
    return [
        source
        for keyword, arguments in stage
        if keyword == "COPY" and "--from=" not in arguments
        for source in [a for a in arguments.split() if not a.startswith("--")][:-1]
    ]


def test_the_image_is_built_with_uv_in_stages_and_runs_as_a_user() -> None:
    built = stages()
    assert list(built) == ["builder", "runtime"], "the compose target is the last stage"
    builder = " ".join(f"{k} {a}" for k, a in built["builder"])
    assert "uv sync --locked --no-dev --no-install-project" in builder
    assert "uv sync --locked --no-dev --no-editable" in builder
    assert "UV_COMPILE_BYTECODE=1" in builder
    copied = set(copy_sources(built["builder"]))
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert set(wheel["targets"]["wheel"]["packages"]) | {"README.md", "pyproject.toml"} <= copied

    runtime = built["runtime"]
    assert ("COPY", "--from=builder /app/.venv /app/.venv") in runtime
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"USER {users}"
    assert dockerfile_env()["MLFLOW_DISABLE_TELEMETRY"] == "true"


def dockerignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_holds_the_sources_and_no_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for private in (
        ".venv/bin/python",
        ".copilot/copilot.db",
        ".git/config",
        ".env",
        "mlflow.db",
        "mlruns/0/meta.yaml",
        "copilot/cli/__pycache__/main.cpython-311.pyc",
    ):
        assert dockerignored(patterns, private), f"{private} would be sent to the build"
    needed = [
        path.relative_to(ROOT).as_posix()
        for source in copy_sources(stages()["builder"])
        for path in ([ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "prompts/router.md" in needed and "uv.lock" in needed
    missing = [path for path in needed if dockerignored(patterns, path)]
    assert not missing, f".dockerignore leaves out files the Dockerfile copies: {missing[:5]}"
