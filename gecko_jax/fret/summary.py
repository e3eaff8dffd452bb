"""Per-shard statistics and the run summary (``summary.json``).

Each done marker holds its shard's :class:`ShardStats`; the summary adds them up over
every finished shard (of this run and of earlier, interrupted ones, and of the other
workers sharing the output directory), so a resumed run, or the worker that finishes
last, reports the whole output directory.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

USAGE_FIELDS = ("requests", "cache_hits", "prompt_tokens", "output_tokens", "cost_usd", "retries")
SHARD_STAGES = ("generate", "mine", "rank", "write")


def usage_dict(usage: Any) -> dict[str, float]:
    """An ``llm.base.Usage`` (or any object with its fields) as a dict."""
    return {name: getattr(usage, name, 0) for name in USAGE_FIELDS}


def usage_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` per usage field (cost rounded to 1e-9 USD)."""
    delta = {name: after[name] - before[name] for name in USAGE_FIELDS}
    delta["cost_usd"] = round(delta["cost_usd"], 9)
    return delta


@dataclasses.dataclass
class ShardStats:
    """What one shard did (stored in its done marker).

    Attributes:
      seeds: seed passages in the shard.
      rows: rows written.
      gave_up: seeds whose every generation attempt was rejected.
      positive_changed: rows whose positive is not the seed passage.
      attempts: generation calls made (accepted + rejected).
      rejects: rejected generations by reason.
      failures: LLM scores that could not be obtained, by kind.
      task_types: seeds per sampled task type.
      usage: the LLM usage of the shard.
      seconds: wall time per stage.
      worker: the index of the worker that ran the shard.
    """

    seeds: int = 0
    rows: int = 0
    gave_up: int = 0
    positive_changed: int = 0
    attempts: int = 0
    rejects: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    task_types: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    usage: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    worker: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (counters as plain dicts)."""
        return {
            f.name: dict(v) if isinstance(v, collections.Counter) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }


def _sum(markers: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    total: collections.Counter[str] = collections.Counter()
    for marker in markers:
        total.update(marker.get(key, {}))
    return dict(sorted(total.items()))


def _per_worker(markers: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Shards, seeds and rows per worker index (markers without one: worker 0)."""
    counts: dict[int, dict[str, int]] = {}
    for marker in markers:
        worker = counts.setdefault(
            int(marker.get("worker", 0)), {"shards": 0, "seeds": 0, "rows": 0}
        )
        worker["shards"] += 1
        worker["seeds"] += marker["seeds"]
        worker["rows"] += marker["rows"]
    return {str(index): counts[index] for index in sorted(counts)}


def summarize(markers: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The run summary from the done markers and this run's facts.

    Args:
      markers: the finished shards' markers (:meth:`ShardStats.as_dict` plus ``shard``).
      run: facts of this run: ``shards``, ``passages``, ``truncated_passages``,
        ``skipped_empty_passages``, ``shards_this_run``, ``seconds`` (its own stages
        and ``wall``), ``llm_model``, ``embedder``, ``output_dir``, and optionally
        ``worker_index`` and ``worker_count`` (default 0 of 1).

    Counts, LLM usage and the ``generate``/``mine``/``rank``/``write`` seconds are
    totals over every finished shard; ``read_corpus``, ``embed_corpus`` and ``wall``
    are this run's (this worker's). ``workers`` counts shards, seeds and rows per worker.
    """
    rows = sum(m["rows"] for m in markers)
    changed = sum(m["positive_changed"] for m in markers)
    usage = {name: sum(m["usage"].get(name, 0) for m in markers) for name in USAGE_FIELDS}
    usage["cost_usd"] = round(usage["cost_usd"], 6)
    seconds = {
        stage: round(sum(m["seconds"].get(stage, 0.0) for m in markers), 3)
        for stage in SHARD_STAGES
    }
    seconds.update({k: round(v, 3) for k, v in run.get("seconds", {}).items()})
    return {
        "rows": rows,
        "shards": {
            "total": run["shards"],
            "done": len(markers),
            "done_this_run": run["shards_this_run"],
        },
        "passages": run["passages"],
        "truncated_passages": run["truncated_passages"],
        "skipped_empty_passages": run["skipped_empty_passages"],
        "seeds": sum(m["seeds"] for m in markers),
        "seeds_given_up": sum(m["gave_up"] for m in markers),
        "generation_attempts": sum(m["attempts"] for m in markers),
        "positive_changed": changed,
        "positive_changed_share": round(changed / rows, 4) if rows else 0.0,
        "rejects": _sum(markers, "rejects"),
        "score_failures": _sum(markers, "failures"),
        "task_types": _sum(markers, "task_types"),
        "llm": {"model": run["llm_model"], **usage},
        "embedder": run["embedder"],
        "seconds": seconds,
        "output_dir": run["output_dir"],
        "workers": {
            "count": run.get("worker_count", 1),
            "written_by": run.get("worker_index", 0),
            "done": _per_worker(markers),
        },
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few human-readable lines."""
    llm = summary["llm"]
    lines = [
        f"FRet: {summary['rows']} rows from {summary['seeds']} seed passages "
        f"({summary['shards']['done']}/{summary['shards']['total']} shards) "
        f"in {summary['output_dir']}",
        f"  positives changed: {summary['positive_changed']} "
        f"({summary['positive_changed_share']:.1%}); "
        f"seeds given up: {summary['seeds_given_up']}; rejects: {summary['rejects'] or 'none'}",
        f"  LLM {llm['model']}: {llm['requests']} requests, {llm['cache_hits']} cache hits, "
        f"{llm['prompt_tokens']} prompt + {llm['output_tokens']} output tokens, "
        f"${llm['cost_usd']:.4f}",
        "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()),
    ]
    truncated = summary.get("truncated_passages") or 0
    if truncated:
        lines.append(
            f"  passages truncated to the corpus budget (max_words, max_chars): {truncated}"
        )
    workers = summary["workers"]
    if workers["count"] > 1:
        lines.append(
            f"  written by worker {workers['written_by']} of {workers['count']}; rows by worker: "
            + ", ".join(f"{index}: {done['rows']}" for index, done in workers["done"].items())
        )
    lines.append(f"  summary: {summary['output_dir'].rstrip('/')}/summary.json")
    return "\n".join(lines)
