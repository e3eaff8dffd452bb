"""Clustering: V-measure of mini-batch k-means on embeddings, against known labels.

MTEB's clustering protocol (``mteb._evaluators.ClusteringEvaluator``, as used by its
legacy clustering tasks): ``MiniBatchKMeans`` with one cluster per gold label, batch
size 500, ``n_init="auto"``, ``random_state=42``, fit on all embeddings; the score is
scikit-learn's ``v_measure_score`` of the cluster assignment against the labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import ClassVar

from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import v_measure_score

from gecko_jax.eval import base
from gecko_jax.text_encoder import TextEncoder


@dataclasses.dataclass
class ClusteringEvaluator:
    """Clusters labelled texts and scores the clusters against the labels.

    Attributes:
      items: ``(text, label)`` pairs.
      name: results key (e.g. ``"banking77_clustering_test"``).
      kmeans_batch_size: ``MiniBatchKMeans`` batch size.
      seed: k-means ``random_state``.
      task: Gecko task description (``None``: raw text).
      batch_size: encoding batch size.
    """

    items: Sequence[tuple[str, Hashable]]
    name: str = "clustering"
    kmeans_batch_size: int = 500
    seed: int = 42
    task: str | None = None
    batch_size: int = 32
    main_metric: ClassVar[str] = "v_measure"

    def __post_init__(self) -> None:
        clusters = len({label for _, label in self.items})
        if clusters < 2 or len(self.items) <= clusters:
            raise ValueError(
                f"{self.name}: need at least 2 labels and more texts than labels; "
                f"got {len(self.items)} texts, {clusters} labels"
            )

    def evaluate(self, encoder: TextEncoder, dims: Sequence[int] | None = None) -> base.Scores:
        """V-measure (points) per dimension."""
        dims = base.resolve_dims(dims, encoder.embedding_dim)
        labels = [label for _, label in self.items]
        embeddings = base.encode_unique(
            encoder, [text for text, _ in self.items], task=self.task, batch_size=self.batch_size
        )
        scores: base.Scores = {}
        for dim in dims:
            kmeans = MiniBatchKMeans(
                n_clusters=len(set(labels)),
                batch_size=self.kmeans_batch_size,
                n_init="auto",
                random_state=self.seed,
            ).fit(base.truncate(embeddings, dim))
            scores[dim] = {"v_measure": base.points(v_measure_score(labels, kmeans.labels_))}
        return scores
