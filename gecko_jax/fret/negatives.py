"""How hard negatives are mined for labelled pairs: the settings and the choice from a pool.

:class:`MiningConfig` holds the settings of :func:`gecko_jax.fret.labelled.mine_labelled`
(this module is light, so that ``gecko-fret mine`` checks its flags before importing
the pipeline); :func:`choose_negatives` picks one row's negatives from its ranked pool
of candidates, after the false-negative filter (:func:`margin_threshold`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

SAMPLINGS = ("top", "random")
POSITIVES = ("labels", "top1")


@dataclasses.dataclass(frozen=True)
class MiningConfig:
    """How hard negatives are mined for labelled pairs (:mod:`gecko_jax.fret.labelled`).

    Attributes:
      top_n: candidates retrieved per query (exact search over the whole corpus).
      num_negatives: hard negatives per row.
      negative_ranks: 1-based inclusive ranks (among candidates, positives removed) the
        negatives are drawn from; ranks past ``top_n`` hold no candidate.
      sampling: ``"top"``: the best-ranked in the range; ``"random"``: uniform in the
        range (seeded).
      relative_margin: drop a candidate scoring above ``(1 - relative_margin)`` times the
        positive's score (sentence-transformers' semantics); None: no filter.
      positive: ``"labels"``: each labelled relevant document (one row per qrels pair);
        ``"top1"``: the top candidate instead (an ablation).
      task: the Gecko task description written in each row.
      seed: seeds ``sampling="random"``.
      shard_size: queries per shard (the resumable unit).

    Raises:
      ValueError: a field out of range (names its ``gecko-fret mine`` flag).
    """

    top_n: int = 30
    num_negatives: int = 1
    negative_ranks: tuple[int, int] = (1, 30)
    sampling: str = "top"
    relative_margin: float | None = 0.05
    positive: str = "labels"
    task: str = "retrieve documents that answer the query"
    seed: int = 0
    shard_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "negative_ranks", tuple(self.negative_ranks))
        for name in ("top_n", "num_negatives", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.top_n < 2:
            raise ValueError(f"--top_n must be >= 2 (a positive and a negative), got {self.top_n}")
        if len(self.negative_ranks) != 2:
            raise ValueError(f"--negative_ranks must be two ranks, got {self.negative_ranks}")
        low, high = self.negative_ranks
        if not 1 <= low <= high or low > self.top_n:
            raise ValueError(
                f"--negative_ranks {low},{high}: need 1 <= first <= last, and first <= "
                f"--top_n {self.top_n}"
            )
        ranks = min(high, self.top_n) - low + 1  # ranks past top_n hold no candidate
        if ranks < self.num_negatives:
            raise ValueError(
                f"--negative_ranks {low},{high} holds {ranks} ranks of the --top_n "
                f"{self.top_n} candidates, fewer than --num_negatives {self.num_negatives}"
            )
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"--sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.positive not in POSITIVES:
            raise ValueError(f"--positive must be one of {POSITIVES}, got {self.positive!r}")
        margin = self.relative_margin
        if margin is not None and not 0.0 <= margin < 1.0:
            raise ValueError(f"--relative_margin must be in [0, 1) or none, got {margin}")
        if not self.task.strip():
            raise ValueError("--task must be a non-empty task description")


def margin_threshold(positive_score: float, relative_margin: float | None) -> float:
    """The score above which a candidate is a likely false negative (inf: no filter)."""
    if relative_margin is None:
        return float("inf")
    return positive_score - abs(positive_score) * relative_margin


@dataclasses.dataclass(frozen=True)
class Choice:
    """The negatives chosen from one pool.

    Attributes:
      negatives: their positions in the pool (position + 1 = rank), in rank order.
      false_negatives: the positions in the rank range dropped by the margin.
    """

    negatives: tuple[int, ...]
    false_negatives: tuple[int, ...]


def choose_negatives(
    pool_scores: Sequence[float], threshold: float, config: MiningConfig, rng_seed: int
) -> Choice:
    """Chooses up to ``config.num_negatives`` negatives from a ranked pool.

    Args:
      pool_scores: the embedder scores of the pool, best-ranked first.
      threshold: candidates scoring above it are dropped (:func:`margin_threshold`).
      config: the rank range, count and sampling.
      rng_seed: seeds ``sampling="random"``.
    """
    low, high = config.negative_ranks
    in_range = range(low - 1, min(high, len(pool_scores)))
    dropped = tuple(i for i in in_range if pool_scores[i] > threshold)
    eligible = [i for i in in_range if pool_scores[i] <= threshold]
    count = min(config.num_negatives, len(eligible))
    if config.sampling == "top":
        chosen = eligible[:count]
    else:
        rng = np.random.default_rng(rng_seed)
        chosen = sorted(int(i) for i in rng.choice(eligible, size=count, replace=False))
    return Choice(tuple(chosen), dropped)
