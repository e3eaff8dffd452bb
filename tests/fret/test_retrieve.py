"""Exact blocked top-k against numpy, the faiss backend, and what gets embedded."""

import numpy as np
import pytest

from gecko_jax.fret import retrieve
from gecko_jax.fret.config import RetrievalConfig
from gecko_jax.fret.corpus import Passage


def _reference(queries, passages, k):
    """numpy: scores in float64, sorted by score descending, then index ascending."""
    scores = queries.astype(np.float64) @ passages.astype(np.float64).T
    order = np.lexsort(
        (np.broadcast_to(np.arange(passages.shape[0]), scores.shape), -scores), axis=-1
    )[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("k, block_size", [(7, 16), (7, 3), (1, 101), (101, 40), (5, None)])
def test_exact_with_ties_on_integer_data(k, block_size):
    # Small integers: every dot product is exact in float32, and many are equal.
    rng = np.random.default_rng(0)
    queries = rng.integers(-2, 3, size=(37, 6)).astype(np.float32)
    passages = rng.integers(-2, 3, size=(101, 6)).astype(np.float32)
    passages[50] = passages[3]  # duplicate passages tie exactly
    index = retrieve.PassageIndex(passages, block_size)
    scores, ids = index.search(queries, k, query_block=10)  # 37 queries: blocks of 10, last padded
    ref_scores, ref_ids = _reference(queries, passages, k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (37, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_exact_on_random_floats():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(23, 32)).astype(np.float32)
    passages = rng.normal(size=(250, 32)).astype(np.float32)
    scores, ids = retrieve.PassageIndex(passages, block_size=64).search(queries, 20)
    ref_scores, ref_ids = _reference(queries, passages, 20)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_faiss_backend_matches():
    rng = np.random.default_rng(2)
    queries = rng.normal(size=(9, 16)).astype(np.float32)
    passages = rng.normal(size=(77, 16)).astype(np.float32)
    scores, ids = retrieve.PassageIndex(passages, backend="faiss").search(queries, 10)
    ref_scores, ref_ids = _reference(queries, passages, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    passages = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match=r"k=6 must be in 1\.\.5"):
        retrieve.PassageIndex(passages).search(np.ones((2, 4)), 6)
    with pytest.raises(ValueError, match="query dim 3 != passage dim 4"):
        retrieve.PassageIndex(passages).search(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        retrieve.PassageIndex(passages, backend="annoy")
    scores, ids = retrieve.PassageIndex(passages).search(np.zeros((0, 4)), 3)
    assert scores.shape == ids.shape == (0, 3)


class RecordingEncoder:
    """Returns one-hot rows and records each encode() call."""

    input_format = retrieve.formats.InputFormat()

    def __init__(self):
        self.calls = []

    def encode(
        self,
        texts,
        task=None,
        kind="query",
        dim=None,
        batch_size=32,
        titles=None,
        show_progress=None,
    ):
        self.calls.append(
            {
                "texts": list(texts),
                "task": task,
                "kind": kind,
                "titles": titles,
                "dim": dim,
                "batch_size": batch_size,
            }
        )
        return np.eye(len(texts), 8, dtype=np.float32)


PASSAGES = [Passage("1", "first text", "First"), Passage("2", "second text")]


def test_gecko_format_embeds_task_and_query_and_titled_documents():
    encoder = RecordingEncoder()
    config = RetrievalConfig(batch_size=8, dim=4)
    retrieve.embed_passages(encoder, PASSAGES, config)
    queries = retrieve.embed_queries(encoder, ["task A", "task B"], ["q1", "q2"], config)
    documents, query_call = encoder.calls
    assert documents == {
        "texts": ["first text", "second text"],
        "task": "",
        "kind": "document",
        "titles": ["First", ""],
        "dim": 4,
        "batch_size": 8,
    }
    # Exactly the strings Encoder.encode(queries, task=task) builds per distinct task.
    assert query_call["texts"] == ["task: task A | query: q1", "task: task B | query: q2"]
    assert query_call["task"] is None and query_call["kind"] == "query"
    assert queries.shape == (2, 8)


def test_plain_format():
    encoder = RecordingEncoder()
    config = RetrievalConfig(input_format="plain")
    retrieve.embed_passages(encoder, PASSAGES, config)
    retrieve.embed_queries(encoder, ["task A"], ["q1"], config)
    assert encoder.calls[0]["texts"] == ["First. first text", "second text"]
    assert encoder.calls[0]["task"] is None and encoder.calls[0]["titles"] is None
    assert encoder.calls[1]["texts"] == ["task A: q1"]


def test_approximate_is_off_tpu():
    # approx_max_k itself is tested in tests/test_search.py.
    passages = np.ones((5, 4), np.float32)
    assert retrieve.PassageIndex(passages, approximate=True).approximate is False
    assert retrieve.PassageIndex(passages, backend="faiss").approximate is False
