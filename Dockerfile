# syntax=docker/dockerfile:1
# One image for every service of docker-compose.yml: the copilot's services (`copilot serve
# model|api|ui`, `copilot train`) and the MLflow tracking server (mlflow is a dependency).
# Build: docker build -t mlops-copilot:local .   (docker compose builds it for you)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the locked environment, installed with uv into /app/.venv ----------------
FROM ${PYTHON_IMAGE} AS builder

# uv comes from PyPI, pinned to the version that wrote uv.lock.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

# Bytecode now: without .pyc files every import is 2-3x slower (mlflow 6-7 s, evidently
# 12-16 s), and the runtime user cannot write them into the root-owned environment.
# The image's own Python, never a downloaded one: the runtime stage has the same path.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# Then the project itself, as a wheel (--no-editable): the runtime needs no source tree.
# These are the packages of [tool.hatch.build.targets.wheel]; README.md is its readme.
COPY README.md ./
COPY copilot ./copilot
COPY evals ./evals
COPY graphs ./graphs
COPY model_service ./model_service
COPY prompts ./prompts
COPY tools ./tools
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# ---- runtime: the environment and an unprivileged user, nothing else -------------------
FROM ${PYTHON_IMAGE} AS runtime

# No system packages: xgboost-cpu, scikit-learn and psycopg[binary] ship their own
# libgomp and libpq in their wheels.
# State lives in volumes mounted at COPILOT_HOME and /mlflow/artifacts; creating them here
# owned by the user makes fresh named volumes start out writable by it.
RUN groupadd --system --gid 10001 copilot \
    && useradd --system --uid 10001 --gid copilot --home-dir /var/lib/copilot \
        --shell /usr/sbin/nologin copilot \
    && mkdir -p /var/lib/copilot /mlflow/artifacts \
    && chown copilot:copilot /var/lib/copilot /mlflow/artifacts

# Owned by root: the services run the code, they cannot change it.
COPY --from=builder /app/.venv /app/.venv

# HOME is the state volume too: matplotlib keeps its font cache and config there.
ENV PATH=/app/.venv/bin:$PATH \
    HOME=/var/lib/copilot \
    PYTHONUNBUFFERED=1 \
    COPILOT_HOME=/var/lib/copilot \
    MLFLOW_DISABLE_TELEMETRY=true

# A read-only working directory: nothing may land beside the code by accident.
WORKDIR /app
# Numeric, so that runtimes enforcing runAsNonRoot can check it without /etc/passwd.
USER 10001:10001

CMD ["copilot", "--help"]
