"""T5X checkpoints: reading both formats, and a T5X T5 encoder mapped onto ours.

T5X writes two formats, both read here, from local disk or ``gs://``:

- the legacy one-file format: one msgpack file (``flax.serialization``) holding every
  array of the train state;
- the tensorstore layout: a directory ``checkpoint_N/`` whose ``checkpoint`` msgpack
  index holds small arrays inline and, for the others, a tensorstore zarr spec whose
  kvstore path is relative to the directory (one sub-directory per array).

Names are the train state's with the top-level ``optimizer`` dropped:
``target/encoder/layers_0/attention/query/kernel``, ``target/token_embedder/embedding``,
``state/param_states/...``. A T5 encoder's parameters come from ``target/encoder`` and
``target/token_embedder``; T5X stores its attention kernels flat (``[d_model, heads *
d_kv]``) and, like Hugging Face's T5, with no ``1/sqrt(d_kv)`` logit scaling applied at
run time (T5X folds it into the query initialisation), so the kernels are used as stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import serialization

from gecko_jax import fileio
from gecko_jax import partitioning as P
from gecko_jax.models import architectures, t5
from gecko_jax.models.hf_checkpoint import (
    CheckpointError,
    ParamMapping,
    ParamPath,
    TensorRule,
    build_params,
    flatten_shapes,
)

INDEX_FILE = "checkpoint"  # the msgpack index of a tensorstore-layout checkpoint directory
_SPEC_KEYS = {"driver", "kvstore"}
# Format 3 (T5X since mid-2021) stores bfloat16 natively; earlier ones as its uint16 bits.
_NATIVE_BFLOAT16_VERSION = 3
_LAYER = re.compile(r"layers_(\d+)$")


def checkpoint_index_path(path: str) -> str:
    """The msgpack file of a T5X checkpoint: ``path/checkpoint`` for a directory, else ``path``.

    Raises:
      CheckpointError: neither exists.
    """
    path = path.rstrip("/")
    index = fileio.join(path, INDEX_FILE)
    if fileio.exists(index):
        return index
    if fileio.exists(path) and not _looks_like_directory(path):
        return path
    raise CheckpointError(
        f"No T5X checkpoint at {path}: expected a legacy msgpack checkpoint file or a "
        f"checkpoint_N directory holding a '{INDEX_FILE}' index"
    )


def _looks_like_directory(path: str) -> bool:
    if fileio.is_url(path):
        import tensorflow as tf  # slow to import: only for URLs

        return bool(tf.io.gfile.isdir(path))
    return os.path.isdir(path)


def is_t5x_checkpoint(path: str) -> bool:
    """Whether ``path`` is a T5X checkpoint (legacy file or ``checkpoint_N`` directory).

    A gecko-train checkpoint directory (orbax: numbered step directories, no
    ``checkpoint`` file at its top) is not one.
    """
    try:
        checkpoint_index_path(path)
    except CheckpointError:
        return False
    return True


def _is_tensorstore_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and _SPEC_KEYS <= set(value)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/c": leaf}``; tensorstore specs are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not _is_tensorstore_spec(value):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def absolute_tensorstore_spec(spec: Mapping[str, Any], directory: str, name: str) -> dict[str, Any]:
    """A copy of a T5X spec whose kvstore reads the array from ``directory``.

    T5X records a path relative to the checkpoint directory under a ``gfile`` (or
    ``file``) driver, or under ``gcs`` with a placeholder bucket; the kvstore is
    rebuilt here: ``file`` for a local directory, ``gcs`` for ``gs://bucket/...``.
    """
    spec = dict(spec)
    beside = spec.pop("path", None)  # where tensorstore < 0.1.14 kept it
    relative = dict(spec.get("kvstore") or {}).get("path") or beside
    if not relative:
        raise CheckpointError(f"T5X array {name!r} has a tensorstore spec without a path: {spec}")
    match = re.fullmatch(r"gs://([^/]+)/?(.*)", directory)
    if match:
        bucket, prefix = match.groups()
        spec["kvstore"] = {"driver": "gcs", "bucket": bucket, "path": _join(prefix, relative)}
    elif fileio.is_url(directory):
        raise CheckpointError(f"Only local and gs:// T5X checkpoints can be read, got {directory}")
    else:
        spec["kvstore"] = {"driver": "file", "path": os.path.join(directory, relative)}
    return spec


def _join(prefix: str, relative: str) -> str:
    return f"{prefix.rstrip('/')}/{relative}" if prefix else relative


def _read_tensorstore_arrays(
    specs: Mapping[str, Mapping[str, Any]], directory: str, version: int
) -> dict[str, np.ndarray]:
    """Reads the zarr arrays behind T5X's tensorstore specs, all reads in flight at once.

    orbax cannot read this layout itself: its restore returns T5X's spec dicts as plain
    values (it resolves only its own placeholders), so the specs are opened directly.
    """
    import tensorstore as ts  # only the tensorstore layout needs it

    opened = {}
    for name, spec in specs.items():
        # The index carries each array's full zarr metadata; trusting it spares one
        # metadata read per array and reads copies whose ``.zarray`` files were dropped.
        opened[name] = ts.open(
            absolute_tensorstore_spec(spec, directory, name),
            open=True,
            read=True,
            assume_metadata=True,
        )
    reads = {}
    for name, future in opened.items():
        try:
            reads[name] = future.result().read()
        except Exception as e:  # tensorstore reports missing or corrupt data as ValueError
            raise CheckpointError(f"Cannot open T5X array {name!r} under {directory}: {e}") from e
    arrays = {}
    for name, future in reads.items():
        try:
            array = np.asarray(future.result())
        except Exception as e:
            raise CheckpointError(f"Cannot read T5X array {name!r} under {directory}: {e}") from e
        if version < _NATIVE_BFLOAT16_VERSION and array.dtype == np.uint16:
            import ml_dtypes

            array = array.view(ml_dtypes.bfloat16)
        arrays[name] = array
    return arrays


def read_t5x_checkpoint(
    path: str, select: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """Reads a T5X checkpoint's arrays, flat by name.

    Args:
      path: a legacy one-file checkpoint, or a tensorstore-layout ``checkpoint_N``
        directory; local or ``gs://``.
      select: reads only the arrays whose names it accepts (the tensorstore layout
        then opens no other array), e.g. the encoder's parameters.

    Returns:
      ``{"target/encoder/layers_0/attention/query/kernel": array, ...}``: the train
      state's names without the top-level ``optimizer``; numpy arrays as stored.

    Raises:
      CheckpointError: no checkpoint there, or one that cannot be parsed or read.
    """
    index_path = checkpoint_index_path(path)
    try:
        with fileio.open(index_path, "rb") as f:
            contents = serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack raises several types on corrupt input
        raise CheckpointError(f"Cannot parse T5X checkpoint {index_path}: {e}") from e
    if not isinstance(contents, Mapping):
        raise CheckpointError(f"{index_path} is not a T5X checkpoint (no state dict inside)")
    version = int(contents.get("version", 0))
    state = contents.get("optimizer")
    if not isinstance(state, Mapping):
        state = {key: value for key, value in contents.items() if key != "version"}
    leaves = {
        name: value for name, value in _flatten(state).items() if select is None or select(name)
    }
    specs = {name: value for name, value in leaves.items() if _is_tensorstore_spec(value)}
    arrays = {name: np.asarray(value) for name, value in leaves.items() if name not in specs}
    if specs:
        arrays.update(_read_tensorstore_arrays(specs, os.path.dirname(index_path), version))
    return arrays


# ------------------------------------------------------------------------- T5 encoder


def _reshape_if(stored: tuple[int, ...], want: tuple[int, ...]) -> Callable[[np.ndarray], Any]:
    """Reshapes an array of shape ``stored`` to ``want``; leaves any other shape as it is."""
    return lambda w: w.reshape(want) if tuple(w.shape) == stored else w


def _transpose_2d(w: np.ndarray) -> np.ndarray:
    return w.T if w.ndim == 2 else w


def t5x_tensor_rule(path: ParamPath, shape: tuple[int, ...]) -> TensorRule:
    """Where one parameter of our T5 encoder lives in a T5X checkpoint.

    Args:
      path: the parameter's path in :class:`~gecko_jax.models.t5.T5Encoder`.
      shape: its shape in the model (the attention kernels are reshaped to it when
        the stored flat kernel has the same ``[d_model, heads * d_kv]`` size).

    Raises:
      CheckpointError: ``path`` is no T5 encoder parameter (another architecture).
    """
    encoder = "target/encoder"
    if path == ("token_embedder", "embedding"):
        return TensorRule("target/token_embedder/embedding")
    if path == ("final_norm", "scale"):
        return TensorRule(f"{encoder}/encoder_norm/scale")
    # T5X's table is [heads, buckets]; ours [buckets, heads].
    if path == ("relpos_bias", "embedding"):
        return TensorRule(f"{encoder}/relpos_bias/rel_embedding", _transpose_2d)
    if path and _LAYER.match(path[0]):
        layer, rest = f"{encoder}/{path[0]}", path[1:]
        if rest == ("relpos_bias", "embedding"):
            return TensorRule(f"{layer}/relpos_bias/rel_embedding", _transpose_2d)
        if rest == ("pre_attention_norm", "scale"):
            return TensorRule(f"{layer}/pre_attention_layer_norm/scale")
        if rest == ("pre_mlp_norm", "scale"):
            return TensorRule(f"{layer}/pre_mlp_layer_norm/scale")
        if len(rest) == 4 and rest[0] == "attention" and rest[2:] == ("dense", "kernel"):
            name = rest[1]
            if name == "out":  # [heads * d_kv, d_model] -> [heads, d_kv, d_model]
                stored = (shape[0] * shape[1], *shape[2:])
            else:  # [d_model, heads * d_kv] -> [d_model, heads, d_kv]
                stored = (shape[0], int(np.prod(shape[1:])))
            return TensorRule(f"{layer}/attention/{name}/kernel", _reshape_if(stored, shape))
        if len(rest) == 4 and rest[0] == "mlp" and rest[2:] == ("dense", "kernel"):
            return TensorRule(f"{layer}/mlp/{rest[1]}/kernel")
    raise CheckpointError(f"Parameter {'/'.join(path)} has no counterpart in a T5X T5 encoder")


def t5x_param_mapping(shapes: Mapping[ParamPath, tuple[int, ...]]) -> ParamMapping:
    """Flax parameter path -> T5X array rule, for every parameter in ``shapes``."""
    return {path: t5x_tensor_rule(path, tuple(shape)) for path, shape in shapes.items()}


def load_t5x_backbone(path: str, abstract_backbone_params: Any) -> dict[str, Any]:
    """Reads a T5X checkpoint's encoder into a T5 backbone's parameter tree.

    Only ``target/encoder`` and ``target/token_embedder`` are read (no decoder, no
    optimizer state).

    Args:
      path: legacy checkpoint file or ``checkpoint_N`` directory, local or ``gs://``.
      abstract_backbone_params: the backbone's parameter tree (arrays or
        ``ShapeDtypeStruct``s, boxed or not), e.g.
        ``trainer.abstract_state().params["backbone"]``; it fixes the names and shapes.

    Returns:
      The same tree of float32 numpy arrays.

    Raises:
      CheckpointError: no readable checkpoint, a missing array, or an array whose
        shape disagrees with the model (the message names the array and both shapes).
    """
    shapes = flatten_shapes(P.unbox(abstract_backbone_params))
    mapping = t5x_param_mapping(shapes)
    wanted = {rule.hf_name for rule in mapping.values()}
    arrays = read_t5x_checkpoint(path, select=wanted.__contains__)
    return build_params(mapping, arrays, shapes, path)


def load_t5x_encoder(path: str, config: t5.T5Config) -> dict[str, Any]:
    """``T5Encoder(config)``'s parameters from a T5X checkpoint (as :func:`load_t5x_backbone`)."""
    return load_t5x_backbone(path, architectures.abstract_params(t5.T5Encoder(config)))


def t5_config_from_t5x(arrays: Mapping[str, np.ndarray], **overrides: Any) -> t5.T5Config:
    """Derives a T5 encoder config from a T5X checkpoint's array shapes.

    A checkpoint does not record the activation or the relative-position maximum
    distance: a gated MLP (``wi_0``/``wi_1``) is taken as ``gated-gelu`` (T5 v1.1,
    mT5), a single ``wi`` as ``relu`` (the original T5), the distance as T5X's 128;
    ``overrides`` sets these or any other field.

    Args:
      arrays: names -> arrays (or anything with ``.shape``), as
        :func:`read_t5x_checkpoint` returns.
      **overrides: ``T5Config`` fields to set.

    Raises:
      CheckpointError: the arrays lack a T5 encoder.
    """
    encoder = "target/encoder"

    def shape_of(name: str) -> tuple[int, ...]:
        if name not in arrays:
            raise CheckpointError(f"T5X checkpoint lacks {name!r}: not a T5 encoder checkpoint")
        return tuple(arrays[name].shape)

    vocab_size, d_model = shape_of("target/token_embedder/embedding")
    layer_ids = {
        int(m.group(1))
        for name in arrays
        if name.startswith(encoder + "/")
        and (m := _LAYER.match(name[len(encoder) + 1 :].split("/")[0]))
    }
    per_layer = f"{encoder}/layers_0/relpos_bias/rel_embedding" in arrays
    relpos = f"{encoder}/{'layers_0/' if per_layer else ''}relpos_bias/rel_embedding"
    num_heads, num_buckets = shape_of(relpos)
    query = shape_of(f"{encoder}/layers_0/attention/query/kernel")
    gated = f"{encoder}/layers_0/mlp/wi_0/kernel" in arrays
    fields: dict[str, Any] = dict(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=int(np.prod(query[1:])) // num_heads,
        num_heads=num_heads,
        d_ff=shape_of(f"{encoder}/layers_0/mlp/wo/kernel")[0],
        num_layers=len(layer_ids),
        relative_attention_num_buckets=num_buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
        per_layer_relative_bias=per_layer,
    )
    return t5.T5Config(**{**fields, **overrides})
