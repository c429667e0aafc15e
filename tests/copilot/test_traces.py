"""Turns traced to MLflow (`COPILOT_TRACES=true`): the graph, its nodes and the agents."""

from pathlib import Path

import httpx
import pytest

from copilot.deps import build_deps
from copilot.settings import Settings
from copilot.traces import TRACES_EXPERIMENT
from graphs.session import open_copilot
from model_service.database import make_engine
from tests.conftest import TrainedRegistry

pytestmark = pytest.mark.anyio


async def test_each_turn_is_a_trace_beside_the_model_runs(
    tmp_path: Path, trained_registry: TrainedRegistry, live_service: str
) -> None:
    import mlflow

    tracking_uri = trained_registry.copy(tmp_path)
    settings = Settings(
        copilot_home=tmp_path,
        mlflow_tracking_uri=tracking_uri,
        model_service_url=live_service,
        copilot_traces=True,
    )
    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(base_url=live_service, timeout=60) as client:
            deps = build_deps(settings, engine, client, audit_key=b"k")
            async with open_copilot(deps) as copilot:
                await copilot.send("t1", "what model is serving?", "ann")
                mlflow.set_experiment("heart-disease-training")  # what a retrain does
                await copilot.send("t1", "list the runs", "ann")
    finally:
        engine.dispose()
        mlflow.langchain.autolog(disable=True)
        mlflow.pydantic_ai.autolog(disable=True)

    mlflow.flush_trace_async_logging()
    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(TRACES_EXPERIMENT)
    assert experiment is not None
    traces = mlflow.MlflowClient(tracking_uri).search_traces(locations=[experiment.experiment_id])
    assert len(traces) == 2  # one per turn, none leaking into the next
    for trace in traces:
        spans = {span.name: span for span in trace.data.spans}
        assert {"copilot message", "LangGraph", "route_turn", "Agent.run", "run_tool"} <= set(
            spans
        ), set(spans)
        # the router agent's span sits inside the graph node that ran it
        assert spans["Agent.run"].parent_id == spans["route_turn"].span_id
        assert spans["route_turn"].parent_id == spans["LangGraph"].span_id
        assert spans["LangGraph"].parent_id == spans["copilot message"].span_id
        assert spans["copilot message"].attributes["conversation_id"] == "t1"
    training = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("heart-disease-training")
    assert training is not None
    stray = mlflow.MlflowClient(tracking_uri).search_traces(locations=[training.experiment_id])
    assert stray == []
