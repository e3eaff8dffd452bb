"""The summary of a mining run over a labelled set (``summary.json``) and its printed lines.

Each shard's done marker holds its counts (queries, rows, what was dropped, LLM usage,
seconds); the summary adds them up over every finished shard, so a resumed run reports
the whole output directory, and adds what reading the set dropped (this run's reading:
the files are read again on every run).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from gecko_jax.fret.labelled_data import QREL_DROPS
from gecko_jax.fret.summary import USAGE_FIELDS

STAGES = ("mine", "rank", "write")
MINING_DROPS = ("no_negative_left", "too_few_negatives", "false_negative_filtered")
DROPS = QREL_DROPS + MINING_DROPS
# What each count of ``dropped`` counts, for the printed summary.
EXPLANATIONS = {
    "unknown_query_ids": "qrels rows naming a query not in queries.jsonl",
    "unknown_doc_ids": "qrels rows naming a document not in corpus.jsonl",
    "not_relevant_qrels": "qrels rows with a score <= 0 (not positives)",
    "duplicate_qrels": "repeated (query, document) qrels rows",
    "empty_query_texts": "qrels rows whose query has an empty text",
    "empty_positive_texts": "qrels rows whose document has an empty text",
    "no_negative_left": "rows without a negative left in the rank range",
    "too_few_negatives": "rows with fewer negatives left than --num_negatives",
    "false_negative_filtered": "candidates in the rank range dropped as likely false "
    "negatives (scoring within the relative margin of the positive)",
}


def summarize(markers: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The summary from the finished shards' markers and this run's facts.

    Args:
      markers: the done markers (``queries``, ``rows``, ``positive_labelled``,
        ``dropped``, ``failures``, ``usage``, ``seconds``).
      run: ``shards``, ``shards_this_run``, ``documents``, ``pairs``, ``split``,
        ``qrels_file``, ``qrels_rows``, ``qrels_dropped``, ``positive``,
        ``relative_margin``, ``llm_model`` (None without an LLM), ``embedder``,
        ``output_dir`` and ``seconds`` (this run's stages).

    ``dropped`` counts qrels rows (reading), rows (``no_negative_left``,
    ``too_few_negatives``) and candidates (``false_negative_filtered``); every reason
    is present, zeros included.
    """
    dropped: collections.Counter[str] = collections.Counter(run["qrels_dropped"])
    for marker in markers:
        dropped.update(marker["dropped"])
    failures: collections.Counter[str] = collections.Counter()
    for marker in markers:
        failures.update(marker["failures"])
    seconds = {
        stage: round(sum(m["seconds"].get(stage, 0.0) for m in markers), 3) for stage in STAGES
    }
    seconds.update({k: round(v, 3) for k, v in run["seconds"].items()})
    llm = None
    if run["llm_model"] is not None:
        usage = {name: sum(m["usage"].get(name, 0) for m in markers) for name in USAGE_FIELDS}
        usage["cost_usd"] = round(usage["cost_usd"], 6)
        llm = {"model": run["llm_model"], **usage}
    return {
        "rows": sum(m["rows"] for m in markers),
        "queries": sum(m["queries"] for m in markers),
        "pairs": run["pairs"],
        "shards": {
            "total": run["shards"],
            "done": len(markers),
            "done_this_run": run["shards_this_run"],
        },
        "documents": run["documents"],
        "split": run["split"],
        "qrels": {"file": run["qrels_file"], "rows": run["qrels_rows"]},
        "dropped": {reason: dropped[reason] for reason in DROPS},
        "positive": run["positive"],
        "positive_labelled": sum(m["positive_labelled"] for m in markers),
        "relative_margin": run["relative_margin"],
        "llm": llm,
        "score_failures": dict(sorted(failures.items())),
        "embedder": run["embedder"],
        "seconds": seconds,
        "output_dir": run["output_dir"],
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few human-readable lines, one per reason something was dropped."""
    shards = summary["shards"]
    lines = [
        f"FRet mine: {summary['rows']} rows for {summary['queries']} queries of "
        f"{summary['qrels']['file']} ({shards['done']}/{shards['total']} shards) "
        f"in {summary['output_dir']}",
        f"  {summary['pairs']} labelled pairs of {summary['qrels']['rows']} qrels rows; "
        f"{summary['documents']} documents; positive: {summary['positive']}"
        + (
            f" (labelled for {summary['positive_labelled']} rows)"
            if summary["positive"] == "top1"
            else ""
        ),
    ]
    dropped = [(reason, count) for reason, count in summary["dropped"].items() if count]
    if not dropped:
        lines.append("  dropped: nothing")
    else:
        lines.append("  dropped:")
        lines += [f"    {count} {reason}: {EXPLANATIONS[reason]}" for reason, count in dropped]
    llm = summary["llm"]
    if llm:
        lines.append(
            f"  LLM {llm['model']} (QL + RC, RRF): {llm['requests']} requests, "
            f"{llm['cache_hits']} cache hits, ${llm['cost_usd']:.4f}; "
            f"scores it could not give: {summary['score_failures'] or 'none'}"
        )
    lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()))
    lines.append(f"  summary: {summary['output_dir'].rstrip('/')}/summary.json")
    return "\n".join(lines)
