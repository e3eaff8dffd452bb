"""gecko_jax: train and serve Gecko-style text embedding models with JAX/Flax."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Encoder", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that light modules (partitioning, configs) import without TF/JAX start-up.
    if name == "Encoder":
        from gecko_jax.encoder import Encoder

        return Encoder
    raise AttributeError(f"module 'gecko_jax' has no attribute {name!r}")
