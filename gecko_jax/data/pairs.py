"""A simple, resumable input: JSONL rows of (query, positive[, negative]).

Each line is an object with ``query`` and ``positive`` strings, optionally
``negative`` (a string or a list of strings), ``task`` and ``positive_title``. Rows
are formatted with Gecko's input format when they carry a task, tokenized once,
shuffled per epoch by seed and served as fixed-shape batches. The position
(epoch, offset) is a small dict saved with every checkpoint, so a resumed run
continues with exactly the batch that would have come next, without replaying.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from gecko_jax import formats
from gecko_jax.data import examples
from gecko_jax.data.vocabularies import EncoderVocabulary
from gecko_jax.readers import BadInputError, BadRowCounter


@dataclasses.dataclass(frozen=True)
class PairRow:
    """One training example in text form."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


def _parse_negatives(value: Any) -> tuple[str, ...]:
    try:
        return examples.string_list({"negative": value}, "negative")
    except examples.BadRowError:
        raise ValueError("'negative' must be a string or a list of strings") from None


def read_pair_rows(
    path: str | os.PathLike,
    input_format: formats.InputFormat | None = None,
    max_bad_fraction: float = 0.01,
) -> list[PairRow]:
    """Reads and formats every row of a pairs JSONL file (default format:
    ``InputFormat()``).

    A bad row (not UTF-8, invalid JSON, not an object, a missing, mistyped or empty
    ``query`` or ``positive``, a bad ``negative``) is skipped with a warning naming the
    file and line, as the other file sources do, until more than ``max_bad_fraction``
    of the rows are bad; the count of skipped rows is logged at the end.

    Raises:
      FileNotFoundError: the file does not exist.
      gecko_jax.readers.BadInputError: too many bad rows (names the first), or none good.
    """
    input_format = input_format or formats.InputFormat()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training pairs file not found: {path}")
    counter = BadRowCounter(path, max_bad_fraction)
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rows.append(_pair_row(raw, input_format))
            except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                counter.record_bad(f"{path}:{number}", _reason(e))
                continue
            counter.record_good()
    counter.finish()
    if not rows:
        raise BadInputError(f"{path}: no training rows")
    return rows


def _reason(error: ValueError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON: {error.msg}"
    return str(error)


def _pair_row(raw: bytes, input_format: formats.InputFormat) -> PairRow:
    """One line as a row.

    Raises:
      ValueError: the reason the line is bad.
    """
    record = json.loads(raw.decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    for field in ("query", "positive"):
        if not isinstance(record.get(field), str):
            raise ValueError(f"missing string field {field!r}")
        if not record[field].strip():
            raise ValueError(f"empty {field!r}")
    negatives = _parse_negatives(record.get("negative"))
    task = record.get("task")
    if task is None:
        return PairRow(record["query"], record["positive"], negatives)
    return PairRow(
        input_format.query(record["query"], task),
        input_format.document(record["positive"], record.get("positive_title")),
        tuple(input_format.document(n) for n in negatives),
    )


def _power_of_two_below(count: int) -> int:
    return 1 << (max(count, 1).bit_length() - 1)


def text_id(text: str) -> int:
    """A stable 31-bit id of a text, for masking identical in-batch positives."""
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def _pad(ids: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(ids), length), dtype=np.int32)
    for row, seq in enumerate(ids):
        out[row, : min(len(seq), length)] = seq[:length]
    return out


class PairBatches:
    """Fixed-shape, seeded, resumable batches over tokenized pair rows.

    Attributes:
      batch_size: global batch size.
      num_negatives: hard negatives per example (rows with fewer are masked).
    """

    def __init__(
        self,
        rows: list[PairRow],
        vocabulary: EncoderVocabulary,
        batch_size: int,
        query_length: int = 64,
        document_length: int = 256,
        num_negatives: int | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(rows) < batch_size:
            raise ValueError(
                f"only {len(rows)} training rows for a batch of {batch_size}: lower the batch "
                f"size to at most {len(rows)} "
                f"(e.g. --gin.BATCH_SIZE={_power_of_two_below(len(rows))})"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.num_negatives = (
            max(len(r.negatives) for r in rows) if num_negatives is None else num_negatives
        )
        self._queries = _pad(
            vocabulary.tokenize([r.query for r in rows], query_length), query_length
        )
        self._positives = _pad(
            vocabulary.tokenize([r.positive for r in rows], document_length), document_length
        )
        self._positive_ids = np.array([text_id(r.positive) for r in rows], dtype=np.int32)
        k = self.num_negatives
        self._negatives = np.zeros((len(rows), k, document_length), dtype=np.int32)
        self._negative_mask = np.zeros((len(rows), k), dtype=bool)
        flat = [(i, j, n) for i, r in enumerate(rows) for j, n in enumerate(r.negatives[:k])]
        if flat:
            tokens = _pad(
                vocabulary.tokenize([n for _, _, n in flat], document_length), document_length
            )
            rows_idx = np.array([i for i, _, _ in flat])
            cols_idx = np.array([j for _, j, _ in flat])
            self._negatives[rows_idx, cols_idx] = tokens
            self._negative_mask[rows_idx, cols_idx] = True
        self._epoch = 0
        self._offset = 0
        self._cached_order: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))

    def get_state(self) -> dict[str, int]:
        """The position of the next batch (saved with checkpoints)."""
        return {"epoch": self._epoch, "offset": self._offset, "seed": self.seed}

    def set_state(self, state: dict[str, int]) -> None:
        """Continues from a position returned by :meth:`get_state`."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"checkpointed input seed {state['seed']} differs from the configured {self.seed}"
            )
        self._epoch, self._offset = int(state["epoch"]), int(state["offset"])

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached_order[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self._queries))
            self._cached_order = (epoch, order)
        return self._cached_order[1]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._offset + self.batch_size > len(self._queries):
            self._epoch, self._offset = self._epoch + 1, 0
        index = self._order(self._epoch)[self._offset : self._offset + self.batch_size]
        self._offset += self.batch_size
        batch = {
            "query_tokens": self._queries[index],
            "positive_tokens": self._positives[index],
            "positive_ids": self._positive_ids[index],
        }
        if self.num_negatives:
            batch["negative_tokens"] = self._negatives[index]
            batch["negative_mask"] = self._negative_mask[index]
        return batch
