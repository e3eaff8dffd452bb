"""``gecko-fret mine``: hard negatives for the labelled pairs of a BEIR-layout set.

    gecko-fret mine --data_dir $GECKO_EVAL_DATA/scifact --output_dir /tmp/scifact-mined \\
        --top_n 30 --negative_ranks 1,30 --relative_margin 0.05

writes FRet's row files (``fret-*.jsonl``, read by the seqio ``fret`` task) with the
labelled positives and mined hard negatives (:mod:`gecko_jax.fret.labelled`). Rerunning
the same command resumes; other settings in the same ``--output_dir`` are refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gecko_jax.cli import errors, flags

PROG = "gecko-fret mine"


def _defaults() -> Any:
    """``MiningConfig()``, imported when the parser is built."""
    from gecko_jax.fret.negatives import MiningConfig

    return MiningConfig()


def _ranks(text: str) -> tuple[int, int]:
    parts = text.split(",")
    try:
        low, high = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two comma-separated ranks FIRST,LAST, got {text!r}"
        ) from None
    return low, high


def _margin(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or none, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The subcommand's flags (defaults: :class:`~gecko_jax.fret.labelled.MiningConfig`)."""
    from gecko_jax.fret.negatives import POSITIVES, SAMPLINGS

    defaults = _defaults()
    p = flags.command_parser(
        PROG,
        "FRet's second step for labelled sets: for each (query, relevant document) pair of a "
        "BEIR-layout split, retrieve candidates with an embedder, drop likely false negatives, "
        "optionally rescore with the LLM (QL + RC + RRF), and write (task, query, positive, "
        "hard negatives) rows in FRet's format.",
    )
    p.add_argument("--data_dir", required=True, help="corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    p.add_argument("--output_dir", required=True, help="rows, markers, summary (local or gs://)")
    p.add_argument("--split", default="train", help="the qrels split to mine")
    p.add_argument("--embedder", default="all-MiniLM-L6-v2", help="Encoder name or path")
    p.add_argument(
        "--top_n", type=flags.int_at_least(2), default=defaults.top_n, help="candidates per query"
    )
    p.add_argument(
        "--num_negatives",
        type=flags.int_at_least(1),
        default=defaults.num_negatives,
        help="hard negatives per row",
    )
    p.add_argument(
        "--negative_ranks",
        type=_ranks,
        default=defaults.negative_ranks,
        help="FIRST,LAST: 1-based inclusive ranks among the candidates (positives removed) "
        "the negatives come from",
    )
    p.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=defaults.sampling,
        help="top: the best-ranked in the range; random: uniform in the range (seeded)",
    )
    p.add_argument(
        "--relative_margin",
        type=_margin,
        default=defaults.relative_margin,
        help="drop a candidate scoring above (1 - margin) x the positive's score; none: no filter",
    )
    p.add_argument(
        "--positive",
        choices=POSITIVES,
        default=defaults.positive,
        help="labels: each labelled relevant document; top1: the top candidate (ablation)",
    )
    p.add_argument("--task", default=defaults.task, help="the task description of every row")
    p.add_argument(
        "--llm",
        default=None,
        help="rescore the candidates with this LLM (QL + RC + RRF), a gecko-fret --llm spec",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of random sampling")
    p.add_argument(
        "--shard_size",
        type=flags.int_at_least(1),
        default=defaults.shard_size,
        help="queries per shard (the resumable unit)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def _mine(args: argparse.Namespace) -> None:
    from gecko_jax.fret.labelled import MiningConfig, format_summary, mine_labelled  # heavy

    config = MiningConfig(
        top_n=args.top_n,
        num_negatives=args.num_negatives,
        negative_ranks=args.negative_ranks,
        sampling=args.sampling,
        relative_margin=args.relative_margin,
        positive=args.positive,
        task=args.task,
        seed=args.seed,
        shard_size=args.shard_size,
    )
    summary = mine_labelled(
        args.data_dir,
        args.output_dir,
        embedder=args.embedder,
        split=args.split,
        config=config,
        llm=args.llm,
        progress=not args.no_progress,
    )
    print(format_summary(summary), file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    """Runs ``gecko-fret mine`` with ``argv`` (the words after ``mine``); the exit status."""
    from gecko_jax.fret.llm.base import LLMError

    return errors.run_command(
        build_parser(),
        _mine,
        argv,
        user_errors=(LLMError,),
        on_interrupt=lambda args: (
            f"finished shards are kept in {args.output_dir}; rerun the same command to resume"
        ),
    )
