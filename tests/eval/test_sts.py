"""STS evaluator: Spearman/Pearson of cosine similarity, Matryoshka truncation, bad input."""

import math

import pytest

from gecko_jax.eval.sts import StsEvaluator
from gecko_jax.readers import StsPair
from tests.eval.fakes import TableEncoder

COSINES = [0.9, 0.5, 0.1, -0.2]
GOLD = [4.0, 5.0, 1.0, 0.0]


def _setup(gold=GOLD, task=None):  # type: ignore[no-untyped-def]
    """Pair i: ("a{i}" = [1, 0], "b{i}" at cosine COSINES[i] from it)."""
    vectors = {}
    for i, c in enumerate(COSINES):
        vectors[f"a{i}"] = [1.0, 0.0]
        vectors[f"b{i}"] = [c, math.sqrt(1 - c * c)]
    if task:
        vectors = {f"task: {task} | query: {k}": v for k, v in vectors.items()}
    pairs = [StsPair(f"a{i}", f"b{i}", g) for i, g in enumerate(gold)]
    return TableEncoder(vectors), pairs


def test_spearman_and_pearson_by_hand() -> None:
    encoder, pairs = _setup()
    scores = StsEvaluator(pairs, name="toy").evaluate(encoder)
    # Ranks of cosine 4,3,2,1 vs gold 3,4,2,1: sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8.
    assert list(scores) == [2]
    assert scores[2]["spearman"] == pytest.approx(80.0, abs=1e-9)
    encoder, pairs = _setup(gold=[2 * c + 1 for c in COSINES])  # gold linear in cosine
    scores = StsEvaluator(pairs).evaluate(encoder)
    assert scores[2] == pytest.approx({"spearman": 100.0, "pearson": 100.0}, abs=1e-9)


def test_matryoshka_dims_share_one_encoding() -> None:
    encoder, pairs = _setup()
    pairs = pairs + [StsPair("a0", "b1", 2.0)]  # repeated sentences are encoded once
    scores = StsEvaluator(pairs).evaluate(encoder, dims=[1, 2])
    assert len(encoder.calls) == 1
    assert sorted(encoder.encoded_texts()) == sorted(
        {p.sentence1 for p in pairs} | {p.sentence2 for p in pairs}
    )
    # At dim 1 every vector becomes its sign: cosines 1, 1, 1, -1, 1 against gold 4, 5, 1, 0, 2.
    # Ranks (ties averaged): cosine 3.5, 3.5, 3.5, 1, 3.5; gold 4, 5, 2, 1, 3.
    # Pearson of those ranks: sum dx*dy = 5 over sqrt(sum dx^2 = 5 * sum dy^2 = 10).
    assert scores[1]["spearman"] == pytest.approx(100 * 5.0 / math.sqrt(50.0), abs=1e-9)
    assert list(scores) == [1, 2]


def test_task_formats_both_sentences() -> None:
    encoder, pairs = _setup(task="sentence similarity")
    scores = StsEvaluator(pairs, task="sentence similarity").evaluate(encoder)
    assert scores[2]["spearman"] == pytest.approx(80.0, abs=1e-9)
    assert {c["task"] for c in encoder.calls} == {"sentence similarity"}


def test_bad_dims_and_sets() -> None:
    encoder, pairs = _setup()
    evaluator = StsEvaluator(pairs, name="toy")
    with pytest.raises(ValueError, match=r"dims \[3\] exceed the model's embedding size 2"):
        evaluator.evaluate(encoder, dims=[1, 3])
    with pytest.raises(ValueError, match=r"dims \[0\] must be positive"):
        evaluator.evaluate(encoder, dims=[0])
    assert encoder.calls == []  # validated before any encoding
    with pytest.raises(ValueError, match="toy: need at least 2 sentence pairs, got 1"):
        StsEvaluator(pairs[:1], name="toy")
