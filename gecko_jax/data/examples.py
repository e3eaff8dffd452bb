"""The unified example format every data source is converted to, and bad-row accounting.

One example (a dict of tensors in tf.data, of Python values on the host):

=================== ============= ==================================================
feature             tf dtype      meaning
=================== ============= ==================================================
``task``            string []     task description, e.g. "question answering"
``query``           string []     the query text (non-empty)
``positive``        string []     the document that answers the query
``positive_title``  string []     its title, "" when it has none
``negatives``       string [k]    hard negatives, k >= 0 (may differ per example)
``negative_titles`` string [k]    their titles ("" when none)
``symmetric``       bool []       both sides use the query format (STS, NLI)
``source``          string []     where the row came from (dataset or file name)
=================== ============= ==================================================
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

TASK = "task"
QUERY = "query"
POSITIVE = "positive"
POSITIVE_TITLE = "positive_title"
NEGATIVES = "negatives"
NEGATIVE_TITLES = "negative_titles"
SYMMETRIC = "symmetric"
SOURCE = "source"

OUTPUT_SIGNATURE: dict[str, tf.TensorSpec] = {
    TASK: tf.TensorSpec([], tf.string),
    QUERY: tf.TensorSpec([], tf.string),
    POSITIVE: tf.TensorSpec([], tf.string),
    POSITIVE_TITLE: tf.TensorSpec([], tf.string),
    NEGATIVES: tf.TensorSpec([None], tf.string),
    NEGATIVE_TITLES: tf.TensorSpec([None], tf.string),
    SYMMETRIC: tf.TensorSpec([], tf.bool),
    SOURCE: tf.TensorSpec([], tf.string),
}


class BadRowError(ValueError):
    """One input row cannot be converted; ``str(e)`` is the reason."""


class BadInputError(ValueError):
    """Too many bad rows in an input: the job stops."""


@dataclasses.dataclass(frozen=True)
class UnifiedExample:
    """One example in host form (see the module docstring for the fields)."""

    task: str
    query: str
    positive: str
    positive_title: str = ""
    negatives: tuple[str, ...] = ()
    negative_titles: tuple[str, ...] = ()
    symmetric: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for name in (TASK, QUERY, POSITIVE, POSITIVE_TITLE, SOURCE):
            if not isinstance(getattr(self, name), str):
                raise BadRowError(
                    f"field {name!r} must be a string, got {type(getattr(self, name)).__name__}"
                )
        if not self.query.strip():
            raise BadRowError("empty query")
        if not self.positive.strip():
            raise BadRowError("empty positive")
        if not all(isinstance(n, str) for n in self.negatives):
            raise BadRowError("field 'negatives' must hold strings")
        if self.negative_titles and len(self.negative_titles) != len(self.negatives):
            raise BadRowError(
                f"{len(self.negative_titles)} negative titles for {len(self.negatives)} negatives"
            )

    def as_features(self) -> dict[str, Any]:
        """The example as a dict matching :data:`OUTPUT_SIGNATURE` (titles filled)."""
        titles = self.negative_titles or ("",) * len(self.negatives)
        return {
            TASK: self.task,
            QUERY: self.query,
            POSITIVE: self.positive,
            POSITIVE_TITLE: self.positive_title,
            NEGATIVES: list(self.negatives),
            NEGATIVE_TITLES: list(titles),
            SYMMETRIC: self.symmetric,
            SOURCE: self.source,
        }


def string_list(record: Mapping[str, Any], field: str) -> tuple[str, ...]:
    """A field holding a string or a list of strings, as a tuple (empty if absent)."""
    value = record.get(field)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRowError(f"field {field!r} must be a string or a list of strings")


def from_record(
    record: Any, default_task: str = "", source: str = "", symmetric: bool = False
) -> UnifiedExample:
    """Converts one decoded JSON row to an example.

    Accepted fields: ``query`` and ``positive`` (required strings), ``task``,
    ``positive_title``, ``negative`` or ``negatives`` (a string or list of strings),
    ``negative_title(s)``, ``symmetric``, ``source``.

    Raises:
      BadRowError: not an object, a missing or mistyped field, an empty query.
    """
    if not isinstance(record, dict):
        raise BadRowError(f"expected a JSON object, got {type(record).__name__}")
    for field in (QUERY, POSITIVE):
        if field not in record:
            raise BadRowError(f"missing field {field!r}")
    negatives = string_list(record, "negatives") or string_list(record, "negative")
    titles = string_list(record, "negative_titles") or string_list(record, "negative_title")
    flag = record.get(SYMMETRIC, symmetric)
    if not isinstance(flag, bool):
        raise BadRowError("field 'symmetric' must be true or false")
    return UnifiedExample(
        task=record.get(TASK, default_task),
        query=record[QUERY],
        positive=record[POSITIVE],
        positive_title=record.get(POSITIVE_TITLE) or "",
        negatives=negatives,
        negative_titles=titles,
        symmetric=flag,
        source=record.get(SOURCE, source),
    )


class BadRowCounter:
    """Counts good and bad rows of one input; warns per bad row, fails past a fraction.

    Attributes:
      name: the input's name in messages (a task or file pattern).
      max_bad_fraction: the job fails once bad / seen exceeds this, after
        ``min_rows`` rows have been seen (so one early bad row does not fail it).
      min_rows: rows seen before the fraction is enforced.
      max_warnings: individual warnings logged; later bad rows are only counted.
    """

    def __init__(
        self, name: str, max_bad_fraction: float = 0.01, min_rows: int = 100, max_warnings: int = 20
    ) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.name, self.max_bad_fraction = name, max_bad_fraction
        self.min_rows, self.max_warnings = min_rows, max_warnings
        self.good = 0
        self.bad = 0
        self.reasons: dict[str, int] = {}

    def record_good(self, count: int = 1) -> None:
        """Counts ``count`` good rows."""
        self.good += count

    def record_bad(self, where: str, reason: str) -> None:
        """Counts one bad row at ``where`` (``file:line``), warns, maybe fails.

        Raises:
          BadInputError: the bad-row fraction exceeds ``max_bad_fraction``.
        """
        self.bad += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self.bad <= self.max_warnings:
            log.warning("%s: skipping bad row at %s: %s", self.name, where, reason)
        seen = self.good + self.bad
        if seen >= self.min_rows and self.bad > self.max_bad_fraction * seen:
            raise BadInputError(
                f"{self.name}: {self.bad} of {seen} rows are bad (more than "
                f"{self.max_bad_fraction:.2%}); last at {where}: {reason}"
            )

    def finish(self) -> None:
        """Enforces the fraction at the end of an input, however few rows it had.

        Raises:
          BadInputError: the bad-row fraction exceeds ``max_bad_fraction``.
        """
        seen = self.good + self.bad
        if self.bad and self.bad > self.max_bad_fraction * seen:
            raise BadInputError(
                f"{self.name}: {self.bad} of {seen} rows are bad (more than "
                f"{self.max_bad_fraction:.2%}): {self.reasons}"
            )
        if self.bad:
            log.warning(
                "%s: skipped %d bad rows of %d: %s", self.name, self.bad, seen, self.reasons
            )
