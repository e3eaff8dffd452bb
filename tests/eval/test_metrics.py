"""Ranking metrics against values worked out by hand (trec_eval definitions)."""

import math

import pytest

from gecko_jax.eval import metrics

# q1: relevant d1 and d3 (binary), retrieved at ranks 2 and 4.
RANKED = ["d2", "d1", "d4", "d3"]
RELEVANT = {"d1": 1, "d3": 1, "d9": 0}
NDCG_Q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))


def test_ndcg_binary() -> None:
    ideal = 1 + 1 / math.log2(3)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx(NDCG_Q1, abs=1e-12)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx(0.6509209298, abs=1e-9)
    # Cut at 2: only d1 (rank 2) counts; the ideal top 2 holds both relevant documents.
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(
        (1 / math.log2(3)) / ideal, abs=1e-12
    )
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 1) == 0.0


def test_ndcg_uses_graded_gains_as_trec_eval() -> None:
    # gain = relevance (not 2^rel - 1): DCG = 1 + 2/log2(3); ideal = 2 + 1/log2(3).
    value = metrics.ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10)
    assert value == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)), abs=1e-12)
    assert value == pytest.approx(0.8597186, abs=1e-7)


def test_recall_mrr_map() -> None:
    assert metrics.recall_at_k(RANKED, RELEVANT, 100) == 1.0
    assert metrics.recall_at_k(RANKED, RELEVANT, 2) == 0.5
    assert metrics.recall_at_k(["d2"], RELEVANT, 100) == 0.0  # relevant but never retrieved
    assert metrics.reciprocal_rank_at_k(RANKED, RELEVANT, 10) == 0.5
    assert metrics.reciprocal_rank_at_k(RANKED, RELEVANT, 1) == 0.0
    # Precision at the relevant ranks 2 and 4: 1/2 and 2/4, over 2 relevant documents.
    assert metrics.average_precision_at_k(RANKED, RELEVANT, 10) == 0.5
    # Cut at 3: only rank 2 counts, still divided by all 2 relevant (map_cut).
    assert metrics.average_precision_at_k(RANKED, RELEVANT, 3) == 0.25


def test_evaluate_rankings_means_over_judged_queries() -> None:
    qrels = {
        "q1": RELEVANT,
        "q2": {"x": 1},  # ranked first: every metric is 1
        "q3": {"y": 0},  # no relevant document: not scored
        "q4": {"z": 1},  # never ranked: scores 0
    }
    rankings = {"q1": RANKED, "q2": ["x", "d1"], "q3": ["y"]}
    scores = metrics.evaluate_rankings(rankings, qrels)
    assert set(scores) == {"ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_10"}
    assert scores["ndcg_at_10"] == pytest.approx((NDCG_Q1 + 1 + 0) / 3, abs=1e-12)
    assert scores["recall_at_100"] == pytest.approx(2 / 3, abs=1e-12)
    assert scores["mrr_at_10"] == pytest.approx(1.5 / 3, abs=1e-12)
    assert scores["map_at_10"] == pytest.approx(1.5 / 3, abs=1e-12)
    custom = metrics.evaluate_rankings(rankings, qrels, {"recall": [1, 4]})
    assert custom == pytest.approx({"recall_at_1": 1 / 3, "recall_at_4": 2 / 3})


def test_evaluate_rankings_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"unknown metrics \['precision'\]"):
        metrics.evaluate_rankings({}, {"q": {"d": 1}}, {"precision": [5]})
    with pytest.raises(ValueError, match="no query has a relevant document"):
        metrics.evaluate_rankings({}, {"q": {"d": 0}})
