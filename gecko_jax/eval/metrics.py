"""Ranking metrics with trec_eval's definitions: nDCG@k, recall@k, MRR@k, MAP@k.

MTEB scores retrieval with pytrec_eval (``ndcg_cut``, ``recall``, ``map_cut``) and its own
MRR; pytrec_eval is a C extension that is not a dependency here, and scikit-learn's
``ndcg_score`` needs a dense score for every (query, document) pair and cannot count
relevant documents that were not retrieved. So the few formulas are written out,
following trec_eval:

* gain of a document = its judged relevance (graded, not ``2^rel - 1``); relevance <= 0
  counts as not relevant;
* nDCG@k = sum_{i<=k} gain_i / log2(i + 1), divided by the same sum over the ideal
  ordering of every judged relevant document;
* recall@k = relevant documents in the top k / all relevant documents;
* MRR@k = 1 / rank of the first relevant document in the top k (0 if none);
* MAP@k = sum over relevant documents at rank i <= k of precision@i, divided by the
  number of relevant documents (trec_eval's ``map_cut``).

Scores are fractions in [0, 1]; evaluators turn them into points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Qrels = Mapping[str, Mapping[str, float]]
Rankings = Mapping[str, Sequence[str]]


def _gains(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> np.ndarray:
    return np.array([max(relevance.get(doc, 0.0), 0.0) for doc in ranked[:k]], dtype=np.float64)


def _discounts(count: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, count + 2, dtype=np.float64))


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """nDCG@k of one ranking (document ids, best first) against one query's judgements."""
    gains = _gains(ranked, relevance, k)
    ideal = np.sort([r for r in relevance.values() if r > 0])[::-1][:k]
    if not len(ideal):
        return 0.0
    return float(gains @ _discounts(len(gains)) / (ideal @ _discounts(len(ideal))))


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """Fraction of the query's relevant documents found in the top ``k``."""
    relevant = sum(1 for r in relevance.values() if r > 0)
    if not relevant:
        return 0.0
    return float(np.count_nonzero(_gains(ranked, relevance, k)) / relevant)


def reciprocal_rank_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """1 / rank of the first relevant document within the top ``k`` (0 when there is none)."""
    hits = np.flatnonzero(_gains(ranked, relevance, k))
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0


def average_precision_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """trec_eval's ``map_cut``: precision at each relevant rank <= k, over all relevant."""
    relevant = sum(1 for r in relevance.values() if r > 0)
    if not relevant:
        return 0.0
    hits = np.flatnonzero(_gains(ranked, relevance, k))
    return float(np.sum(np.arange(1, len(hits) + 1) / (hits + 1)) / relevant)


DEFAULT_CUTOFFS: dict[str, tuple[int, ...]] = {
    "ndcg": (10,),
    "recall": (100,),
    "mrr": (10,),
    "map": (10,),
}

METRICS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": reciprocal_rank_at_k,
    "map": average_precision_at_k,
}


def evaluate_rankings(
    rankings: Rankings,
    qrels: Qrels,
    cutoffs: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, float]:
    """Mean metrics over the judged queries.

    Args:
      rankings: query id -> retrieved document ids, best first.
      qrels: query id -> document id -> relevance. Queries without any relevance > 0
        are not scored (no metric is defined for them); a judged query missing from
        ``rankings`` scores 0.
      cutoffs: metric (``ndcg``, ``recall``, ``mrr``, ``map``) -> list of k; default
        :data:`DEFAULT_CUTOFFS` (nDCG@10, recall@100, MRR@10, MAP@10).

    Returns:
      ``{"ndcg_at_10": mean, ...}`` as fractions in [0, 1].

    Raises:
      ValueError: an unknown metric name or no query with a relevant document.
    """
    cutoffs = DEFAULT_CUTOFFS if cutoffs is None else cutoffs
    unknown = sorted(set(cutoffs) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    judged = [q for q, rel in qrels.items() if any(r > 0 for r in rel.values())]
    if not judged:
        raise ValueError("no query has a relevant document (relevance > 0) in the qrels")
    totals: dict[str, float] = {}
    for name, ks in cutoffs.items():
        for k in ks:
            total = math.fsum(METRICS[name](rankings.get(q, ()), qrels[q], k) for q in judged)
            totals[f"{name}_at_{k}"] = total / len(judged)
    return totals
