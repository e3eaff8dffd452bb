"""The FRet pipeline: corpus -> shards of (task, query, positive, hard negative) rows.

:func:`run` reads the corpus, embeds every passage once (the embeddings are saved in
the output directory and reused by a restarted run), then for each unfinished shard of
seed passages:

1. **generate**: a task type per passage, the LLM's task and query (validated,
   re-asked on rejects) -- :mod:`generate`;
2. **mine**: embed ``task + query``, retrieve the top N passages -- :mod:`retrieve`;
3. **rank**: QL and RC scores of the N neighbours, R, the positive and the hard
   negative -- :mod:`rank`;
4. **write**: the shard's rows and its done marker, atomically -- :mod:`output`,
   :mod:`shards`.

Resuming: a finished shard is never redone; every LLM call is cached on disk by the
client, so a crash or Ctrl-C costs at most the calls that were in flight, which a
rerun re-issues (and the cache answers the rest). ``run.json`` pins the settings: a
rerun with other settings (or another LLM model) in the same output directory is
refused.

At corpus scale: shards run one after another, the LLM calls of a shard all
concurrently (the client bounds them); the corpus embeddings live on the accelerator
(``RetrievalConfig.backend="faiss"`` when they do not fit), and one shard's rows and
calls are in memory at a time, so ``shard_size`` bounds memory, and a few thousand
seeds per shard keep the client's concurrency busy. Two ways past one machine's online
calls, combinable:

* **Vertex batch prediction** (``llm="vertex-batch:MODEL"``, ``batch_staging_dir``
  ``gs://...``, ``ranking="rc"``): the client
  (:class:`~gecko_jax.fret.llm.batching.VertexBatchClient`) turns each stage's
  gathered calls into one batch job at half price: per shard, one job for generation,
  a smaller one per round of re-asks, one for relevance classification.
* **Several workers over one output directory** (``worker_index`` of ``worker_count``,
  on one machine or many, the output directory on ``gs://``, each with its own local
  ``cache``): worker ``i`` runs the pending shards ``s`` with ``s % n == i``; all check
  and write the same ``run.json`` (the worker fields are not pinned) and each writes
  ``summary.json`` over every finished shard when it is done, so the last to finish
  writes the whole summary. A rerun with another ``worker_count`` picks up the shards
  still pending.

Apache Beam is not used: ``apache-beam`` pins protobuf and pyarrow below the versions
this environment's TensorFlow needs, and the two ways above need no runner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gecko_jax import fileio
from gecko_jax.fret import embedding_cache, generate, output, rank, retrieve, shards
from gecko_jax.fret.aio import gather_progress
from gecko_jax.fret.config import FretConfig, parse_negative
from gecko_jax.fret.corpus import Corpus, Passage, read_corpus
from gecko_jax.fret.summary import ShardStats, format_summary, summarize, usage_delta, usage_dict
from gecko_jax.fret.templates import Prompts
from gecko_jax.rows import FretRow
from gecko_jax.text_encoder import TextEncoder

log = logging.getLogger(__name__)
EMBEDDINGS = embedding_cache.EMBEDDINGS
CACHE_FILE = "llm_cache.sqlite"


def cache_path(config: FretConfig) -> str:
    """The LLM cache: ``--cache``, else ``output_dir/llm_cache.sqlite`` (local only).

    Raises:
      ValueError: the output directory is remote and no ``--cache`` is given.
    """
    return config.cache or default_cache_path(config.output_dir)


def default_cache_path(output_dir: str) -> str:
    """``output_dir/llm_cache.sqlite``.

    Raises:
      ValueError: the output directory is remote (the SQLite cache must be local).
    """
    if "://" in output_dir:
        raise ValueError(
            f"--cache: the LLM cache is SQLite and must be local; --output_dir "
            f"{output_dir} is remote, so give --cache /local/path.sqlite"
        )
    return fileio.join(output_dir, CACHE_FILE)


def templates_sha256(texts: Sequence[str]) -> str:
    """The digest of prompt template texts that ``run.json`` records."""
    return hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()


def _settings(
    config: FretConfig, corpus: Corpus, plan: shards.ShardPlan, prompts: Prompts
) -> dict[str, Any]:
    """What the rows depend on (recorded in ``run.json``), template texts included."""
    settings = dataclasses.asdict(config)
    # Not the --llm spec (a server's URL may change between runs) but the model, once known.
    for name in (
        "llm",
        "cache",
        "progress",
        "num_shards",
        "shard_size",
        "llm_concurrency",
        "batch_staging_dir",
        "worker_index",
        "worker_count",
    ):
        del settings[name]
    texts = (prompts.generation.text, prompts.query_likelihood.text, prompts.relevance.text)
    settings.update(
        passages=len(corpus.passages),
        shards=plan.count,
        templates_sha256=templates_sha256(texts),
    )
    return settings


def corpus_embeddings(encoder: TextEncoder, corpus: Corpus, config: FretConfig) -> np.ndarray:
    """The passages' embeddings, read from the output directory when they match."""
    retrieval = config.retrieval
    key = embedding_cache.fingerprint(
        corpus.passages, (config.embedder, retrieval.input_format, retrieval.dim)
    )
    return embedding_cache.cached_embeddings(
        config.output_dir,
        key,
        lambda: retrieve.embed_passages(encoder, corpus.passages, retrieval, config.progress),
        _workers(config).tmp_tag,  # workers starting at once each write the same file
    )


def _workers(config: FretConfig) -> shards.Workers:
    return shards.Workers(config.worker_index, config.worker_count)


@dataclasses.dataclass
class _Context:
    """What every shard uses."""

    config: FretConfig
    corpus: Corpus
    prompts: Prompts
    client: Any
    encoder: TextEncoder
    index: retrieve.PassageIndex


async def run_shard(ctx: _Context, seeds: Sequence[Passage]) -> tuple[list[FretRow], ShardStats]:
    """Generates, mines and ranks one shard's seed passages; returns its rows and stats."""
    config, stats = ctx.config, ShardStats(seeds=len(seeds), worker=ctx.config.worker_index)
    before = usage_dict(ctx.client.usage)
    clock = time.perf_counter()
    types = [
        generate.sample_task_type(p.id, config.seed, config.generation.task_types) for p in seeds
    ]
    stats.task_types.update(t.name for t in types)
    results = await gather_progress(
        (
            generate.generate_one(
                ctx.client, ctx.prompts, p, t, config.generation, config.seed, stats.rejects
            )
            for p, t in zip(seeds, types)
        ),
        "generate",
        config.progress,
    )
    kept = [(p, g) for p, g in zip(seeds, results) if g is not None]
    stats.gave_up = len(seeds) - len(kept)
    stats.attempts = len(kept) + sum(stats.rejects.values())  # each call is accepted or rejected
    stats.seconds["generate"], clock = time.perf_counter() - clock, time.perf_counter()

    queries: list[rank.Query] = []
    if kept:
        vectors = retrieve.embed_queries(
            ctx.encoder, [g.task for _, g in kept], [g.query for _, g in kept], config.retrieval
        )
        scores, indices = ctx.index.search(vectors, config.retrieval.top_n)
        queries = [
            rank.Query(p.id, g.task, g.query, tuple(map(int, i)), tuple(map(float, s)))
            for (p, g), s, i in zip(kept, scores, indices)
        ]
    stats.seconds["mine"], clock = time.perf_counter() - clock, time.perf_counter()

    ranked = await rank.rank_queries(
        ctx.client,
        ctx.prompts,
        ctx.corpus.passages,
        queries,
        config.ranking,
        config.seed,
        stats.failures,
        config.progress,
    )
    stats.seconds["rank"] = time.perf_counter() - clock
    model = getattr(ctx.client, "model_id", config.llm)
    rows = [
        output.build_row(p, g, r, ctx.corpus.passages, model, config.embedder)
        for (p, g), r in zip(kept, ranked)
    ]
    stats.rows = len(rows)
    stats.positive_changed = sum(bool(row.extras["positive_changed"]) for row in rows)
    stats.usage = usage_delta(before, usage_dict(ctx.client.usage))
    return rows, stats


def _check_sizes(config: FretConfig, corpus: Corpus) -> None:
    top_n = config.retrieval.top_n
    if top_n > len(corpus.passages):
        raise ValueError(f"--top_n {top_n} exceeds the corpus's {len(corpus.passages)} passages")
    negative = parse_negative(config.ranking.negative)
    if isinstance(negative, int) and negative > top_n:
        raise ValueError(f"--negative rank:{negative} exceeds --top_n {top_n}")


def open_client(config: FretConfig) -> Any:
    """The run's LLM client: ``make_client(config.llm)`` with the cache (and concurrency,
    or the batch staging directory)."""
    options: dict[str, Any] = {"cache": cache_path(config)}
    if config.llm_concurrency is not None:
        options["max_concurrency"] = config.llm_concurrency
    if config.batch_staging_dir:
        options.update(staging_dir=config.batch_staging_dir, progress=config.progress)
    return make_llm_client(config.llm, **options)


def make_llm_client(spec: str, **options: Any) -> Any:
    """``make_client(spec, **options)``, a bad spec's error naming ``--llm``."""
    from gecko_jax.fret.llm import make_client

    try:
        return make_client(spec, **options)
    except ValueError as e:
        raise ValueError(f"--llm: {e}") from None


ClientFactory = Callable[[FretConfig], Any]


async def run_async(
    config: FretConfig,
    client_factory: ClientFactory = open_client,
    encoder: TextEncoder | None = None,
) -> dict[str, Any]:
    """:func:`run` inside a running event loop."""
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    prompts = Prompts(config.prompts)  # bad templates fail before any work
    corpus = read_corpus(config.corpus, config.corpus_options, config.progress)
    seconds["read_corpus"] = time.perf_counter() - start
    _check_sizes(config, corpus)
    plan = shards.ShardPlan.make(len(corpus.passages), config.num_shards, config.shard_size)
    store = shards.ShardStore(config.output_dir, plan, config.output_format, _workers(config))
    settings = _settings(config, corpus, plan, prompts)
    store.check_manifest(settings)
    store.remove_temporary()
    pending = store.pending()
    if plan.count < config.worker_count:
        log.warning(
            "--worker_count %d exceeds the %d shards: some workers have nothing to do",
            config.worker_count,
            plan.count,
        )
    model = (store.recorded_settings() or {}).get(
        "llm_model", config.llm
    )  # a worker with nothing to do
    if pending:
        client = client_factory(config)  # inside the event loop the client will run on
        model = getattr(client, "model_id", model)
        settings["llm_model"] = model
        try:
            store.check_manifest(settings)
            if config.ranking.ranking != "rc":  # fail before hours of embedding, not after
                await rank.probe_query_likelihood(
                    client, prompts, corpus.passages[0], config.ranking.ranking
                )
            if encoder is None:
                from gecko_jax.encoder import Encoder

                encoder = Encoder.load(config.embedder)
            clock = time.perf_counter()
            index = retrieve.PassageIndex(
                corpus_embeddings(encoder, corpus, config),
                config.retrieval.block_size,
                config.retrieval.backend,
                config.retrieval.approximate,
                config.retrieval.faiss_index,
            )
            seconds["embed_corpus"] = time.perf_counter() - clock
            ctx = _Context(config, corpus, prompts, client, encoder, index)
            for shard in tqdm(
                pending, desc="shards", unit="shard", disable=not config.progress, file=sys.stderr
            ):
                start_index, stop_index = plan.bounds(shard)
                rows, stats = await run_shard(ctx, corpus.passages[start_index:stop_index])
                clock = time.perf_counter()
                store.record_manifest(settings)
                store.write_rows(
                    shard,
                    functools.partial(output.write_rows, rows, file_format=config.output_format),
                )
                stats.seconds["write"] = time.perf_counter() - clock
                store.mark_done(shard, stats.as_dict())
        finally:
            await client.aclose()
    seconds["wall"] = time.perf_counter() - start
    return _write_summary(
        store,
        {
            "shards": plan.count,
            "shards_this_run": len(pending),
            "passages": len(corpus.passages),
            "truncated_passages": corpus.truncated,
            "skipped_empty_passages": corpus.skipped_empty,
            "seconds": seconds,
            "llm_model": model,
            "embedder": config.embedder,
            "output_dir": config.output_dir,
            "worker_index": config.worker_index,
            "worker_count": config.worker_count,
        },
    )


def _write_summary(store: shards.ShardStore, run: dict[str, Any]) -> dict[str, Any]:
    """Writes ``summary.json`` over every finished shard; returns the summary.

    With several workers, the finished shards are counted again after writing, and the
    summary rewritten if another worker finished one meanwhile: so whoever writes last
    has written the summary of every shard.
    """
    while True:
        markers = store.done_stats()
        summary = summarize(markers, run)
        store.write_json(shards.SUMMARY, summary)
        if store.workers.count == 1 or len(store.done()) == len(markers):
            return summary


def run(
    config: FretConfig,
    client_factory: ClientFactory = open_client,
    encoder: TextEncoder | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Runs (or resumes) FRet; returns the summary, also written to ``summary.json``.

    Args:
      config: the run's settings.
      client_factory: builds the ``LLMClient`` (called inside the event loop; the
        pipeline closes the client). Default: :func:`open_client`.
      encoder: the retrieval ``Encoder`` (default: ``Encoder.load(config.embedder)``).
      echo: print the summary to stderr.
    """
    summary = asyncio.run(run_async(config, client_factory, encoder))
    if echo:
        print(format_summary(summary), file=sys.stderr)
    return summary
