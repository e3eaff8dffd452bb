"""Which Gecko task string and input format each MTEB task gets, and task-name lookup.

Gecko embeds every input with a task description (paper, Table 9): queries as
``task: {task} | query: {text}``, documents as ``title: {title} | text: {text}``, and
both sides of a symmetric task (similarity, classification, clustering) in the query
format. This module holds that table and resolves MTEB task names into task objects.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mteb import AbsTask, TaskMetadata

CLASSIFICATION = "classification"
SEMANTIC_SIMILARITY = "semantic similarity"
SEARCH_RESULT = "search result"
QUESTION_ANSWERING = "question answering"
FACT_CHECKING = "fact checking"

# Task string for retrieval datasets (paper, Table 9), keyed by base dataset name.
RETRIEVAL_TASK_STRINGS: dict[str, str] = {
    "NQ": QUESTION_ANSWERING,
    "MSMARCO": QUESTION_ANSWERING,
    "FiQA2018": QUESTION_ANSWERING,
    "SCIDOCS": QUESTION_ANSWERING,
    "SciFact": FACT_CHECKING,
    "NFCorpus": FACT_CHECKING,
    "ArguAna": SEMANTIC_SIMILARITY,
    "FEVER": SEARCH_RESULT,
    "ClimateFEVER": SEARCH_RESULT,
    "HotpotQA": SEARCH_RESULT,
    "TRECCOVID": SEARCH_RESULT,
}

# Task string by MTEB task type. Retrieval and reranking datasets missing from
# RETRIEVAL_TASK_STRINGS get "search result", the most general retrieval description.
TASK_TYPE_STRINGS: dict[str, str] = {
    "Classification": CLASSIFICATION,
    "MultilabelClassification": CLASSIFICATION,
    "STS": SEMANTIC_SIMILARITY,
    "PairClassification": SEMANTIC_SIMILARITY,
    "BitextMining": SEMANTIC_SIMILARITY,
    "Clustering": SEARCH_RESULT,
    "Summarization": SEARCH_RESULT,
    "Retrieval": SEARCH_RESULT,
    "Reranking": SEARCH_RESULT,
    "InstructionRetrieval": SEARCH_RESULT,
    "InstructionReranking": SEARCH_RESULT,
}
DEFAULT_TASK_STRING = SEARCH_RESULT

# Task types whose texts are all formatted as queries, whatever mteb calls them.
SYMMETRIC_TASK_TYPES = frozenset(
    {
        "STS",
        "PairClassification",
        "Classification",
        "MultilabelClassification",
        "Clustering",
        "BitextMining",
    }
)

# Translated, hard-negative and decontaminated variants share the original's task string:
# "SciFact-NL.v2" -> "SciFact", "HotpotQAHardNegatives.v2" -> "HotpotQA".
_VARIANT_SUFFIX = re.compile(r"(HardNegatives|Decontaminated)$")


class UnknownNameError(KeyError):
    """An MTEB task or benchmark name that mteb does not know."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def base_dataset_name(task_name: str) -> str:
    """The dataset an MTEB task name derives from (drops language, version, variant)."""
    return _VARIANT_SUFFIX.sub("", re.split(r"[-.]", task_name, maxsplit=1)[0])


@dataclasses.dataclass(frozen=True)
class TaskStrings:
    """Maps MTEB tasks to Gecko task strings.

    Lookup order: ``overrides`` by exact task name, then by task type; the retrieval
    table by base dataset name (retrieval and reranking tasks only); the task-type
    table; ``default``.

    Attributes:
      overrides: task name or task type -> task string, checked first.
      retrieval: base dataset name -> task string for retrieval/reranking tasks.
      by_type: MTEB task type -> task string.
      default: used when nothing else matches.
    """

    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    retrieval: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: dict(RETRIEVAL_TASK_STRINGS)
    )
    by_type: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(TASK_TYPE_STRINGS))
    default: str = DEFAULT_TASK_STRING

    def lookup(self, task_name: str, task_type: str) -> str:
        """The task string for a task given its name and MTEB type."""
        for key in (task_name, task_type):
            if key in self.overrides:
                return self.overrides[key]
        if "Retrieval" in task_type or "Reranking" in task_type:
            base = base_dataset_name(task_name)
            if base in self.retrieval:
                return self.retrieval[base]
        return self.by_type.get(task_type, self.default)

    def for_task(self, metadata: TaskMetadata) -> str:
        """The task string for an MTEB task."""
        return self.lookup(metadata.name, metadata.type)


def is_symmetric(metadata: TaskMetadata) -> bool:
    """Whether every text of the task is formatted as a query."""
    return metadata.type in SYMMETRIC_TASK_TYPES


def resolve_tasks(tasks: Sequence[str] | None = (), benchmark: str | None = None) -> list[AbsTask]:
    """MTEB task objects for task names and/or a benchmark, in order, without duplicates.

    Raises:
      ValueError: neither ``tasks`` nor ``benchmark`` given.
      UnknownNameError: an unknown task or benchmark name (the message lists close
        matches).
    """
    import mteb

    names = list(tasks or ())
    if not names and benchmark is None:
        raise ValueError("give MTEB task names (tasks=...) or a benchmark (benchmark=...)")
    resolved: list[AbsTask] = []
    if benchmark is not None:
        try:
            resolved.extend(mteb.get_benchmark(benchmark).tasks)
        except KeyError:
            known = [b.name for b in mteb.get_benchmarks()]
            raise UnknownNameError(_unknown("benchmark", benchmark, known)) from None
    for name in names:
        try:
            resolved.append(mteb.get_task(name))
        except KeyError:
            raise UnknownNameError(_unknown("task", name, _all_task_names())) from None
    unique: dict[str, AbsTask] = {}
    for task in resolved:
        unique.setdefault(task.metadata.name, task)
    return list(unique.values())


def _all_task_names() -> list[str]:
    import mteb

    with warnings.catch_warnings():  # instantiating every task warns about superseded ones
        warnings.simplefilter("ignore")
        tasks = mteb.get_tasks(exclude_superseded=False, exclude_private=False)
    return [task.metadata.name for task in tasks]


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
    hint = (
        f"; close matches: {', '.join(by_lower[c] for c in close)}" if close else "; no close match"
    )
    return f"unknown MTEB {kind} {name!r}{hint}"
