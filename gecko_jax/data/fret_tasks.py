"""The seqio ``fret`` task and its per-task-type slices, reading FRet's output files.

``gecko-fret`` writes unified rows (``task``, ``query``, ``positive``, ``negatives``,
...) plus audit fields, among them ``task_type``: the kind of task the LLM was asked
to write (question answering, search result, ...). :func:`register_fret_tasks`
registers ``fret`` over every row and one task per type, ``fret_question_answering``,
``fret_search_result``, ..., holding only that type's rows, so a mixture can weight
the task types (the paper's ablation of task diversity, Table 6).

    register_fret_tasks("gs://bucket/fret/fret-*.jsonl")
    register_mixture("fret_ft", {"fret": 1.0, "nq": 0.2, ...})
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gecko_jax.data import tasks
from gecko_jax.formats import InputFormat
from gecko_jax.rows import TASK_TYPE

# The task types of the paper's FRet prompts; gecko-fret can be given others.
DEFAULT_TASK_TYPES = ("question answering", "search result", "fact checking", "sentence similarity")
FRET_PAPER = (
    "Gecko section 3.2: FRet, LLM-generated queries with LLM-relabelled positives and "
    "hard negatives"
)


def slice_name(name: str, task_type: str) -> str:
    """The task name of one task type's slice: ``fret`` + ``question answering`` ->
    ``fret_question_answering``."""
    slug = re.sub(r"[^0-9a-z]+", "_", task_type.lower()).strip("_")
    if not slug:
        raise ValueError(f"task type {task_type!r} gives an empty task-name suffix")
    return f"{name}_{slug}"


def register_fret_tasks(
    file_pattern: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    *,
    name: str = "fret",
    task_types: Sequence[str] = DEFAULT_TASK_TYPES,
    file_format: str | None = None,
    max_bad_fraction: float = 0.01,
    metadata: Mapping[str, Any] | None = None,
    input_format: InputFormat | None = None,
) -> list[str]:
    """Registers ``name`` and one slice per task type over FRet output files.

    Args:
      file_pattern: FRet's row files: local or ``gs://`` globs, ``name@N`` shard specs
        (a mapping gives split -> patterns; otherwise the split is ``train``).
      name: the task name of all rows; slices are ``{name}_{task type}``.
      task_types: the types to register slices for (rows of other types are only in
        ``name``).
      file_format: ``"jsonl"`` or ``"tfrecord"``; None infers it from the extension.
      max_bad_fraction: malformed rows tolerated before the job fails.
      metadata: extra metadata for every task.
      input_format: overrides the registry's default input format.

    Returns:
      The registered task names, ``name`` first.
    """
    names = [name] + [slice_name(name, t) for t in task_types]
    if len(set(names)) != len(names):
        raise ValueError(f"task types {list(task_types)} give duplicate task names {names}")
    filters: list[tuple[str, Any]] = [(name, None)]
    filters += [(slice_name(name, t), (TASK_TYPE, [t])) for t in task_types]
    for task_name, row_filter in filters:
        info = {
            "task_type": row_filter[1][0] if row_filter else "all FRet task types",
            "paper": FRET_PAPER,
            **(metadata or {}),
        }
        tasks.register_pair_corpus(
            task_name,
            file_pattern,
            file_format=file_format,
            max_bad_fraction=max_bad_fraction,
            metadata=info,
            input_format=input_format,
            row_filter=row_filter,
        )
    return names
