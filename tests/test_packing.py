"""Packed rows: every text once, each token where its segment and position say, few shapes."""

import numpy as np
import pytest

from gecko_jax.packing import (
    MIN_ROW_LENGTH,
    packed_batches,
    pass_shapes,
    row_count_bucket,
    row_length,
    segments_per_row,
)


def _texts(lengths: list[int]) -> list[np.ndarray]:
    """Text ``i`` is ``lengths[i]`` copies of the id ``i + 1``: a token names its text."""
    return [np.full(n, i + 1, dtype=np.int32) for i, n in enumerate(lengths)]


def test_row_lengths_are_powers_of_two_from_the_minimum_capped() -> None:
    assert [row_length(n, 512) for n in (1, 64, 65, 128, 129, 300, 600)] == [
        64,
        64,
        128,
        128,
        256,
        512,
        512,
    ]
    assert row_length(10, 32) == 32  # a model shorter than the minimum row
    assert row_length(200, 200) == 200


def test_row_counts_are_exact_to_eight_then_four_per_octave() -> None:
    assert [row_count_bucket(n, 32) for n in range(1, 9)] == list(range(1, 9))
    assert [row_count_bucket(n, 32) for n in (9, 11, 13, 15, 17, 21, 25, 29, 31)] == [
        10,
        12,
        14,
        16,
        20,
        24,
        28,
        32,
        32,
    ]
    assert row_count_bucket(9, 8) == 8


def test_every_text_is_laid_out_whole_in_its_row_and_slot() -> None:
    lengths = [5, 40, 12, 1, 64, 30, 30, 7, 64, 3]
    texts = _texts(lengths)
    batches = list(packed_batches(texts, pass_tokens=64 * 3, max_length=128))
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(len(texts)))
    for batch in batches:
        assert batch.token_ids.shape[1] == 64  # the longest text is 64 tokens
        for index, row, slot in zip(batch.indices, batch.rows, batch.slots):
            where = batch.segment_ids[row] == slot + 1
            assert where.sum() == lengths[index]
            np.testing.assert_array_equal(batch.token_ids[row, where], texts[index])
            np.testing.assert_array_equal(batch.positions[row, where], np.arange(lengths[index]))
        # Padding: no segment, the pad id, position 0.
        padding = batch.segment_ids == 0
        assert (batch.token_ids[padding] == 0).all() and (batch.positions[padding] == 0).all()
    # First-fit decreasing: the 256 tokens fill 4 rows of 64 exactly (the short texts
    # take the tails of the 40- and 30-token ones), in passes of at most 3 rows.
    assert [b.token_ids.shape[0] for b in batches] == [3, 1]


def test_short_texts_share_rows_up_to_the_segment_limit() -> None:
    texts = _texts([2] * 40)
    (batch,) = packed_batches(texts, pass_tokens=4096, max_length=256)
    assert segments_per_row(64) == 16
    assert batch.token_ids.shape == (3, 64)
    assert np.bincount(batch.rows).tolist() == [16, 16, 8]
    assert (batch.segment_ids[2, 16:] == 0).all() and (batch.token_ids[2, 16:] == 0).all()


def test_long_texts_are_cut_to_max_length() -> None:
    texts = _texts([300, 10])
    (batch,) = packed_batches(texts, pass_tokens=1024, max_length=256)
    assert batch.token_ids.shape == (2, 256)
    assert (batch.segment_ids[0] == 1).sum() == 256


def test_pass_shapes_list_every_shape_packing_makes() -> None:
    rng = np.random.default_rng(0)
    pass_tokens, max_length, longest = 32 * MIN_ROW_LENGTH, 256, 128
    shapes = pass_shapes(pass_tokens, max_length, longest)
    assert len(shapes) == len(set(shapes)) == 16 + 12  # rows at 64 and at 128 tokens
    made = set()
    for _ in range(300):
        count, top = int(rng.integers(1, 120)), int(rng.integers(1, longest + 1))
        lengths = rng.integers(1, top + 1, size=count).tolist()
        made |= {b.token_ids.shape for b in packed_batches(_texts(lengths), pass_tokens, 256)}
    assert made <= set(shapes)
    assert len(made) > len(shapes) // 2
    for rows, length in shapes:  # ``rows`` texts of ``length`` tokens run that very shape
        (batch,) = packed_batches(_texts([length] * rows), pass_tokens, max_length)
        assert batch.token_ids.shape == (rows, length)


def test_nothing_to_pack_and_bad_pass_tokens() -> None:
    assert list(packed_batches([], 128, 64)) == []
    with pytest.raises(ValueError, match="pass_tokens must be positive"):
        list(packed_batches(_texts([3]), 0, 64))
