"""What every local evaluator shares: its protocol, Matryoshka dimensions, unique encoding.

An evaluator embeds its texts once at the model's full width, then scores every
requested Matryoshka dimension on truncated, renormalised copies of those embeddings.
Scores are in points (0-100), as in MTEB's tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from gecko_jax.embedding_math import matryoshka_truncate
from gecko_jax.text_encoder import TextEncoder

# Dimension -> metric name -> score in points.
Scores = dict[int, dict[str, float]]

# Evaluator dataclass fields that hold data or naming, not settings.
DATA_FIELDS = frozenset({"pairs", "data", "train", "test", "items", "name"})
# Settings that cannot change a score.
SCORE_NEUTRAL_FIELDS = frozenset({"batch_size"})


class Evaluator(Protocol):
    """A local evaluation set that scores an encoder at several Matryoshka dimensions.

    Attributes:
      name: results key, ``{set}_{split}`` (e.g. ``"stsb_test"``).
      main_metric: the metric MTEB ranks by (e.g. ``"spearman"``, ``"ndcg_at_10"``).
    """

    name: str
    main_metric: str

    def evaluate(self, encoder: TextEncoder, dims: Sequence[int] | None = None) -> Scores:
        """Scores ``encoder`` at each of ``dims`` (``None``: its full dimension)."""


def resolve_dims(dims: Sequence[int] | None, embedding_dim: int) -> list[int]:
    """Validates Matryoshka dimensions against the model's width.

    Args:
      dims: requested dimensions, or ``None`` for ``[embedding_dim]``.
      embedding_dim: the model's full embedding width.

    Returns:
      The dimensions in the order given, duplicates dropped.

    Raises:
      ValueError: an empty list, a non-positive dimension, or one larger than the model's.
    """
    if dims is None:
        return [embedding_dim]
    resolved = list(dict.fromkeys(int(d) for d in dims))
    if not resolved:
        raise ValueError("dims is empty; pass None for the model's full dimension")
    too_small = [d for d in resolved if d < 1]
    if too_small:
        raise ValueError(f"dims {too_small} must be positive")
    too_large = [d for d in resolved if d > embedding_dim]
    if too_large:
        raise ValueError(f"dims {too_large} exceed the model's embedding size {embedding_dim}")
    return resolved


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` dimensions, renormalised (the embeddings themselves at full width)."""
    if dim == embeddings.shape[-1]:
        return embeddings
    return matryoshka_truncate(embeddings, dim)


def encode_unique(encoder: TextEncoder, texts: Sequence[str], **encode_kwargs: Any) -> np.ndarray:
    """Embeds ``texts`` at full width, encoding each distinct string once.

    STS pairs and classification splits repeat sentences; encoding them once saves time
    without changing any row.
    """
    unique = list(dict.fromkeys(texts))
    position = {text: i for i, text in enumerate(unique)}
    embeddings = encoder.encode(unique, **encode_kwargs)
    return embeddings[[position[t] for t in texts]]


def points(value: float) -> float:
    """A [0, 1] score in points (0-100), as a plain float."""
    return 100.0 * float(value)


def score_settings(evaluator: Any) -> dict[str, Any]:
    """The settings of a dataclass evaluator that can change its scores (JSON-ready).

    Sweeps record them beside cached results, so a rerun with other settings (e.g. a
    Gecko task string) never reuses scores it did not produce. ``{}`` for other objects.
    """
    if not dataclasses.is_dataclass(evaluator):
        return {}
    settings = {}
    for field in dataclasses.fields(evaluator):
        if field.init and field.name not in DATA_FIELDS | SCORE_NEUTRAL_FIELDS:
            value = getattr(evaluator, field.name)
            settings[field.name] = (
                {k: list(v) for k, v in value.items()} if isinstance(value, dict) else value
            )
    return settings
