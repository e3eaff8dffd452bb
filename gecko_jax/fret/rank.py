"""FRet step 2b: score the N neighbours with the LLM, fuse the ranks, pick the pair.

Each neighbour ``p`` of a query ``q`` gets up to two LLM scores:

* query likelihood ``QL(q, p) = log P_LLM(q | p)`` (``client.log_likelihood`` of the
  query as the continuation of the QL prompt);
* relevance classification ``RC(q, p) = sum_l value(l) * P_LLM(l | q, p)`` over the
  graded labels of ``PromptConfig.relevance_labels`` (the expected relevance; the
  probabilities are renormalised over the labels).

Each score ranks the neighbours (rank 1 = highest score). ``ranking="rrf"`` fuses both
by reciprocal rank fusion without a constant, ``R = 1/r_QL + 1/r_RC``; ``"ql"`` and
``"rc"`` use one ranker (``R = 1/r``). **Ties** (equal scores, equal R) are broken by
retrieval order: the neighbour nearer the query in embedding space ranks first. A
score the LLM could not give (no label among its top tokens) ranks last.

The positive is the top-1 neighbour by R. The hard negative is, by
``RankingConfig.negative``: ``"p_N"`` the N-th (last) ranked neighbour, ``"random"`` a
uniform draw among ranks 2..N seeded by ``(seed, seed passage id)``, or ``"rank:K"``
the K-th ranked.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gecko_jax.fret.aio import gather_progress
from gecko_jax.fret.config import RankingConfig, RelevanceLabel, parse_negative
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.generate import stable_seed
from gecko_jax.fret.llm.base import MalformedOutputError, NotSupportedError
from gecko_jax.fret.templates import Prompts


class RankingUnsupportedError(ValueError):
    """The requested ranking needs a score the LLM cannot give."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One scored neighbour of a query.

    Attributes:
      index: its passage's index in the corpus.
      id: its passage id.
      retrieval: its embedding similarity to ``task + query``.
      ql, rc: its LLM scores (None: not computed, or not obtainable).
      rank_ql, rank_rc: its rank under each score (None when that score is unused).
      rrf: its fused score R.
      rank: its final rank by R (1 = the positive).
    """

    index: int
    id: str
    retrieval: float
    ql: float | None
    rc: float | None
    rank_ql: int | None
    rank_rc: int | None
    rrf: float
    rank: int

    def as_record(self) -> dict[str, Any]:
        """The candidate as a JSON-ready dict (the row's ``scores`` entries)."""
        record = dataclasses.asdict(self)
        del record["index"]
        return record


@dataclasses.dataclass(frozen=True)
class Ranked:
    """The scored neighbours of one query and the chosen pair.

    Attributes:
      candidates: in retrieval order.
      positive: position in ``candidates`` of the positive.
      negative: position in ``candidates`` of the hard negative.
    """

    candidates: tuple[Candidate, ...]
    positive: int
    negative: int


def ranks(scores: Sequence[float | None]) -> list[int]:
    """Rank of each score, 1 = highest; ties and None (last) by position, earlier first."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), i))
    out = [0] * len(scores)
    for rank, i in enumerate(order, start=1):
        out[i] = rank
    return out


def reciprocal_rank_fusion(*rank_lists: Sequence[int]) -> list[float]:
    """``R = sum_j 1 / r_j`` per candidate (no constant, as in the Gecko paper)."""
    return [sum(1.0 / r for r in rs) for rs in zip(*rank_lists)]


def expected_relevance(
    probabilities: Mapping[str, float], labels: Sequence[RelevanceLabel]
) -> float:
    """``sum value(l) * p(l)`` with ``p`` renormalised over ``labels``.

    Raises:
      ValueError: no probability mass on any label.
    """
    mass = [max(probabilities.get(label.label, 0.0), 0.0) for label in labels]
    total = sum(mass)
    if not total > 0:
        raise ValueError(f"no probability on any label of {[label.label for label in labels]}")
    return sum(label.value * m for label, m in zip(labels, mass)) / total


def choose_negative(order: Sequence[int], negative: str, rng_seed: int) -> int:
    """The hard negative's position, given positions sorted by final rank (best first)."""
    choice = parse_negative(negative)
    if choice == "p_N":
        return order[-1]
    if choice == "random":
        return order[1 + int(np.random.default_rng(rng_seed).integers(len(order) - 1))]
    if choice > len(order):
        raise ValueError(f"negative rank:{choice} but only {len(order)} neighbours were ranked")
    return order[choice - 1]


def rank_candidates(
    indices: Sequence[int],
    ids: Sequence[str],
    retrieval: Sequence[float],
    ql: Sequence[float | None] | None,
    rc: Sequence[float | None] | None,
    config: RankingConfig,
    rng_seed: int,
) -> Ranked:
    """Ranks one query's neighbours by R and picks the positive and the negative.

    Args:
      indices, ids, retrieval: the neighbours in retrieval order.
      ql, rc: their scores; None for a ranker that ``config.ranking`` does not use.
      config: the ranking and the negative choice.
      rng_seed: seeds ``negative="random"``.
    """
    if len(indices) < 2:
        raise ValueError(
            f"need at least 2 neighbours to pick a positive and a negative, got {len(indices)}"
        )
    rank_ql = ranks(ql) if ql is not None else None
    rank_rc = ranks(rc) if rc is not None else None
    used = [r for r in (rank_ql, rank_rc) if r is not None]
    if not used:
        raise ValueError("rank_candidates needs QL or RC scores")
    fused = reciprocal_rank_fusion(*used)
    final = ranks(fused)
    order = sorted(range(len(indices)), key=final.__getitem__)
    candidates = tuple(
        Candidate(
            int(indices[i]),
            ids[i],
            float(retrieval[i]),
            None if ql is None else ql[i],
            None if rc is None else rc[i],
            None if rank_ql is None else rank_ql[i],
            None if rank_rc is None else rank_rc[i],
            fused[i],
            final[i],
        )
        for i in range(len(indices))
    )
    return Ranked(candidates, order[0], choose_negative(order, config.negative, rng_seed))


async def _ql_score(
    client: Any, prompts: Prompts, passage: Passage, query: str, task: str, ranking: str
) -> float:
    prompt, continuation = prompts.ql(passage.text, passage.title, query, task)
    try:
        return float(await client.log_likelihood(prompt, continuation))
    except NotSupportedError as e:
        raise RankingUnsupportedError(
            f"--ranking {ranking} needs query likelihood (log P(query | passage)), which the LLM "
            f"{getattr(client, 'model_id', '?')!r} cannot score ({e}); use --ranking rc"
        ) from e


async def probe_query_likelihood(
    client: Any, prompts: Prompts, passage: Passage, ranking: str
) -> None:
    """Scores one query likelihood, so that a client without QL fails before any work.

    Raises:
      RankingUnsupportedError: the client cannot score query likelihood.
    """
    await _ql_score(client, prompts, passage, "test query", "test", ranking)


async def _rc_score(
    client: Any,
    prompts: Prompts,
    passage: Passage,
    query: str,
    task: str,
    failures: collections.Counter[str],
) -> float | None:
    prompt = prompts.rc(passage.text, passage.title, query, task)
    try:
        probabilities = await client.label_probabilities(prompt, prompts.labels)
        return expected_relevance(probabilities, prompts.config.relevance_labels)
    except MalformedOutputError:  # e.g. no label among the model's top first tokens
        failures["rc_labels_not_found"] += 1
        return None


@dataclasses.dataclass(frozen=True)
class Query:
    """One generated query to rank neighbours for.

    Attributes:
      seed_id: the seed passage's id (seeds the random negative).
      task, query: the LLM's task and query.
      indices: the neighbours' corpus indices, in retrieval order.
      retrieval: their embedding similarities.
    """

    seed_id: str
    task: str
    query: str
    indices: tuple[int, ...]
    retrieval: tuple[float, ...]


async def rank_queries(
    client: Any,
    prompts: Prompts,
    passages: Sequence[Passage],
    queries: Sequence[Query],
    config: RankingConfig,
    seed: int,
    failures: collections.Counter[str],
    progress: bool = True,
) -> list[Ranked]:
    """Scores every neighbour of every query concurrently, then ranks each query's.

    Args:
      client: an ``LLMClient`` (it bounds its own concurrency).
      prompts: the QL and RC templates and labels.
      passages: the corpus (indexed by ``Query.indices``).
      queries: the queries and their neighbours.
      config: ranking and negative choice.
      seed: the run seed (random negatives).
      failures: incremented per RC score the LLM could not give.
      progress: show a progress bar per LLM call.

    Raises:
      RankingUnsupportedError: QL is needed and the client cannot score it.
    """
    use_ql, use_rc = config.ranking in ("rrf", "ql"), config.ranking in ("rrf", "rc")
    calls: list[Any] = []
    for q in queries:
        for i in q.indices:
            if use_ql:
                calls.append(
                    _ql_score(client, prompts, passages[i], q.query, q.task, config.ranking)
                )
            if use_rc:
                calls.append(_rc_score(client, prompts, passages[i], q.query, q.task, failures))
    scores = iter(await gather_progress(calls, "rank", progress))
    ranked = []
    for q in queries:
        ql: list[float | None] = []
        rc: list[float | None] = []
        for _ in q.indices:
            if use_ql:
                ql.append(next(scores))
            if use_rc:
                rc.append(next(scores))
        ids = [passages[i].id for i in q.indices]
        ranked.append(
            rank_candidates(
                q.indices,
                ids,
                q.retrieval,
                ql if use_ql else None,
                rc if use_rc else None,
                config,
                stable_seed(seed, "negative", q.seed_id),
            )
        )
    return ranked
