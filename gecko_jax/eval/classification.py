"""Classification: logistic regression on frozen embeddings, as MTEB does.

MTEB's protocol (``mteb.abstasks.classification.AbsTaskClassification``), reproduced
exactly: for each of ``n_experiments`` experiments the train split is undersampled to
``samples_per_label`` examples per label, a ``LogisticRegression(max_iter=100)`` is fit
on their embeddings and scored on the whole evaluation split; metrics are averaged over
experiments. The undersampling replays MTEB's (``_undersample_data``): one index list
``0..n-1`` reshuffled in place by a fresh ``np.random.RandomState(seed)`` before each
experiment, then the first ``samples_per_label`` indices of each label in that order.
MTEB uses 8 samples per label by default (32 for AmazonCounterfactual), 10 experiments
and seed 42.

``samples_per_label=None`` trains once on the whole train split instead (the protocol of
the reference scores quoted in ``tests/fixtures/eval_data/README.md``).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable, Sequence
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from gecko_jax.eval import base
from gecko_jax.text_encoder import TextEncoder

LabelledTexts = Sequence[tuple[str, Hashable]]


def mteb_undersample(
    labels: Sequence[Hashable], samples_per_label: int, n_experiments: int, seed: int = 42
) -> list[list[int]]:
    """The train indices MTEB selects for each experiment (see the module docstring)."""
    order = list(range(len(labels)))
    selections = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(order)
        taken: collections.Counter = collections.Counter()
        chosen = []
        for index in order:
            if taken[labels[index]] < samples_per_label:
                chosen.append(index)
                taken[labels[index]] += 1
        selections.append(chosen)
    return selections


def classification_scores(
    truth: Sequence[Hashable], predicted: Sequence[Hashable]
) -> dict[str, float]:
    """Accuracy, macro F1 / precision / recall and weighted F1, in points."""
    fractions = {
        "accuracy": accuracy_score(truth, predicted),
        "f1": f1_score(truth, predicted, average="macro"),
        "f1_weighted": f1_score(truth, predicted, average="weighted"),
        "precision": precision_score(truth, predicted, average="macro", zero_division=0),
        "recall": recall_score(truth, predicted, average="macro", zero_division=0),
    }
    return {key: base.points(value) for key, value in fractions.items()}


@dataclasses.dataclass
class ClassificationEvaluator:
    """Logistic regression on embeddings of a labelled train split, scored on another.

    Attributes:
      train: ``(text, label)`` pairs to fit on.
      test: ``(text, label)`` pairs to score.
      name: results key (e.g. ``"banking77_test"``).
      samples_per_label: MTEB's undersampling per experiment; ``None`` fits once on all
        of ``train``.
      n_experiments: MTEB's experiment count (ignored when ``samples_per_label`` is None).
      seed: undersampling seed (and the classifier's ``random_state``).
      max_iter: logistic regression iterations.
      task: Gecko task description (``None``: raw text).
      batch_size: encoding batch size.
    """

    train: LabelledTexts
    test: LabelledTexts
    name: str = "classification"
    samples_per_label: int | None = 8
    n_experiments: int = 10
    seed: int = 42
    max_iter: int = 100
    task: str | None = None
    batch_size: int = 32
    main_metric: ClassVar[str] = "accuracy"

    def __post_init__(self) -> None:
        for split, rows in (("train", self.train), ("test", self.test)):
            if not rows:
                raise ValueError(f"{self.name}: the {split} split is empty")
        if len({label for _, label in self.train}) < 2:
            raise ValueError(f"{self.name}: the train split needs at least 2 labels")

    def experiments(self) -> list[list[int]]:
        """Train indices of each experiment."""
        if self.samples_per_label is None:
            return [list(range(len(self.train)))]
        labels = [label for _, label in self.train]
        return mteb_undersample(labels, self.samples_per_label, self.n_experiments, self.seed)

    def evaluate(self, encoder: TextEncoder, dims: Sequence[int] | None = None) -> base.Scores:
        """Metrics averaged over experiments (points), per dimension."""
        dims = base.resolve_dims(dims, encoder.embedding_dim)
        experiments = self.experiments()
        used = sorted(set().union(*experiments))  # only these train rows are ever embedded
        row_of = {index: row for row, index in enumerate(used)}
        texts = [self.train[i][0] for i in used] + [text for text, _ in self.test]
        embeddings = base.encode_unique(encoder, texts, task=self.task, batch_size=self.batch_size)
        test_labels = [label for _, label in self.test]
        scores: base.Scores = {}
        for dim in dims:
            vectors = base.truncate(embeddings, dim)
            train_vectors, test_vectors = vectors[: len(used)], vectors[len(used) :]
            runs = []
            for chosen in experiments:
                model = LogisticRegression(max_iter=self.max_iter, random_state=self.seed)
                model.fit(
                    train_vectors[[row_of[i] for i in chosen]], [self.train[i][1] for i in chosen]
                )
                runs.append(classification_scores(test_labels, model.predict(test_vectors)))
            scores[dim] = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        return scores
