"""Evaluation during training: local evaluators every K steps, best-N checkpoints.

gin, on ``train``:

    train.eval_every = 200
    train.evaluators = ['stsb:dev', 'scifact:train']   # name[:split] of gecko_jax.eval
    train.eval_dims = [384, 256]                       # Matryoshka dims (default: full)
    train.best_metric = 'stsb_dev/spearman'            # keeps MODEL_DIR/best_checkpoints
    train.keep_best = 2

Metrics are logged as ``eval/{evaluator}/{metric}`` (full dimension) and
``eval/{evaluator}/{metric}@{dim}`` (other dimensions). Use dev or train splits here:
test splits are for reporting, never for choosing checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

from gecko_jax.checkpoints import BestCheckpoints
from gecko_jax.encoder import Encoder
from gecko_jax.eval import evaluators as eval_sets
from gecko_jax.eval.base import Evaluator
from gecko_jax.model_dir import BEST_SUBDIR
from gecko_jax.pretrained import PretrainedModel

log = logging.getLogger("gecko_jax.train")
PREFIX = "eval/"


def parse_evaluator_spec(spec: str) -> tuple[str, str]:
    """``"stsb:dev"`` -> ``("stsb", "dev")``; a bare name means its ``dev`` split."""
    name, _, split = spec.partition(":")
    return name, split or "dev"


def metric_keys(name: str, scores: dict[int, dict[str, float]], full_dim: int) -> dict[str, float]:
    """Flattens one evaluator's ``dim -> metric -> score`` into logged keys."""
    flat = {}
    for dim, metrics in scores.items():
        suffix = "" if dim == full_dim else f"@{dim}"
        flat.update(
            {f"{PREFIX}{name}/{metric}{suffix}": value for metric, value in metrics.items()}
        )
    return flat


@dataclasses.dataclass
class InTrainingEval:
    """Runs local evaluators on the current parameters and keeps the best checkpoints.

    Attributes:
      evaluators: the built evaluators (their data read once, at start-up).
      every: steps between evaluations (the final step is always evaluated).
      dims: Matryoshka dimensions (None: full).
      best: the best-N checkpoints, or None.
    """

    evaluators: list[Evaluator]
    every: int
    dims: Sequence[int] | None = None
    best: BestCheckpoints | None = None
    _encoder: Encoder | None = None

    @classmethod
    def build(
        cls,
        specs: Sequence[str],
        every: int,
        *,
        model_dir: str,
        data_dir: str | None = None,
        dims: Sequence[int] | None = None,
        best_metric: str | None = None,
        keep_best: int = 1,
        best_mode: str = "max",
    ) -> InTrainingEval | None:
        """The evaluation of ``train``'s gin settings; None when none is configured.

        Raises:
          ValueError: evaluators without ``every`` (or the reverse), an unknown
            evaluator or split, or a ``best_metric`` without evaluators.
        """
        if not specs and not every and not best_metric:
            return None
        if not specs or every < 1:
            raise ValueError(
                "train.evaluators and train.eval_every > 0 go together "
                f"(got {list(specs)!r} and {every})"
            )
        built = [
            eval_sets.build_evaluator(name, data_dir, split)
            for name, split in map(parse_evaluator_spec, specs)
        ]
        best = None
        if best_metric:
            best = BestCheckpoints(
                os.path.join(model_dir, BEST_SUBDIR),
                PREFIX + best_metric,
                max_to_keep=keep_best,
                mode=best_mode,
            )
        return cls(built, every, dims, best)

    def run(self, step: int, pretrained: PretrainedModel, params: Any) -> dict[str, float]:
        """Evaluates ``params``; saves them among the best if they rank. Returns the metrics."""
        if self._encoder is None:
            self._encoder = Encoder(
                pretrained.model, params, pretrained.vocabulary, pretrained.max_length
            )
        else:  # same shapes: the encoder's compiled function is reused
            self._encoder.params = params
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            scores = evaluator.evaluate(self._encoder, self.dims)
            metrics.update(metric_keys(evaluator.name, scores, self._encoder.embedding_dim))
        log.info(
            "eval at step %d: %s",
            step,
            "  ".join(f"{k[len(PREFIX) :]} {v:.2f}" for k, v in sorted(metrics.items())),
        )
        if self.best is not None and self.best.save(step, params, metrics):
            log.info("step %d kept among the best by %s", step, self.best.metric[len(PREFIX) :])
        return metrics

    def close(self) -> None:
        """Finishes the best-checkpoint writes."""
        if self.best is not None:
            self.best.close()
