"""Exact blocked top-k: against a numpy sort, the tie rule, blocks, bad arguments."""

import numpy as np
import pytest

from gecko_jax import search


def _reference(queries: np.ndarray, documents: np.ndarray, k: int) -> tuple:
    """numpy in float64: by score descending, then by document index ascending."""
    scores = queries.astype(np.float64) @ documents.astype(np.float64).T
    index = np.broadcast_to(np.arange(documents.shape[0]), scores.shape)
    order = np.lexsort((index, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize(
    "k, block_size, query_block",
    [(7, 16, 10), (7, 3, 4), (1, 101, 1024), (101, 40, 37), (5, None, 8), (64, 1, 5)],
)
def test_ties_go_to_the_lower_index_whatever_the_blocks(k, block_size, query_block) -> None:
    # Small integers: every dot product is exact in float32 and many are equal, so ties
    # fall inside blocks, across blocks and at the k-th place.
    rng = np.random.default_rng(0)
    queries = rng.integers(-2, 3, size=(37, 6)).astype(np.float32)
    documents = rng.integers(-2, 3, size=(101, 6)).astype(np.float32)
    documents[50] = documents[3]
    scores, ids = search.ExactIndex(documents, block_size).search(queries, k, query_block)
    ref_scores, ref_ids = _reference(queries, documents, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (37, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_all_equal_scores_rank_by_index() -> None:
    documents = np.zeros((9, 3), np.float32)  # every score is 0
    _, ids = search.exact_top_k(np.ones((2, 3), np.float32), documents, 4, block_size=2)
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3], [0, 1, 2, 3]])


def test_random_floats_match_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((10, 8)).astype(np.float32)
    documents = rng.standard_normal((53, 8)).astype(np.float32)
    scores, ids = search.exact_top_k(queries, documents, 7, block_size=11, query_block=3)
    full = queries @ documents.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_k_equal_to_the_corpus_ranks_every_document() -> None:
    rng = np.random.default_rng(2)
    documents = rng.standard_normal((4, 5)).astype(np.float32)
    queries = rng.standard_normal((3, 5)).astype(np.float32)
    _, ids = search.exact_top_k(queries, documents, 4)
    np.testing.assert_array_equal(ids, _reference(queries, documents, 4)[1])


def test_approx_max_k_program_is_exact_off_tpu() -> None:
    rng = np.random.default_rng(3)
    queries = rng.integers(-2, 3, size=(11, 6)).astype(np.float32)
    documents = rng.integers(-2, 3, size=(50, 6)).astype(np.float32)
    index = search.ExactIndex(documents, 16, approximate=True)
    assert index.approximate is False  # not a TPU: exact top_k
    index.approximate = True  # force the approx_max_k program; on CPU XLA computes it exactly
    scores, ids = index.search(queries, 6)
    ref_scores, ref_ids = _reference(queries, documents, 6)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_no_queries() -> None:
    scores, ids = search.ExactIndex(np.ones((5, 4))).search(np.zeros((0, 4)), 3)
    assert scores.shape == ids.shape == (0, 3)


def test_bad_arguments() -> None:
    documents = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match=r"k=6 must be in 1\.\.5"):
        search.exact_top_k(np.ones((2, 4)), documents, 6)
    with pytest.raises(ValueError, match=r"k=0 must be in 1\.\.5"):
        search.exact_top_k(np.ones((2, 4)), documents, 0)
    with pytest.raises(ValueError, match="query dim 3 != passage dim 4"):
        search.exact_top_k(np.ones((2, 3)), documents, 2)
    with pytest.raises(ValueError, match="must be 2-D"):
        search.exact_top_k(np.ones(4), documents, 2)
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        search.ExactIndex(np.ones((0, 4)))
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        search.ExactIndex(documents, 0)
