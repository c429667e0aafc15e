"""The MLflow model registry as the copilot uses it: aliases, versions, loading a version.

Aliases: `champion` is what the service serves; `challenger` is the newest candidate
waiting for promotion; `previous-champion` is the champion before the last promotion or
rollback, so that either can be undone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from model_service.errors import ModelServiceError
from model_service.risk_model import RiskModel

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

MODEL_ARTIFACT = "model"
REFERENCE_ARTIFACT = "reference/reference.csv"


class RegistryError(ModelServiceError, LookupError):
    """The registry lacks something a request needs (a model, an alias, a version)."""


class VersionNotFound(RegistryError):
    """A model version that is not (or no longer) in the registry."""


def disable_mlflow_telemetry() -> None:
    """MLflow telemetry does a DNS lookup on start; it must be off in all we run. Its
    download progress bars would only clutter a service's log."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def client(tracking_uri: str) -> Any:
    """An `MlflowClient` bound to `tracking_uri` (nothing global is changed)."""
    disable_mlflow_telemetry()
    from mlflow import MlflowClient  # noqa: PLC0415 - mlflow takes seconds to import

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def is_not_found(error: Exception) -> bool:
    """Whether an MLflow error means "no such model, version or alias" (and nothing worse)."""
    code = getattr(error, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(error)
    )


def register_version(mlflow_client: Any, model_name: str, model_id: str, run_id: str) -> str:
    """Registers a logged model as a new version of `model_name` (created on first use) and
    returns the version number. Unlike `log_model(registered_model_name=...)`, it prints
    nothing: MLflow's "Registered model ... already exists" must not reach a chat."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as error:
        if getattr(error, "error_code", "") not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise
    version = mlflow_client.create_model_version(
        model_name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
    )
    number = str(version.version)
    # the logged model links to its versions in MLflow's UI, as MLflow's own registration does
    mlflow_client.set_logged_model_tags(
        model_id,
        {"mlflow.modelVersions": json.dumps([{"name": model_name, "version": number}])},
    )
    return number


def alias_version(mlflow_client: Any, model_name: str, alias: str) -> Any | None:
    """The `ModelVersion` behind `name@alias`, or None when the model or alias is absent.

    Any other registry error (unreachable, locked) propagates: absence must be certain
    before anyone acts on it (e.g. by making a new version the champion)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        return mlflow_client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if is_not_found(error):
            return None
        raise


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, ready to serve."""

    name: str
    version: str
    alias: str | None
    run_id: str
    model: RiskModel
    metrics: dict[str, float]
    reference: pd.DataFrame
    params: dict[str, str] = field(default_factory=dict)  # the run's: sites, seed, ...


def load_version(
    tracking_uri: str, model_name: str, version: str, alias: str | None
) -> LoadedModel:
    """Loads one registered version with its run's metrics and reference data snapshot."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    mlflow_client = client(tracking_uri)
    try:
        model_version = mlflow_client.get_model_version(model_name, version)
    except MlflowException as error:
        if is_not_found(error):
            raise VersionNotFound(f"model {model_name!r} has no version {version}") from None
        raise
    run = mlflow_client.get_run(model_version.run_id)
    import mlflow.sklearn  # noqa: PLC0415

    model = mlflow.sklearn.load_model(
        mlflow_client.get_model_version_download_uri(model_name, version)
    )
    if not isinstance(model, RiskModel):
        raise RegistryError(
            f"model {model_name!r} version {version} is a {type(model).__name__}, not a RiskModel"
        )
    with tempfile.TemporaryDirectory() as directory:
        path = mlflow_client.download_artifacts(model_version.run_id, REFERENCE_ARTIFACT, directory)
        reference = pd.read_csv(Path(path))
    return LoadedModel(
        name=model_name,
        version=str(version),
        alias=alias,
        run_id=model_version.run_id,
        model=model,
        metrics=dict(run.data.metrics),
        reference=reference,
        params=dict(run.data.params),
    )


def run_artifact(tracking_uri: str, run_id: str, path: str) -> bytes | None:
    """The content of one artifact of a run, or None when the run has no such artifact."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as directory:
        try:
            local = client(tracking_uri).download_artifacts(run_id, path, directory)
        except (MlflowException, OSError):
            return None
        return Path(local).read_bytes()


def registry_id(tracking_uri: str) -> str:
    """A short fingerprint of a registry's URI: lets a client tell whether the model service
    follows the registry it just changed, without the URI (and any credentials) leaving."""
    return hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
