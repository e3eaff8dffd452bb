"""The ``TextEncoder`` protocol: what evaluation, FRet mining and in-training evaluation
need from a model; and :class:`Tokenized`, texts as model inputs (numpy only, so a
service can batch them without importing JAX). :class:`gecko_jax.encoder.Encoder` has the
protocol; so can any test double.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """Texts as model inputs.

    Attributes:
      token_ids: one int32 array per text, special tokens included, at most
        ``max_length`` long.
      truncated: ``[B]`` bool, True where the text had more tokens than ``max_length``.
    """

    token_ids: list[np.ndarray]
    truncated: np.ndarray

    @property
    def token_counts(self) -> np.ndarray:
        """``[B]`` int32: tokens the model sees per text."""
        return np.array([len(t) for t in self.token_ids], dtype=np.int32)


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts into L2-normalised vectors (see :meth:`gecko_jax.encoder.Encoder.encode`)."""

    @property
    def embedding_dim(self) -> int:
        """Width of full-size embeddings."""

    def encode(
        self,
        texts: Sequence[str],
        task: str | None = None,
        kind: str = "query",
        dim: int | None = None,
        batch_size: int = 32,
        titles: Sequence[str | None] | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text."""
