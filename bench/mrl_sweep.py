"""Matryoshka sweep: STS-B Spearman against embedding size, for all-MiniLM-L6-v2 as
released and after ``gecko-train`` with the MRL loss.

1. ``gecko-train`` fine-tunes all-MiniLM-L6-v2 on STS-B train pairs (score >= 4), as
   ``bench/stsb_finetune.py`` does, with ``ContrastiveLossConfig.mrl_dims`` set to the
   swept sizes (each prefix gets the same in-batch loss, weights 1);
2. ``gecko-eval local --tasks stsb --dims ...`` evaluates the released model and the
   trained model directory on STS-B dev (the judged split) and test (MTEB's split,
   reported), writing ``report.{json,md,png}`` per model and split under ``--output_dir``.

Target (issue): the trained model's 256-d score within 1 point of its full (384-d) score.

    python bench/mrl_sweep.py [--steps 300] [--dims 32,64,128,256,384]
        [--output_dir bench/results/mrl_sweep] [--model_dir DIR] [--output NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance
import stsb_finetune

SPLITS = ("dev", "test")


def sweep(model: str, split: str, dims: str, output_dir: str, data_dir: str) -> dict[int, float]:
    """Runs ``gecko-eval local`` on STS-B; returns dimension -> Spearman."""
    command = [
        sys.executable,
        "-m",
        "gecko_jax.cli.eval",
        "local",
        "--model",
        model,
        "--tasks",
        "stsb",
        "--split",
        split,
        "--dims",
        dims,
        "--data_dir",
        data_dir,
        "--output_dir",
        output_dir,
        "--overwrite",
    ]
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=C.REPO, env=C.child_env(), check=True)
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    (task,) = report["tasks"].values()
    return {int(dim): metrics["spearman"] for dim, metrics in task["scores"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--dims", default="32,64,128,256,384")
    parser.add_argument(
        "--model_dir", help="kept afterwards; default: a temporary directory, removed"
    )
    parser.add_argument("--data_dir", default=C.DEFAULT_DATA)
    parser.add_argument("--output", default="mrl_sweep", help="bench/results/<NAME>.json")
    parser.add_argument(
        "--output_dir", default=os.path.join(C.REPO, "bench", "results", "mrl_sweep")
    )
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    model_dir = os.path.abspath(args.model_dir or tempfile.mkdtemp(prefix="mrl_sweep_"))
    os.makedirs(model_dir, exist_ok=True)
    results: dict[str, dict[str, dict[int, float]]] = {}
    try:
        mrl = f"--gin.gecko_jax.ContrastiveLossConfig.mrl_dims=[{args.dims}]"
        train_s = stsb_finetune.train(args, model_dir, (mrl,))
        for label, model in (("released", "all-MiniLM-L6-v2"), ("mrl", model_dir)):
            results[label] = {
                split: sweep(
                    model,
                    split,
                    args.dims,
                    os.path.join(args.output_dir, f"{label}_{split}"),
                    args.data_dir,
                )
                for split in SPLITS
            }
    finally:
        if not args.model_dir:
            shutil.rmtree(model_dir, ignore_errors=True)
    full = max(dims)
    print(
        f"\nSTS-B Spearman x100 by embedding size; MRL model: gecko-train {args.steps} steps "
        f"on STS-B "
        f"train pairs, mrl_dims [{args.dims}] ({train_s:.0f} s):"
    )
    print(f"  {'model / split':>22} " + " ".join(f"{d:>7}" for d in dims))
    for label, by_split in results.items():
        for split, scores in by_split.items():
            print(f"  {label + ' ' + split:>22} " + " ".join(f"{scores[d]:7.2f}" for d in dims))
    gap = results["mrl"]["test"][full] - results["mrl"]["test"][256]
    dev_gap = results["mrl"]["dev"][full] - results["mrl"]["dev"][256]
    print(
        f"MRL model, full - 256-d: test {gap:.2f}, dev {dev_gap:.2f} points "
        f"(target <= 1: {'MET' if max(gap, dev_gap) <= 1.0 else 'NOT MET'})"
    )
    print(f"plots: {args.output_dir}/*/report.png")
    path = C.write_results(
        args.output,
        {
            **_provenance.record(),
            "results": results,
            "steps": args.steps,
            "dims": dims,
            "gap_256_test": gap,
            "gap_256_dev": dev_gap,
            "train_s": train_s,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
