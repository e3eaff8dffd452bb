"""A T5 encoder given as an architecture, a SentencePiece vocabulary and a T5X checkpoint.

T5X users hold T5 v1.1 (and GTR, Sentence-T5) as a T5X checkpoint plus the SentencePiece
model it was trained with, not as a Hugging Face directory. :class:`T5XModelSpec` names
the three; as a string (``t5x:t5_v1_1_xl?checkpoint=...&vocabulary=...``) it goes
wherever a pre-trained model's name goes (``train.init_from``, a model directory's
``encoder.json``). In gin::

    train.init_from = @gecko_jax.t5x_pretrained()
    gecko_jax.t5x_pretrained.architecture = 't5_v1_1_xl'
    gecko_jax.t5x_pretrained.checkpoint = %T5X_CHECKPOINT
    gecko_jax.t5x_pretrained.vocabulary = %T5_VOCABULARY
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from gecko_jax.models import t5, t5x_checkpoint
from gecko_jax.models.hf_checkpoint import CheckpointError

SCHEME = "t5x:"
_T5_V1_1 = "t5_v1_1_"
# Architecture name -> T5 v1.1 preset of T5Config.named.
ARCHITECTURES: dict[str, str] = {
    f"{_T5_V1_1}{size}": size for size in ("small", "base", "large", "xl")
}


@dataclasses.dataclass(frozen=True)
class T5XModelSpec:
    """A T5 encoder from T5X: its architecture, vocabulary and checkpoint.

    Attributes:
      architecture: a T5 v1.1 encoder size, e.g. ``"t5_v1_1_xl"`` (Gecko-1b's).
      vocabulary: the SentencePiece model file, local or ``gs://`` (T5 v1.1:
        ``gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model``).
      checkpoint: the T5X checkpoint (``checkpoint_N`` directory or legacy file).
    """

    architecture: str
    vocabulary: str
    checkpoint: str

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown T5X architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}"
            )
        for field in ("vocabulary", "checkpoint"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ValueError(
                    f"T5XModelSpec.{field} must be a path, got {getattr(self, field)!r}"
                )

    def config(self, **overrides: Any) -> t5.T5Config:
        """The encoder's config, e.g. ``config(dtype="bfloat16")``."""
        return t5.T5Config.named(ARCHITECTURES[self.architecture], **overrides)

    def load_params(self, config: t5.T5Config) -> dict[str, Any]:
        """Reads the encoder's weights from the T5X checkpoint, checked against ``config``."""
        return t5x_checkpoint.load_t5x_encoder(self.checkpoint, config)

    def to_init_from(self) -> str:
        """The spec as a pre-trained model name: ``t5x:ARCH?checkpoint=...&vocabulary=...``."""
        query = urllib.parse.urlencode(
            {"checkpoint": self.checkpoint, "vocabulary": self.vocabulary}, safe=":/"
        )
        return f"{SCHEME}{self.architecture}?{query}"

    @classmethod
    def from_init_from(cls, name: str) -> T5XModelSpec | None:
        """Parses :meth:`to_init_from`'s string; ``None`` for any other model name.

        Raises:
          CheckpointError: a ``t5x:`` name that lacks a field or names an unknown
            architecture.
        """
        if not name.startswith(SCHEME):
            return None
        architecture, _, query = name[len(SCHEME) :].partition("?")
        fields = urllib.parse.parse_qs(query)
        try:
            return cls(
                architecture=architecture,
                checkpoint=fields["checkpoint"][-1],
                vocabulary=fields["vocabulary"][-1],
            )
        except (KeyError, ValueError) as e:
            raise CheckpointError(
                f"Invalid T5X model {name!r}: {e}; expected "
                f"'{SCHEME}ARCHITECTURE?checkpoint=PATH&vocabulary=PATH'"
            ) from None


def t5x_pretrained(*, architecture: str, vocabulary: str, checkpoint: str) -> str:
    """The pre-trained model name of a T5X encoder, for ``train.init_from``.

    Registered with gin as ``gecko_jax.t5x_pretrained`` by :mod:`gecko_jax.train` (the
    models know no gin: a configurable registered on import could arrive after a
    command has locked its gin config).

    Args:
      architecture: e.g. ``"t5_v1_1_xl"`` (see :data:`ARCHITECTURES`).
      vocabulary: SentencePiece model file.
      checkpoint: T5X checkpoint directory or legacy file.
    """
    return T5XModelSpec(architecture, vocabulary, checkpoint).to_init_from()
