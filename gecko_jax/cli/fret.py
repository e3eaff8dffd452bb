"""``gecko-fret``: distil (task, query, positive, hard negative) rows from a corpus.

    gecko-fret --corpus $GECKO_EVAL_DATA/scifact/corpus.jsonl --output_dir /tmp/fret \\
        --llm vertex:gemini-2.0-flash --ranking rc --num_shards 8 --max_passages 2000

At corpus scale, ``--llm vertex-batch:gemini-2.0-flash --batch_staging_dir gs://b/p``
sends each stage of a shard as one Vertex batch prediction job, and
``--worker_index I --worker_count N`` (one process per machine, one ``gs://``
``--output_dir``, a local ``--cache`` each) splits the shards among N workers.

``gecko-fret mine --data_dir D --output_dir O`` mines hard negatives for the labelled
pairs of a BEIR-layout set instead (:mod:`gecko_jax.cli.fret_mine`).

Rerunning the same command resumes: finished shards are kept, cached LLM calls are not
paid again. Every field of the config dataclasses (:mod:`gecko_jax.fret.config`) can
be set with ``--gin_file`` / ``--gin.Class.field=value``; the flags below win over gin.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Sequence
from typing import Any

import gin

from gecko_jax import gin_utils
from gecko_jax.cli import errors, flags, startup
from gecko_jax.fret import config as cfg

MINE = "mine"  # the first word of `gecko-fret mine ...`


def _negative(text: str) -> str:
    try:
        cfg.parse_negative(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            str(e).replace("RankingConfig.negative", "expected")
        ) from None
    return text


def parse_task_types(text: str) -> tuple[cfg.TaskType, ...]:
    """``"question answering=2,my task"`` as task types.

    Known names keep their built-in guidance; other names are user-defined task types
    with generic guidance. ``=W`` sets a sampling weight (default 1).

    Raises:
      argparse.ArgumentTypeError: an empty list, a bad weight or a repeated name.
    """
    known = {t.name: t for t in cfg.DEFAULT_TASK_TYPES}
    types = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, weight = item.partition("=")
        name = name.strip()
        try:
            value = float(weight) if weight else 1.0
            task_type = (
                dataclasses.replace(known[name], weight=value)
                if name in known
                else cfg.TaskType(name, weight=value)
            )
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{item!r}: {e}") from None
        types.append(task_type)
    names = [t.name for t in types]
    if not types or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct comma-separated task types, got {text!r}"
        )
    return tuple(types)


def _default(config_class: type, field: str) -> Any:
    """A config dataclass field's default: what a flag left out falls back to (gin aside)."""
    return next(f for f in dataclasses.fields(config_class) if f.name == field).default


def _client_concurrency() -> int:
    from gecko_jax.fret.llm.client import CachingClient

    return inspect.signature(CachingClient).parameters["max_concurrency"].default


def build_parser() -> argparse.ArgumentParser:
    """The command's flags.

    Flags that mirror a config field default to None, so that gin's bindings apply
    unless the flag is given; their help shows the config's own default.
    """
    from gecko_jax.fret.shards import DEFAULT_SHARD_SIZE

    p = flags.command_parser(
        "gecko-fret",
        "FRet (Gecko paper, section 3): an LLM writes a task and a query for each "
        "seed passage, neighbours are mined with an embedder and re-ranked by the LLM, and "
        "(task, query, positive, hard negative) rows are written in shards. "
        "For a labelled set (BEIR layout), `gecko-fret mine --help`: its positives with mined "
        "hard negatives.",
    )
    p.add_argument(
        "--corpus", required=True, help="JSONL corpus (_id/id, title, text): path, glob or list"
    )
    p.add_argument("--output_dir", required=True, help="rows, markers, summary (local or gs://)")
    p.add_argument(
        "--llm",
        required=True,
        help="LLM client spec, e.g. vertex:gemini-2.0-flash, "
        "vertex-batch:gemini-2.0-flash, openai:http://host:8000/v1#model, loopback",
    )
    p.add_argument(
        "--embedder",
        default=None,
        help=f"Encoder name or path (default: {_default(cfg.FretConfig, 'embedder')})",
    )
    shard = p.add_mutually_exclusive_group()
    shard.add_argument(
        "--num_shards", type=flags.int_at_least(), default=None, help="number of shards"
    )
    shard.add_argument(
        "--shard_size",
        type=flags.int_at_least(),
        default=None,
        help=f"seed passages per shard (default: {DEFAULT_SHARD_SIZE})",
    )
    p.add_argument(
        "--top_n",
        type=flags.int_at_least(2),
        default=None,
        help=f"neighbours scored per query (default: {_default(cfg.RetrievalConfig, 'top_n')})",
    )
    p.add_argument(
        "--ranking",
        choices=cfg.RANKINGS,
        default=None,
        help="how the LLM's scores rank the neighbours: fused, query likelihood or relevance "
        f"(default: {_default(cfg.RankingConfig, 'ranking')})",
    )
    p.add_argument(
        "--negative",
        type=_negative,
        default=None,
        help=f"p_N, random or rank:K (default: {_default(cfg.RankingConfig, 'negative')})",
    )
    p.add_argument(
        "--task_types",
        type=parse_task_types,
        default=None,
        help="comma-separated task types, each optionally =weight (default: "
        f"{flags.format_default([t.name for t in cfg.DEFAULT_TASK_TYPES])})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed of sampling and random negatives (default: {_default(cfg.FretConfig, 'seed')})",
    )
    p.add_argument(
        "--max_passages",
        type=flags.int_at_least(),
        default=None,
        help="read at most this many passages",
    )
    p.add_argument(
        "--max_words",
        type=flags.int_at_least(),
        default=None,
        help=f"truncate passages to this (default: {_default(cfg.CorpusConfig, 'max_words')})",
    )
    p.add_argument(
        "--cache", default=None, help="LLM cache path (default: a cache file in OUTPUT_DIR)"
    )
    p.add_argument(
        "--llm_concurrency",
        type=flags.int_at_least(),
        default=None,
        help=f"LLM requests in flight at once (default: the client's, {_client_concurrency()})",
    )
    p.add_argument(
        "--batch_staging_dir",
        default=None,
        help="for --llm vertex-batch:MODEL: the batch jobs' inputs and outputs (gs://bucket/path)",
    )
    p.add_argument(
        "--worker_index",
        type=flags.int_at_least(0),
        default=None,
        help="this worker's index, 0..N-1: runs the shards s with s %% N == index "
        f"(default: {_default(cfg.FretConfig, 'worker_index')})",
    )
    p.add_argument(
        "--worker_count",
        type=flags.int_at_least(),
        default=None,
        help="workers sharing --output_dir, each with its own local --cache "
        f"(default: {_default(cfg.FretConfig, 'worker_count')})",
    )
    p.add_argument(
        "--output_format",
        choices=cfg.OUTPUT_FORMATS,
        default=None,
        help=f"file format of the rows (default: {_default(cfg.FretConfig, 'output_format')})",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    gin_utils.add_gin_flags(p)
    return p


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def config_from_args(args: argparse.Namespace) -> cfg.FretConfig:
    """The run's config: gin's bindings, overridden by the flags that were given."""
    return cfg.FretConfig(
        **_given(
            corpus=args.corpus,
            output_dir=args.output_dir,
            llm=args.llm,
            embedder=args.embedder,
            num_shards=args.num_shards,
            shard_size=args.shard_size,
            output_format=args.output_format,
            seed=args.seed,
            cache=args.cache,
            llm_concurrency=args.llm_concurrency,
            batch_staging_dir=args.batch_staging_dir,
            worker_index=args.worker_index,
            worker_count=args.worker_count,
            progress=False if args.no_progress else None,
            corpus_options=cfg.CorpusConfig(
                **_given(max_passages=args.max_passages, max_words=args.max_words)
            ),
            generation=cfg.GenerationConfig(**_given(task_types=args.task_types)),
            retrieval=cfg.RetrievalConfig(**_given(top_n=args.top_n)),
            ranking=cfg.RankingConfig(**_given(ranking=args.ranking, negative=args.negative)),
        )
    )


def _fret(args: argparse.Namespace) -> None:
    from gecko_jax.fret import pipeline  # heavy imports once the flags are known good

    gin.clear_config()  # the command owns the process's gin config
    gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
    pipeline.run(config_from_args(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command (``gecko-fret mine ...``: :mod:`gecko_jax.cli.fret_mine`); returns
    the exit status.

    With ``argv`` None (the console script) the process is prepared first
    (:func:`gecko_jax.cli.startup.prepare_process`): huge-page malloc makes embedding the
    corpus faster.
    """
    if argv is None:
        startup.prepare_process()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [MINE]:
        from gecko_jax.cli import fret_mine

        return fret_mine.main(args[1:])
    from gecko_jax.fret.llm.base import LLMError

    return errors.run_command(
        build_parser(),
        _fret,
        gin_utils.rewrite_gin_args(args),
        user_errors=(LLMError, SyntaxError),  # the LLM's errors name the service and model
        on_interrupt=lambda args: (
            f"finished shards are kept in {args.output_dir}; rerun the same command to resume"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
