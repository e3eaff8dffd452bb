"""Embedding maths shared by the model head, the losses, the encoder and evaluation.

Imports only jax and numpy, so any layer can use it without pulling in models or data;
jax only when a function is given jax arrays, so numpy-only code (the SavedModel side
of the service) can use it without JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Divides rows by their L2 norm (zero rows stay zero)."""
    import jax
    import jax.numpy as jnp

    # rsqrt of the clamped square norm: sqrt's infinite slope at 0 would turn the
    # zero gradient of an all-padding row (a missing hard negative) into NaN.
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps * eps))


def matryoshka_truncate(embeddings: Any, dim: int) -> Any:
    """Keeps the first ``dim`` dimensions and renormalises (Matryoshka embeddings).

    Works on numpy and jax arrays alike.

    Raises:
      ValueError: ``dim`` is not in ``1..embeddings.shape[-1]``.
    """
    full = embeddings.shape[-1]
    if not 1 <= dim <= full:
        raise ValueError(f"dim={dim} is outside 1..{full}, the model's embedding size")
    if isinstance(embeddings, np.ndarray):
        xp = np
    else:
        import jax.numpy as xp
    prefix = embeddings[..., :dim]
    # Clamp the square norm before the sqrt (see l2_normalize): zero rows keep a zero gradient.
    return prefix / xp.sqrt(xp.maximum(xp.sum(prefix * prefix, axis=-1, keepdims=True), 1e-24))
