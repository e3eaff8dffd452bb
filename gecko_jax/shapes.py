"""Padded shapes for jit-compiled encoding: few shapes, little padding.

XLA compiles once per input shape, so batches are padded to a small set of
lengths (four per octave: at most ~25% padding) and batch sizes (powers of two up
to the requested batch size, so a short request does not pay for a full batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

MIN_LENGTH_BUCKET = 8


def length_bucket(length: int, max_length: int) -> int:
    """Smallest padded length >= ``length`` from the bucket set, capped at ``max_length``."""
    bucket = MIN_LENGTH_BUCKET
    while bucket < length:
        # Four steps per octave: 8, 10, 12, 14, 16, 20, ..., 32, 40, ..., 64, 80, ...
        bucket += 1 << (bucket.bit_length() - 3)
    return min(bucket, max_length)


def batch_bucket(size: int, batch_size: int) -> int:
    """Smallest power of two >= ``size``, capped at ``batch_size``."""
    return min(batch_size, 1 << max(0, (size - 1).bit_length()))


@dataclasses.dataclass(frozen=True)
class PaddedBatch:
    """One batch ready for the device.

    Attributes:
      indices: positions of the batch's rows in the caller's input order.
      token_ids: ``[batch_bucket, length_bucket]`` int32, padded with ``pad_id``.
      mask: ``[batch_bucket, length_bucket]`` int32, 1 on real tokens.
    """

    indices: np.ndarray
    token_ids: np.ndarray
    mask: np.ndarray


def padded_batches(
    token_ids: Sequence[np.ndarray], batch_size: int, max_length: int, pad_id: int = 0
) -> Iterator[PaddedBatch]:
    """Sorts sequences by length (longest first) and yields padded batches.

    Sorting keeps similar lengths together, so each batch pads to little more than
    its own longest sequence.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        length = length_bucket(int(lengths[indices[0]]), max_length)
        rows = batch_bucket(len(indices), batch_size)
        ids = np.full((rows, length), pad_id, dtype=np.int32)
        mask = np.zeros((rows, length), dtype=np.int32)
        for row, index in enumerate(indices):
            n = min(len(token_ids[index]), length)
            ids[row, :n] = token_ids[index][:n]
            mask[row, :n] = 1
        yield PaddedBatch(indices=indices, token_ids=ids, mask=mask)


def padded_shapes(longest: int, batch_size: int, max_length: int) -> list[tuple[int, int]]:
    """Every ``(rows, length)`` :func:`padded_batches` can yield for sequences of at most
    ``longest`` tokens: power-of-two rows up to ``batch_size``, bucketed lengths."""
    limit = min(longest, max_length)
    buckets = sorted({length_bucket(n, max_length) for n in range(1, limit + 1)})
    shapes = []
    rows = 1
    while True:
        shapes += [(rows, n) for n in buckets]
        if rows >= batch_size:
            return shapes
        rows = min(rows * 2, batch_size)
