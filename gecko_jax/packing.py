"""Packed rows for encoding many short texts: several texts a row, no padding between them.

A padded batch pays for every row up to its longest text; short texts of mixed lengths
(search queries, chat turns) waste a third to a half of the model's work that way. Packed
rows put texts end to end, as T5X packs training examples: ``segment_ids`` number the
texts of a row (0 on padding), attention stays inside a text, and position ids restart
at 0 for each, so every text is embedded as if it were alone (what text-embeddings-
inference gets from variable-length attention kernels, here with the few static shapes
XLA compiles).

Shapes stay few: the row length is a power of two from :data:`MIN_ROW_LENGTH` up to the
model's ``max_length``, and the row count of a forward pass is exact up to 8, then four
steps per octave, up to ``pass_tokens // row_length``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from gecko_jax.shapes import length_bucket

MIN_ROW_LENGTH = 64
# A row holds at most row_length // MIN_SEGMENT_TOKENS texts: that bounds the pooled
# output ([rows, segments, dim]) without limiting real text, whose shortest forms
# (special tokens included) are rarely below four tokens.
MIN_SEGMENT_TOKENS = 4
EXACT_ROW_COUNTS = 8


def row_length(longest: int, max_length: int) -> int:
    """The row length for texts of at most ``longest`` tokens: the smallest power of two
    >= ``longest`` from :data:`MIN_ROW_LENGTH` on, capped at ``max_length``."""
    length = MIN_ROW_LENGTH
    while length < longest:
        length *= 2
    return min(length, max_length)


def row_count_bucket(rows: int, max_rows: int) -> int:
    """Rows of a forward pass: ``rows`` itself up to :data:`EXACT_ROW_COUNTS`, then the
    next of four steps per octave (10, 12, 14, 16, 20, ...), capped at ``max_rows``."""
    if rows <= EXACT_ROW_COUNTS:
        return min(rows, max_rows)
    return min(length_bucket(rows, max_rows), max_rows)


def segments_per_row(length: int) -> int:
    """Most texts one row of ``length`` tokens holds."""
    return max(1, length // MIN_SEGMENT_TOKENS)


@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """One forward pass of packed rows.

    Attributes:
      indices: ``[n]`` positions, in the caller's input, of the pass's texts.
      token_ids: ``[rows, length]`` int32, ``pad_id`` where no text is.
      segment_ids: ``[rows, length]`` int32: ``k`` on the ``k``-th text of a row (from
        1), 0 on padding.
      positions: ``[rows, length]`` int32 position of each token within its text.
      rows: ``[n]`` the row of each text.
      slots: ``[n]`` each text's segment id minus one (its slot in the pooled output).
    """

    indices: np.ndarray
    token_ids: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    slots: np.ndarray


def _first_fit(lengths: np.ndarray, order: np.ndarray, length: int) -> list[list[int]]:
    """Texts (indices into ``lengths``, longest first) into rows of ``length`` tokens,
    each into the first row with room (first-fit decreasing)."""
    most = segments_per_row(length)
    rows: list[list[int]] = []
    free: list[int] = []
    for index in order.tolist():
        need = int(lengths[index])
        for row, room in enumerate(free):
            if room >= need and len(rows[row]) < most:
                break
        else:
            row = len(rows)
            rows.append([])
            free.append(length)
        rows[row].append(index)
        free[row] -= need
    return rows


def packed_batches(
    token_ids: Sequence[np.ndarray], pass_tokens: int, max_length: int, pad_id: int = 0
) -> Iterator[PackedBatch]:
    """Packs texts into rows and yields forward passes of at most ``pass_tokens`` tokens.

    One row length serves the call (:func:`row_length` of its longest text), so short
    texts fill the tails of rows that hold long ones. Texts longer than ``max_length``
    are cut to it.

    Args:
      token_ids: one int array of token ids per text.
      pass_tokens: tokens of one forward pass (rows x row length); a pass has at least
        one row.
      max_length: the model's token limit.
      pad_id: the padding token.
    """
    if pass_tokens < 1:
        raise ValueError(f"pass_tokens must be positive, got {pass_tokens}")
    if not len(token_ids):
        return
    lengths = np.array([max(1, min(len(t), max_length)) for t in token_ids], dtype=np.int64)
    length = row_length(int(lengths.max()), max_length)
    rows = _first_fit(lengths, np.argsort(-lengths, kind="stable"), length)
    max_rows = max(1, pass_tokens // length)
    for start in range(0, len(rows), max_rows):
        yield _pass(token_ids, lengths, rows[start : start + max_rows], length, max_rows, pad_id)


def _pass(
    token_ids: Sequence[np.ndarray],
    lengths: np.ndarray,
    rows: list[list[int]],
    length: int,
    max_rows: int,
    pad_id: int,
) -> PackedBatch:
    shape = (row_count_bucket(len(rows), max_rows), length)
    ids = np.full(shape, pad_id, dtype=np.int32)
    segments = np.zeros(shape, dtype=np.int32)
    positions = np.zeros(shape, dtype=np.int32)
    indices, text_rows, slots = [], [], []
    for row, texts in enumerate(rows):
        start = 0
        for slot, index in enumerate(texts):
            n = int(lengths[index])
            ids[row, start : start + n] = token_ids[index][:n]
            segments[row, start : start + n] = slot + 1
            positions[row, start : start + n] = np.arange(n)
            indices.append(index)
            text_rows.append(row)
            slots.append(slot)
            start += n
    return PackedBatch(
        indices=np.array(indices, dtype=np.int64),
        token_ids=ids,
        segment_ids=segments,
        positions=positions,
        rows=np.array(text_rows, dtype=np.int64),
        slots=np.array(slots, dtype=np.int64),
    )


def pass_shapes(pass_tokens: int, max_length: int, longest: int) -> list[tuple[int, int]]:
    """Every ``(rows, row length)`` a forward pass of :func:`packed_batches` can take for
    texts of at most ``longest`` tokens (what a server compiles before it serves)."""
    shapes: list[tuple[int, int]] = []
    length = row_length(1, max_length)
    while True:
        max_rows = max(1, pass_tokens // length)
        counts = sorted({row_count_bucket(n, max_rows) for n in range(1, max_rows + 1)})
        shapes += [(rows, length) for rows in counts]
        if length >= min(longest, max_length):
            return shapes
        length = row_length(length + 1, max_length)
