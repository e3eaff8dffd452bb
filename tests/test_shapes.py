"""Padded shapes: few buckets, bounded padding, order restored by indices."""

import numpy as np
import pytest

from gecko_jax.shapes import batch_bucket, length_bucket, padded_batches


def test_length_buckets_are_few_and_bound_padding() -> None:
    buckets = {length_bucket(n, 512) for n in range(1, 513)}
    assert len(buckets) == 25  # four per octave from 8 to 512
    assert max(buckets) == 512
    for n in range(8, 513):
        b = length_bucket(n, 512)
        assert n <= b <= 512
        assert b <= max(n + 7, 1.25 * n), (n, b)
    assert length_bucket(1, 512) == 8
    assert length_bucket(300, 256) == 256


def test_batch_buckets_are_powers_of_two_capped() -> None:
    assert [batch_bucket(n, 32) for n in (1, 2, 3, 5, 17, 32)] == [1, 2, 4, 8, 32, 32]
    assert batch_bucket(30, 24) == 24


def test_padded_batches_sort_by_length_and_cover_every_row() -> None:
    seqs = [np.arange(1, n + 1, dtype=np.int32) for n in (3, 40, 5, 12, 1, 40, 7)]
    batches = list(padded_batches(seqs, batch_size=3, max_length=32))
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(len(seqs)))
    assert batches[0].indices.tolist() == [1, 5, 3]  # longest first, stable
    first = batches[0]
    assert first.token_ids.shape == (3, 32)  # 40 tokens truncated to max_length
    np.testing.assert_array_equal(first.token_ids[2, :12], np.arange(1, 13))
    assert first.mask[2].sum() == 12 and first.token_ids[2, 12:].sum() == 0
    second = batches[1]  # lengths 7, 5, 3: padded to 8
    assert second.token_ids.shape == (3, 8)
    assert batches[-1].token_ids.shape == (1, 8)
    padded_rows = list(padded_batches(seqs[:3], batch_size=8, max_length=64))[0]
    assert padded_rows.token_ids.shape == (4, 40)  # 3 rows -> 4, 40 tokens -> bucket 40
    assert padded_rows.mask[3].sum() == 0


def test_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be positive"):
        list(padded_batches([np.ones(3, np.int32)], 0, 8))
