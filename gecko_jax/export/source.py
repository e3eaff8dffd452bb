"""What an export starts from: a gecko-train model directory or a named pre-trained model.

Both exporters need the same facts: the loaded :class:`~gecko_jax.encoder.Encoder`, the
Hugging Face directory its architecture and tokenizer files came from, and, for a trained
model, which checkpoint step was read. :func:`load_source` gathers them and turns every
"cannot load" case into an :class:`ExportError` that names the path.
"""

from __future__ import annotations

import dataclasses
import os

from gecko_jax.encoder import Encoder
from gecko_jax.model_dir import SPEC_FILE, checkpoint_location, is_model_dir, read_spec
from gecko_jax.models.hf_checkpoint import CheckpointError
from gecko_jax.models.named import resolve_model_dir


class ExportError(ValueError):
    """An export cannot be made as asked (the message names the path or flag)."""


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """A model ready to export.

    Attributes:
      encoder: the loaded model, tokenizer and token limit.
      name_or_path: what the user asked for (model directory or registered name).
      base_dir: the Hugging Face directory of the pre-trained model it was built from
        (``config.json``, tokenizer files).
      init_from: the pre-trained model's registered name or directory, as recorded.
      step: the checkpoint step read from a model directory (None for a pre-trained model).
      checkpoint_dir: the orbax checkpoint directory read (None for a pre-trained model).
      matryoshka_dims: the prefix sizes the model was trained with (empty: none recorded).
    """

    encoder: Encoder
    name_or_path: str
    base_dir: str
    init_from: str
    step: int | None = None
    checkpoint_dir: str | None = None
    matryoshka_dims: tuple[int, ...] = ()


def load_source(
    name_or_path: str | os.PathLike, step: int | None = None, checkpoint: str = "latest"
) -> ExportSource:
    """Loads a model for export.

    Args:
      name_or_path: a ``gecko-train`` model directory, a Hugging Face /
        sentence-transformers directory, or a registered name (``all-MiniLM-L6-v2``).
      step: the checkpoint step of a model directory (default: the newest).
      checkpoint: ``"latest"`` or ``"best"`` (see :meth:`Encoder.load`).

    Raises:
      ExportError: the path is neither a model directory nor a known model, or a model
        directory has no (such) checkpoint.
    """
    source = os.fspath(name_or_path)
    if not is_model_dir(source):
        if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
            raise ExportError(
                f"{source} is not a model: it has neither {SPEC_FILE} (a gecko-train model "
                "directory) nor config.json (a Hugging Face checkpoint)"
            )
        try:
            base_dir = resolve_model_dir(source)
            encoder = Encoder.load(source)
        except CheckpointError as e:
            raise ExportError(str(e)) from None
        return ExportSource(encoder, source, base_dir, init_from=source)
    try:
        spec = read_spec(source)
        if spec.init_from.startswith("t5x:"):
            # Both exports read the base model's Hugging Face files (config, tokenizer).
            raise ExportError(
                f"{source}: a model initialised from a T5X checkpoint ({spec.init_from}) "
                "cannot be exported yet: the exports need a Hugging Face base directory"
            )
        checkpoint_dir, found_step = checkpoint_location(source, step=step, checkpoint=checkpoint)
        base_dir = resolve_model_dir(spec.init_from)
        encoder = Encoder.load(source, step=found_step, checkpoint=checkpoint)
    except (FileNotFoundError, CheckpointError) as e:
        raise ExportError(f"{source}: {e}") from None
    return ExportSource(
        encoder,
        source,
        base_dir,
        init_from=spec.init_from,
        step=found_step,
        checkpoint_dir=checkpoint_dir,
        matryoshka_dims=spec.matryoshka_dims,
    )


def check_dims(source: ExportSource, dims: tuple[int, ...], flag: str = "--dims") -> None:
    """Checks Matryoshka output sizes against the model's embedding size.

    Raises:
      ExportError: a size outside ``1..embedding_dim`` (the message names ``flag``).
    """
    width = source.encoder.embedding_dim
    bad = [d for d in dims if not 1 <= d <= width]
    if bad:
        raise ExportError(
            f"{flag}: {', '.join(map(str, bad))} outside 1..{width}, the model's embedding size"
        )
