"""Logical axis names and the rules that map them onto a device mesh.

Parameters and activations in gecko_jax carry T5X-style logical axis names. The
rules below map them to the mesh axes ``('data', 'model')``: a 1-D mesh gives pure
data parallelism, a 2-D mesh adds tensor (model) parallelism over the named axes.
"""

from __future__ import annotations

from typing import Sequence

# Logical axis names used by the encoders.
BATCH = "batch"
LENGTH = "length"
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
KV = "kv"
VOCAB = "vocab"
RELPOS_BUCKETS = "relpos_buckets"

MESH_AXES: tuple[str, str] = ("data", "model")

# As T5X's ``standard_logical_axis_rules``: activations' batch over 'data'; the wide
# dimensions of weights (mlp, heads, vocab) over 'model'; the rest replicated.
STANDARD_LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    (BATCH, "data"),
    (VOCAB, "model"),
    (MLP, "model"),
    (HEADS, "model"),
    (KV, None),
    (EMBED, None),
    (LENGTH, None),
    (RELPOS_BUCKETS, None),
)


def logical_axis_rules(
    extra: Sequence[tuple[str, str | None]] = (),
) -> tuple[tuple[str, str | None], ...]:
    """Returns the standard rules, with ``extra`` rules taking precedence."""
    return tuple(extra) + STANDARD_LOGICAL_AXIS_RULES
