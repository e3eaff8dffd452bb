"""Fine-tune all-MiniLM-L6-v2 on STS-B train pairs with ``gecko-train``; STS-B Spearman
before and after.

1. STS-B train pairs scoring >= 4 become training rows in both directions
   (``gecko_jax.data.sts.write_positive_pairs_jsonl``);
2. the real entry point trains from the packaged weights:
   ``python -m gecko_jax.cli.train --gin_file=local/minilm_stsb.gin --gin.MODEL_DIR=...
   --gin.TRAIN_STEPS=... --gin.TRAIN_FILE=...`` (batch 32, lengths 48, lr 1e-5 with 10
   warm-up steps then linear decay, in-batch + same-tower negatives, dropout 0.1);
3. STS-B Spearman (cosine, x100) of the original model (``Encoder.load``) and of the
   last checkpoint's parameters (``checkpoints.restore_params``), each evaluated in its
   own process. Nothing is selected on any split: the last step is the result. The
   dev split is the figure to judge by; the test split is printed as a report only.

    python bench/stsb_finetune.py [--steps 300] [--batch_size 32] [--length 48]
        [--model_dir DIR]   # default: a temporary directory, removed afterwards
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

SPLITS = ("dev", "test")  # dev: the judged figure; test: reported only, never used for choices
TOLERANCE = 0.5  # "holds": dev Spearman at most this much below the original


def spearman_x100(encoder: object, data_dir: str, split: str) -> float:
    """STS-B Spearman correlation of cosine similarity with the gold scores, x100."""
    import numpy as np
    from scipy.stats import spearmanr

    from gecko_jax.readers import read_sts_benchmark

    pairs = read_sts_benchmark(os.path.join(data_dir, "stsb", f"sts-{split}.csv"))
    left = encoder.encode([p.sentence1 for p in pairs], show_progress=False)  # type: ignore[attr-defined]
    right = encoder.encode([p.sentence2 for p in pairs], show_progress=False)  # type: ignore[attr-defined]
    cosine = np.sum(left * right, axis=1)  # embeddings are L2-normalised
    return 100.0 * float(spearmanr(cosine, [p.score for p in pairs]).statistic)


def eval_worker(args: argparse.Namespace) -> None:
    """Evaluates the original model, or the checkpoint in ``--checkpoint``; emits JSON."""
    C.use_repo()
    import jax

    from gecko_jax import Encoder
    from gecko_jax.checkpoints import restore_params
    from gecko_jax.pretrained import load_pretrained

    if args.checkpoint:
        pretrained = load_pretrained("all-MiniLM-L6-v2")
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), pretrained.params
        )
        params = restore_params(args.checkpoint, abstract)
        encoder = Encoder(pretrained.model, params, pretrained.vocabulary, pretrained.max_length)
    else:
        encoder = Encoder.load("all-MiniLM-L6-v2")
    C.emit({split: spearman_x100(encoder, args.data_dir, split) for split in SPLITS})


def evaluate(args: argparse.Namespace, checkpoint: str | None) -> dict[str, float]:
    """Spearman per split of the original model (``checkpoint=None``) or a trained one."""
    worker_args = ["--worker", "--data_dir", args.data_dir]
    if checkpoint:
        worker_args += ["--checkpoint", checkpoint]
    result = C.run_worker(__file__, worker_args)
    if "failed" in result:
        raise SystemExit(f"evaluation failed: {result['failed']}\n{result['stderr_tail']}")
    return result


def train(args: argparse.Namespace, model_dir: str, extra_gin: tuple[str, ...] = ()) -> float:
    """Writes the training pairs and runs ``gecko-train`` (plus ``extra_gin`` flags);
    returns its wall time."""
    C.use_repo()
    from gecko_jax.data.sts import write_positive_pairs_jsonl
    from gecko_jax.readers import read_sts_benchmark

    train_file = os.path.join(model_dir, "stsb_train_pairs.jsonl")
    rows = write_positive_pairs_jsonl(
        read_sts_benchmark(os.path.join(args.data_dir, "stsb", "sts-train.csv")),
        train_file,
        min_score=4.0,
    )
    print(
        f"{rows} training rows (STS-B train pairs with score >= 4, both directions) -> {train_file}"
    )
    command = [
        sys.executable,
        "-m",
        "gecko_jax.cli.train",
        "--gin_file=local/minilm_stsb.gin",
        f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.TRAIN_STEPS={args.steps}",
        f"--gin.TRAIN_FILE='{train_file}'",
        f"--gin.BATCH_SIZE={args.batch_size}",
        f"--gin.train.query_length={args.length}",
        f"--gin.train.document_length={args.length}",
        *extra_gin,
    ]
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=C.REPO, env=C.child_env(), check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--length", type=int, default=48, help="query and document token length")
    parser.add_argument(
        "--model_dir", help="kept afterwards; default: a temporary directory, removed"
    )
    parser.add_argument("--data_dir", default=C.DEFAULT_DATA)
    parser.add_argument("--output", default="stsb_finetune")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        eval_worker(args)
        return
    started = time.perf_counter()
    model_dir = os.path.abspath(args.model_dir or tempfile.mkdtemp(prefix="stsb_finetune_"))
    os.makedirs(model_dir, exist_ok=True)
    try:
        before = evaluate(args, None)
        print(f"original all-MiniLM-L6-v2: dev {before['dev']:.2f}", flush=True)
        train_s = train(args, model_dir)
        after = evaluate(args, os.path.join(model_dir, "checkpoints"))
    finally:
        if not args.model_dir:
            shutil.rmtree(model_dir, ignore_errors=True)
    delta = after["dev"] - before["dev"]
    verdict = "improves" if delta > 0 else ("holds" if delta >= -TOLERANCE else "drops")
    print(
        "\nSTS-B Spearman (cosine) x100, all-MiniLM-L6-v2 fine-tuned with gecko-train for "
        f"{args.steps} steps, batch {args.batch_size}, lengths {args.length} "
        f"({train_s:.0f} s in gecko-train, "
        f"{time.perf_counter() - started:.0f} s in all):"
    )
    print(f"  {'':>22} {'original':>9} {'fine-tuned':>10} {'change':>7}")
    print(f"  {'dev':>22} {before['dev']:9.2f} {after['dev']:10.2f} {delta:+7.2f}")
    print(
        f"  {'test (report only)':>22} {before['test']:9.2f} {after['test']:10.2f} "
        f"{after['test'] - before['test']:+7.2f}"
    )
    print(
        f"Target: dev Spearman improves or holds (within {TOLERANCE}): {verdict} -> "
        f"{'MET' if verdict != 'drops' else 'NOT MET'}"
    )
    path = C.write_results(
        args.output,
        {
            **_provenance.record(),
            "before": before,
            "after": after,
            "dev_change": delta,
            "verdict": verdict,
            "train_s": train_s,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "length": args.length,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
