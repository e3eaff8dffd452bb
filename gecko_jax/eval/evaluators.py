"""The named local evaluation sets and :func:`build_evaluator`.

Each name maps files of the evaluation-data directory (``data_dir``, else
``$GECKO_EVAL_DATA``; laid out as ``tests/fixtures/eval_data``, see its README) to an
evaluator:

================================ ============== ================ ==================================
name                             kind           eval splits      MTEB task
================================ ============== ================ ==================================
``stsb``                         STS            train, dev, test STSBenchmark
``scifact``                      retrieval      train, test      SciFact
``banking77``                    classification test             Banking77Classification
``amazon_counterfactual_en``     classification dev, test        AmazonCounterfactualClassification
``amazon_counterfactual_en_ext`` classification dev, test        AmazonCounterfactualClassification
``banking77_clustering``         clustering     train, test      (none: Banking77 intents)
================================ ============== ================ ==================================

The two AmazonCounterfactual sets are MTEB's ``en`` and ``en-ext`` subsets; the
clustering set takes Banking77's intents as clusters.

Classification sets fit on their train split with MTEB's undersampling (8 samples per
label for Banking77, 32 for AmazonCounterfactual, as MTEB). ``validation`` and ``valid``
are accepted for ``dev``. Test splits are for reporting only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from gecko_jax.data.eval_data import EVAL_DATA_ENV, eval_data_dir
from gecko_jax.eval.base import DATA_FIELDS, Evaluator
from gecko_jax.eval.classification import ClassificationEvaluator
from gecko_jax.eval.clustering import ClusteringEvaluator
from gecko_jax.eval.retrieval import RetrievalEvaluator
from gecko_jax.eval.sts import StsEvaluator
from gecko_jax.readers import read_beir_split, read_labelled_texts, read_sts_benchmark

_SPLIT_ALIASES = {"validation": "dev", "valid": "dev"}

Builder = Callable[[str, str, str, dict[str, Any]], Evaluator]


@dataclasses.dataclass(frozen=True)
class EvaluatorSpec:
    """How a named set becomes an evaluator.

    Attributes:
      evaluator_class: the evaluator type (its dataclass fields are the options).
      splits: evaluation splits available.
      gecko_task: the Gecko task description the training tasks of
        :mod:`gecko_jax.data.tasks` use for this kind of data.
      build: ``(data_dir, split, name, options) -> evaluator``.
    """

    evaluator_class: type
    splits: tuple[str, ...]
    gecko_task: str
    build: Builder


def _sts(root: str, split: str, name: str, options: dict[str, Any]) -> Evaluator:
    return StsEvaluator(
        read_sts_benchmark(os.path.join(root, "stsb", f"sts-{split}.csv")), name=name, **options
    )


def _scifact(root: str, split: str, name: str, options: dict[str, Any]) -> Evaluator:
    return RetrievalEvaluator(
        read_beir_split(os.path.join(root, "scifact"), split), name=name, **options
    )


def _labelled(path: str, text_field: str, label_field: str) -> list[tuple[str, str]]:
    return read_labelled_texts(path, text_field=text_field, label_field=label_field)


def _classification(
    files: Mapping[str, str], text_field: str, label_field: str, samples_per_label: int
) -> Builder:
    def build(root: str, split: str, name: str, options: dict[str, Any]) -> Evaluator:
        train = _labelled(os.path.join(root, files["train"]), text_field, label_field)
        test = _labelled(os.path.join(root, files[split]), text_field, label_field)
        options = {"samples_per_label": samples_per_label, **options}
        return ClassificationEvaluator(train, test, name=name, **options)

    return build


def _banking77_clustering(root: str, split: str, name: str, options: dict[str, Any]) -> Evaluator:
    items = _labelled(os.path.join(root, "banking77", f"{split}.csv"), "text", "category")
    return ClusteringEvaluator(items, name=name, **options)


def _amazon_files(prefix: str) -> dict[str, str]:
    return {
        split: f"amazon_counterfactual/{prefix}_{file}.tsv"
        for split, file in (("train", "train"), ("dev", "valid"), ("test", "test"))
    }


SPECS: dict[str, EvaluatorSpec] = {
    "stsb": EvaluatorSpec(StsEvaluator, ("train", "dev", "test"), "sentence similarity", _sts),
    "scifact": EvaluatorSpec(RetrievalEvaluator, ("train", "test"), "fact checking", _scifact),
    "banking77": EvaluatorSpec(
        ClassificationEvaluator,
        ("test",),
        "classification",
        _classification(
            {"train": "banking77/train.csv", "test": "banking77/test.csv"}, "text", "category", 8
        ),
    ),
    "amazon_counterfactual_en": EvaluatorSpec(
        ClassificationEvaluator,
        ("dev", "test"),
        "classification",
        _classification(_amazon_files("EN"), "sentence", "is_counterfactual", 32),
    ),
    "amazon_counterfactual_en_ext": EvaluatorSpec(
        ClassificationEvaluator,
        ("dev", "test"),
        "classification",
        _classification(_amazon_files("EN-ext"), "sentence", "is_counterfactual", 32),
    ),
    "banking77_clustering": EvaluatorSpec(
        ClusteringEvaluator, ("train", "test"), "classification", _banking77_clustering
    ),
}
KNOWN_EVALUATORS: tuple[str, ...] = tuple(SPECS)


def spec(name: str) -> EvaluatorSpec:
    """The specification of a named set.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    if name not in SPECS:
        raise ValueError(f"unknown evaluator {name!r}; known: {', '.join(KNOWN_EVALUATORS)}")
    return SPECS[name]


def options_of(name: str) -> list[str]:
    """The keyword options :func:`build_evaluator` accepts for ``name``."""
    fields = dataclasses.fields(spec(name).evaluator_class)
    return sorted(f.name for f in fields if f.init and f.name not in DATA_FIELDS)


def build_evaluator(
    name: str, data_dir: str | None = None, split: str = "test", **options: Any
) -> Evaluator:
    """Builds the evaluator of a named local set (reads its files now).

    Args:
      name: one of :data:`KNOWN_EVALUATORS`.
      data_dir: the evaluation-data directory (default: see :func:`eval_data_dir`).
      split: evaluation split (``dev`` also answers to ``validation`` / ``valid``).
      **options: evaluator settings, e.g. ``task`` (a Gecko task description),
        ``batch_size``, ``samples_per_label`` (``None``: fit on the whole train split).

    Returns:
      An evaluator named ``{name}_{split}``.

    Raises:
      ValueError: unknown name, split or option (each message lists the valid ones).
      FileNotFoundError: the data directory or a file is missing (named).
    """
    entry = spec(name)
    split = _SPLIT_ALIASES.get(split, split)
    if split not in entry.splits:
        raise ValueError(
            f"evaluator {name!r} has no split {split!r}; splits: {', '.join(entry.splits)}"
        )
    unknown = sorted(set(options) - set(options_of(name)))
    if unknown:
        raise ValueError(
            f"evaluator {name!r} has no option(s) {unknown}; options: {', '.join(options_of(name))}"
        )
    root = eval_data_dir(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"evaluation data directory not found: {root} (pass data_dir or set ${EVAL_DATA_ENV})"
        )
    return entry.build(root, split, f"{name}_{split}", dict(options))
