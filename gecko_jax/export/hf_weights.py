"""Turning trained Flax backbone parameters back into a Hugging Face checkpoint.

The import side describes each Flax parameter as a :class:`TensorRule`: a tensor name and
a one-way layout transform (transpose, head split). Rather than keeping a second, inverse
mapping in step with it, the inverse is derived: the transform applied to the indices
``0..n-1`` of the stored tensor shows where every stored element lands, and the trained
values are scattered back through that permutation. Names and shapes come from the
pre-trained checkpoint the model started from, so the output loads where it did.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gecko_jax.export.source import ExportError
from gecko_jax.models import architectures, hf_checkpoint
from gecko_jax.models.hf_checkpoint import CheckpointError, ParamPath, TensorRule


def invert_rule(
    rule: TensorRule, value: np.ndarray, stored_shape: tuple[int, ...], name: str
) -> np.ndarray:
    """Lays a Flax parameter out as the Hugging Face tensor ``rule`` reads it from.

    Args:
      rule: the import rule (its ``transform`` maps the stored layout to Flax's).
      value: the Flax parameter.
      stored_shape: the shape of the tensor in the Hugging Face checkpoint.
      name: the tensor's name, for error messages.

    Returns:
      A float32 array of ``stored_shape`` that ``rule.transform`` maps to ``value``.

    Raises:
      ExportError: the transform does not give ``value``'s shape or is not a pure
        rearrangement of elements (so it has no inverse).
    """
    size = int(np.prod(stored_shape, dtype=np.int64))
    positions = np.asarray(rule.transform(np.arange(size).reshape(stored_shape)))
    if positions.shape != value.shape:
        raise ExportError(
            f"tensor {name!r}: the import transform maps {stored_shape} to {positions.shape}, "
            f"but the trained parameter has shape {value.shape}"
        )
    flat = positions.ravel()
    if not np.array_equal(np.sort(flat), np.arange(size)):
        raise ExportError(
            f"tensor {name!r}: its import transform is not a rearrangement of elements, so "
            "it cannot be inverted"
        )
    out = np.empty(size, dtype=np.float32)
    out[flat] = np.asarray(value, dtype=np.float32).ravel()
    return out.reshape(stored_shape)


def _flatten(tree: Mapping[str, Any], prefix: ParamPath = ()) -> dict[ParamPath, np.ndarray]:
    out: dict[ParamPath, np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = np.asarray(value)
    return out


def _strip(name: str, prefixes: Sequence[str]) -> tuple[str, str]:
    """``(prefix, rest)`` for the longest model prefix ``name`` starts with."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and name.startswith(prefix):
            return prefix, name[len(prefix) :]
    return "", name


def backbone_tensors(
    config: architectures.BackboneConfig,
    params: Mapping[str, Any],
    base_dir: str | os.PathLike,
    drop: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Hugging Face tensors holding trained backbone parameters.

    Every tensor of the base checkpoint that an import rule reads gets the trained value
    (under its rule name and every alias the checkpoint holds, so tied copies agree);
    tensors no rule reads (a BERT pooler, ``position_ids``) are copied as they are.
    Names lose the model prefix (``bert.``), so they are those of the bare model
    (``BertModel``, ``T5EncoderModel``); tensors outside that model (pre-training heads)
    are left out, as are names starting with one of ``drop``.

    Args:
      config: the backbone's config.
      params: the backbone's Flax parameters (``encoder.params["backbone"]``).
      base_dir: the pre-trained Hugging Face checkpoint the model was built from.
      drop: name prefixes (after the model prefix) to leave out, e.g. ``"decoder."``.

    Returns:
      Tensor name -> array, ready for ``safetensors.numpy.save_file``.

    Raises:
      ExportError: the base checkpoint is unreadable or lacks a tensor, or the trained
        parameters do not match the architecture's import rules.
    """
    base_dir = os.fspath(base_dir)
    arch = architectures.architecture_of(config)
    mapping = arch.param_mapping(config)
    trained = _flatten(params)
    unmapped = sorted(set(trained) ^ set(mapping))
    if unmapped:
        raise ExportError(
            f"parameters {['/'.join(p) for p in unmapped[:5]]} do not match the {arch.name} "
            "import rules"
        )
    try:
        base = hf_checkpoint.read_tensors(base_dir)
    except CheckpointError as e:
        raise ExportError(str(e)) from None

    out: dict[str, np.ndarray] = {}
    model_prefixes: set[str] = set()
    read_by_rules: set[str] = set()
    for path, rule in mapping.items():
        names = (rule.hf_name, *rule.aliases)
        found = hf_checkpoint.find_tensor(base, names, arch.hf_prefixes)
        if found is None:
            raise ExportError(
                f"tensor {rule.hf_name!r} (parameter {'/'.join(path)}) is missing from the "
                f"base checkpoint {base_dir}"
            )
        full_name, stored = found
        prefix, _ = _strip(full_name, arch.hf_prefixes)
        model_prefixes.add(prefix)
        value = invert_rule(rule, trained[path], tuple(stored.shape), full_name)
        out[rule.hf_name] = value
        for name in names:
            for p in arch.hf_prefixes:
                if p + name in base:
                    read_by_rules.add(p + name)
                    out[name] = value
    for name, tensor in base.items():
        if name in read_by_rules:
            continue
        prefix, bare = _strip(name, arch.hf_prefixes)
        if prefix not in model_prefixes or bare.startswith(tuple(drop)):
            continue
        out[bare] = tensor
    return out
