"""Agent traces in MLflow (`COPILOT_TRACES=true`), next to the model runs they talk about.

MLflow's LangGraph (LangChain) and PydanticAI autologging trace each turn: the graph run,
its nodes, and the router and narrator agents with their model requests, under one
"copilot turn" span per turn. Traces hold what was said, patients included: they live in
the same MLflow store as the models, under the same access rules.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from copilot.settings import Settings

TRACES_EXPERIMENT = "copilot-traces"

log = logging.getLogger(__name__)


def enable_traces(settings: Settings) -> str:
    """Start tracing turns to MLflow; returns the experiment id the traces go to."""
    import mlflow  # noqa: PLC0415 - MLflow is slow to import and only needed when tracing
    import mlflow.langchain  # noqa: PLC0415
    import mlflow.pydantic_ai  # noqa: PLC0415

    from model_service.registry import client, disable_mlflow_telemetry  # noqa: PLC0415

    disable_mlflow_telemetry()
    tracking = client(settings.tracking_uri)
    experiment = tracking.get_experiment_by_name(TRACES_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else tracking.create_experiment(TRACES_EXPERIMENT)
    )
    mlflow.set_tracking_uri(settings.tracking_uri)
    # Inline, so the agents' spans nest under the graph node that runs them.
    mlflow.langchain.autolog(silent=True, run_tracer_inline=True)
    mlflow.pydantic_ai.autolog(silent=True)
    log.info("tracing turns to MLflow experiment %r", TRACES_EXPERIMENT)
    return str(experiment_id)


@contextlib.contextmanager
def turn_span(experiment_id: str | None, conversation_id: str, kind: str) -> Iterator[None]:
    """One span around a turn (a message or a decision), so each turn is its own trace, in
    the traces experiment (`None`: tracing is off)."""
    if experiment_id is None:
        yield
        return
    import mlflow  # noqa: PLC0415
    from mlflow.entities.trace_location import MlflowExperimentLocation  # noqa: PLC0415

    # Set per turn and local to it: a retrain in this process sets its own experiment.
    location = MlflowExperimentLocation(experiment_id=experiment_id)
    mlflow.tracing.set_destination(location, context_local=True)
    with mlflow.start_span(name=f"copilot {kind}", span_type="AGENT") as span:
        span.set_attributes({"conversation_id": conversation_id})
        yield
