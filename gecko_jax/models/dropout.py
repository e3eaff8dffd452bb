"""Dropout whose mask depends on a row's identity, not on its position in the batch.

The trainer embeds the same example in different batch positions: GradCache runs a
batch chunk by chunk, twice, and the towers of a batch are concatenated. With
``flax.linen.Dropout`` the mask is drawn for the whole array from one key, so the mask
of an example would change with the chunking. Here element ``e`` of row ``n`` is kept
by a function of (the site's key from ``make_rng('dropout')``, ``rows[n]``, ``e``)
alone: a 16-bit share of the counter-based Threefry-2x32 block ``(rows[n], e // 4)``. Rows
default to their batch position, which gives ordinary dropout.

Written by hand, not with ``jax.random.bernoulli`` under ``vmap`` over per-row keys:
that broadcasts a key per element and runs the model example by example, which cost
the CPU train step a third of its speed. One 64-bit Threefry block here yields four
16-bit draws (``bernoulli`` spends a 32-bit word and a float conversion per element),
so the rate is honoured to 1/65536.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend.random import threefry2x32_p

_DRAW_BITS = 16
_DRAWS_PER_BLOCK = 4  # two 32-bit output words, two 16-bit draws each


def keep_mask(
    key: jax.Array, rows: jax.Array | None, shape: tuple[int, ...], rate: float
) -> jax.Array:
    """Boolean keep mask of ``shape`` (leading axis: rows).

    Args:
      key: a PRNG key (typed or raw ``uint32[2]``); its first two words key Threefry.
      rows: ``[shape[0]]`` integer identities of the rows (equal ids get equal
        masks); None uses the batch positions, which is ordinary dropout.
      shape: the mask's shape.
      rate: probability of dropping an element, in ``[0, 1)``.

    Returns:
      ``bool`` array, True where the element is kept (probability ``1 - rate``).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = key.reshape(-1).astype(jnp.uint32)
    if rows is None:
        rows = jnp.arange(shape[0], dtype=jnp.uint32)
    per_row = math.prod(shape[1:])
    blocks = -(-per_row // _DRAWS_PER_BLOCK)
    row_words = jnp.broadcast_to(rows.astype(jnp.uint32)[:, None], (shape[0], blocks))
    block_words = jnp.broadcast_to(
        jnp.arange(blocks, dtype=jnp.uint32)[None, :], (shape[0], blocks)
    )
    out_a, out_b = threefry2x32_p.bind(words[0], words[1], row_words, block_words)
    threshold = jnp.uint32(round(rate * (1 << _DRAW_BITS)))
    low, shift = jnp.uint32(0xFFFF), jnp.uint32(_DRAW_BITS)
    # Compared before they are interleaved: the stacked array is bytes, not words.
    keep = jnp.stack(
        [
            (out_a & low) >= threshold,
            (out_a >> shift) >= threshold,
            (out_b & low) >= threshold,
            (out_b >> shift) >= threshold,
        ],
        axis=-1,
    )
    return keep.reshape(shape[0], -1)[:, :per_row].reshape(shape)


def apply_keep_mask(x: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """Zeroes dropped elements and rescales kept ones by ``1 / (1 - rate)``."""
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """``flax.linen.Dropout`` with per-row masks keyed by row identity.

    Attributes:
      rate: probability of dropping an element.
    """

    rate: float

    @nn.compact
    def __call__(
        self, x: jax.Array, deterministic: bool, rows: jax.Array | None = None
    ) -> jax.Array:
        """Drops elements of ``x`` (leading axis: rows) unless ``deterministic``.

        Args:
          x: inputs, rows first.
          deterministic: identity when True; otherwise needs the ``'dropout'`` rng.
          rows: ``[x.shape[0]]`` row identities; None uses the batch positions.
        """
        if deterministic or self.rate == 0.0:
            return x
        keep = keep_mask(self.make_rng("dropout"), rows, x.shape, self.rate)
        return apply_keep_mask(x, keep, self.rate)
