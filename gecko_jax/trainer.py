"""Train state, the pure train/eval steps of a dual encoder, and the Trainer that shards them.

:func:`loss_and_grads`, :func:`train_step` and :func:`eval_step` are pure functions of
``(model, config, state, batch)``: they run as they are on one device, under ``jax.jit``,
or sharded. :class:`Trainer` only shards: it builds the state's shardings from the
parameters' logical axes and jits the steps with explicit in/out shardings (batch over
'replica' x 'data', state donated), traced under its rules and mesh so the model's
activation constraints apply. The loss sees the whole global batch as its negative pool.

Queries, positives and hard negatives go through the same tower. With dropout, each
example's mask comes from a key derived from (state rng, step, tower, global example
index), so the randomness depends neither on the mesh nor on GradCache's chunking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util
from jax.sharding import Mesh

from gecko_jax import grad_cache
from gecko_jax import partitioning as P
from gecko_jax.losses import ContrastiveLossConfig, contrastive_loss
from gecko_jax.models.dual_encoder import DualEncoder
from gecko_jax.optimizers import OptimizerConfig, build_optimizer, build_schedule

log = logging.getLogger(__name__)

# Fixed tower ids keep dropout keys stable whichever towers a batch has.
TOWERS = {"query": 0, "positive": 1, "negative": 2}
# Dropout row ids are uint32: tower in the top bits, the global row index (< 2**28) below.
_ROW_INDEX_BITS = 28
Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What to optimise and how.

    Attributes:
      loss: the contrastive loss options.
      optimizer: optimizer, schedule and clipping.
      learnable_temperature: train ``log_logit_scale`` (initialised at
        ``log(1 / loss.temperature)``) instead of using the fixed temperature.
      max_logit_scale: the learnable logit scale is clipped to this (CLIP uses 100).
      grad_cache_chunk_size: examples per GradCache chunk; None embeds the whole batch
        at once.
      seed: default seed of :meth:`Trainer.init_state`.
    """

    loss: ContrastiveLossConfig = dataclasses.field(default_factory=ContrastiveLossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    learnable_temperature: bool = False
    max_logit_scale: float = 100.0
    grad_cache_chunk_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.grad_cache_chunk_size is not None and self.grad_cache_chunk_size < 1:
            raise ValueError(
                "TrainConfig.grad_cache_chunk_size must be >= 1 or None, "
                f"got {self.grad_cache_chunk_size}"
            )
        if self.max_logit_scale < 1.0 / self.loss.temperature:
            raise ValueError(
                f"TrainConfig.max_logit_scale {self.max_logit_scale} is below the initial "
                f"scale 1/temperature = {1.0 / self.loss.temperature}"
            )


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes (all leaves are arrays).

    Attributes:
      step: int32 scalar, the number of updates so far.
      params: the DualEncoder's parameters (``{'backbone': ..., 'projection'?: ...}``).
      log_logit_scale: float32 scalar; trained only with a learnable temperature.
      opt_state: the optimizer's state for :func:`trainable`'s tree.
      rng: the base PRNG key (uint32[2]); step keys are ``fold_in(rng, step)``.
    """

    step: jax.Array
    params: Any
    log_logit_scale: jax.Array
    opt_state: Any
    rng: jax.Array


class StepSharding(NamedTuple):
    """How a step is laid out over devices (None in a step: one device, no constraints).

    Attributes:
      mesh: the ``('replica', 'data', 'model')`` mesh whose batch axes split each tower's rows.
      params: the parameters' shardings, kept by GradCache's gradient accumulator.
    """

    mesh: Mesh
    params: Any


# ------------------------------------------------------------------------ the pure steps


def trainable(config: TrainConfig, state: TrainState) -> dict[str, Any]:
    """The tree the optimizer updates: params and, if learnable, the logit scale."""
    tree = {"params": state.params}
    if config.learnable_temperature:
        tree["log_logit_scale"] = state.log_logit_scale
    return tree


def init_params(model: DualEncoder, rng: jax.Array) -> Any:
    """The model's random parameters, boxed with their logical axis names."""
    ids = jnp.ones((1, 1), jnp.int32)  # parameter shapes do not depend on the length
    return model.init({"params": rng}, ids, ids != 0)["params"]


def initial_state(
    model: DualEncoder,
    config: TrainConfig,
    rng: jax.Array,
    init_params_by_path: Mapping[tuple[str, ...], jax.Array] | None = None,
) -> TrainState:
    """The step-0 state: random parameters, the leaves of ``init_params_by_path`` replacing theirs.

    Args:
      model: the dual encoder.
      config: the training options (temperature and optimizer).
      rng: a raw uint32[2] PRNG key, split into the parameters' and the state's.
      init_params_by_path: flattened parameter paths -> values (e.g. a pre-trained backbone).
    """
    params_rng, state_rng = jax.random.split(rng)
    params = traverse_util.flatten_dict(P.unbox(init_params(model, params_rng)))
    # Replaced leaves' random init is dead code that XLA removes.
    params = traverse_util.unflatten_dict({**params, **(init_params_by_path or {})})
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        log_logit_scale=jnp.asarray(math.log(1.0 / config.loss.temperature), jnp.float32),
        opt_state=None,
        rng=state_rng,
    )
    optimizer = build_optimizer(config.optimizer)
    return state.replace(opt_state=optimizer.init(trainable(config, state)))


def check_batch(
    config: TrainConfig, batch: Batch, mesh: Mesh | None = None, *, train: bool = True
) -> None:
    """Raises ValueError for a batch the steps cannot take (keys, shapes, sizes).

    Args:
      config: the training options (GradCache's chunk size is checked when ``train``).
      batch: global arrays or ``ShapeDtypeStruct``s.
      mesh: the mesh the batch is split over (None: one device).
      train: check for a train step (an eval step does not chunk).
    """
    for key in ("query_tokens", "positive_tokens"):
        if key not in batch:
            raise ValueError(f"batch lacks {key!r}; it has {sorted(batch)}")
    b = batch["query_tokens"].shape[0]
    for key, value in batch.items():
        if value.shape[0] != b:
            raise ValueError(f"batch[{key!r}] has {value.shape[0]} rows, query_tokens has {b}")
    if "negative_tokens" in batch and len(batch["negative_tokens"].shape) != 3:
        raise ValueError(f"negative_tokens must be [B, K, L], got {batch['negative_tokens'].shape}")
    if mesh is not None:
        P.check_batch_divisible(b, mesh)
    rows = b * (batch["negative_tokens"].shape[1] if "negative_tokens" in batch else 1)
    if rows >= 1 << _ROW_INDEX_BITS:
        raise ValueError(
            f"a tower of {rows} rows exceeds the {1 << _ROW_INDEX_BITS} rows dropout can key"
        )
    if train and config.grad_cache_chunk_size is not None:
        grad_cache.check_chunk_size(b, config.grad_cache_chunk_size, _batch_shards(mesh))


def loss_and_grads(
    model: DualEncoder,
    config: TrainConfig,
    state: TrainState,
    batch: Batch,
    *,
    train: bool = True,
    sharding: StepSharding | None = None,
) -> tuple[jax.Array, Metrics, dict[str, Any]]:
    """The train step's loss, metrics and gradients (a tree like :func:`trainable`'s).

    With ``train`` and a model with dropout, dropout is on, keyed by (``state.rng``,
    ``state.step``, tower, global example index). With ``config.grad_cache_chunk_size``
    the batch is embedded chunk by chunk (:mod:`gecko_jax.grad_cache`); the result is
    the same.
    """
    dropout = train and getattr(model.backbone, "dropout_rate", 0.0) > 0.0
    rng = jax.random.fold_in(state.rng, state.step) if dropout else None
    mesh = sharding.mesh if sharding is not None else None
    args = (
        _embed_fn(model, rng, mesh),
        _loss_fn(config, batch),
        state.params,
        _loss_params(config, state),
        _towers(batch),
    )
    if config.grad_cache_chunk_size is None:
        loss, metrics, (g_params, g_loss) = grad_cache.plain_loss_and_grads(*args)
    else:
        loss, metrics, (g_params, g_loss) = grad_cache.grad_cache_loss_and_grads(
            *args,
            config.grad_cache_chunk_size,
            sharding.params if sharding is not None else None,
            mesh,
        )
    return loss, metrics, {"params": g_params, **g_loss}


def train_step(
    model: DualEncoder,
    config: TrainConfig,
    state: TrainState,
    batch: Batch,
    *,
    sharding: StepSharding | None = None,
) -> tuple[TrainState, Metrics]:
    """One optimizer update on a global batch.

    Args:
      model: the dual encoder.
      config: the training options.
      state: the current state.
      batch: ``query_tokens [B, Lq]``, ``positive_tokens [B, Lp]``, optional
        ``negative_tokens [B, K, Ln]``, ``positive_ids [B]``, ``negative_mask [B, K]``;
        pad id 0.
      sharding: the mesh and parameter shardings of a sharded step.

    Returns:
      The new state and scalar metrics: the loss's (``loss``, ``accuracy``,
      ``logit_scale``, ...), ``grad_norm`` and ``learning_rate`` (of this update).
    """
    _, metrics, grads = loss_and_grads(model, config, state, batch, sharding=sharding)
    tree = trainable(config, state)
    updates, opt_state = build_optimizer(config.optimizer).update(grads, state.opt_state, tree)
    new = optax.apply_updates(tree, updates)
    state = state.replace(
        params=new["params"], log_logit_scale=new.get("log_logit_scale", state.log_logit_scale)
    )
    metrics = {
        **metrics,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(build_schedule(config.optimizer)(state.step), jnp.float32),
    }
    return state.replace(step=state.step + 1, opt_state=opt_state), metrics


def eval_step(
    model: DualEncoder,
    config: TrainConfig,
    state: TrainState,
    batch: Batch,
    *,
    sharding: StepSharding | None = None,
) -> Metrics:
    """The loss's metrics on a batch, without dropout or an update (nor chunking)."""
    mesh = sharding.mesh if sharding is not None else None
    embed = _embed_fn(model, None, mesh)
    embeddings = embed(state.params, _towers(batch), jnp.zeros((), jnp.int32))
    return _loss_fn(config, batch)(embeddings, _loss_params(config, state))[1]


def _batch_shards(mesh: Mesh | None) -> int:
    return 1 if mesh is None else P.data_axis_size(mesh)


def _encode(
    model: DualEncoder,
    params: Any,
    tokens: jax.Array,
    rows: jax.Array | None,
    rng: jax.Array | None,
) -> jax.Array:
    """Embeds ``[N, L]`` tokens; with ``rows [N]`` and ``rng``, dropout is on and
    keyed per row by its identity (:mod:`gecko_jax.models.dropout`)."""
    mask = tokens != 0
    if rng is None:
        return model.apply({"params": params}, tokens, mask, deterministic=True)
    return model.apply(
        {"params": params},
        tokens,
        mask,
        deterministic=False,
        dropout_rows=rows,
        rngs={"dropout": rng},
    )


def _embed_fn(model: DualEncoder, rng: jax.Array | None, mesh: Mesh | None) -> grad_cache.EmbedFn:
    """``(params, towers chunk, start) -> embeddings``, shared by both gradient paths.

    Towers of equal token length share one forward pass. ``start`` is the global
    index of the chunk's first example; with ``rng``, dropout is on and the masks
    of row r of tower t depend only on (``rng``, t, r): see :func:`_row_ids`.
    """
    shards = _batch_shards(mesh)

    def embed(params: Any, towers: dict[str, jax.Array], start: jax.Array) -> dict[str, jax.Array]:
        by_length: dict[int, list[str]] = {}
        for name, tokens in towers.items():
            by_length.setdefault(tokens.shape[-1], []).append(name)
        out = {}
        for names in by_length.values():
            # Negatives become [c*K, L] rows, example-major.
            rows = [towers[n].reshape(-1, towers[n].shape[-1]) for n in names]
            ids = None
            if rng is not None:
                ids = grad_cache.concat_rows(
                    [
                        _row_ids(TOWERS[n], start * (r.shape[0] // towers[n].shape[0]), r.shape[0])
                        for n, r in zip(names, rows)
                    ],
                    shards,
                    mesh,
                )
            embedded = _encode(model, params, grad_cache.concat_rows(rows, shards, mesh), ids, rng)
            parts = grad_cache.split_rows(embedded, [r.shape[0] for r in rows], shards, mesh)
            for n, part in zip(names, parts):
                out[n] = part.reshape(towers[n].shape[:-1] + (-1,))
        return out

    return embed


def _loss_params(config: TrainConfig, state: TrainState) -> dict[str, jax.Array]:
    return {k: v for k, v in trainable(config, state).items() if k != "params"}


def _loss_fn(config: TrainConfig, batch: Batch) -> grad_cache.LossFn:
    def loss(embeddings: dict[str, jax.Array], loss_params: dict[str, jax.Array]) -> Any:
        scale = None
        if "log_logit_scale" in loss_params:
            log_max = math.log(config.max_logit_scale)
            scale = jnp.exp(jnp.minimum(loss_params["log_logit_scale"], log_max))
        return contrastive_loss(
            embeddings["query"],
            embeddings["positive"],
            embeddings.get("negative"),
            config.loss,
            logit_scale=scale,
            positive_ids=batch.get("positive_ids"),
            negative_mask=batch.get("negative_mask"),
        )

    return loss


def _towers(batch: Batch) -> dict[str, jax.Array]:
    return {name: batch[f"{name}_tokens"] for name in TOWERS if f"{name}_tokens" in batch}


def _row_ids(tower: int, first: jax.Array, count: int) -> jax.Array:
    """Dropout identities of rows ``first .. first + count - 1`` of a tower: the tower
    in the top bits, the global row index below."""
    index = (first + jnp.arange(count)).astype(jnp.uint32)
    return jnp.uint32(tower << _ROW_INDEX_BITS) | index


# --------------------------------------------------------------------------- the Trainer

StepFn = Callable[..., Any]  # step(model, config, state, batch, *, sharding) -> outputs


class Trainer:
    """Builds and shards the train state of a dual encoder and jits the pure steps.

    Args:
      model: the dual encoder (its backbone config sets the compute dtype and dropout).
      mesh: a ``('replica', 'data', 'model')`` mesh, see :func:`partitioning.make_mesh`.
      rules: logical axis rules (default: the standard ones).
      config: the training options.
    """

    def __init__(
        self,
        model: DualEncoder,
        mesh: Mesh,
        rules: Sequence[tuple[str, Any]] = P.STANDARD_LOGICAL_AXIS_RULES,
        config: TrainConfig | None = None,
    ) -> None:
        self.model = model
        self.mesh = mesh
        self.rules = tuple(rules)
        self.config = config or TrainConfig()
        self._model_constraints = self._model_traces_under_mesh()

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """The mesh and logical axis rules the steps are traced and run under."""
        with contextlib.ExitStack() as stack:
            if self._model_constraints:
                stack.enter_context(jax.set_mesh(self.mesh))
            stack.enter_context(nn.logical_axis_rules(self.rules))
            yield

    def _model_traces_under_mesh(self) -> bool:
        """Whether the model can be applied with the mesh in context.

        flax checks parameter shapes by re-running their initializers, and
        ``nn.DenseGeneral`` unboxes a multi-axis kernel before reshaping it, so a
        logically partitioned multi-axis kernel fails under a context mesh. Then the
        model's own activation constraints are skipped (the steps' batch constraints and
        in/out shardings still hold, and XLA propagates them).
        """
        ids = jnp.ones((P.data_axis_size(self.mesh), 1), jnp.int32)
        params = P.unbox(self._abstract_params())
        try:
            with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
                jax.eval_shape(lambda p: self.model.apply({"params": p}, ids, ids != 0), params)
        except ValueError as e:
            log.warning(
                "model activation constraints disabled, the model fails under a context mesh: %s",
                str(e).splitlines()[0][:300],
            )
            return False
        return True

    def _abstract_params(self) -> Any:
        return jax.eval_shape(functools.partial(init_params, self.model), jax.random.PRNGKey(0))

    def _abstract_initial_state(self) -> TrainState:
        init = functools.partial(initial_state, self.model, self.config)
        return jax.eval_shape(init, jax.random.PRNGKey(0))

    # ---------------------------------------------------------------- state & shardings

    @functools.cached_property
    def state_shardings(self) -> TrainState:
        """``NamedSharding``s of every state leaf (params by their logical axes)."""
        params = P.logical_to_mesh_shardings(self._abstract_params(), self.mesh, self.rules)
        abstract = self._abstract_initial_state()
        rep = P.replicated(self.mesh)
        trainable_shardings = trainable(
            self.config, abstract.replace(params=params, log_logit_scale=rep)
        )
        opt_state = P.match_param_shardings(
            abstract.opt_state, trainable(self.config, abstract), trainable_shardings, rep
        )
        return TrainState(
            step=rep, params=params, log_logit_scale=rep, opt_state=opt_state, rng=rep
        )

    @property
    def batch_sharding(self) -> jax.sharding.NamedSharding:
        """The sharding of every batch leaf: examples over 'replica' x 'data'."""
        return P.batch_sharding(self.mesh)

    @property
    def step_sharding(self) -> StepSharding:
        """What the pure steps need to know of this trainer's layout."""
        return StepSharding(self.mesh, self.state_shardings.params)

    def abstract_state(self) -> TrainState:
        """The state's ``ShapeDtypeStruct``s with shardings (an orbax restore target)."""
        return jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self._abstract_initial_state(),
            self.state_shardings,
        )

    def init_state(
        self,
        rng: jax.Array | None = None,
        init_params: Any = None,
        example_batch: Batch | None = None,
    ) -> TrainState:
        """Creates the train state directly in its shardings.

        Args:
          rng: PRNG key (default: ``PRNGKey(config.seed)``).
          init_params: a (possibly partial) DualEncoder parameter tree, e.g.
            ``{'backbone': ...}`` from a pre-trained checkpoint; its leaves replace the
            random ones, the rest (e.g. the projection) stays randomly initialised.
          example_batch: optional batch (arrays or ShapeDtypeStructs), checked with
            :func:`check_batch` so a bad batch size fails before training starts.

        Raises:
          ValueError: ``init_params`` has a path the model lacks or a wrong shape.
        """
        if example_batch is not None:
            check_batch(self.config, example_batch, self.mesh)
        rng = jax.random.PRNGKey(self.config.seed) if rng is None else rng
        if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
            rng = jax.random.key_data(rng)  # raw uint32 keys checkpoint anywhere
        shardings = self.state_shardings
        flat_init = self._check_init_params(init_params, shardings.params)
        # Not under the mesh context: flax would then constrain DenseGeneral's kernels
        # to their final rank before reshaping them; out_shardings place the state.
        init = functools.partial(initial_state, self.model, self.config)
        return jax.jit(init, out_shardings=shardings)(rng, flat_init)

    def _check_init_params(
        self, init_params: Any, param_shardings: Any
    ) -> dict[tuple[str, ...], jax.Array]:
        """Validates ``init_params`` leaves and places them in their shardings."""
        if init_params is None:
            return {}
        model = traverse_util.flatten_dict(P.unbox(self._abstract_params()))
        shardings = traverse_util.flatten_dict(param_shardings)
        out = {}
        for path, value in traverse_util.flatten_dict(dict(init_params)).items():
            name = "/".join(path)
            if path not in model:
                top = sorted({p[0] for p in model})
                raise ValueError(
                    f"init_params has {name!r}, which the model lacks (its params: {top})"
                )
            if tuple(value.shape) != model[path].shape:
                raise ValueError(
                    f"init_params {name!r} has shape {tuple(value.shape)}, but the "
                    f"model's is {model[path].shape}"
                )
            dtype = model[path].dtype
            # Host arrays go straight from host memory to their shards.
            value = (
                value.astype(dtype) if isinstance(value, jax.Array) else np.asarray(value, dtype)
            )
            out[path] = jax.device_put(value, shardings[path])
        return out

    # ------------------------------------------------------------------ the jitted steps

    def jit(self, step: StepFn, out_shardings: Any, *, donate_state: bool = False) -> Any:
        """``step(model, config, state, batch, sharding=...)`` as one program of ``(state, batch)``.

        In shardings are the state's and the batch's; call it (or ``.lower`` it) inside
        :meth:`context`.
        """
        return jax.jit(
            functools.partial(step, self.model, self.config, sharding=self.step_sharding),
            in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=out_shardings,
            donate_argnums=(0,) if donate_state else (),
        )

    @functools.cached_property
    def jitted_train_step(self) -> Any:
        """:func:`train_step` jitted with the state's shardings in and out, state donated."""
        out = (self.state_shardings, P.replicated(self.mesh))
        return self.jit(train_step, out, donate_state=True)

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """:func:`train_step` on this trainer's mesh; ``state`` is donated.

        On several processes, pass global ``jax.Array``s
        (:func:`partitioning.host_local_batch_to_global`).
        """
        check_batch(self.config, batch, self.mesh)
        with self.context():
            return self.jitted_train_step(state, dict(batch))
