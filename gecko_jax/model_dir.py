"""A gecko-train model directory as a loadable model: its spec file and trained weights.

``gecko-train`` writes ``encoder.json`` into its model directory: what the encoder is
built from (the pre-trained model's name or directory, the head, the token limit). With
the orbax checkpoints beside it, that is enough to rebuild the trained encoder without
gin, so evaluation, export and serving can load ``MODEL_DIR`` like any named model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax

from gecko_jax import checkpoints, fileio
from gecko_jax.models.dual_encoder import HeadConfig
from gecko_jax.pretrained import PretrainedModel, load_pretrained

SPEC_FILE = "encoder.json"
CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best_checkpoints"  # parameters of the best evaluations (train.best_metric)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a trained encoder is built from.

    Attributes:
      init_from: the pre-trained model (registered name or directory) that gave the
        architecture and vocabulary.
      head: pooling/projection of the trained model.
      max_length: token limit for encoding.
      matryoshka_dims: the prefix sizes the model was trained with (empty: none).
    """

    init_from: str
    head: HeadConfig
    max_length: int
    matryoshka_dims: tuple[int, ...] = ()

    def to_json(self) -> str:
        """The spec as the JSON written to ``encoder.json``."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: str = SPEC_FILE) -> ModelSpec:
        """Parses ``encoder.json``; ``path`` names the file in errors."""
        try:
            raw = json.loads(text)
            return cls(
                init_from=raw["init_from"],
                head=HeadConfig(**raw["head"]),
                max_length=int(raw["max_length"]),
                matryoshka_dims=tuple(raw.get("matryoshka_dims") or ()),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a gecko_jax model spec ({e})") from None


def is_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a gecko-train model directory (it has ``encoder.json``)."""
    return os.path.isfile(os.path.join(os.fspath(path), SPEC_FILE))


def write_spec(model_dir: str, spec: ModelSpec) -> None:
    """Writes ``encoder.json`` into ``model_dir``."""
    with open(os.path.join(model_dir, SPEC_FILE), "w", encoding="utf-8") as f:
        f.write(spec.to_json() + "\n")


def read_spec(model_dir: str | os.PathLike) -> ModelSpec:
    """Reads a model directory's ``encoder.json``."""
    path = os.path.join(os.fspath(model_dir), SPEC_FILE)
    with open(path, encoding="utf-8") as f:
        return ModelSpec.from_json(f.read(), path)


def load_trained(
    model_dir: str | os.PathLike,
    step: int | None = None,
    dtype: str = "float32",
    checkpoint: str = "latest",
) -> PretrainedModel:
    """The trained encoder of a gecko-train model directory.

    Args:
      model_dir: the directory ``gecko-train`` wrote (``encoder.json``, ``checkpoints/``).
      step: which checkpoint; default the newest (or the best, see ``checkpoint``).
      dtype: activation dtype.
      checkpoint: ``"latest"`` (the resumable checkpoints) or ``"best"`` (the best
        in-training evaluation, ``best_checkpoints/``).

    Raises:
      FileNotFoundError: no spec file or no checkpoint.
      ValueError: an unknown ``checkpoint``.
    """
    spec = read_spec(model_dir)
    directory, step = checkpoint_location(model_dir, step=step, checkpoint=checkpoint)
    # The pre-trained weights are not read: the checkpoint holds every parameter.
    base = load_pretrained(
        spec.init_from, dtype=dtype, head=spec.head, max_length=spec.max_length, weights=False
    )
    # Shapes come from the model itself, so a projection the base checkpoint lacks is read too.
    shapes = _param_shapes(base)
    params = checkpoints.restore_params(directory, shapes, step=step)
    return dataclasses.replace(base, params=jax.device_get(params))


def checkpoint_location(
    model_dir: str | os.PathLike, step: int | None = None, checkpoint: str = "latest"
) -> tuple[str, int]:
    """The checkpoint directory and step that :func:`load_trained` reads.

    Raises:
      FileNotFoundError: the model directory holds no such checkpoint (the message
        names the directory).
      ValueError: an unknown ``checkpoint``.
    """
    if checkpoint not in ("latest", "best"):
        raise ValueError(f"checkpoint must be 'latest' or 'best', got {checkpoint!r}")
    directory = os.path.join(
        os.fspath(model_dir), CHECKPOINT_SUBDIR if checkpoint == "latest" else BEST_SUBDIR
    )
    if step is None:
        if checkpoint == "best":
            step = checkpoints.best_step(directory)
        else:
            step = newest_step(directory)
    if step is None or not os.path.isdir(os.path.join(directory, str(step))):
        what = "no checkpoint" if step is None else f"no checkpoint of step {step}"
        raise FileNotFoundError(f"{what} in {directory}")
    return directory, step


def newest_step(directory: str) -> int | None:
    """The newest finished orbax step in a checkpoint directory (local or ``gs://``), or None.

    Finished steps are numeric directories; unfinished ones carry a suffix.
    """
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in fileio.glob(fileio.join(directory, "*")))
    steps = [int(name) for name in names if name.isdigit()]
    return max(steps) if steps else None


def _param_shapes(base: PretrainedModel) -> Any:
    ids = jax.ShapeDtypeStruct((1, 8), "int32")
    variables = jax.eval_shape(
        lambda i, m: base.model.init(jax.random.PRNGKey(0), i, m, deterministic=True), ids, ids
    )
    return nn.meta.unbox(variables["params"])
