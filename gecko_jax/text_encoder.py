"""The ``TextEncoder`` protocol: what evaluation, FRet mining and in-training evaluation
need from a model. :class:`gecko_jax.encoder.Encoder` has it; so can any test double.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


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
