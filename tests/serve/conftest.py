"""Fixtures shared by the service tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: str):  # type: ignore[no-untyped-def]
    """The tiny random BERT through the Flax Encoder: the reference for served values."""
    from gecko_jax import Encoder

    return Encoder.load(tiny_model_dir)
