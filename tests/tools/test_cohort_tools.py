"""The cohort and data tools against the real model service: typed results, and bad
cohorts refused with the field, the value and the rule."""

from collections.abc import AsyncIterator

import httpx
import pytest

from copilot.cohort_narration import define_feature as definition_said
from model_service.app import ServiceConfig
from model_service.cohorts import Condition
from tools.cohorts import (
    CohortInput,
    CohortWhatIfInput,
    CounterfactualInput,
    DefineFeatureInput,
    DescribeDataInput,
    ShowRowsInput,
    cohort_what_if,
    counterfactual,
    define_feature,
    describe_data,
    model_performance,
    show_rows,
)
from tools.context import ToolContext
from tools.errors import InvalidToolInput, NotFound

pytestmark = pytest.mark.anyio


@pytest.fixture
async def ctx(live_service: str, service_config: ServiceConfig) -> AsyncIterator[ToolContext]:
    async with httpx.AsyncClient(base_url=live_service, timeout=30) as client:
        yield ToolContext(client, service_config.tracking_uri, service_config.card)


async def test_a_cohort_and_its_numbers(ctx: ToolContext) -> None:
    where = [Condition(feature="site", value="VA Long Beach")]
    described = await describe_data(ctx, DescribeDataInput(where=where, features=["chol"]))
    assert described.cohort.matched == 200 and described.cohort.total == 920
    (chol,) = described.features
    assert chol.missing == 56  # 0 means "not recorded"
    performance = await model_performance(ctx, CohortInput(where=where))
    assert performance.rows == 200 and performance.cohort.training_sites == ["Cleveland"]
    assert performance.sensitivity.of == described.label_balance.positive


async def test_bad_cohorts_name_field_value_and_rule(ctx: ToolContext) -> None:
    with pytest.raises(InvalidToolInput, match=r"'smoker' is not a feature of heart-disease"):
        await describe_data(ctx, DescribeDataInput(where=[Condition(feature="smoker", value=1)]))
    with pytest.raises(InvalidToolInput, match=r"'Berlin' is not an allowed value"):
        await model_performance(ctx, CohortInput(where=[Condition(feature="site", value="Berlin")]))
    with pytest.raises(InvalidToolInput, match=r"no rows match chol > 650 \(0 of 920\)"):
        await cohort_what_if(
            ctx,
            CohortWhatIfInput(
                where=[Condition(feature="chol", op=">", value=650)],
                changes=[{"feature": "chol", "op": "add", "value": -20}],  # type: ignore[list-item]
            ),
        )
    with pytest.raises(InvalidToolInput, match=r"ids run from 1 to 920"):
        await show_rows(ctx, ShowRowsInput(row_ids=[0]))
    with pytest.raises(InvalidToolInput, match=r"'bmi' is not a feature"):
        await define_feature(ctx, DefineFeatureInput(feature="bmi"))
    with pytest.raises(NotFound, match="not found in the prediction log"):
        await counterfactual(ctx, CounterfactualInput(prediction_id="f" * 32))


async def test_a_feature_is_defined_from_the_card(ctx: ToolContext) -> None:
    defined = await define_feature(ctx, DefineFeatureInput(feature="cholesterol"))
    assert defined.feature == "chol" and defined.unit == "mg/dl"
    assert defined.actionable == {"low": 120.0, "high": 300.0}
    assert defined.codes is None  # a measure has no coding
    thal = await define_feature(ctx, DefineFeatureInput(feature="thal"))
    assert [(c.code, c.value) for c in thal.codes or []] == [
        (3, "normal"),
        (6, "fixed defect"),
        (7, "reversable defect"),
    ]
    said = definition_said(thal.model_dump(mode="json"))
    assert "Coded in the source data as 3 = normal, 6 = fixed defect, 7 = reversable defect" in said
