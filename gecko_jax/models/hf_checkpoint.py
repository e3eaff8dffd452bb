"""Reading Hugging Face-format checkpoints (config.json + safetensors) without torch.

An architecture describes its import as a :data:`ParamMapping`: for every Flax
parameter path, the name of the Hugging Face tensor and how to reshape it. The
functions here read the files, apply the mapping and check every shape against the
Flax model's own, so a mismatch names the offending tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import safetensors.numpy

ParamPath = tuple[str, ...]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model's config."""


@dataclasses.dataclass(frozen=True)
class TensorRule:
    """Where one Flax parameter comes from in a Hugging Face checkpoint.

    Attributes:
      hf_name: tensor name in the safetensors file, without a model prefix such as
        ``bert.`` (those are resolved by :func:`find_tensor`).
      transform: maps the stored array to the Flax layout (transpose, reshape).
      aliases: other names the same tensor is saved under by some writers (tried
        after ``hf_name``).
    """

    hf_name: str
    transform: Callable[[np.ndarray], np.ndarray] = lambda x: x
    aliases: tuple[str, ...] = ()


ParamMapping = dict[ParamPath, TensorRule]


def torch_linear(weight: np.ndarray) -> np.ndarray:
    """torch ``Linear`` weight ``[out, in]`` -> Flax kernel ``[in, out]``."""
    return weight.T


def torch_linear_to_heads(num_heads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``[heads * head_dim, in]`` (q/k/v projection) -> ``[in, heads, head_dim]``."""
    return lambda w: w.T.reshape(w.shape[1], num_heads, -1)


def torch_linear_from_heads(num_heads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``[out, heads * head_dim]`` (attention output) -> ``[heads, head_dim, out]``."""
    return lambda w: w.T.reshape(num_heads, -1, w.shape[0])


def read_config(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``config.json`` of a checkpoint directory."""
    path = os.path.join(os.fspath(checkpoint_dir), "config.json")
    if not os.path.isdir(checkpoint_dir):
        raise CheckpointError(f"Checkpoint directory not found: {checkpoint_dir}")
    if not os.path.isfile(path):
        raise CheckpointError(f"No config.json in checkpoint directory {checkpoint_dir}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot parse {path}: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def safetensors_files(checkpoint_dir: str | os.PathLike) -> list[str]:
    """Lists the safetensors files of a checkpoint: one file or an indexed set."""
    checkpoint_dir = os.fspath(checkpoint_dir)
    single = os.path.join(checkpoint_dir, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"Cannot parse {index}: {e}") from e
        return [os.path.join(checkpoint_dir, n) for n in names]
    raise CheckpointError(
        f"No model.safetensors (or model.safetensors.index.json) in {checkpoint_dir}"
    )


def read_tensors(checkpoint_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads every tensor of a checkpoint as numpy float arrays."""
    tensors: dict[str, np.ndarray] = {}
    for path in safetensors_files(checkpoint_dir):
        try:
            loaded = safetensors.numpy.load_file(path)
        except Exception as e:  # safetensors raises several error types on bad files.
            raise CheckpointError(f"Corrupt or unreadable safetensors file {path}: {e}") from e
        tensors.update(loaded)
    return tensors


def find_tensor(
    tensors: Mapping[str, np.ndarray], names: Sequence[str], prefixes: Sequence[str]
) -> tuple[str, np.ndarray] | None:
    """Finds the first of ``names`` under any of ``prefixes`` (e.g. ``""``, ``"bert."``)."""
    for name in names:
        for prefix in prefixes:
            if prefix + name in tensors:
                return prefix + name, tensors[prefix + name]
    return None


def build_params(
    mapping: ParamMapping,
    tensors: Mapping[str, np.ndarray],
    expected_shapes: Mapping[ParamPath, tuple[int, ...]],
    source: str,
    prefixes: Sequence[str] = ("",),
) -> dict[str, Any]:
    """Assembles a nested Flax parameter dict from checkpoint tensors.

    Args:
      mapping: Flax path -> tensor rule, covering every parameter of the model.
      tensors: the checkpoint's tensors.
      expected_shapes: Flax path -> shape, from ``jax.eval_shape`` of the model.
      source: the checkpoint's location, for error messages.
      prefixes: model prefixes tried in front of each tensor name.

    Returns:
      The nested parameter dict (float32 numpy leaves).

    Raises:
      CheckpointError: a tensor is missing or its shape does not fit the config.
    """
    unmapped = sorted(set(expected_shapes) - set(mapping))
    if unmapped:
        raise CheckpointError(f"Internal: no import rule for Flax parameters {unmapped[:5]}")
    params: dict[str, Any] = {}
    for path, rule in mapping.items():
        found = find_tensor(tensors, (rule.hf_name, *rule.aliases), prefixes)
        if found is None:
            raise CheckpointError(
                f"Tensor {rule.hf_name!r} is missing from checkpoint {source} "
                f"(needed for parameter {'/'.join(path)})"
            )
        full_name, array = found
        value = np.asarray(rule.transform(np.asarray(array, dtype=np.float32)))
        want = tuple(expected_shapes[path])
        if value.shape != want:
            raise CheckpointError(
                f"Shape mismatch for tensor {full_name!r} in {source}: checkpoint gives "
                f"{tuple(array.shape)} -> {value.shape} but the config expects {want} "
                f"for parameter {'/'.join(path)}"
            )
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return params


def flatten_shapes(
    tree: Mapping[str, Any], prefix: ParamPath = ()
) -> dict[ParamPath, tuple[int, ...]]:
    """Flattens a nested dict of arrays / ShapeDtypeStructs into path -> shape."""
    out: dict[ParamPath, tuple[int, ...]] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten_shapes(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = tuple(value.shape)
    return out
