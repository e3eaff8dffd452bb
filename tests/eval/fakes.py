"""A lookup-table encoder: fixed vectors for known strings, so scores can be worked out by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gecko_jax import formats
from gecko_jax.embedding_math import matryoshka_truncate


class TableEncoder:
    """Embeds each (formatted) text as the vector given for it; records every call.

    Texts are formatted with Gecko's templates exactly as ``Encoder.encode`` does, so a
    table keyed by formatted strings checks that evaluators pass ``task``, ``kind`` and
    ``titles`` through.
    """

    def __init__(self, vectors: Mapping[str, Sequence[float]]) -> None:
        self.vectors = {text: np.asarray(v, dtype=np.float32) for text, v in vectors.items()}
        self.calls: list[dict] = []

    @property
    def embedding_dim(self) -> int:
        return len(next(iter(self.vectors.values())))

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
        formatted = formats.apply_format(list(texts), kind, task, titles)
        self.calls.append({"texts": formatted, "task": task, "kind": kind, "dim": dim})
        rows = np.stack([self.vectors[t] for t in formatted])
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return matryoshka_truncate(rows, dim) if dim else rows

    def encoded_texts(self) -> list[str]:
        """Every text encoded so far, in call order."""
        return [t for call in self.calls for t in call["texts"]]
