"""Scores a model on the demo's held-out split and, when present, on public test sets.

Held-out retrieval (nDCG@10 over the held-out passages, exact search, MTEB's protocol
for models without instructions: raw queries, ``title + " " + text`` documents) with two
kinds of queries: the queries FRet wrote for the held-out passages (each judged
relevant to the passage it was written for) and the documents' titles (relevant to
every passage of their document).
"""

from __future__ import annotations

import collections
import glob
import json
import os
from collections.abc import Sequence
from typing import Any

from gecko_jax.demo.corpus import Passage
from gecko_jax.eval.base import Evaluator
from gecko_jax.readers import BeirSplit

FRET_QUERIES = "held_out_fret_queries"
TITLE_QUERIES = "held_out_titles"
# (evaluator name, split) of gecko_jax.eval.evaluators, scored when the data is present.
PUBLIC_SETS = (("stsb", "test"), ("scifact", "test"), ("banking77", "test"))


def _split(passages: Sequence[Passage], queries: dict[str, str], qrels: dict) -> BeirSplit:
    return BeirSplit(
        doc_ids=[p.id for p in passages],
        doc_titles=[p.title for p in passages],
        doc_texts=[p.text for p in passages],
        query_ids=list(queries),
        query_texts=list(queries.values()),
        qrels=qrels,
    )


def fret_query_split(passages: Sequence[Passage], rows_dir: str) -> BeirSplit:
    """The held-out passages with FRet's queries for them (``fret-*.jsonl`` of ``rows_dir``)."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    for path in sorted(glob.glob(os.path.join(rows_dir, "fret-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                query_id = f"q{len(queries)}"
                queries[query_id] = row["query"]
                qrels[query_id] = {row["seed_id"]: 1.0}
    if not queries:
        raise ValueError(f"{rows_dir}: FRet wrote no rows for the held-out passages")
    return _split(passages, queries, qrels)


def title_query_split(passages: Sequence[Passage]) -> BeirSplit:
    """The held-out passages with their documents' titles as queries."""
    by_title: dict[str, list[str]] = collections.defaultdict(list)
    for p in passages:
        by_title[p.title].append(p.id)
    queries = {f"t{i}": title for i, title in enumerate(by_title)}
    qrels = {q: {pid: 1.0 for pid in by_title[title]} for q, title in queries.items()}
    return _split(passages, queries, qrels)


def build_evaluators(
    passages: Sequence[Passage], rows_dir: str, eval_data_dir: str | None, batch_size: int
) -> list[Evaluator]:
    """The held-out evaluators, then the public test sets when ``eval_data_dir`` is set."""
    from gecko_jax.eval.evaluators import build_evaluator
    from gecko_jax.eval.retrieval import RetrievalEvaluator

    evaluators: list[Evaluator] = [
        RetrievalEvaluator(
            fret_query_split(passages, rows_dir), FRET_QUERIES, batch_size=batch_size
        ),
        RetrievalEvaluator(title_query_split(passages), TITLE_QUERIES, batch_size=batch_size),
    ]
    if eval_data_dir:
        for name, split in PUBLIC_SETS:
            evaluators.append(build_evaluator(name, eval_data_dir, split, batch_size=batch_size))
    return evaluators


def evaluate(model: Any, evaluators: Sequence[Evaluator]) -> dict[str, dict[str, Any]]:
    """Each evaluator's main metric for ``model`` (an encoder, a model name or a
    gecko-train model directory)."""
    from tqdm.auto import tqdm

    from gecko_jax.encoder import Encoder

    encoder = Encoder.load(model) if isinstance(model, str) else model
    results = {}
    for evaluator in tqdm(evaluators, desc="evaluating", unit="set"):
        scores = evaluator.evaluate(encoder)[encoder.embedding_dim]
        results[evaluator.name] = {
            "metric": evaluator.main_metric,
            "score": scores[evaluator.main_metric],
        }
    return results
