"""Semantic textual similarity: Spearman and Pearson of cosine similarity vs gold scores.

MTEB's STS protocol: both sentences of a pair are embedded the same way (symmetric),
the cosine similarity of each pair is compared with the human score; Spearman rank
correlation is the main metric. Correlations are scale-free, so gold scores need no
normalisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import scipy.stats

from gecko_jax.eval import base
from gecko_jax.readers import StsPair
from gecko_jax.text_encoder import TextEncoder


@dataclasses.dataclass
class StsEvaluator:
    """Scores sentence pairs by cosine similarity.

    Attributes:
      pairs: the scored sentence pairs.
      name: results key (e.g. ``"stsb_test"``).
      task: Gecko task description for both sentences (``None``: raw text).
      batch_size: encoding batch size.
    """

    pairs: Sequence[StsPair]
    name: str = "sts"
    task: str | None = None
    batch_size: int = 32
    main_metric: ClassVar[str] = "spearman"

    def __post_init__(self) -> None:
        if len(self.pairs) < 2:
            raise ValueError(f"{self.name}: need at least 2 sentence pairs, got {len(self.pairs)}")

    def evaluate(self, encoder: TextEncoder, dims: Sequence[int] | None = None) -> base.Scores:
        """Spearman and Pearson (points) per dimension."""
        dims = base.resolve_dims(dims, encoder.embedding_dim)
        count = len(self.pairs)
        texts = [p.sentence1 for p in self.pairs] + [p.sentence2 for p in self.pairs]
        embeddings = base.encode_unique(encoder, texts, task=self.task, batch_size=self.batch_size)
        gold = np.array([p.score for p in self.pairs], dtype=np.float64)
        scores: base.Scores = {}
        for dim in dims:
            vectors = base.truncate(embeddings, dim).astype(np.float64)
            cosine = np.sum(vectors[:count] * vectors[count:], axis=1)
            scores[dim] = {
                "spearman": base.points(scipy.stats.spearmanr(cosine, gold).statistic),
                "pearson": base.points(scipy.stats.pearsonr(cosine, gold).statistic),
            }
        return scores
