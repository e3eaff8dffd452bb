"""The model a ``gecko-train`` gin configuration describes, built abstractly.

Sizing and sharding a run (parameter counts, bytes per chip) needs the model's shapes,
not its weights: :func:`abstract_model_from_gin` evaluates only the model bindings of
``train`` (``init_from``, ``head``, ``dtype``, ``dropout_rate``, ``train_config``) and
builds the parameters with ``jax.eval_shape``, reading no checkpoint and no vocabulary.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Sequence
from typing import Any

import gin
import jax

from gecko_jax import gin_utils
from gecko_jax import partitioning as P
from gecko_jax.models.dual_encoder import DualEncoder
from gecko_jax.pretrained import pretrained_architecture
from gecko_jax.train import train  # importing it registers the configurables gin binds
from gecko_jax.trainer import TrainConfig, init_params

GECKO_1B_GIN_FILES = ("runs/finetune.gin", "models/gecko_1b.gin")
# gecko_1b.gin's required macros, here the public T5 v1.1 XL files (nothing is read),
# and those of runs/finetune.gin, which do not touch the model.
GECKO_1B_BINDINGS = (
    "T5X_CHECKPOINT = 'gs://t5-data/pretrained_models/t5x/t5_1_1_xl/checkpoint_1000000'",
    "T5_VOCABULARY = 'gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model'",
    "MODEL_DIR = 'gs://unused/model_dir'",
    "TRAIN_STEPS = 20000",
    "MIXTURE_OR_TASK_NAME = 'unused'",
)


@dataclasses.dataclass(frozen=True)
class AbstractModel:
    """A configured model's structure, without weights.

    Attributes:
      model: the dual encoder ``train`` would build.
      params: ``jax.eval_shape`` of its parameters, boxed with their logical axis
        names (``gecko_jax.partitioning.logical_to_mesh_shardings`` reads them).
      train_config: the configured ``train.train_config`` (loss, optimizer, ...).
      max_lengths: ``{"query": ..., "document": ...}`` token lengths of the run.
    """

    model: DualEncoder
    params: Any
    train_config: TrainConfig
    max_lengths: dict[str, int]

    @property
    def param_count(self) -> int:
        """Number of parameters (backbone and projection)."""
        return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(P.unbox(self.params)))


def abstract_model_from_gin(
    gin_files: Sequence[str],
    gin_bindings: Sequence[str] = (),
    search_paths: Sequence[str] = (),
) -> AbstractModel:
    """Parses gin files as ``gecko-train`` does and builds their model abstractly.

    gin's global configuration is cleared first and holds the parsed files afterwards.

    Args:
      gin_files: e.g. ``["runs/finetune.gin", "models/gecko_1b.gin"]`` (found as
        ``--gin_file`` finds them).
      gin_bindings: bindings, e.g. the required macros (``"T5X_CHECKPOINT = '...'"``).
      search_paths: extra gin search directories.

    Raises:
      FileNotFoundError: a gin file is not found.
      ValueError: a binding the model needs is missing (gin names it).
    """
    gin.clear_config()
    gin_utils.parse_gin(gin_files, gin_bindings, search_paths)
    # Only the model's bindings are evaluated (copying a gin reference calls it), so
    # nothing else the configuration names (inputs, task registrations) runs.
    bindings = gin.get_bindings("gecko_jax.train", resolve_references=False)
    defaults = {name: p.default for name, p in inspect.signature(train).parameters.items()}

    def value(name: str) -> Any:
        return copy.deepcopy(bindings[name]) if name in bindings else defaults[name]

    if "init_from" not in bindings:
        raise ValueError(f"the gin files {list(gin_files)} do not bind train.init_from")
    model = pretrained_architecture(
        value("init_from"),
        dtype=value("dtype"),
        head=value("head"),
        dropout_rate=value("dropout_rate"),
    )
    params = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0)))
    return AbstractModel(
        model=model,
        params=params,
        train_config=value("train_config") or TrainConfig(),
        max_lengths={"query": value("query_length"), "document": value("document_length")},
    )


def gecko_1b_abstract(extra_bindings: Sequence[str] = ()) -> AbstractModel:
    """Gecko-1b as ``runs/finetune.gin`` + ``models/gecko_1b.gin`` configure it, abstractly.

    Args:
      extra_bindings: bindings after the required macros, e.g.
        ``["gecko_jax.OptimizerConfig.name = 'adafactor'"]``.
    """
    return abstract_model_from_gin(GECKO_1B_GIN_FILES, [*GECKO_1B_BINDINGS, *extra_bindings])
