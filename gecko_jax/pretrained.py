"""Loading a pre-trained encoder with everything needed to run or fine-tune it."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from gecko_jax import fileio
from gecko_jax.data.vocabularies import (
    EncoderVocabulary,
    SentencePieceVocabulary,
    vocabulary_from_dir,
)
from gecko_jax.models import architectures, named
from gecko_jax.models.architectures import BackboneConfig
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
from gecko_jax.models.hf_checkpoint import CheckpointError
from gecko_jax.models.t5x_model import T5XModelSpec

DEFAULT_MAX_LENGTH = 512


@dataclasses.dataclass
class PretrainedModel:
    """A dual encoder, its pre-trained parameters and its vocabulary.

    Attributes:
      model: the Flax dual encoder.
      params: ``{"backbone": ...}`` float32 numpy parameters; a projection the
        checkpoint lacks is absent (a trainer initialises it). None when loaded
        without weights.
      vocabulary: the checkpoint's tokenizer.
      max_length: the model's token limit (sentence-transformers' ``max_seq_length``,
        else 512, capped at the position table).
    """

    model: DualEncoder
    params: dict[str, Any] | None
    vocabulary: EncoderVocabulary
    max_length: int


def load_pretrained(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    head: HeadConfig | None = None,
    max_length: int | None = None,
    dropout_rate: float | None = None,
    weights: bool = True,
) -> PretrainedModel:
    """Loads a named model, a Hugging Face / sentence-transformers directory or a T5X model.

    Args:
      name_or_path: registered name (e.g. ``"all-MiniLM-L6-v2"``), directory, or a
        T5X model's name (``t5x:...``, see :mod:`gecko_jax.models.t5x_model`).
      dtype: activation dtype (``"float32"`` or ``"bfloat16"``).
      head: pooling/projection; default: what the directory's sentence-transformers
        files say, else mean pooling without projection.
      max_length: token limit; default: the model's own.
      dropout_rate: overrides the checkpoint's dropout (for training).
      weights: read the pre-trained weights (False: ``params`` is None, for a model
        whose weights come from elsewhere, e.g. a gecko-train checkpoint).

    Raises:
      gecko_jax.models.hf_checkpoint.CheckpointError: unusable checkpoint.
      ValueError: ``max_length`` beyond the model's position table.
    """
    t5x = T5XModelSpec.from_init_from(os.fspath(name_or_path))
    params = None
    if t5x is not None:
        if not fileio.exists(t5x.vocabulary):
            raise CheckpointError(f"SentencePiece vocabulary not found: {t5x.vocabulary}")
        backbone = t5x.config(dtype=dtype)
        if weights:
            params = t5x.load_params(backbone)
        vocabulary: EncoderVocabulary = SentencePieceVocabulary(t5x.vocabulary)
        layout = None
    else:
        model_dir = named.resolve_model_dir(name_or_path)
        if weights:
            backbone, params = architectures.load_hf_backbone(model_dir, dtype=dtype)
        else:
            backbone = architectures.hf_backbone_config(model_dir, dtype=dtype)
        vocabulary = vocabulary_from_dir(model_dir)
        layout = named.read_sentence_transformers_layout(model_dir)
    model, max_length = _dual_encoder(backbone, layout, head, max_length, dropout_rate)
    return PretrainedModel(
        model=model,
        params={"backbone": params} if weights else None,
        vocabulary=vocabulary,
        max_length=max_length,
    )


def pretrained_architecture(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    head: HeadConfig | None = None,
    dropout_rate: float | None = None,
) -> DualEncoder:
    """The dual encoder :func:`load_pretrained` builds, reading no weights and no vocabulary.

    For sizing and sharding a model (``jax.eval_shape`` of its ``init``) before, or
    without, fetching its checkpoint. Arguments as :func:`load_pretrained`'s.
    """
    t5x = T5XModelSpec.from_init_from(os.fspath(name_or_path))
    if t5x is not None:
        backbone: BackboneConfig = t5x.config(dtype=dtype)
        layout = None
    else:
        model_dir = named.resolve_model_dir(name_or_path)
        backbone = architectures.hf_backbone_config(model_dir, dtype=dtype)
        layout = named.read_sentence_transformers_layout(model_dir)
    return _dual_encoder(backbone, layout, head, None, dropout_rate)[0]


def _dual_encoder(
    backbone: BackboneConfig,
    layout: named.SentenceTransformersLayout | None,
    head: HeadConfig | None,
    max_length: int | None,
    dropout_rate: float | None,
) -> tuple[DualEncoder, int]:
    """The dual encoder and its token limit, from a backbone and the loader's options."""
    if dropout_rate is not None:
        backbone = dataclasses.replace(backbone, dropout_rate=dropout_rate)
    if head is None:
        head = layout.head if layout else HeadConfig()
    limit = getattr(backbone, "max_position_embeddings", None)
    if max_length is None:
        max_length = (layout and layout.max_seq_length) or DEFAULT_MAX_LENGTH
        max_length = min(max_length, limit) if limit is not None else max_length
    elif limit is not None and max_length > limit:
        raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
    return DualEncoder(backbone=backbone, head=head), max_length
