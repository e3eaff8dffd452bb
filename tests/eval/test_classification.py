"""Classification evaluator: MTEB's undersampling replayed exactly, hand-checked scores."""

import numpy as np
import pytest
from datasets import Dataset
from mteb.tasks.classification.eng.banking77_classification import Banking77Classification

from gecko_jax.eval.classification import ClassificationEvaluator, mteb_undersample
from tests.eval.fakes import TableEncoder

TRAIN = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]
TEST = [("ta1", "a"), ("ta2", "a"), ("ta3", "a"), ("tb1", "b")]
VECTORS = {
    "a1": [1.0, 0.0],
    "a2": [1.0, 0.1],
    "b1": [0.0, 1.0],
    "b2": [0.1, 1.0],
    "ta1": [1.0, 0.05],
    "ta2": [0.9, 0.1],
    "ta3": [1.0, 0.2],
    "tb1": [1.0, 0.0],  # labelled b but lies on the a side: always misclassified
}


def test_undersampling_replays_mteb() -> None:
    labels = [int(x) for x in np.random.default_rng(0).integers(0, 5, size=60)]
    task = Banking77Classification()
    task.samples_per_label = 3
    dataset = Dataset.from_dict({"text": [str(i) for i in range(60)], "label": labels})
    expected, order = [], None
    for experiment in range(4):
        _, order, chosen = task._undersample_data(dataset, experiment, order)
        expected.append(chosen)
    assert mteb_undersample(labels, 3, 4, seed=task.seed) == expected
    assert all(len(chosen) == 15 for chosen in expected)
    assert expected[0] != expected[1]  # each experiment reshuffles


def test_scores_by_hand() -> None:
    encoder = TableEncoder(VECTORS)
    scores = ClassificationEvaluator(TRAIN, TEST, samples_per_label=None).evaluate(encoder)
    # Predictions a, a, a, a. Class a: precision 3/4, recall 1, F1 6/7; class b: all 0.
    assert scores[2] == pytest.approx(
        {
            "accuracy": 75.0,
            "f1": 100 * (6 / 7) / 2,
            "f1_weighted": 100 * (3 * 6 / 7) / 4,
            "precision": 100 * 0.75 / 2,
            "recall": 50.0,
        },
        abs=1e-9,
    )


def test_mteb_protocol_encodes_only_sampled_rows() -> None:
    encoder = TableEncoder(VECTORS)
    evaluator = ClassificationEvaluator(TRAIN, TEST, samples_per_label=1, n_experiments=3)
    experiments = evaluator.experiments()
    assert experiments == mteb_undersample(["a", "a", "b", "b"], 1, 3, seed=42)
    assert all(sorted(TRAIN[i][1] for i in chosen) == ["a", "b"] for chosen in experiments)
    scores = evaluator.evaluate(encoder, dims=[2, 1])
    used = {TRAIN[i][0] for chosen in experiments for i in chosen}
    assert len(encoder.calls) == 1
    assert sorted(encoder.encoded_texts()) == sorted(used | {t for t, _ in TEST})
    assert scores[2]["accuracy"] == pytest.approx(75.0, abs=1e-9)
    assert list(scores) == [2, 1]


def test_rejects_unusable_sets() -> None:
    with pytest.raises(ValueError, match="toy: the test split is empty"):
        ClassificationEvaluator(TRAIN, [], name="toy")
    with pytest.raises(ValueError, match="toy: the train split needs at least 2 labels"):
        ClassificationEvaluator(TRAIN[:2], TEST, name="toy")
