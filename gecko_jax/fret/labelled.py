"""FRet's second step for labelled sets: hard negatives for known (query, relevant document) pairs.

Where FRet's LLM writes the queries (:mod:`gecko_jax.fret.pipeline`), a labelled set
(BEIR layout: :mod:`gecko_jax.fret.labelled_data`) has them, with the documents judged
relevant. Mining keeps those positives and chooses hard negatives among the documents
the embedder retrieves, as sentence-transformers' ``mine_hard_negatives`` does, with
FRet's machinery: the same exact search (:class:`~gecko_jax.fret.retrieve.PassageIndex`),
optionally the same LLM re-ranking (QL + RC fused by RRF, :mod:`gecko_jax.fret.rank`),
the same shards, done markers, ``run.json`` and row files (``fret-*.jsonl``, read by
the seqio ``fret`` task).

Per query:

1. **retrieve**: the query and every document are embedded as the evaluation embeds
   them (:func:`document_text`: ``title + " " + text``, raw queries); the
   ``top_n + P`` nearest documents are retrieved (P: the query's labelled positives).
2. **candidates**: ``positive="labels"``: the ``top_n`` best documents that are not
   labelled positives; ``positive="top1"``: the ``top_n`` best documents.
3. **order**: by embedder score, or with ``llm``, by FRet's R (ties by retrieval order).
4. **positive**: each labelled positive (one row per pair), or the first candidate in
   that order (``"top1"``, one row per query).
5. **pool**: the ordered candidates less every labelled positive of the query and the
   row's positive; a document's *rank* is its 1-based position in the pool.
6. **false negatives**: with ``relative_margin`` m, a pool document whose embedder score
   exceeds ``s - |s| * m`` is dropped (``(1 - m) * s`` for a positive score ``s``), s
   being the lowest score among the query's labelled positives (the row's positive for
   ``"top1"``), as ``mine_hard_negatives`` does.
7. **negatives**: ``num_negatives`` of those left with ranks in ``negative_ranks``, the
   best-ranked (``"top"``) or drawn uniformly, seeded by ``(seed, query, positive)``
   (``"random"``). A row with fewer is dropped and counted. (``mine_hard_negatives``
   counts its rank range after the margin filter; here ranks are fixed before it, so
   that a range means the same documents whatever the margin.)

Rows are :class:`~gecko_jax.rows.FretRow`: the task is ``MiningConfig.task``, the task
type ``"labelled"``, the seed id the row's labelled positive (for ``"top1"`` the query's
first, so ``positive_changed`` says the top candidate is another); besides FRet's
audit fields a row holds ``query_id``, ``labelled_ids``, ``positive_score`` and the pool
ranks of its negatives (``negative_ranks``); each ``scores`` record also says whether
the candidate is ``labelled``, its ``negative_rank`` and whether it was dropped as a
``false_negative``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gecko_jax import fileio, formats
from gecko_jax.fret import embedding_cache, pipeline, rank, retrieve, shards
from gecko_jax.fret.config import PromptConfig, RankingConfig, RetrievalConfig
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.generate import stable_seed
from gecko_jax.fret.labelled_data import LabelledQuery, LabelledSet, read_labelled_set
from gecko_jax.fret.labelled_summary import format_summary, summarize
from gecko_jax.fret.negatives import (
    POSITIVES,
    SAMPLINGS,
    Choice,
    MiningConfig,
    choose_negatives,
    margin_threshold,
)
from gecko_jax.fret.summary import usage_delta, usage_dict
from gecko_jax.fret.templates import Prompts
from gecko_jax.rows import FRET_SOURCE, JSONL, FretRow, UnifiedExample, write_fret_rows
from gecko_jax.text_encoder import TextEncoder

TASK_TYPE = "labelled"
DOCUMENT_FORMAT = "title text"  # what run.json records of document_text's format
DEFAULT_CONFIG = MiningConfig()
_RETRIEVAL = RetrievalConfig()  # FRet's search settings (batch size, blocks, backend)


@dataclasses.dataclass(frozen=True)
class LabelledRow(FretRow):
    """A mined row: FRet's row and which labelled query it came from.

    Attributes:
      query_id: the query's id in ``queries.jsonl``.
      labelled_ids: every document labelled relevant to the query.
      positive_score: the embedder's score of the positive.
      negative_ranks: the negatives' ranks in the pool (1 = hardest).
    """

    query_id: str = ""
    labelled_ids: tuple[str, ...] = ()
    positive_score: float = 0.0
    negative_ranks: tuple[int, ...] = ()

    @property
    def extras(self) -> dict[str, Any]:
        """FRet's fields, then the query id, the labelled ids, the positive's score and
        the negatives' ranks."""
        return {
            **super().extras,
            "query_id": self.query_id,
            "labelled_ids": list(self.labelled_ids),
            "positive_score": self.positive_score,
            "negative_ranks": list(self.negative_ranks),
        }


def document_text(passage: Passage) -> str:
    """A document as the evaluation embeds it for a model without a task
    (:func:`gecko_jax.formats.untasked_document`)."""
    return formats.untasked_document(passage.title, passage.text)


@dataclasses.dataclass
class _Context:
    """What every shard uses."""

    data: LabelledSet
    config: MiningConfig
    encoder: TextEncoder
    index: retrieve.PassageIndex
    embeddings: np.ndarray
    embedder: str
    client: Any = None
    prompts: Prompts | None = None
    progress: bool = True


@dataclasses.dataclass
class _Candidates:
    """One query's retrieved documents and their order."""

    indices: list[int]  # corpus indices, retrieval order
    retrieval: list[float]
    order: list[int]  # positions in ``indices``, best first
    records: list[dict[str, Any]]  # FRet's score records, retrieval order


def _order_by_retrieval(ctx: _Context, candidates: _Candidates) -> None:
    ids = [ctx.data.documents[i].id for i in candidates.indices]
    candidates.order = list(range(len(ids)))
    candidates.records = [
        {
            "id": doc_id,
            "retrieval": score,
            "ql": None,
            "rc": None,
            "rank_ql": None,
            "rank_rc": None,
            "rrf": None,
            "rank": position + 1,
        }
        for position, (doc_id, score) in enumerate(zip(ids, candidates.retrieval))
    ]


async def _order_by_llm(
    ctx: _Context,
    queries: Sequence[LabelledQuery],
    found: Sequence[_Candidates],
    failures: collections.Counter[str],
) -> None:
    """FRet's ranking: QL and RC of every candidate, fused by RRF."""
    ranked = await rank.rank_queries(
        ctx.client,
        ctx.prompts,
        ctx.data.documents,
        [
            rank.Query(q.id, ctx.config.task, q.text, tuple(c.indices), tuple(c.retrieval))
            for q, c in zip(queries, found)
        ],
        RankingConfig(ranking="rrf"),
        ctx.config.seed,
        failures,
        ctx.progress,
    )
    for candidates, result in zip(found, ranked):
        final = [c.rank for c in result.candidates]
        candidates.order = sorted(range(len(final)), key=final.__getitem__)
        candidates.records = [c.as_record() for c in result.candidates]


def _query_rows(
    ctx: _Context, query: LabelledQuery, candidates: _Candidates, query_vector: np.ndarray
) -> tuple[list[LabelledRow], collections.Counter[str]]:
    """The rows of one query (one per labelled positive, or one for ``"top1"``)."""
    config, documents = ctx.config, ctx.data.documents
    labelled = set(query.positives)
    retrieved = dict(zip(candidates.indices, candidates.retrieval))

    def score(index: int) -> float:  # the searched score when retrieved, else the same product
        if index in retrieved:
            return retrieved[index]
        return float(np.dot(ctx.embeddings[index], query_vector))

    if config.positive == "labels":
        positives = list(query.positives)
        threshold = margin_threshold(min(score(i) for i in positives), config.relative_margin)
    else:
        positives = [candidates.indices[candidates.order[0]]]
        threshold = margin_threshold(score(positives[0]), config.relative_margin)
    counts: collections.Counter[str] = collections.Counter()
    rows = []
    for positive in positives:
        pool = [
            p
            for p in candidates.order
            if candidates.indices[p] not in labelled and candidates.indices[p] != positive
        ]
        pool_scores = [candidates.retrieval[p] for p in pool]
        choice = choose_negatives(
            pool_scores,
            threshold,
            config,
            stable_seed(config.seed, "negatives", query.id, documents[positive].id),
        )
        counts["false_negative_filtered"] += len(choice.false_negatives)
        if len(choice.negatives) < config.num_negatives:
            counts["no_negative_left" if not choice.negatives else "too_few_negatives"] += 1
            continue
        negatives = [candidates.indices[pool[i]] for i in choice.negatives]
        records = _annotated(candidates, pool, choice, labelled)
        ranks = [i + 1 for i in choice.negatives]
        rows.append(_row(ctx, query, (positive, score(positive)), negatives, ranks, records))
    return rows, counts


def _annotated(
    candidates: _Candidates, pool: list[int], choice: Choice, labelled: set[int]
) -> list[dict[str, Any]]:
    """The score records, each with ``labelled``, ``negative_rank``, ``false_negative``."""
    rank_of = {p: i + 1 for i, p in enumerate(pool)}
    dropped = {pool[i] for i in choice.false_negatives}
    return [
        {
            **record,
            "labelled": candidates.indices[p] in labelled,
            "negative_rank": rank_of.get(p),
            "false_negative": p in dropped,
        }
        for p, record in enumerate(candidates.records)
    ]


def _row(
    ctx: _Context,
    query: LabelledQuery,
    positive_and_score: tuple[int, float],
    negatives: Sequence[int],
    negative_ranks: Sequence[int],
    records: Sequence[dict[str, Any]],
) -> LabelledRow:
    documents = ctx.data.documents
    positive, positive_score = positive_and_score
    chosen = [documents[i] for i in negatives]
    example = UnifiedExample(
        task=ctx.config.task,
        query=query.text,
        positive=documents[positive].text,
        positive_title=documents[positive].title,
        negatives=tuple(d.text for d in chosen),
        negative_titles=tuple(d.title for d in chosen),
        symmetric=False,
        source=FRET_SOURCE,
    )
    return LabelledRow(
        example,
        task_type=TASK_TYPE,
        # The labelled document the row stands for: its positive, or for "top1" the
        # query's first labelled one (positive_changed: the top candidate is another).
        seed_id=documents[positive if ctx.config.positive == "labels" else query.positives[0]].id,
        positive_id=documents[positive].id,
        negative_ids=tuple(d.id for d in chosen),
        scores=tuple(records),
        llm_model=getattr(ctx.client, "model_id", "") if ctx.client else "",
        embedder=ctx.embedder,
        query_id=query.id,
        labelled_ids=tuple(documents[i].id for i in query.positives),
        positive_score=positive_score,
        negative_ranks=tuple(negative_ranks),
    )


async def _mine_shard(
    ctx: _Context, queries: Sequence[LabelledQuery]
) -> tuple[list[LabelledRow], dict[str, Any]]:
    """Retrieves, (re-ranks,) and chooses the negatives of one shard; its rows and stats."""
    clock = time.perf_counter()
    before = usage_dict(ctx.client.usage) if ctx.client else None
    vectors = ctx.encoder.encode(
        [q.text for q in queries], kind="query", batch_size=_RETRIEVAL.batch_size
    )
    found = _retrieve(ctx, queries, vectors)
    seconds = {"mine": time.perf_counter() - clock}
    clock = time.perf_counter()
    failures: collections.Counter[str] = collections.Counter()
    if ctx.client is not None:
        await _order_by_llm(ctx, queries, found, failures)
    else:
        for candidates in found:
            _order_by_retrieval(ctx, candidates)
    seconds["rank"] = time.perf_counter() - clock
    rows: list[LabelledRow] = []
    dropped: collections.Counter[str] = collections.Counter()
    for query, candidates, vector in zip(queries, found, vectors):
        query_rows, counts = _query_rows(ctx, query, candidates, vector)
        rows += query_rows
        dropped.update(counts)
    stats = {
        "queries": len(queries),
        "rows": len(rows),
        "positive_labelled": sum(row.positive_id in row.labelled_ids for row in rows),
        "dropped": dict(dropped),
        "failures": dict(failures),
        "usage": usage_delta(before, usage_dict(ctx.client.usage)) if ctx.client else {},
        "seconds": seconds,
    }
    return rows, stats


def _retrieve(
    ctx: _Context, queries: Sequence[LabelledQuery], vectors: np.ndarray
) -> list[_Candidates]:
    """Each query's candidates from its embedding (retrieval order)."""
    top_n = ctx.config.top_n
    depth = min(top_n + max(len(q.positives) for q in queries), ctx.index.size)
    scores, indices = ctx.index.search(vectors, depth)
    found = []
    for q, row_scores, row_indices in zip(queries, scores, indices):
        pairs = [(int(i), float(s)) for i, s in zip(row_indices, row_scores)]
        if ctx.config.positive == "labels":
            labelled = set(q.positives)
            pairs = [(i, s) for i, s in pairs if i not in labelled]
        pairs = pairs[:top_n]
        found.append(_Candidates([i for i, _ in pairs], [s for _, s in pairs], [], []))
    return found


def _corpus_embeddings(
    encoder: TextEncoder, data: LabelledSet, embedder: str, output_dir: str, progress: bool
) -> np.ndarray:
    """The documents' embeddings, read from the output directory when they match."""
    key = embedding_cache.fingerprint(data.documents, (embedder, DOCUMENT_FORMAT, None))
    return embedding_cache.cached_embeddings(
        output_dir,
        key,
        lambda: encoder.encode(
            [document_text(d) for d in data.documents],
            kind="document",
            batch_size=_RETRIEVAL.batch_size,
            show_progress=progress,
        ),
    )


def _settings(
    data: LabelledSet,
    config: MiningConfig,
    where: tuple[str, str],
    embedder: str,
    plan: shards.ShardPlan,
    prompts: Prompts | None,
) -> dict[str, Any]:
    """What the rows depend on (recorded in ``run.json``; the shard count, not the size)."""
    labels = hashlib.sha256()
    for q in data.queries:
        ids = ",".join(data.documents[i].id for i in q.positives)
        labels.update(f"{q.id}\x1f{q.text}\x1f{ids}\x1e".encode())
    settings = dataclasses.asdict(config)
    del settings["shard_size"]
    settings.update(
        data_dir=where[0],
        split=where[1],
        embedder=embedder,
        document_format=DOCUMENT_FORMAT,
        documents=len(data.documents),
        queries=len(data.queries),
        pairs=data.pairs,
        labels_sha256=labels.hexdigest(),
        shards=plan.count,
        llm_rescoring=prompts is not None,
    )
    if prompts is not None:
        texts = (prompts.query_likelihood.text, prompts.relevance.text)
        settings["templates_sha256"] = pipeline.templates_sha256(texts)
    return settings


def mine_labelled(
    data_dir: str,
    output_dir: str,
    embedder: str = "all-MiniLM-L6-v2",
    split: str = "train",
    config: MiningConfig = DEFAULT_CONFIG,
    llm: str | None = None,
    progress: bool = True,
    *,
    encoder: TextEncoder | None = None,
) -> dict[str, Any]:
    """Mines (or resumes mining) hard negatives for the labelled pairs of one split.

    Args:
      data_dir: a BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.
      output_dir: where the row files (``fret-*.jsonl``, FRet's format and names),
        ``done/`` markers, ``run.json``, ``summary.json``, the corpus embeddings and the
        LLM cache go.
      embedder: the ``Encoder.load`` name or path of the retrieval model.
      split: the qrels split whose pairs are mined.
      config: candidates, negatives, false-negative filter, positive, task, seed, shards.
      llm: a ``gecko-fret --llm`` spec: rescore the candidates with QL + RC + RRF as
        FRet does and choose the negatives in that order (None: embedder order).
      progress: show progress bars.
      encoder: the loaded ``embedder`` (default: ``Encoder.load(embedder)``).

    Returns:
      The summary (also ``summary.json``): ``rows``, ``queries``, ``dropped`` counts by
      reason, shards, LLM usage, seconds (:func:`labelled_summary.summarize`).

    Raises:
      FileNotFoundError: a missing directory or file (named).
      ValueError: bad input (names the file and counts), ``--top_n`` above the corpus
        size, or rows of other settings in ``output_dir`` (``ShardStateError``).
    """
    return asyncio.run(_mine(data_dir, output_dir, embedder, split, config, llm, progress, encoder))


async def _mine(
    data_dir: str,
    output_dir: str,
    embedder: str,
    split: str,
    config: MiningConfig,
    llm: str | None,
    progress: bool,
    encoder: TextEncoder | None,
) -> dict[str, Any]:
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    data = read_labelled_set(data_dir, split)
    seconds["read"] = time.perf_counter() - start
    if config.top_n > len(data.documents):
        raise ValueError(
            f"--top_n {config.top_n} exceeds the {len(data.documents)} documents of "
            f"{fileio.join(data_dir, 'corpus.jsonl')}"
        )
    plan = shards.ShardPlan.make(len(data.queries), shard_size=config.shard_size)
    store = shards.ShardStore(output_dir, plan, JSONL)
    prompts = Prompts(PromptConfig()) if llm else None
    settings = _settings(data, config, (data_dir, split), embedder, plan, prompts)
    store.check_manifest(settings)
    store.remove_temporary()
    pending = store.pending()
    model = (store.recorded_settings() or {}).get("llm_model")
    if pending:
        client = None
        if llm:
            client = pipeline.make_llm_client(llm, cache=pipeline.default_cache_path(output_dir))
        try:
            model = getattr(client, "model_id", llm) if client else None
            settings["llm_model"] = model
            store.check_manifest(settings)
            if client is not None and prompts is not None:  # fail before embedding, not after
                await rank.probe_query_likelihood(client, prompts, data.documents[0], "rrf")
            if encoder is None:
                from gecko_jax.encoder import Encoder

                encoder = Encoder.load(embedder)
            clock = time.perf_counter()
            embeddings = _corpus_embeddings(encoder, data, embedder, output_dir, progress)
            index = retrieve.PassageIndex(embeddings, _RETRIEVAL.block_size, _RETRIEVAL.backend)
            seconds["embed_corpus"] = time.perf_counter() - clock
            ctx = _Context(
                data, config, encoder, index, embeddings, embedder, client, prompts, progress
            )
            for shard in tqdm(
                pending, desc="shards", unit="shard", disable=not progress, file=sys.stderr
            ):
                first, stop = plan.bounds(shard)
                rows, stats = await _mine_shard(ctx, data.queries[first:stop])
                clock = time.perf_counter()
                store.record_manifest(settings)
                store.write_rows(shard, functools.partial(write_fret_rows, rows, file_format=JSONL))
                stats["seconds"]["write"] = time.perf_counter() - clock
                store.mark_done(shard, stats)
        finally:
            if client is not None:
                await client.aclose()
    seconds["wall"] = time.perf_counter() - start
    summary = summarize(
        store.done_stats(),
        {
            "shards": plan.count,
            "shards_this_run": len(pending),
            "documents": len(data.documents),
            "pairs": data.pairs,
            "split": split,
            "qrels_file": data.qrels_path,
            "qrels_rows": data.qrels_rows,
            "qrels_dropped": data.dropped,
            "positive": config.positive,
            "relative_margin": config.relative_margin,
            "llm_model": model,
            "embedder": embedder,
            "output_dir": output_dir,
            "seconds": seconds,
        },
    )
    store.write_json(shards.SUMMARY, summary)
    return summary


__all__ = [
    "POSITIVES",
    "SAMPLINGS",
    "Choice",
    "LabelledRow",
    "MiningConfig",
    "choose_negatives",
    "document_text",
    "format_summary",
    "margin_threshold",
    "mine_labelled",
]
