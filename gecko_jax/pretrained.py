"""Loading a pre-trained encoder with everything needed to run or fine-tune it."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from gecko_jax.data.vocabularies import EncoderVocabulary, vocabulary_from_dir
from gecko_jax.models import architectures, named
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig

DEFAULT_MAX_LENGTH = 512


@dataclasses.dataclass
class PretrainedModel:
    """A dual encoder, its pre-trained parameters and its vocabulary.

    Attributes:
      model: the Flax dual encoder.
      params: ``{"backbone": ...}`` float32 numpy parameters; a projection the
        checkpoint lacks is absent (a trainer initialises it).
      vocabulary: the checkpoint's tokenizer.
      max_length: the model's token limit (sentence-transformers' ``max_seq_length``,
        else 512, capped at the position table).
    """

    model: DualEncoder
    params: dict[str, Any]
    vocabulary: EncoderVocabulary
    max_length: int


def load_pretrained(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    head: HeadConfig | None = None,
    max_length: int | None = None,
    dropout_rate: float | None = None,
) -> PretrainedModel:
    """Loads a named model or a Hugging Face / sentence-transformers directory.

    Args:
      name_or_path: registered name (e.g. ``"all-MiniLM-L6-v2"``) or directory.
      dtype: activation dtype (``"float32"`` or ``"bfloat16"``).
      head: pooling/projection; default: what the directory's sentence-transformers
        files say, else mean pooling without projection.
      max_length: token limit; default: the model's own.
      dropout_rate: overrides the checkpoint's dropout (for training).

    Raises:
      gecko_jax.models.hf_checkpoint.CheckpointError: unusable checkpoint.
      ValueError: ``max_length`` beyond the model's position table.
    """
    model_dir = named.resolve_model_dir(name_or_path)
    backbone, params = architectures.load_hf_backbone(model_dir, dtype=dtype)
    if dropout_rate is not None:
        backbone = dataclasses.replace(backbone, dropout_rate=dropout_rate)
    layout = named.read_sentence_transformers_layout(model_dir)
    if head is None:
        head = layout.head if layout else HeadConfig()
    limit = getattr(backbone, "max_position_embeddings", None)
    if max_length is None:
        max_length = (layout and layout.max_seq_length) or DEFAULT_MAX_LENGTH
        max_length = min(max_length, limit) if limit is not None else max_length
    elif limit is not None and max_length > limit:
        raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
    return PretrainedModel(
        model=DualEncoder(backbone=backbone, head=head),
        params={"backbone": params},
        vocabulary=vocabulary_from_dir(model_dir),
        max_length=max_length,
    )
