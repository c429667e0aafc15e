"""Fixtures shared by the LLM and offline-grammar tests."""

import pytest

from model_service.cards import DatasetCard, get_card


@pytest.fixture(scope="session")
def card() -> DatasetCard:
    """The heart-disease dataset card (read-only)."""
    return get_card("heart-disease")
