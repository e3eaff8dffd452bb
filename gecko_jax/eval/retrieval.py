"""Retrieval on a BEIR-layout set: exact search over the whole corpus, trec_eval metrics.

Protocol (MTEB / BEIR): every query of ``qrels/{split}.tsv`` is embedded, every document
of ``corpus.jsonl`` is embedded, documents are ranked by cosine similarity (exact: a
blocked matrix product and a top-k, no approximate index), and the ranking is scored
with nDCG@10 (main metric), recall@100, MRR@10 and MAP@10 (:mod:`gecko_jax.eval.metrics`).

Documents are written ``title + " " + text`` by default, as sentence-transformers and
MTEB do for models without instructions; with a Gecko ``task`` the encoder's own
templates apply (``task: {task} | query: {text}``, ``title: {title} | text: {text}``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from gecko_jax.data import local_sets
from gecko_jax.data.local_sets import read_beir_qrels
from gecko_jax.eval import base, metrics

log = logging.getLogger(__name__)

_EXAMPLES_IN_WARNING = 3


@dataclasses.dataclass(frozen=True)
class BeirSplit:
    """A BEIR corpus with the queries and judgements of one split.

    Attributes:
      doc_ids, doc_titles, doc_texts: the whole corpus, in file order.
      query_ids, query_texts: the judged queries (those with a relevant document).
      qrels: query id -> document id -> relevance, for known ids only.
      skipped_qrels: qrels rows dropped because they name an unknown query or document.
    """

    doc_ids: list[str]
    doc_titles: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, float]]
    skipped_qrels: int = 0


def read_beir_split(data_dir: str, split: str = "test") -> BeirSplit:
    """Reads ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv`` of ``data_dir``.

    Qrels rows naming an unknown query or document id are counted, logged as a warning
    (with a few examples) and skipped.

    Raises:
      FileNotFoundError: the directory or one of its files is missing (named).
      ValueError: malformed files, or no judged query left.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"BEIR dataset directory not found: {data_dir}")
    qrels_path = os.path.join(data_dir, "qrels", f"{split}.tsv")
    rows = read_beir_qrels(qrels_path)
    corpus = local_sets.read_beir_jsonl(os.path.join(data_dir, "corpus.jsonl"), ("title", "text"))
    queries = local_sets.read_beir_jsonl(os.path.join(data_dir, "queries.jsonl"), ("text",))
    qrels: dict[str, dict[str, float]] = {}
    unknown = []
    for row in rows:
        if row.query_id not in queries:
            unknown.append(f"line {row.line}: unknown query id {row.query_id!r}")
        elif row.corpus_id not in corpus:
            unknown.append(f"line {row.line}: unknown corpus id {row.corpus_id!r}")
        else:
            qrels.setdefault(row.query_id, {})[row.corpus_id] = row.score
    if unknown:
        log.warning(
            "%s: skipped %d of %d qrels rows naming unknown ids (%s%s)",
            qrels_path,
            len(unknown),
            len(rows),
            "; ".join(unknown[:_EXAMPLES_IN_WARNING]),
            ", ..." if len(unknown) > _EXAMPLES_IN_WARNING else "",
        )
    judged = [q for q, rel in qrels.items() if any(r > 0 for r in rel.values())]
    if not judged:
        raise ValueError(f"{qrels_path}: no query with a relevant document among known ids")
    return BeirSplit(
        doc_ids=list(corpus),
        doc_titles=[d["title"] for d in corpus.values()],
        doc_texts=[d["text"] for d in corpus.values()],
        query_ids=judged,
        query_texts=[queries[q]["text"] for q in judged],
        qrels={q: qrels[q] for q in judged},
        skipped_qrels=len(unknown),
    )


def exact_search(
    queries: np.ndarray,
    documents: np.ndarray,
    k: int,
    *,
    query_block: int = 1024,
    doc_block: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` documents by inner product for every query, exactly.

    Blocks over queries and documents keep memory at ``query_block x doc_block`` scores.

    Returns:
      ``(scores, indices)``, both ``[n_queries, min(k, n_documents)]``, best first; ties
      keep the lower document index first.
    """
    k = min(k, len(documents))
    top_scores = np.empty((len(queries), k), dtype=np.float32)
    top_indices = np.empty((len(queries), k), dtype=np.int64)
    for q_start in range(0, len(queries), query_block):
        block = queries[q_start : q_start + query_block]
        best_s = np.full((len(block), 0), -np.inf, dtype=np.float32)
        best_i = np.zeros((len(block), 0), dtype=np.int64)
        for d_start in range(0, len(documents), doc_block):
            sims = block @ documents[d_start : d_start + doc_block].T
            ids = np.broadcast_to(np.arange(d_start, d_start + sims.shape[1]), sims.shape)
            cand_s = np.concatenate([best_s, sims], axis=1)
            cand_i = np.concatenate([best_i, ids], axis=1)
            if cand_s.shape[1] > k:
                keep = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
                cand_s = np.take_along_axis(cand_s, keep, axis=1)
                cand_i = np.take_along_axis(cand_i, keep, axis=1)
            best_s, best_i = cand_s, cand_i
        order = np.lexsort((best_i, -best_s), axis=1)
        top_scores[q_start : q_start + len(block)] = np.take_along_axis(best_s, order, axis=1)
        top_indices[q_start : q_start + len(block)] = np.take_along_axis(best_i, order, axis=1)
    return top_scores, top_indices


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

    def _document_embeddings(self, encoder: base.TextEncoder) -> np.ndarray:
        if self.task is None:
            texts = [
                f"{title} {text}".strip()
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

    def evaluate(self, encoder: base.TextEncoder, dims: Sequence[int] | None = None) -> base.Scores:
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
            _, top = exact_search(base.truncate(queries, dim), base.truncate(documents, dim), depth)
            rankings = {
                q: [self.data.doc_ids[i] for i in row] for q, row in zip(self.data.query_ids, top)
            }
            fractions = metrics.evaluate_rankings(rankings, self.data.qrels, cutoffs)
            scores[dim] = {key: base.points(value) for key, value in fractions.items()}
        return scores
