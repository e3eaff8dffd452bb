"""FRet step 1: a task type per seed passage, then an LLM-written task and query.

Task types are sampled per passage by weight (uniform by default, as the paper's
ablation favours), from a generator seeded by ``(seed, passage id)``: the same run
settings give every passage the same task type on every machine and every rerun.

The LLM answers in JSON mode with ``{"task": "...", "query": "..."}``. An answer is
rejected, with one of :data:`REJECT_REASONS`, when:

* ``invalid_json``: it holds no JSON object (``llm.parsing.parse_json_object``, which
  tolerates a Markdown code fence or prose around the object);
* ``bad_task`` / ``bad_query``: ``task`` or ``query`` is missing, not a string or blank;
* ``task_too_long``: the task has more than ``max_task_words`` words;
* ``query_too_short`` / ``query_too_long``: the query's words are outside
  ``[min_query_words, max_query_words]``;
* ``query_copied``: the query's words, lower-cased, are a contiguous run of the
  passage's words (punctuation ignored);
* ``query_overlap``: more than ``max_copy_overlap`` of the query's words lie in word
  ``copy_ngram``-grams (default trigrams) that also occur in the passage
  (:func:`copy_overlap`). Trigrams rather than single words: a query may reuse the
  passage's key terms ("white matter anisotropy preterm"), but not paste its phrases;
* ``llm_blocked``: the service returned no text (a safety filter).

A rejected answer is re-asked with a new seed (and ``reask_temperature``), up to
``max_attempts`` calls in all; a passage whose every answer is rejected is given up.
An ``LLMInputError`` (a request the service refuses, e.g. a blocked passage) is
counted as ``llm_input_error`` and gives the passage up at once.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from gecko_jax.fret.config import GenerationConfig, TaskType
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.llm.base import BlockedOutputError, LLMInputError, MalformedOutputError
from gecko_jax.fret.llm.parsing import parse_json_object
from gecko_jax.fret.templates import Prompts

REJECT_REASONS = (
    "invalid_json",
    "bad_task",
    "bad_query",
    "task_too_long",
    "query_too_short",
    "query_too_long",
    "query_copied",
    "query_overlap",
    "llm_blocked",
    "llm_input_error",
)
_TOKEN = re.compile(r"\w+")


class Rejected(ValueError):
    """An LLM answer failed validation; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REJECT_REASONS:  # summary.json counts rejects by these names
            raise ValueError(f"unknown reject reason {reason!r}; known: {REJECT_REASONS}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Generated:
    """A validated (task, query) for one seed passage.

    Attributes:
      task: the LLM's task description.
      query: the LLM's query.
      task_type: the sampled task type's name.
      attempts: generation calls it took (1 = accepted at once).
    """

    task: str
    query: str
    task_type: str
    attempts: int


def stable_seed(*parts: Any) -> int:
    """A 63-bit integer from ``parts`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_task_type(passage_id: str, seed: int, task_types: Sequence[TaskType]) -> TaskType:
    """The task type of one passage: a weighted draw seeded by ``(seed, passage_id)``."""
    weights = np.array([t.weight for t in task_types], dtype=np.float64)
    rng = np.random.default_rng(stable_seed(seed, "task_type", passage_id))
    return task_types[int(rng.choice(len(task_types), p=weights / weights.sum()))]


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``), punctuation dropped."""
    return _TOKEN.findall(text.lower())


def copy_overlap(query: str, passage: str, n: int = 3) -> float:
    """The share of the query's words covered by word n-grams that occur in the passage.

    0.0 for queries shorter than ``n`` words.
    """
    q, p = words(query), words(passage)
    if len(q) < n:
        return 0.0
    grams = {tuple(p[i : i + n]) for i in range(len(p) - n + 1)}
    covered = [False] * len(q)
    for i in range(len(q) - n + 1):
        if tuple(q[i : i + n]) in grams:
            covered[i : i + n] = [True] * n
    return sum(covered) / len(q)


def _string_field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"bad_{name}", repr(value)[:60])
    return " ".join(value.split())


def validate(text: str, passage: str, config: GenerationConfig | None = None) -> tuple[str, str]:
    """Checks one LLM answer (see the module docstring); returns ``(task, query)``.

    ``config`` gives the bounds (default: ``GenerationConfig()``).

    Raises:
      Rejected: the answer fails a check; ``.reason`` says which.
    """
    config = config or GenerationConfig()
    try:
        record = parse_json_object(text)
    except MalformedOutputError as e:
        raise Rejected("invalid_json", str(e)) from None
    task, query = _string_field(record, "task"), _string_field(record, "query")
    if len(task.split()) > config.max_task_words:
        raise Rejected("task_too_long", f"{len(task.split())} words")
    count = len(query.split())
    if count < config.min_query_words:
        raise Rejected("query_too_short", f"{count} words")
    if count > config.max_query_words:
        raise Rejected("query_too_long", f"{count} words")
    query_words = " ".join(words(query))
    if query_words and f" {query_words} " in f" {' '.join(words(passage))} ":
        raise Rejected("query_copied")
    overlap = copy_overlap(query, passage, config.copy_ngram)
    if overlap > config.max_copy_overlap:
        raise Rejected("query_overlap", f"{overlap:.2f}")
    return task, query


async def generate_one(
    client: Any,
    prompts: Prompts,
    passage: Passage,
    task_type: TaskType,
    config: GenerationConfig,
    seed: int,
    rejects: collections.Counter[str],
) -> Generated | None:
    """Asks the LLM for one passage's task and query, re-asking after rejects.

    Args:
      client: an ``LLMClient``.
      prompts: the loaded templates.
      passage: the seed passage.
      task_type: its sampled task type.
      config: attempts, temperatures, validation bounds.
      seed: the run seed (the call seeds derive from it and the passage id).
      rejects: incremented once per rejected answer, by reason.

    Returns:
      The accepted generation, or None when every attempt was rejected.
    """
    prompt = prompts.generate(passage.text, passage.title, task_type.name, task_type.guidance)
    base = stable_seed(seed, "generate", passage.id) % (2**31 - config.max_attempts)
    for attempt in range(config.max_attempts):
        try:
            answer = await client.generate(
                prompt,
                json_mode=True,
                max_output_tokens=config.max_output_tokens,
                seed=base + attempt,
                temperature=config.temperature if attempt == 0 else config.reask_temperature,
            )
            task, query = validate(answer.text, passage.text, config)
        except Rejected as e:
            rejects[e.reason] += 1
            continue
        except BlockedOutputError:
            rejects["llm_blocked"] += 1
            continue
        except LLMInputError:
            rejects["llm_input_error"] += 1
            return None
        return Generated(task, query, task_type.name, attempt + 1)
    return None
