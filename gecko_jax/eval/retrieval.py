"""Retrieval on a BEIR-layout set: exact search over the whole corpus, trec_eval metrics.

Protocol (MTEB / BEIR): every query of ``qrels/{split}.tsv`` is embedded, every document
of ``corpus.jsonl`` is embedded, documents are ranked by cosine similarity (exact, with
ties to the lower document index: :func:`gecko_jax.search.exact_top_k`), and the ranking
is scored with nDCG@10 (main metric), recall@100, MRR@10 and MAP@10
(:mod:`gecko_jax.eval.metrics`).

Documents are written ``title + " " + text`` by default, as sentence-transformers and
MTEB do for models without instructions; with a Gecko ``task`` the encoder's own
templates apply (``task: {task} | query: {text}``, ``title: {title} | text: {text}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from gecko_jax import formats
from gecko_jax.eval import base, metrics
from gecko_jax.readers import BeirSplit
from gecko_jax.search import exact_top_k
from gecko_jax.text_encoder import TextEncoder


@dataclasses.dataclass
class RetrievalEvaluator:
    """Ranks a whole BEIR corpus for each judged query.

    Attributes:
      data: the corpus, queries and judgements.
      name: results key (e.g. ``"scifact_test"``).
      task: Gecko task description (``None``: raw query, ``title + " " + text`` documents).
      batch_size: encoding batch size.
      cutoffs: metric -> list of k (default: nDCG@10, recall@100, MRR@10, MAP@10).
    """

    data: BeirSplit
    name: str = "retrieval"
    task: str | None = None
    batch_size: int = 32
    cutoffs: Mapping[str, Sequence[int]] | None = None
    main_metric: ClassVar[str] = "ndcg_at_10"

    def _document_embeddings(self, encoder: TextEncoder) -> np.ndarray:
        if self.task is None:
            texts = [
                formats.untasked_document(title, text)
                for title, text in zip(self.data.doc_titles, self.data.doc_texts)
            ]
            return encoder.encode(texts, kind="document", batch_size=self.batch_size)
        return encoder.encode(
            self.data.doc_texts,
            task=self.task,
            kind="document",
            titles=self.data.doc_titles,
            batch_size=self.batch_size,
        )

    def evaluate(self, encoder: TextEncoder, dims: Sequence[int] | None = None) -> base.Scores:
        """nDCG@10, recall@100, MRR@10, MAP@10 (points) per dimension."""
        dims = base.resolve_dims(dims, encoder.embedding_dim)
        cutoffs = metrics.DEFAULT_CUTOFFS if self.cutoffs is None else self.cutoffs
        depth = max(k for ks in cutoffs.values() for k in ks)
        queries = encoder.encode(
            self.data.query_texts, task=self.task, kind="query", batch_size=self.batch_size
        )
        documents = self._document_embeddings(encoder)
        scores: base.Scores = {}
        for dim in dims:
            _, top = exact_top_k(
                base.truncate(queries, dim),
                base.truncate(documents, dim),
                min(depth, len(documents)),
            )
            rankings = {
                q: [self.data.doc_ids[i] for i in row] for q, row in zip(self.data.query_ids, top)
            }
            fractions = metrics.evaluate_rankings(rankings, self.data.qrels, cutoffs)
            scores[dim] = {key: base.points(value) for key, value in fractions.items()}
        return scores
