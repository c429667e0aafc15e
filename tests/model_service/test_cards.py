import numpy as np
import pytest

from model_service.cards import CardError, DatasetCard, get_card


def test_heart_disease_card_reads_the_real_four_sites(heart_card: DatasetCard) -> None:
    frame = heart_card.load_raw()
    assert len(frame) == 920
    assert frame.groupby("dataset").size().to_dict() == {
        "Cleveland": 304,
        "Hungary": 293,
        "Switzerland": 123,
        "VA Long Beach": 200,
    }
    assert heart_card.feature_names == [
        "age",
        "sex",
        "cp",
        "trestbps",
        "chol",
        "fbs",
        "restecg",
        "thalch",
        "exang",
        "oldpeak",
        "slope",
        "ca",
        "thal",
    ]
    prevalence = frame.assign(y=heart_card.target(frame)).groupby("dataset")["y"].mean()
    assert prevalence["Cleveland"] == pytest.approx(0.46, abs=0.01)
    assert prevalence["Switzerland"] == pytest.approx(0.93, abs=0.01)


def test_impossible_zeros_become_missing_and_booleans_keep_their_gaps(
    heart_card: DatasetCard,
) -> None:
    frame = heart_card.load_raw()
    cleaned = heart_card.clean(frame)
    swiss = frame["dataset"] == "Switzerland"
    assert (frame.loc[swiss, "chol"] == 0).sum() == 123
    assert cleaned.loc[swiss, "chol"].isna().all()
    assert cleaned.loc[frame["dataset"] == "VA Long Beach", "trestbps"].eq(0).sum() == 0
    assert set(cleaned["fbs"].dropna().unique()) == {0.0, 1.0}
    assert cleaned["fbs"].isna().sum() == frame["fbs"].isna().sum() == 90
    assert cleaned["oldpeak"].eq(0).sum() > 0  # 0 mm ST depression is a real value


def test_training_ranges_come_from_the_rows_given(heart_card: DatasetCard) -> None:
    cleveland = heart_card.select_sites(heart_card.load_raw(), ["Cleveland"])
    fitted = heart_card.with_training_ranges(cleveland)
    chol = fitted.feature("chol").training_range
    assert chol is not None and (chol.low, chol.high) == (126.0, 564.0)
    assert fitted.feature("sex").training_range is None
    assert heart_card.feature("chol").training_range is None  # the card itself is unchanged


def test_breast_cancer_card_proves_nothing_is_hard_wired() -> None:
    card = get_card("breast-cancer")
    frame = card.load_raw()
    assert len(frame) == 569 and len(card.features) == 30
    assert int(card.target(frame).sum()) == 212  # malignant
    assert card.site_column is None and card.sites() == []
    assert all(f.limits is not None and f.limits.low == 0 for f in card.features)
    assert np.isfinite(card.clean(frame).to_numpy(float)).all()


def test_unknown_names_are_named_in_the_error(heart_card: DatasetCard) -> None:
    with pytest.raises(CardError, match="unknown dataset 'mimic'"):
        get_card("mimic")
    with pytest.raises(CardError, match=r"unknown site 'Mars'.*Cleveland"):
        heart_card.select_sites(heart_card.load_raw(), ["Mars"])
    with pytest.raises(CardError, match="has no sites"):
        get_card("breast-cancer").select_sites(get_card("breast-cancer").load_raw(), ["Cleveland"])


def test_each_card_sets_the_minimum_information_for_a_risk(heart_card: DatasetCard) -> None:
    assert heart_card.needed_features == 7
    optional = [f.name for f in heart_card.features if not f.required]
    assert heart_card.confidence([], outside_training_range=False) == "high"
    assert heart_card.confidence([], outside_training_range=True) == "low"
    assert heart_card.confidence(optional[:6], outside_training_range=False) == "low"
    assert heart_card.confidence(optional[:7], outside_training_range=False) == "insufficient"
    breast = get_card("breast-cancer")
    assert breast.needed_features == len(breast.features)
    with pytest.raises(ValueError, match="min_known_features 2 must be between the 3 required"):
        DatasetCard.model_validate({**heart_card.model_dump(), "min_known_features": 2})
