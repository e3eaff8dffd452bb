"""Input pipeline alone: examples/s of a 1M-row JSONL task, one dataset per batch.

Writes (once, cached under bench/results/) a JSONL of ``--rows`` synthetic rows in the
unified format (task, query of ~12 words, positive of ~40 words with a title, one hard
negative), registers it with ``tasks.register_pair_corpus``, and times the whole
input of ``gecko-train``: read + parse + format + tokenize (all-MiniLM-L6-v2's
WordPiece) + pad to 64/256/256 + per-task batching + duplicate removal, through
``pipeline.mixture_input``. Reported: median examples/s over ``--repeats`` timed
windows of ``--batches`` batches after a warm-up.

Target (issue 4): faster than the trainer consumes examples on a v4-8-sized step.
Assumption: Gecko-1B (1.2B-parameter encoder) on a v4-8 (4 chips, 275 bf16 TFLOP/s
each) at 40% utilisation, 6 * params FLOPs per token, 64 + 256 + 256 tokens per
example -> about 110 examples/s; all-MiniLM-L6-v2 (22M) on the same slice -> about
5,800 examples/s. The bench prints both next to the measurement.

    python bench/input_pipeline.py [--rows 1000000] [--batch_size 1024] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

WORDS = (
    "protein cell tumor climate river market energy network signal model data growth "
    "theory patient policy method result sample system value region enzyme gene"
).split()


def consumption_estimate(
    params: float,
    tokens: int = 64 + 256 + 256,
    chips: int = 4,
    tflops: float = 275.0,
    utilisation: float = 0.4,
) -> float:
    """Examples/s a v4-slice trainer consumes: chips * peak * util / (6 * params * tokens)."""
    return chips * tflops * 1e12 * utilisation / (6 * params * tokens)


def write_rows(path: str, rows: int) -> None:
    """Writes ``rows`` distinct synthetic unified-format rows (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            picks = words[rng.integers(0, len(words), size=(count, 92))]
            for i in range(count):
                n = start + i
                f.write(
                    json.dumps(
                        {
                            "task": "question answering",
                            "query": f"q{n} " + " ".join(picks[i, :12]),
                            "positive": f"p{n} " + " ".join(picks[i, 12:52]),
                            "positive_title": f"doc {n}",
                            "negative": f"n{n} " + " ".join(picks[i, 52:92]),
                        }
                    )
                    + "\n"
                )
    os.replace(path + ".tmp", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=20, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="input_pipeline")
    args = parser.parse_args()

    C.use_repo()
    from gecko_jax.data import pipeline, tasks
    from gecko_jax.pretrained import load_pretrained

    os.makedirs(C.RESULTS_DIR, exist_ok=True)
    path = os.path.join(C.RESULTS_DIR, f"synthetic_{args.rows}.jsonl")
    if not os.path.exists(path):
        start = time.perf_counter()
        write_rows(path, args.rows)
        print(
            f"wrote {args.rows:,} rows to {path} in {time.perf_counter() - start:.0f} s", flush=True
        )
    tasks.register_pair_corpus("bench_synthetic", path, task="question answering")
    vocabulary = load_pretrained("all-MiniLM-L6-v2").vocabulary
    lengths = {"query": 64, "positive": 256, "negative": 256, "num_negatives": 1}
    batches = pipeline.mixture_input("bench_synthetic", vocabulary, lengths, args.batch_size)
    start = time.perf_counter()
    next(batches)
    print(f"first batch after {time.perf_counter() - start:.1f} s", flush=True)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = next(batches)
        rates.append(args.batches * args.batch_size / (time.perf_counter() - start))
        print(f"  {rates[-1]:,.0f} examples/s", flush=True)
    assert batch["negative_tokens"].shape == (args.batch_size, 1, 256)
    median = statistics.median(rates)
    need_1b, need_minilm = consumption_estimate(1.2e9), consumption_estimate(22.7e6)
    print(
        f"\ninput pipeline, {args.rows:,}-row JSONL, lengths 64/256/256, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs: median {median:,.0f} examples/s over "
        f"{args.repeats} x {args.batches} batches"
    )
    print(
        f"  trainer on a v4-8 (assumed, see docstring): Gecko-1B ~{need_1b:,.0f} examples/s, "
        f"MiniLM ~{need_minilm:,.0f} examples/s"
    )
    print(
        f"  >= 20k examples/s here: {'MET' if median >= 20_000 else 'NOT MET'}; faster than "
        f"Gecko-1B: {'yes' if median > need_1b else 'no'}; "
        f"faster than MiniLM: {'yes' if median > need_minilm else 'no'}"
    )
    out = C.write_results(
        args.output,
        {
            **_provenance.record(),
            "median_examples_per_s": median,
            "rates": rates,
            "needed": {"gecko_1b": need_1b, "minilm": need_minilm},
            "settings": vars(args),
        },
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
