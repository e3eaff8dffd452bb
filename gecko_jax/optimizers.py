"""Optimizers and learning-rate schedules (optax), configured by one dataclass."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import optax

OPTIMIZERS = ("adamw", "adafactor")
DECAYS = ("cosine", "linear", "constant")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer, schedule and clipping.

    The learning rate rises linearly from 0 to ``learning_rate`` over
    ``warmup_steps``, then decays (``cosine`` or ``linear``) to
    ``learning_rate * end_learning_rate_fraction`` at ``total_steps`` and stays there,
    or stays at ``learning_rate`` (``constant``).

    Attributes:
      name: ``"adamw"`` or ``"adafactor"`` (factored second moments, T5X's default).
      learning_rate: peak learning rate.
      warmup_steps: linear warm-up length; a run shorter than its warm-up (a smoke test
        of a few steps) warms up over all but its last step instead.
      decay: ``"cosine"``, ``"linear"`` or ``"constant"``.
      total_steps: the step at which the decay ends (required unless constant; in gin
        usually the run's train steps).
      end_learning_rate_fraction: final rate as a fraction of the peak.
      weight_decay: decoupled weight decay, applied to matrices only (not to biases,
        norm scales or the logit scale).
      b1, b2, eps: Adam moments and epsilon (adamw only; adafactor keeps optax's).
      clip_grad_norm: clip gradients to this global norm; None disables clipping.
    """

    name: str = "adamw"
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    decay: str = "constant"
    total_steps: int | None = None
    end_learning_rate_fraction: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"OptimizerConfig.name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.decay not in DECAYS:
            raise ValueError(f"OptimizerConfig.decay must be one of {DECAYS}, got {self.decay!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"OptimizerConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"OptimizerConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.decay != "constant" and (self.total_steps is None or self.total_steps < 1):
            raise ValueError(
                f"OptimizerConfig.total_steps must be >= 1 for decay {self.decay!r}, "
                f"got {self.total_steps}"
            )
        if self.total_steps is not None and 0 < self.total_steps <= self.warmup_steps:
            log.warning(
                "OptimizerConfig.warmup_steps %d >= total_steps %d: warming up over %d steps",
                self.warmup_steps,
                self.total_steps,
                self.effective_warmup_steps,
            )
        if not 0.0 <= self.end_learning_rate_fraction <= 1.0:
            raise ValueError(
                "OptimizerConfig.end_learning_rate_fraction must be in [0, 1], got "
                f"{self.end_learning_rate_fraction}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"OptimizerConfig.weight_decay must be >= 0, got {self.weight_decay}")
        for field in ("b1", "b2"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(
                    f"OptimizerConfig.{field} must be in [0, 1), got {getattr(self, field)}"
                )
        if not self.eps > 0:
            raise ValueError(f"OptimizerConfig.eps must be > 0, got {self.eps}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(
                f"OptimizerConfig.clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}"
            )

    @property
    def effective_warmup_steps(self) -> int:
        """The warm-up the schedule uses: ``warmup_steps``, or all but the last step of a
        shorter run. The configured value is kept, so a resumed, longer run of a smoke
        test has the settings it was started with."""
        if self.total_steps is not None and 0 < self.total_steps <= self.warmup_steps:
            return self.total_steps - 1
        return self.warmup_steps


def build_schedule(config: OptimizerConfig) -> optax.Schedule:
    """The learning rate as a function of the step (0-based)."""
    peak = config.learning_rate
    warmup_steps = config.effective_warmup_steps
    if config.decay == "constant":
        main = optax.constant_schedule(peak)
    else:
        decay_steps = config.total_steps - warmup_steps
        end = peak * config.end_learning_rate_fraction
        if config.decay == "cosine":
            main = optax.cosine_decay_schedule(
                peak, decay_steps, alpha=config.end_learning_rate_fraction
            )
        else:
            main = optax.linear_schedule(peak, end, decay_steps)
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for the leaves weight decay applies to: matrices and larger."""
    return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


def build_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
    """The optax transformation of ``config`` (clipping first, then the optimizer)."""
    schedule = build_schedule(config)
    if config.name == "adamw":
        optimizer = optax.adamw(
            schedule,
            b1=config.b1,
            b2=config.b2,
            eps=config.eps,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        )
    else:
        optimizer = optax.adafactor(
            schedule, weight_decay_rate=config.weight_decay or None, weight_decay_mask=decay_mask
        )
    if config.clip_grad_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), optimizer)
