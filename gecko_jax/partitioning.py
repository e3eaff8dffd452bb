"""Logical axis names and the rules that map them onto a device mesh.

Parameters and activations in gecko_jax carry T5X-style logical axis names. The
rules below map them to the mesh axes ``('replica', 'data', 'model')``: examples are
split over ``replica`` x ``data``, the wide dimensions of weights over ``model``, and
weights are never split over ``replica``. So ``data`` alone gives data parallelism,
``model`` adds tensor parallelism, and ``replica`` is the multi-slice axis: on a
multi-slice TPU job (devices with a ``slice_index``) it spans the slices, whose link
(DCN) then carries only the gradient all-reduce, while ``data`` and ``model`` stay
inside a slice (ICI). A ``replica`` of 1 (the default) is a plain ``(data, model)`` mesh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Logical axis names used by the encoders.
BATCH = "batch"
LENGTH = "length"
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
KV = "kv"
VOCAB = "vocab"
RELPOS_BUCKETS = "relpos_buckets"

MESH_AXES: tuple[str, str, str] = ("replica", "data", "model")
BATCH_MESH_AXES: tuple[str, str] = ("replica", "data")  # the examples' split

# As T5X's ``standard_logical_axis_rules``: activations' batch over 'replica' x 'data';
# the wide dimensions of weights (mlp, heads, vocab) over 'model'; the rest replicated.
STANDARD_LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    (BATCH, BATCH_MESH_AXES),
    (VOCAB, "model"),
    (MLP, "model"),
    (HEADS, "model"),
    (KV, None),
    (EMBED, None),
    (LENGTH, None),
    (RELPOS_BUCKETS, None),
)


def logical_axis_rules(
    extra: Sequence[tuple[str, str | tuple[str, ...] | None]] = (),
) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """Returns the standard rules, with ``extra`` rules taking precedence."""
    return tuple(extra) + STANDARD_LOGICAL_AXIS_RULES


# ----------------------------------------------------------------------------- meshes


def _resolve_sizes(n: int, data: int, model: int) -> tuple[int, int]:
    """``(data, model)`` for ``n`` devices, one of them possibly -1."""
    if data == -1 and model == -1:
        raise ValueError("At most one of the mesh sizes (data, model) may be -1")
    if data == -1 or model == -1:
        known = model if data == -1 else data
        if known < 1 or n % known:
            raise ValueError(
                f"{n} devices cannot be split into a mesh with an axis of size {known}"
            )
        data, model = (n // known, model) if data == -1 else (data, n // known)
    return data, model


def _slice_count(devices: Sequence[Any]) -> int:
    """How many TPU slices ``devices`` span (1 without ``slice_index``)."""
    return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(
    data: int = -1, model: int = 1, devices: Sequence[Any] | None = None, replica: int = 1
) -> Mesh:
    """Builds a ``('replica', 'data', 'model')`` mesh.

    Args:
      data: size of the data-parallel axis (per replica); -1 takes all devices not used
        by ``replica`` and ``model``.
      model: size of the tensor-parallel axis; -1 takes the remaining devices.
      devices: devices to use (default: ``jax.devices()``, every process's).
      replica: size of the replica axis; on multi-slice TPUs, the number of slices.

    Raises:
      ValueError: the sizes do not multiply to the number of devices, or ``replica``
        does not match the slices the devices span.
    """
    devices = list(jax.devices() if devices is None else devices)
    if replica < 1 or len(devices) % replica:
        raise ValueError(f"{len(devices)} devices cannot be split into {replica} replicas")
    n = len(devices) // replica
    data, model = _resolve_sizes(n, data, model)
    if data < 1 or model < 1 or data * model != n:
        raise ValueError(
            f"mesh shape (replica={replica}, data={data}, model={model}) needs "
            f"{replica * data * model} devices, but there are {len(devices)}"
        )
    slices = _slice_count(devices)
    if slices > 1 and slices != replica:
        raise ValueError(f"the devices span {slices} slices: give replica={slices} (got {replica})")
    try:
        if slices > 1:  # ICI inside a slice, DCN between slices, for the replica axis only
            device_array = mesh_utils.create_hybrid_device_mesh(
                (1, data, model), (replica, 1, 1), devices
            )
        else:
            device_array = mesh_utils.create_device_mesh((replica, data, model), devices=devices)
    except (AssertionError, NotImplementedError, ValueError):
        # Topology-aware placement is for TPUs; anything else gets the plain order.
        device_array = np.asarray(devices, dtype=object).reshape(replica, data, model)
    return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def data_axis_size(mesh: Mesh) -> int:
    """Number of batch shards of a mesh: ``replica`` x ``data``."""
    return int(np.prod([mesh.shape[axis] for axis in BATCH_MESH_AXES if axis in mesh.shape]))


# -------------------------------------------------------------------------- shardings


def unbox(tree: Any) -> Any:
    """Strips ``nn.Partitioned`` boxes; unlike ``nn.unbox``, never adds constraints."""
    return jax.tree_util.tree_map(
        lambda x: x.value if isinstance(x, nn.Partitioned) else x,
        tree,
        is_leaf=lambda x: isinstance(x, nn.Partitioned),
    )


def logical_to_mesh_shardings(
    boxed_tree_or_specs: Any,
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]] = STANDARD_LOGICAL_AXIS_RULES,
) -> Any:
    """``NamedSharding``s of a boxed tree (e.g. ``eval_shape(model.init)``) or of specs.

    Args:
      boxed_tree_or_specs: a tree with ``nn.Partitioned`` leaves (unboxed array-like
        leaves are replicated), or a tree of logical ``PartitionSpec``s.
      mesh: the device mesh.
      rules: logical axis name -> mesh axis rules.
    """

    def is_spec(x: Any) -> bool:
        return isinstance(x, PartitionSpec)

    leaves = jax.tree_util.tree_leaves(boxed_tree_or_specs, is_leaf=is_spec)
    if leaves and all(map(is_spec, leaves)):
        specs = boxed_tree_or_specs
    else:
        specs = nn.get_partition_spec(boxed_tree_or_specs)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))
    _check_divisible(unbox(boxed_tree_or_specs), shardings)
    return shardings


def _check_divisible(tree: Any, shardings: Any) -> None:
    """Raises ValueError naming the first array whose dims do not split evenly."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )[0]
    for (path, leaf), sharding in zip(leaves, jax.tree_util.tree_leaves(shardings)):
        if not hasattr(leaf, "shape"):
            continue
        for dim, (size, axes) in enumerate(zip(leaf.shape, sharding.spec)):
            axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
            parts = int(np.prod([sharding.mesh.shape[a] for a in axes]))
            if size % parts:
                raise ValueError(
                    f"{jax.tree_util.keystr(path)}: dimension {dim} of shape {tuple(leaf.shape)} "
                    f"does not split over mesh axes {axes} ({parts} devices)"
                )


def match_param_shardings(tree: Any, params: Any, param_shardings: Any, default: Any) -> Any:
    """Shardings of a tree holding parameter-shaped leaves (an optimizer state).

    A leaf whose key path ends with a parameter's path and whose shape is that
    parameter's gets the parameter's sharding; any other leaf gets ``default``.
    """
    by_path = {
        tuple(path): (leaf.shape, sharding)
        for (path, leaf), sharding in zip(
            jax.tree_util.tree_flatten_with_path(params)[0],
            jax.tree_util.tree_leaves(param_shardings),
        )
    }

    def pick(path: tuple[Any, ...], leaf: Any) -> Any:
        for i in range(len(path)):
            match = by_path.get(tuple(path[i:]))
            if match is not None and match[0] == leaf.shape:
                return match[1]
        return default

    return jax.tree_util.tree_map_with_path(pick, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    """A sharding that places a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of every batch leaf: the leading (example) dimension over
    ``replica`` x ``data``."""
    return NamedSharding(mesh, PartitionSpec(BATCH_MESH_AXES))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
    """Raises ValueError unless ``global_batch`` splits evenly over the data axis."""
    size = data_axis_size(mesh)
    if global_batch % size:
        raise ValueError(
            f"global batch size {global_batch} is not divisible by the data axis size {size}"
            f" (replica x data)"
        )


# ------------------------------------------------------------------------ multi-host

# Set on multi-process launches; a plain single-host run has none of them.
_MULTI_PROCESS_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "COORDINATOR_ADDRESS",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def vertex_cluster_args(env: Mapping[str, str]) -> dict[str, Any]:
    """``jax.distributed.initialize`` arguments from a Vertex AI custom job's ``CLUSTER_SPEC``.

    JAX finds its peers on TPU VMs, SLURM and MPI by itself, but not from the
    ``CLUSTER_SPEC`` Vertex sets on every replica of a multi-replica (GPU) job: every
    worker pool's hosts in order, the first one the coordinator, this replica's place
    from ``task``. Empty for a single replica, without the variable, or on TPU VMs
    (``TPU_WORKER_HOSTNAMES``), whose own discovery wins.

    Raises:
      ValueError: a ``CLUSTER_SPEC`` that is not the JSON Vertex documents.
    """
    raw = env.get("CLUSTER_SPEC")
    if not raw or env.get("TPU_WORKER_HOSTNAMES"):
        return {}
    try:
        spec = json.loads(raw)
        pools = spec["cluster"]
        names = sorted((n for n in pools if n.startswith("workerpool")), key=lambda n: int(n[10:]))
        hosts = [(name, index) for name in names for index in range(len(pools[name]))]
        me = hosts.index((spec["task"]["type"], int(spec["task"]["index"])))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"CLUSTER_SPEC is not a Vertex AI cluster spec ({e}): {raw[:200]}"
        ) from None
    if len(hosts) < 2:
        return {}
    return {
        "coordinator_address": pools[names[0]][0],
        "num_processes": len(hosts),
        "process_id": me,
    }


def _is_multi_process_launch(env: Mapping[str, str]) -> bool:
    if any(env.get(name) for name in _MULTI_PROCESS_ENV):
        return True
    # A Cloud TPU pod slice lists all of its workers.
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1:
        return True
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(env.get(name, "1") or "1") > 1:
            return True
    return False


def initialize_distributed(env: Mapping[str, str] | None = None, **kwargs: Any) -> bool:
    """Calls ``jax.distributed.initialize`` on multi-process launches only.

    Must run before anything touches a JAX device. Single-host runs (no coordinator
    address, one TPU worker, no multi-task SLURM/MPI job) are left alone.

    Args:
      env: environment to inspect (default: ``os.environ``).
      **kwargs: passed to ``jax.distributed.initialize`` (coordinator_address, ...).

    Returns:
      True when the distributed runtime is (now) initialised.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ if env is None else env
    kwargs = kwargs or vertex_cluster_args(env)
    if not kwargs and not _is_multi_process_launch(env):
        return False
    jax.distributed.initialize(**kwargs)
    return True


def host_local_batch_to_global(batch: Any, mesh: Mesh) -> Any:
    """Assembles each process's slice of the batch into global ``jax.Array``s.

    Every process passes its own rows (``global_batch / process_count`` of them, in
    process order); the result is sharded over ``replica`` x ``data`` along the leading dimension.
    On one process this is a plain sharded ``device_put``.
    """
    sharding = batch_sharding(mesh)

    def to_global(x: Any) -> jax.Array:
        x = np.asarray(x)
        global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree_util.tree_map(to_global, batch)
