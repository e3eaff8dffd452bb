"""Per-chip memory and step time of a training run, planned before any chip is booked.

Parameters, optimizer state and gradients are measured, not estimated: the
:class:`~gecko_jax.trainer.Trainer` builds its own state shardings over an abstract mesh
of the planned size (``jax.sharding.AbstractMesh``: no devices needed), and each leaf
counts its shard's bytes. Activations are an estimate (see :func:`activation_bytes`).
Step time follows the usual model-FLOPs convention: 6 x parameters FLOPs per token for
a forward and backward pass, over every query, positive and negative token of the step.

    plan = plan_training(model, (16, 2), batch_size=4096, query_length=64,
                         document_length=512, num_negatives=1, train_config=config)
    print(plan.per_chip_line(), plan.per_step_line(TPU_CHIPS["v4"]))

:func:`plan_from_gin` reads the same settings from a parsed ``gecko-train`` gin config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import gin
import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType

from gecko_jax import partitioning as P
from gecko_jax.models.bert import BertConfig
from gecko_jax.models.dual_encoder import DualEncoder
from gecko_jax.trainer import TrainConfig, Trainer

GIB = 2**30
MFU = 0.4  # the model-FLOPs utilisation step times are quoted at


@dataclasses.dataclass(frozen=True)
class ChipSpec:
    """One accelerator chip as the plan sees it.

    Attributes:
      name: the generation (``v4``, ``v5e``).
      hbm_gib: high-bandwidth memory per chip.
      peak_tflops: peak bf16 matrix throughput per chip.
    """

    name: str
    hbm_gib: float
    peak_tflops: float


# Published per-chip figures. A v4 chip's two TensorCores act as one JAX device
# (megacore), so a v4-64 slice (64 cores) is 32 devices; a v5e-64 is 64.
TPU_CHIPS: dict[str, ChipSpec] = {
    "v4": ChipSpec("v4", hbm_gib=32.0, peak_tflops=275.0),
    "v5e": ChipSpec("v5e", hbm_gib=16.0, peak_tflops=197.0),
}


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes per chip and work per step of one training configuration.

    Attributes:
      mesh_shape: ``(replica, data, model)`` sizes.
      param_count: parameters of the model.
      params_bytes: float32 parameters on one chip.
      optimizer_bytes: optimizer state on one chip.
      gradient_bytes: the float32 gradient (accumulator) on one chip: laid out like
        the parameters.
      activation_bytes: estimated activations held for one backward pass on one chip
        (:func:`activation_bytes`).
      tokens_per_step: query, positive and negative tokens of one step (padded lengths).
    """

    mesh_shape: tuple[int, int, int]
    param_count: int
    params_bytes: int
    optimizer_bytes: int
    gradient_bytes: int
    activation_bytes: int
    tokens_per_step: int

    @property
    def chips(self) -> int:
        """Devices of the mesh."""
        return math.prod(self.mesh_shape)

    @property
    def total_bytes(self) -> int:
        """Everything above, on one chip."""
        return (
            self.params_bytes + self.optimizer_bytes + self.gradient_bytes + self.activation_bytes
        )

    @property
    def flops_per_step(self) -> float:
        """Model FLOPs of one step: 6 x parameters x tokens (GradCache's extra forward pass
        and attention scores are not counted, as usual for MFU)."""
        return 6.0 * self.param_count * self.tokens_per_step

    def step_seconds(self, chip: ChipSpec, mfu: float = MFU) -> float:
        """Seconds per step on ``chips`` chips of ``chip`` at ``mfu`` utilisation."""
        return self.flops_per_step / (self.chips * chip.peak_tflops * 1e12 * mfu)

    def per_chip_line(self, chip: ChipSpec | None = None) -> str:
        """``per-chip: params 1.14 GiB, optimizer ..., total ... GiB[ of 32 GiB HBM]``."""
        parts = [
            f"params {self.params_bytes / GIB:.2f} GiB",
            f"optimizer {self.optimizer_bytes / GIB:.2f} GiB",
            f"gradients {self.gradient_bytes / GIB:.2f} GiB",
            f"activations {self.activation_bytes / GIB:.2f} GiB",
            f"total {self.total_bytes / GIB:.2f} GiB",
        ]
        hbm = f" of {chip.hbm_gib:g} GiB HBM" if chip is not None else ""
        return "per-chip: " + ", ".join(parts) + hbm

    def per_step_line(self, chip: ChipSpec, mfu: float = MFU) -> str:
        """``per-step: tokens N, X PFLOP, S s at 40% MFU``."""
        return (
            f"per-step: tokens {self.tokens_per_step}, {self.flops_per_step / 1e15:.2f} PFLOP, "
            f"{self.step_seconds(chip, mfu):.2f} s at {mfu:.0%} MFU"
        )


def abstract_mesh(mesh_shape: Sequence[int]) -> AbstractMesh:
    """A device-free ``('replica', 'data', 'model')`` mesh of ``train.mesh_shape``'s form.

    Args:
      mesh_shape: ``(data, model)`` or ``(replica, data, model)``, every size given
        (-1 needs a real device count).
    """
    shape = tuple(int(s) for s in mesh_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(
            "mesh_shape must be (data, model) or (replica, data, model) with every size "
            f">= 1, got {tuple(mesh_shape)}"
        )
    return AbstractMesh(shape, P.MESH_AXES, axis_types=(AxisType.Auto,) * len(P.MESH_AXES))


def sharded_bytes(tree: Any) -> int:
    """Bytes one device holds of a tree of sharded arrays or ``ShapeDtypeStruct``s.

    Shardings are even (the partitioning checks divisibility), so every device holds
    the same shard shapes.
    """
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


@contextlib.contextmanager
def _quiet_trainer() -> Iterator[None]:
    """Drops the trainer's warning that the model cannot trace under a mesh: an abstract
    mesh has no devices to trace on, and the plan runs no step."""
    logger = logging.getLogger("gecko_jax.trainer")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def state_bytes(
    model: DualEncoder,
    mesh_shape: Sequence[int],
    train_config: TrainConfig,
    rules: Sequence[tuple[str, Any]] | None = None,
) -> tuple[int, int, int]:
    """``(parameter count, params bytes, optimizer bytes)`` per chip, from the Trainer's
    own state shardings over an abstract mesh of ``mesh_shape``."""
    with _quiet_trainer():
        trainer = Trainer(
            model, abstract_mesh(mesh_shape), rules or P.logical_axis_rules(), train_config
        )
    state = trainer.abstract_state()
    count = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params))
    return count, sharded_bytes(state.params), sharded_bytes(state.opt_state)


def _layer_dims(model: DualEncoder) -> tuple[int, int, int, int, int, bool]:
    """``(d_model, d_ff, heads, head_dim, layers, gated)`` of the backbone."""
    cfg = model.backbone
    if isinstance(cfg, BertConfig):
        return (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
            cfg.head_dim,
            cfg.num_hidden_layers,
            False,
        )
    return cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv, cfg.num_layers, cfg.is_gated


def activation_bytes(
    model: DualEncoder,
    mesh_shape: Sequence[int],
    rows: int,
    query_length: int,
    document_length: int,
    num_negatives: int,
    loss_rows: int,
    mrl_heads: int = 1,
) -> int:
    """Estimated bytes of activations one chip holds for one backward pass.

    ``rows`` examples (a GradCache chunk, or the whole batch without GradCache) are
    split over ``replica`` x ``data``; each is a query, a positive and
    ``num_negatives`` negatives. Per token and layer, backward keeps (in the model's
    dtype) the block input and the normed input of both sublayers (4 x d_model,
    replicated over 'model') and, split over 'model', the query/key/value projections
    and the attention context (4 x heads x head_dim) and the MLP's hidden tensors
    (4 x d_ff gated: both projections, the activation and their product; 2 x d_ff
    otherwise). Attention keeps its probabilities per query token and head, float32
    (softmax) plus the model dtype (the product with the values). Dropout masks and
    XLA's transient buffers are not counted. On top: the loss over ``loss_rows``
    global examples, whose embeddings every chip gathers, and each chip's rows of the
    similarity logits (logits, softmax and their gradient, per Matryoshka head).
    """
    replica, data, model_axis = abstract_mesh(mesh_shape).axis_sizes
    shards = replica * data
    if rows % shards:
        raise ValueError(f"{rows} rows do not split over {shards} replica x data devices")
    d_model, d_ff, heads, head_dim, layers, gated = _layer_dims(model)
    itemsize = np.dtype(model.backbone.dtype).itemsize
    per_chip = rows // shards
    towers = [(per_chip, query_length), (per_chip * (1 + num_negatives), document_length)]
    tokens = sum(n * length for n, length in towers)
    per_token = 4 * d_model + (4 * heads * head_dim + (4 if gated else 2) * d_ff) / model_axis
    probs = sum(n * heads / model_axis * length * length for n, length in towers)
    per_layer = tokens * per_token * itemsize + probs * (4 + itemsize)
    embeds = tokens * 2 * d_model * itemsize  # embedding output and final norm
    dim = model.embedding_dim
    candidates = loss_rows * (2 + num_negatives)  # positives, same-tower queries, negatives
    loss = 2 * candidates * dim * 4  # gathered embeddings and their gradient, float32
    loss += 3 * (loss_rows // shards) * candidates * 4 * mrl_heads
    return int(layers * per_layer + embeds + loss)


def plan_training(
    model: DualEncoder,
    mesh_shape: Sequence[int],
    *,
    batch_size: int,
    query_length: int,
    document_length: int,
    num_negatives: int = 0,
    train_config: TrainConfig | None = None,
    rules: Sequence[tuple[str, Any]] | None = None,
) -> MemoryPlan:
    """The per-chip memory and per-step work of training ``model``.

    Args:
      model: the dual encoder (abstract is fine: nothing is allocated).
      mesh_shape: ``(data, model)`` or ``(replica, data, model)``, as ``train.mesh_shape``.
      batch_size: the global batch.
      query_length, document_length: padded token lengths.
      num_negatives: hard negatives per example.
      train_config: optimizer and GradCache chunk (``grad_cache_chunk_size``: the rows
        whose activations exist at once; None: the whole batch).
      rules: logical axis rules (default: the standard ones).
    """
    config = train_config or TrainConfig()
    mesh = abstract_mesh(mesh_shape)
    P.check_batch_divisible(batch_size, mesh)
    count, params, optimizer = state_bytes(model, mesh_shape, config, rules)
    chunk = config.grad_cache_chunk_size or batch_size
    activations = activation_bytes(
        model,
        mesh_shape,
        chunk,
        query_length,
        document_length,
        num_negatives,
        loss_rows=batch_size,
        mrl_heads=max(1, len(config.loss.mrl_dims)),
    )
    return MemoryPlan(
        mesh_shape=tuple(mesh.axis_sizes),
        param_count=count,
        params_bytes=params,
        optimizer_bytes=optimizer,
        gradient_bytes=params,
        activation_bytes=activations,
        tokens_per_step=batch_size * (query_length + (1 + num_negatives) * document_length),
    )


def _gin_value(name: str, default: Any) -> Any:
    """A bound parameter's value (macros and ``@X()`` references evaluated), else ``default``."""
    try:
        value = gin.query_parameter(name)
    except ValueError:  # not bound
        return default
    if isinstance(value, gin.config.ConfigurableReference) and value.evaluate:
        return value.scoped_configurable_fn()
    return value


def plan_from_gin(model: DualEncoder, rules: Sequence[tuple[str, Any]] | None = None) -> MemoryPlan:
    """:func:`plan_training` of the ``gecko-train`` run the parsed gin config describes.

    Reads ``train.mesh_shape``, ``batch_size``, ``query_length``, ``document_length``,
    ``num_negatives`` and ``train_config`` (defaults as ``gecko_jax.train.train``'s). The
    gin files must already be parsed, with ``gecko_jax.train`` imported.

    Args:
      model: the dual encoder the config trains (e.g. the abstract Gecko-1b).
      rules: logical axis rules (default: the standard ones).
    """
    batch_size = _gin_value("gecko_jax.train.batch_size", None)
    if batch_size is None:
        raise ValueError("the gin config binds no train.batch_size")
    return plan_training(
        model,
        _gin_value("gecko_jax.train.mesh_shape", (-1, 1)),
        batch_size=batch_size,
        query_length=_gin_value("gecko_jax.train.query_length", 64),
        document_length=_gin_value("gecko_jax.train.document_length", 256),
        num_negatives=_gin_value("gecko_jax.train.num_negatives", 0),
        train_config=_gin_value("gecko_jax.train.train_config", None),
        rules=rules,
    )
