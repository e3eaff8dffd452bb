"""Clustering evaluator: V-measure of mini-batch k-means against the labels."""

import pytest

from gecko_jax.eval.clustering import ClusteringEvaluator
from tests.eval.fakes import TableEncoder

CENTRES = {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "z": [0.0, 0.0, 1.0]}


def _items_and_encoder(points, labels_by_point):  # type: ignore[no-untyped-def]
    """``points`` texts near each centre; ``labels_by_point(centre, i)`` labels each."""
    vectors, items = {}, []
    for centre, vector in CENTRES.items():
        for i in range(points):
            text = f"{centre}{i}"
            vectors[text] = [v + 0.01 * i for v in vector]
            items.append((text, labels_by_point(centre, i)))
    return items, TableEncoder(vectors)


def test_clusters_matching_labels_score_100() -> None:
    items, encoder = _items_and_encoder(4, lambda centre, i: centre)
    scores = ClusteringEvaluator(items, name="toy").evaluate(encoder)
    assert scores == {3: {"v_measure": pytest.approx(100.0, abs=1e-9)}}


def test_labels_independent_of_clusters_score_0() -> None:
    # Each cluster holds one text of each label: the clusters say nothing about labels.
    items, encoder = _items_and_encoder(3, lambda centre, i: "abc"[i])
    scores = ClusteringEvaluator(items).evaluate(encoder)
    assert scores[3]["v_measure"] == pytest.approx(0.0, abs=1e-9)


def test_needs_labels_and_points() -> None:
    message = "toy: need at least 2 labels and more texts than labels; got 2 texts, 2 labels"
    with pytest.raises(ValueError, match=message):
        ClusteringEvaluator([("a", "1"), ("b", "2")], name="toy")
