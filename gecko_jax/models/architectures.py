"""The registry of encoder architectures and the one-call Hugging Face import."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gecko_jax.models import bert, hf_checkpoint, t5
from gecko_jax.models.hf_checkpoint import CheckpointError, ParamMapping

BackboneConfig = bert.BertConfig | t5.T5Config


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How to build and import one encoder family.

    Attributes:
      name: short name used in configs (``"bert"``, ``"t5"``).
      hf_model_types: ``model_type`` values of Hugging Face configs it reads.
      config_class: the config dataclass; ``config_class.from_hf(dict)`` parses a
        Hugging Face ``config.json``.
      module: the Flax encoder class, built as ``module(config)``.
      param_mapping: Flax path -> Hugging Face tensor rule for a config.
      hf_prefixes: model prefixes that may precede tensor names in checkpoints.
    """

    name: str
    hf_model_types: tuple[str, ...]
    config_class: type
    module: type[nn.Module]
    param_mapping: Callable[[Any], ParamMapping]
    hf_prefixes: tuple[str, ...]


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(
        name="bert",
        hf_model_types=("bert",),
        config_class=bert.BertConfig,
        module=bert.BertEncoder,
        param_mapping=bert.hf_param_mapping,
        hf_prefixes=bert.HF_PREFIXES,
    ),
    "t5": Architecture(
        name="t5",
        hf_model_types=("t5", "mt5", "umt5"),
        config_class=t5.T5Config,
        module=t5.T5Encoder,
        param_mapping=t5.hf_param_mapping,
        hf_prefixes=t5.HF_PREFIXES,
    ),
}


def architecture_of(config: BackboneConfig) -> Architecture:
    """Returns the architecture whose config class ``config`` is."""
    for arch in ARCHITECTURES.values():
        if isinstance(config, arch.config_class):
            return arch
    raise TypeError(f"Not an encoder config: {type(config).__name__}")


def architecture_for_hf(config: dict[str, Any], source: str) -> Architecture:
    """Picks the architecture for a Hugging Face ``config.json``."""
    model_type = config.get("model_type")
    for arch in ARCHITECTURES.values():
        if model_type in arch.hf_model_types:
            return arch
    known = sorted(t for a in ARCHITECTURES.values() for t in a.hf_model_types)
    raise CheckpointError(
        f"Unknown architecture model_type={model_type!r} in {source}/config.json; "
        f"supported model types: {', '.join(known)}"
    )


def build_backbone(config: BackboneConfig, name: str | None = None) -> nn.Module:
    """Instantiates the Flax encoder for a config."""
    return architecture_of(config).module(config, name=name)


def abstract_params(module: nn.Module, seq_len: int = 8) -> dict[str, Any]:
    """Parameter shapes of ``module`` (unboxed), without allocating them."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ids, ids > 0))
    return nn.unbox(variables["params"])


def hf_backbone_config(checkpoint_dir: str | os.PathLike, dtype: str = "float32") -> BackboneConfig:
    """The encoder config of a Hugging Face checkpoint directory (its weights unread).

    Raises:
      CheckpointError: no readable ``config.json``, or one no architecture reads.
    """
    source = os.fspath(checkpoint_dir)
    hf_config = hf_checkpoint.read_config(source)
    arch = architecture_for_hf(hf_config, source)
    try:
        return dataclasses.replace(arch.config_class.from_hf(hf_config), dtype=dtype)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"Invalid {arch.name} config in {source}/config.json: {e}") from e


def load_hf_backbone(
    checkpoint_dir: str | os.PathLike, dtype: str = "float32"
) -> tuple[BackboneConfig, dict[str, Any]]:
    """Loads a Hugging Face encoder checkpoint into a Flax config and param tree.

    Args:
      checkpoint_dir: a directory with ``config.json`` and ``model.safetensors``.
      dtype: activation dtype of the returned config (parameters stay float32).

    Returns:
      ``(config, params)`` where ``params`` fits ``build_backbone(config)``.

    Raises:
      CheckpointError: missing/corrupt files, unknown architecture, or a tensor whose
        shape disagrees with the config (the message names the tensor).
    """
    source = os.fspath(checkpoint_dir)
    config = hf_backbone_config(source, dtype=dtype)
    arch = architecture_of(config)
    tensors = hf_checkpoint.read_tensors(source)
    shapes = hf_checkpoint.flatten_shapes(abstract_params(arch.module(config)))
    params = hf_checkpoint.build_params(
        arch.param_mapping(config), tensors, shapes, source, arch.hf_prefixes
    )
    return config, params
