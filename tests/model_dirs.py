"""Model directories as gecko-train writes them, made without a training run."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import numpy as np

from gecko_jax import checkpoints
from gecko_jax.model_dir import CHECKPOINT_SUBDIR, ModelSpec, write_spec
from gecko_jax.models.dual_encoder import HeadConfig
from gecko_jax.pretrained import load_pretrained


def write_model_dir(
    model_dir: str | os.PathLike,
    init_from: str,
    head: HeadConfig,
    step: int = 7,
    max_length: int | None = None,
    matryoshka_dims: tuple[int, ...] = (),
    seed: int = 0,
) -> str:
    """Writes ``encoder.json`` and one orbax checkpoint at ``step``.

    The backbone keeps the pre-trained weights plus small seeded noise (so the export
    is not of the base model); a projection, if any, is random.

    Returns:
      The model directory.
    """
    model_dir = os.fspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    base = load_pretrained(init_from, head=head, max_length=max_length)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda x: (x + rng.normal(0, 0.01, x.shape)).astype(np.float32), base.params
    )
    if head.projection_dim is not None:
        ids = jax.ShapeDtypeStruct((1, 8), "int32")
        shapes = jax.eval_shape(
            lambda i: base.model.init(jax.random.PRNGKey(0), i, i, deterministic=True), ids
        )
        width = base.model.backbone.hidden_size
        params["projection"] = jax.tree_util.tree_map(
            lambda x: rng.normal(0, width**-0.5, x.shape).astype(np.float32),
            nn.meta.unbox(shapes["params"]["projection"]),
        )
    manager = checkpoints.CheckpointManager(
        os.path.join(model_dir, CHECKPOINT_SUBDIR), async_save=False
    )
    manager.save(step, {"params": params}, {}, force=True)
    manager.close()
    write_spec(
        model_dir,
        ModelSpec(
            init_from=init_from,
            head=head,
            max_length=base.max_length,
            matryoshka_dims=matryoshka_dims,
        ),
    )
    return model_dir
