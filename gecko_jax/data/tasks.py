"""Named seqio tasks: the academic fine-tuning sets, local evaluation-data sets, helpers.

Importing this module registers the TFDS-backed tasks, which need no path and read
nothing until used:

=========== ===================================== ==================================
task        source                                rows
=========== ===================================== ==================================
``nq``      TFDS ``natural_questions/default``    question -> gold long answer
``snli``    TFDS ``snli``                         premise -> entailment (- contradiction)
``mnli``    TFDS ``multi_nli``                    premise -> entailment (- contradiction)
=========== ===================================== ==================================

:func:`register_default_tasks` registers the tasks that read local files (paths are
arguments, so gin can bind them, or environment variables):

* ``stsb_train`` (splits ``train``, ``validation`` = sts-dev), ``banking77_train``,
  ``amazon_counterfactual_train``, ``scifact_train`` from the evaluation-data directory
  (``data_dir``, else ``$GECKO_EVAL_DATA``); only their train (and STS dev) splits,
  never test;
* ``hotpotqa`` (``$GECKO_HOTPOTQA``), ``fever`` (``$GECKO_FEVER_CLAIMS`` and
  ``$GECKO_FEVER_WIKI_PAGES``), ``medmcqa`` (``$GECKO_MEDMCQA``), when their paths are
  given.

Files are read when a task's dataset is first requested, never at import or
registration. :func:`register_pair_corpus`, :func:`register_classification_task`,
:func:`register_beir_task` and :func:`register_sts_task` register any other corpus.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import seqio

from gecko_jax import readers
from gecko_jax.data import academic, classification, local_sets, registry, sources
from gecko_jax.data.eval_data import eval_data_dir
from gecko_jax.formats import InputFormat

log = logging.getLogger(__name__)

HOTPOTQA_ENV = "GECKO_HOTPOTQA"
FEVER_CLAIMS_ENV = "GECKO_FEVER_CLAIMS"
FEVER_WIKI_ENV = "GECKO_FEVER_WIKI_PAGES"
MEDMCQA_ENV = "GECKO_MEDMCQA"


LOCAL_PAPER = "not in Gecko's mixture: a labelled train split read through the local readers"
CLASSIFICATION_PAPER = (
    "Gecko section 3.3: classification as (x, same-label x+, other-label x-) with unique ids"
)


def register_academic_set(
    name: str, academic_set: academic.AcademicSet, *, input_format: InputFormat | None = None
) -> seqio.Task:
    """Registers an :class:`academic.AcademicSet` as the seqio task ``name``."""
    return registry.register_unified_task(
        name,
        academic_set.source,
        preprocessors=academic_set.preprocessors,
        metadata=academic_set.metadata,
        input_format=input_format,
    )


def register_tfds_tasks(tfds_data_dir: str | None = None) -> list[str]:
    """Registers ``nq``, ``snli`` and ``mnli`` (TFDS; nothing is read until used)."""
    register_academic_set("nq", academic.natural_questions(tfds_data_dir=tfds_data_dir))
    register_academic_set("snli", academic.snli(tfds_data_dir=tfds_data_dir))
    register_academic_set("mnli", academic.mnli(tfds_data_dir=tfds_data_dir))
    return ["nq", "snli", "mnli"]


def register_pair_corpus(
    name: str,
    file_pattern: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    *,
    task: str = "",
    symmetric: bool = False,
    file_format: str | None = None,
    max_bad_fraction: float = 0.01,
    metadata: Mapping[str, Any] | None = None,
    input_format: InputFormat | None = None,
    row_filter: tuple[str, Sequence[str]] | None = None,
) -> seqio.Task:
    """Registers a JSONL/TFRecord corpus of unified rows (pre-finetuning pairs, FRet output).

    Args:
      name: the task name.
      file_pattern: local or ``gs://`` glob(s), as :func:`sources.file_source` takes
        them (a mapping gives split -> patterns; otherwise the split is ``train``).
      task: the task string for rows without one (e.g. ``"question answering"``).
      symmetric: the default ``symmetric`` flag of rows without one.
      file_format: ``"jsonl"`` or ``"tfrecord"``; None infers it from the extension.
      max_bad_fraction: malformed rows tolerated before the job fails.
      metadata: extra metadata (task type, origin, ...).
      input_format: overrides the registry's default input format.
      row_filter: ``(field, values)``: keep only rows whose string ``field`` is one of
        ``values`` (as :func:`sources.file_source` takes it).
    """
    source = sources.file_source(
        file_pattern,
        file_format=file_format,
        default_task=task,
        symmetric=symmetric,
        source_name=name,
        max_bad_fraction=max_bad_fraction,
        row_filter=row_filter,
    )
    info = {
        "task_type": "pairs",
        "origin": str(file_pattern),
        "task": task,
        "paper": "Gecko section 3.1 (pre-finetuning pairs) / 3.2 (FRet)",
        **(metadata or {}),
    }
    return registry.register_unified_task(name, source, metadata=info, input_format=input_format)


def register_classification_task(
    name: str,
    path: str,
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    task: str = "classification",
    seed: int = 0,
    id_format: str = "{text} [id {id}]",
    id_scope: str = "triple",
    singleton_labels: str = "error",
    metadata: Mapping[str, Any] | None = None,
    input_format: InputFormat | None = None,
) -> seqio.Task:
    """Registers a CSV/TSV of labelled texts as classification triples (split ``train``).

    See :func:`classification.build_triples` for the triple arguments and
    :func:`gecko_jax.readers.read_labelled_texts` for the file format.
    """
    load = functools.partial(
        readers.read_labelled_texts, path, text_field=text_field, label_field=label_field
    )
    source = classification.classification_source(
        load,
        task=task,
        seed=seed,
        id_format=id_format,
        id_scope=id_scope,
        singleton_labels=singleton_labels,
        source=name,
    )
    info = {
        "task_type": "classification",
        "origin": path,
        "task": task,
        "paper": CLASSIFICATION_PAPER,
        **(metadata or {}),
    }
    return registry.register_unified_task(name, source, metadata=info, input_format=input_format)


def register_beir_task(
    name: str,
    data_dir: str,
    *,
    splits: Mapping[str, str] | None = None,
    task: str = "search result",
    metadata: Mapping[str, Any] | None = None,
    input_format: InputFormat | None = None,
) -> seqio.Task:
    """Registers a BEIR-layout directory (split name -> qrels split, default ``train``)."""
    splits = dict(splits or {"train": "train"})
    loaders = {
        split: functools.partial(local_sets.read_beir, data_dir, qrels, task=task, source=name)
        for split, qrels in splits.items()
    }
    info = {
        "task_type": "retrieval",
        "origin": f"BEIR layout at {data_dir}",
        "task": task,
        "qrels_splits": splits,
        "paper": LOCAL_PAPER,
        **(metadata or {}),
    }
    return registry.register_unified_task(
        name, local_sets.examples_source(loaders), metadata=info, input_format=input_format
    )


def register_sts_task(
    name: str,
    paths: Mapping[str, str],
    *,
    min_score: float = 4.0,
    task: str = "sentence similarity",
    metadata: Mapping[str, Any] | None = None,
    input_format: InputFormat | None = None,
) -> seqio.Task:
    """Registers STS Benchmark TSVs (split -> path) as symmetric positive pairs."""
    loaders = {
        split: functools.partial(
            local_sets.read_sts, path, min_score=min_score, task=task, source=name
        )
        for split, path in paths.items()
    }
    info = {
        "task_type": "sentence similarity (symmetric)",
        "origin": dict(paths),
        "task": task,
        "min_score": min_score,
        "paper": LOCAL_PAPER,
        **(metadata or {}),
    }
    return registry.register_unified_task(
        name, local_sets.examples_source(loaders), metadata=info, input_format=input_format
    )


def register_eval_data_tasks(data_dir: str | None = None) -> list[str]:
    """Registers the train splits of the evaluation data: STS-B, Banking77, Amazon CF, SciFact."""
    root = eval_data_dir(data_dir)
    register_sts_task(
        "stsb_train",
        {
            "train": os.path.join(root, "stsb", "sts-train.csv"),
            "validation": os.path.join(root, "stsb", "sts-dev.csv"),
        },
        metadata={"origin_dataset": "STS Benchmark (English)"},
    )
    register_classification_task(
        "banking77_train",
        os.path.join(root, "banking77", "train.csv"),
        text_field="text",
        label_field="category",
        metadata={"origin_dataset": "Banking77 (77 intents)"},
    )
    register_classification_task(
        "amazon_counterfactual_train",
        os.path.join(root, "amazon_counterfactual", "EN_train.tsv"),
        text_field="sentence",
        label_field="is_counterfactual",
        metadata={"origin_dataset": "Amazon Counterfactual (English)"},
    )
    register_beir_task(
        "scifact_train",
        os.path.join(root, "scifact"),
        task="fact checking",
        metadata={"origin_dataset": "SciFact (BEIR), train qrels"},
    )
    return ["stsb_train", "banking77_train", "amazon_counterfactual_train", "scifact_train"]


def register_local_academic_tasks(
    hotpotqa_path: str | None = None,
    fever_claims_path: str | None = None,
    fever_wiki_pages: str | None = None,
    medmcqa_path: str | None = None,
) -> list[str]:
    """Registers ``hotpotqa``, ``fever`` and ``medmcqa`` for the paths given (or in the env).

    A set whose path is neither given nor in its environment variable is skipped.
    """
    hotpotqa_path = hotpotqa_path or os.environ.get(HOTPOTQA_ENV)
    fever_claims_path = fever_claims_path or os.environ.get(FEVER_CLAIMS_ENV)
    fever_wiki_pages = fever_wiki_pages or os.environ.get(FEVER_WIKI_ENV)
    medmcqa_path = medmcqa_path or os.environ.get(MEDMCQA_ENV)
    names = []
    if hotpotqa_path:
        register_academic_set("hotpotqa", academic.hotpotqa(hotpotqa_path))
        names.append("hotpotqa")
    if fever_claims_path and fever_wiki_pages:
        register_academic_set("fever", academic.fever(fever_claims_path, fever_wiki_pages))
        names.append("fever")
    elif fever_claims_path or fever_wiki_pages:
        raise ValueError(
            "fever needs both the claims path and the wiki-pages pattern "
            f"(${FEVER_CLAIMS_ENV}, ${FEVER_WIKI_ENV})"
        )
    if medmcqa_path:
        register_academic_set("medmcqa", academic.medmcqa(medmcqa_path))
        names.append("medmcqa")
    skipped = {"hotpotqa", "fever", "medmcqa"} - set(names)
    if skipped:
        log.info("not registering %s: no local path given", sorted(skipped))
    return names


def register_default_tasks(
    data_dir: str | None = None,
    *,
    hotpotqa_path: str | None = None,
    fever_claims_path: str | None = None,
    fever_wiki_pages: str | None = None,
    medmcqa_path: str | None = None,
) -> list[str]:
    """Registers every default task; returns their names.

    Args:
      data_dir: the evaluation-data directory (see :func:`eval_data_dir`).
      hotpotqa_path: HotpotQA train file (else ``$GECKO_HOTPOTQA``).
      fever_claims_path: FEVER claims file (else ``$GECKO_FEVER_CLAIMS``).
      fever_wiki_pages: FEVER wiki-pages glob (else ``$GECKO_FEVER_WIKI_PAGES``).
      medmcqa_path: MedMCQA train file (else ``$GECKO_MEDMCQA``).
    """
    return [
        *register_tfds_tasks(),
        *register_eval_data_tasks(data_dir),
        *register_local_academic_tasks(
            hotpotqa_path, fever_claims_path, fever_wiki_pages, medmcqa_path
        ),
    ]


register_tfds_tasks()
