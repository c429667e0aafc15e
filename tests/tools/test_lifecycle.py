"""The state-changing tools on a private registry copy (the approval path is tested with
the action store)."""

import httpx
import pytest

from model_service import registry
from model_service.cards import DatasetCard
from model_service.training import EVALUATION_SET_TAG
from tests.conftest import TrainedRegistry
from tools.context import ToolContext
from tools.errors import InvalidToolInput
from tools.lifecycle import (
    AUC_MARGIN,
    MAX_NOISE_FLIP_RATE,
    NoChallenger,
    NothingToRollBack,
    PromoteInput,
    PromotionRefused,
    RetrainInput,
    RollbackInput,
    promote_model,
    promote_preview,
    retrain_model,
    rollback_model,
    rollback_preview,
)

pytestmark = pytest.mark.anyio
NAME = "heart-disease-risk"


def _aliases(registry_ctx: ToolContext) -> dict[str, str]:
    return {
        alias: str(version)
        for alias, version in registry.client(registry_ctx.tracking_uri)
        .get_registered_model(NAME)
        .aliases.items()
    }


def _gate_passes(trained: TrainedRegistry) -> bool:
    champion, challenger = trained.champion.metrics, trained.challenger.metrics
    return (
        challenger["holdout_roc_auc"] >= champion["holdout_roc_auc"] - AUC_MARGIN
        and challenger["noise_flip_rate"] <= MAX_NOISE_FLIP_RATE
    )


async def test_promotion_follows_the_gate_and_rollback_undoes_it(
    registry_ctx: ToolContext, trained_registry: TrainedRegistry
) -> None:
    assert _aliases(registry_ctx) == {"champion": "1", "challenger": "2"}
    if not _gate_passes(trained_registry):
        with pytest.raises(PromotionRefused, match="promotion of version 2 refused by the gate"):
            await promote_model(registry_ctx, PromoteInput(reason="gate check"))
        assert _aliases(registry_ctx) == {"champion": "1", "challenger": "2"}  # nothing moved
    outcome = await promote_model(registry_ctx, PromoteInput(force=True, reason="more sites"))
    assert (outcome.champion, outcome.previous_champion) == ("2", "1")
    assert outcome.forced is (not _gate_passes(trained_registry))
    assert [c.name for c in outcome.checks] == ["holdout_roc_auc", "robustness"]
    assert _aliases(registry_ctx) == {"champion": "2", "previous-champion": "1"}
    tags = registry.client(registry_ctx.tracking_uri).get_model_version(NAME, "2").tags
    assert tags["promotion_reason"] == "more sites"
    assert tags["promotion_forced"] == str(outcome.forced).lower()

    back = await rollback_model(registry_ctx, RollbackInput(reason="worse at VA"))
    assert (back.champion, back.previous_champion) == ("1", "2")
    assert _aliases(registry_ctx) == {"champion": "1", "previous-champion": "2"}
    again = await rollback_model(registry_ctx, RollbackInput(reason="undo the rollback"))
    assert again.champion == "2" and _aliases(registry_ctx)["champion"] == "2"


async def test_the_preview_says_before_anyone_decides_what_will_be_refused(
    registry_ctx: ToolContext, trained_registry: TrainedRegistry
) -> None:
    """Read at proposal time, without changing anything."""
    passes = _gate_passes(trained_registry)
    plain = promote_preview(registry_ctx, PromoteInput(reason="ready"))
    assert plain is not None and plain.will_fail is (not passes)
    assert "holdout_roc_auc: version 2:" in plain.note
    assert (
        "on the shared evaluation set, 184 rows (Cleveland 61, Hungary 58, Switzerland 25, "
        "VA Long Beach 40) (margin 0.02)" in plain.note
    )
    if not passes:
        assert plain.note.startswith("the promotion gate refuses version 2: ")
        forced = promote_preview(registry_ctx, PromoteInput(force=True, reason="anyway"))
        assert forced is not None and not forced.will_fail
        assert "force overrides it" in forced.note
    same = promote_preview(registry_ctx, PromoteInput(version="1", reason="again"))
    assert same is not None and same.will_fail and same.note == "version 1 is already the champion"
    nothing = rollback_preview(registry_ctx, RollbackInput(reason="back"))
    assert nothing is not None and nothing.will_fail
    assert nothing.note == "model 'heart-disease-risk' has no @previous-champion to roll back to"
    assert _aliases(registry_ctx) == {"champion": "1", "challenger": "2"}  # nothing moved
    await promote_model(registry_ctx, PromoteInput(force=True, reason="more sites"))
    back = rollback_preview(registry_ctx, RollbackInput(reason="back"))
    assert back is not None and not back.will_fail
    assert back.note == "version 1 would be the @champion again in place of version 2"
    gone = promote_preview(registry_ctx, PromoteInput(reason="none left"))
    assert gone is not None and gone.will_fail and "no @challenger to promote" in gone.note


async def test_the_gate_refuses_to_compare_metrics_measured_on_different_rows(
    registry_ctx: ToolContext, trained_registry: TrainedRegistry
) -> None:
    """A champion from before the shared evaluation set: the AUC check cannot pass."""
    client = registry.client(registry_ctx.tracking_uri)
    client.delete_tag(trained_registry.champion.run_id, EVALUATION_SET_TAG)
    preview = promote_preview(registry_ctx, PromoteInput(reason="ready"))
    assert preview is not None and preview.will_fail
    assert (
        "holdout_roc_auc: version 2 and champion version 1 were measured on different "
        "evaluation sets: not comparable" in preview.note
    )
    with pytest.raises(PromotionRefused, match="not comparable"):
        await promote_model(registry_ctx, PromoteInput(reason="ready"))
    assert _aliases(registry_ctx) == {"champion": "1", "challenger": "2"}


async def test_nothing_to_promote_or_roll_back_is_named(registry_ctx: ToolContext) -> None:
    with pytest.raises(NothingToRollBack, match="has no @previous-champion"):
        await rollback_model(registry_ctx, RollbackInput(reason="why not"))
    with pytest.raises(InvalidToolInput, match="version 1 of 'heart-disease-risk' is already"):
        await promote_model(registry_ctx, PromoteInput(version="1", reason="again"))
    with pytest.raises(InvalidToolInput, match="has no version 42"):
        await promote_model(registry_ctx, PromoteInput(version="42", reason="typo"))
    registry.client(registry_ctx.tracking_uri).delete_registered_model_alias(NAME, "challenger")
    with pytest.raises(NoChallenger, match="has no @challenger to promote; retrain first"):
        await promote_model(registry_ctx, PromoteInput(reason="nothing there"))


async def test_retrain_registers_a_challenger_and_never_the_champion(
    registry_ctx: ToolContext,
) -> None:
    steps: list[str] = []
    outcome = await retrain_model(
        registry_ctx,
        RetrainInput(
            sites=["Cleveland", "Hungary"],
            model_kinds=["logistic_regression"],
            reason="drift at VA",
        ),
        progress=lambda step, done, total: steps.append(step),
    )
    assert (outcome.version, outcome.alias) == ("3", "challenger")
    assert _aliases(registry_ctx) == {"champion": "1", "challenger": "3"}
    assert steps[0].startswith("logistic_regression: fold 1/") and steps[-1] == "done"
    assert set(outcome.candidates) == {"logistic_regression"}
    assert 0.5 < outcome.metrics["holdout_roc_auc"] <= 1
    # the new version's metrics beside the champion's, metric by metric
    assert outcome.champion_version == "1"
    champion = registry.client(registry_ctx.tracking_uri).get_run(
        registry.client(registry_ctx.tracking_uri).get_model_version(NAME, "1").run_id
    )
    compared = {m.metric: m for m in outcome.against_champion}
    assert set(compared) == set(outcome.metrics)
    auc = compared["holdout_roc_auc"]
    assert auc.new == outcome.metrics["holdout_roc_auc"]
    assert auc.champion == champion.data.metrics["holdout_roc_auc"]
    assert auc.change == pytest.approx(auc.new - auc.champion)
    assert outcome.evaluation_set.rows == 184  # the same rows as the champion's
    with pytest.raises(InvalidToolInput, match="training data too small: 98 rows from Switzerland"):
        await retrain_model(registry_ctx, RetrainInput(sites=["Switzerland"], reason="small site"))
    with pytest.raises(InvalidToolInput, match="unknown site 'Atlantis'"):
        await retrain_model(registry_ctx, RetrainInput(sites=["Atlantis"], reason="no such site"))


async def test_the_outcome_says_which_version_the_service_serves_once_it_follows(
    heart_card: DatasetCard,
) -> None:
    from tools.lifecycle import serving_version

    answers = iter(["1", "1", "2"])
    ours = registry.registry_id("sqlite:///unused.db")

    def model_info(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"version": next(answers), "registry_id": ours})

    following = httpx.AsyncClient(
        transport=httpx.MockTransport(model_info), base_url="http://model"
    )
    ctx = ToolContext(following, "sqlite:///unused.db", heart_card)
    assert await serving_version(ctx, "2") == "2"
    stuck = ToolContext(
        httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda _: httpx.Response(200, json={"version": "1", "registry_id": ours})
            ),
            base_url="http://model",
        ),
        "sqlite:///unused.db",
        heart_card,
    )
    assert await serving_version(stuck, "2", timeout=0.3) == "1"  # said as it is
    down = ToolContext(httpx.AsyncClient(base_url="http://127.0.0.1:9"), "", heart_card)
    assert await serving_version(down, "2") is None
    other = ToolContext(stuck.model_service, "sqlite:///another.db", heart_card)
    assert await serving_version(other, "2") is None  # follows another registry: no wait
