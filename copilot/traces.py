"""Agent traces in MLflow (`COPILOT_TRACES=true`), next to the model runs they talk about.

MLflow's LangGraph (LangChain) and PydanticAI autologging trace each turn: the graph run
as the root span, its nodes, and the router and narrator agents with their model requests.
"""

from __future__ import annotations

import logging

from copilot.settings import Settings

TRACES_EXPERIMENT = "copilot-traces"

log = logging.getLogger(__name__)


def enable_traces(settings: Settings) -> str:
    """Start tracing turns to MLflow; returns the experiment id the traces go to."""
    import mlflow  # noqa: PLC0415 - MLflow is slow to import and only needed when tracing
    import mlflow.langchain  # noqa: PLC0415
    import mlflow.pydantic_ai  # noqa: PLC0415

    from model_service.registry import disable_mlflow_telemetry  # noqa: PLC0415

    disable_mlflow_telemetry()
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = mlflow.set_experiment(TRACES_EXPERIMENT)
    # Inline, so the agents' spans nest under the graph node that runs them.
    mlflow.langchain.autolog(silent=True, run_tracer_inline=True)
    mlflow.pydantic_ai.autolog(silent=True)
    log.info("tracing turns to MLflow experiment %r", TRACES_EXPERIMENT)
    return str(experiment.experiment_id)
