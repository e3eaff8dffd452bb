"""GPU throughput and MFU: gecko_jax's encoder and training step vs sentence-transformers.

Both sides run the same BERT-family encoders on one GPU, on the same token batches:

* models: all-MiniLM-L6-v2's sizes (6 layers, 384 wide) and BERT-base's (12 layers,
  768 wide), random weights (speed does not depend on their values, and the GPU machine
  has no checkpoints); mean pooling, L2-normalised.
* inputs: ``[batch, length]`` random token ids between [CLS] and [SEP], every position
  real (no padding), the same arrays on both sides. Tokenization is left out on both
  sides: this measures the model, the host-device transfers and the step.
* precision: ``bfloat16`` (float32 parameters, bfloat16 compute: gecko_jax's
  ``dtype="bfloat16"``, torch's ``autocast(bfloat16)``) and ``float32`` with TF32 matrix
  products on both sides (``jax_default_matmul_precision="tensorfloat32"``,
  ``torch.set_float32_matmul_precision("high")``).
* encode: host arrays in, host embeddings out, per batch. gecko_jax: the jitted
  ``DualEncoder.apply`` with up to 4 batches in flight, as ``Encoder.embed_token_ids``
  runs it (``Encoder`` itself imports the TF tokenizer, which the GPU machine lacks);
  sentence-transformers: ``SentenceTransformer.forward`` on the features under
  ``inference_mode``, moved to the GPU and the embeddings back to the host, as
  ``SentenceTransformer.encode`` does after tokenizing.
* train: in-batch negatives only, query -> document, scale 20 (temperature 0.05), AdamW
  lr 2e-5, weight decay 0.01, gradient norm clipped at 1.0, dropout 0.1.
  gecko_jax: ``Trainer.train_step`` on host batches, the loss read back every step, as
  ``gecko-train`` runs; sentence-transformers: ``MultipleNegativesRankingLoss`` in the
  plain torch loop of its ``fit`` (as bench/train_throughput.py).

Each side runs in its own process (JAX and torch each take the GPU's memory). Per
configuration: warm-up calls (compilation), then ``--repeats`` timed repetitions of
``--iters`` calls; the median is reported. MFU is model FLOPs (matrix products of the
layers and attention, counted analytically, the same count for both sides; a training
step is 3x the forward of both towers) per second over the GPU's dense bf16 peak
(``PEAK_BF16_FLOPS``), for both precisions. Each side's start-up (imports, device) and
each configuration's set-up and warm-up seconds (compilation included) are recorded too:
the time to a first step.

    python bench/gpu_throughput.py [--models minilm,bert-base] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

SIDES = ("gecko_jax", "sentence-transformers")
PRECISIONS = ("bfloat16", "float32")
# Dense bf16 tensor-core peak per chip, from the vendors' data sheets (no sparsity).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
CLS_ID, SEP_ID, FIRST_WORD_ID = 101, 102, 1000
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM, DROPOUT, SCALE = 2e-5, 0.01, 1.0, 0.1, 20.0
MAX_IN_FLIGHT = 4


class ModelSize(NamedTuple):
    """An encoder's sizes (Hugging Face's BERT config names)."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 30522

    def hf_config(self) -> dict[str, int]:
        """The sizes as a Hugging Face BERT ``config.json`` names them."""
        return {
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
        }


MODELS = {
    "minilm": ModelSize(layers=6, hidden=384, heads=12, intermediate=1536),
    "bert-base": ModelSize(layers=12, hidden=768, heads=12, intermediate=3072),
}


class Shapes(NamedTuple):
    """Batch sizes, tokens per sequence, timed calls per repetition, warm-up calls."""

    encode_batch: int
    train_batch: int
    length: int
    iters: int
    warmup: int


FULL = Shapes(encode_batch=256, train_batch=128, length=128, iters=20, warmup=3)
QUICK = Shapes(encode_batch=8, train_batch=4, length=16, iters=2, warmup=1)


def forward_flops_per_sequence(size: ModelSize, length: int) -> float:
    """Matrix-product FLOPs of one forward pass over a sequence of ``length`` tokens:
    the four attention projections and the two MLP matrices (2 FLOPs per multiply-add)
    plus the attention scores and their weighted sum."""
    dense = 2 * (4 * size.hidden**2 + 2 * size.hidden * size.intermediate) * length
    attention = 2 * 2 * length**2 * size.hidden
    return size.layers * (dense + attention)


def token_batches(size: ModelSize, batch: int, length: int, count: int, seed: int) -> list:
    """``count`` ``[batch, length]`` int32 arrays: [CLS] random words [SEP]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(FIRST_WORD_ID, size.vocab, size=(batch, length), dtype=np.int32)
        ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
        out.append(ids)
    return out


def timed(call: Callable[[], None], shapes: Shapes, repeats: int) -> tuple[float, list[float]]:
    """Seconds of the ``shapes.warmup`` first calls (compilation included), and of each
    repetition of ``shapes.iters`` calls after them."""
    start = time.perf_counter()
    for _ in range(shapes.warmup):
        call()
    warmup_s = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(shapes.iters):
            call()
        seconds.append(time.perf_counter() - start)
    return warmup_s, seconds


# ----------------------------------------------------------------------------- gecko_jax


def gecko_encode_fn(size: ModelSize, precision: str, batches: list) -> Callable[[], None]:
    """One pass over ``batches`` through the jitted dual encoder, host to host."""
    import collections

    import jax
    import numpy as np

    model = gecko_model(size, precision, dropout=0.0)
    mask = np.ones_like(batches[0])
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batches[0], mask)["params"]
    embed = jax.jit(lambda p, ids, m: model.apply({"params": p}, ids, m, deterministic=True))

    def run() -> None:
        pending: collections.deque = collections.deque()
        for ids in batches:
            pending.append(embed(params, ids, mask))
            if len(pending) > MAX_IN_FLIGHT:
                np.asarray(pending.popleft())
        while pending:
            np.asarray(pending.popleft())

    return run


def gecko_model(size: ModelSize, precision: str, dropout: float) -> Any:
    """gecko_jax's dual encoder (BERT backbone, mean pooling, L2 norm) of these sizes."""
    from gecko_jax.models.bert import BertConfig
    from gecko_jax.models.dual_encoder import DualEncoder

    backbone = BertConfig.from_hf({**size.hf_config(), "hidden_dropout_prob": dropout})
    return DualEncoder(backbone=dataclasses.replace(backbone, dtype=precision))


def gecko_train_fn(size: ModelSize, precision: str, batches: list) -> Callable[[], None]:
    """A call runs the next training step and reads its loss back."""
    import jax

    from gecko_jax import partitioning as P
    from gecko_jax.losses import ContrastiveLossConfig
    from gecko_jax.optimizers import OptimizerConfig
    from gecko_jax.trainer import TrainConfig, Trainer

    config = TrainConfig(
        loss=ContrastiveLossConfig(
            temperature=1 / SCALE, same_tower_negatives=False, hard_negatives="none"
        ),
        optimizer=OptimizerConfig(
            name="adamw",
            learning_rate=LEARNING_RATE,
            weight_decay=WEIGHT_DECAY,
            clip_grad_norm=CLIP_NORM,
        ),
    )
    trainer = Trainer(gecko_model(size, precision, DROPOUT), P.make_mesh(), config=config)
    pairs = [
        {"query_tokens": batches[i], "positive_tokens": batches[i + 1]}
        for i in range(0, len(batches) - 1, 2)
    ]
    state = trainer.init_state(jax.random.PRNGKey(0), None, pairs[0])
    step_index = 0

    def step() -> None:
        nonlocal state, step_index
        state, metrics = trainer.train_step(state, pairs[step_index % len(pairs)])
        float(metrics["loss"])
        step_index += 1

    return step


def gecko_device(precision: str) -> str:
    import jax

    if precision == "float32":
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


# ----------------------------------------------------------------------------- torch


def st_model(size: ModelSize, device: str, workdir: str) -> Any:
    """A sentence-transformers model (Transformer, mean Pooling, Normalize) with random
    weights, saved and loaded as a user's model directory is."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models

    config = BertConfig(
        **size.hf_config(), hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT
    )
    path = os.path.join(workdir, f"bert_{size.layers}x{size.hidden}")
    BertModel(config).save_pretrained(path)
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        special = ["[PAD]"] + [f"[unused{i}]" for i in range(100)] + ["[UNK]", "[CLS]", "[SEP]"]
        words = special + ["[MASK]"] + [f"w{i}" for i in range(size.vocab - len(special) - 1)]
        f.write("\n".join(words) + "\n")
    transformer = models.Transformer(path)
    pooling = models.Pooling(size.hidden, pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device=device)


def torch_features(batches: list) -> list[dict[str, Any]]:
    import torch

    return [
        {
            "input_ids": torch.from_numpy(ids).long(),
            "attention_mask": torch.ones(ids.shape, dtype=torch.long),
            "token_type_ids": torch.zeros(ids.shape, dtype=torch.long),
        }
        for ids in batches
    ]


def autocast(precision: str, device: str) -> Any:
    import contextlib

    import torch

    if precision == "bfloat16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def st_encode_fn(
    size: ModelSize, precision: str, batches: list, device: str, workdir: str
) -> Callable[[], None]:
    import torch

    model = st_model(size, device, workdir)
    model.eval()
    features = torch_features(batches)

    def run() -> None:
        with torch.inference_mode(), autocast(precision, device):
            for f in features:
                out = model.forward({k: v.to(device) for k, v in f.items()})
                out["sentence_embedding"].float().cpu()

    return run


def st_train_fn(
    size: ModelSize, precision: str, batches: list, device: str, workdir: str
) -> Callable[[], None]:
    import torch

    try:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = st_model(size, device, workdir)
    model.train()
    loss_fn = MultipleNegativesRankingLoss(model, scale=SCALE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    features = torch_features(batches)
    pairs = [(features[i], features[i + 1]) for i in range(0, len(features) - 1, 2)]
    step_index = 0

    def step() -> None:
        nonlocal step_index
        query, positive = pairs[step_index % len(pairs)]
        optimizer.zero_grad()
        on_device = [{k: v.to(device) for k, v in f.items()} for f in (query, positive)]
        with autocast(precision, device):
            loss = loss_fn(on_device, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        float(loss.detach())
        step_index += 1

    return step


def torch_device() -> str:
    import torch

    torch.set_float32_matmul_precision("high")  # TF32, as the JAX side's float32
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


# ----------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> None:
    """Every (model, task) of one side at one precision; emits one JSON line."""
    shapes = QUICK if args.quick else FULL
    started = time.perf_counter()
    side, precision = args.worker, args.precision
    if side == "gecko_jax":
        C.use_repo()
        device_name = gecko_device(precision)
    else:
        import torch

        device = torch_device()
        device_name = f"{device}: " + (torch.cuda.get_device_name() if device == "cuda" else "cpu")
    startup_s = time.perf_counter() - started  # imports and the device's initialisation
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models.split(","):
            size = MODELS[name]
            for task in ("encode", "train"):
                batch = shapes.encode_batch if task == "encode" else shapes.train_batch
                batches = token_batches(size, batch, shapes.length, 8, seed=0)
                setup_start = time.perf_counter()
                if side == "gecko_jax":
                    make = gecko_encode_fn if task == "encode" else gecko_train_fn
                    call = make(size, precision, batches)
                else:
                    make = st_encode_fn if task == "encode" else st_train_fn
                    call = make(size, precision, batches, device, workdir)
                setup_s = time.perf_counter() - setup_start
                warmup_s, seconds = timed(call, shapes, args.repeats)
                sequences = batch * shapes.iters * (len(batches) if task == "encode" else 2)
                results.append(
                    {
                        "model": name,
                        "task": task,
                        "batch": batch,
                        "length": shapes.length,
                        "setup_s": setup_s,
                        "warmup_s": warmup_s,
                        "seconds": seconds,
                        "sequences_per_s": sequences / statistics.median(seconds),
                    }
                )
                print(
                    f"{side} {precision} {name} {task}: {results[-1]['sequences_per_s']:.0f}/s "
                    f"(setup {setup_s:.1f} s, warm-up {warmup_s:.1f} s)",
                    flush=True,
                )
                # Every configuration's line holds all so far: a side that runs out of
                # time still reports what it finished (run_worker's "partial").
                C.emit(
                    {
                        "side": side,
                        "precision": precision,
                        "device": device_name,
                        "startup_s": startup_s,
                        "results": results,
                    }
                )


def mfu(result: dict[str, Any], device: str) -> float | None:
    """Model FLOPs utilisation of one result against the device's bf16 peak."""
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None)
    if peak is None:
        return None
    per_sequence = forward_flops_per_sequence(MODELS[result["model"]], result["length"])
    factor = 3 if result["task"] == "train" else 1
    return result["sequences_per_s"] * per_sequence * factor / peak


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (precision, model, task): both sides' rates, MFU and the ratio."""
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in runs:
        finished = run.get("partial", {}) if "failed" in run else run
        for result in finished.get("results", []):
            key = (run["precision"], result["model"], result["task"])
            row = by_key.setdefault(
                key,
                {
                    "precision": key[0],
                    "model": key[1],
                    "task": key[2],
                    "device": finished["device"].split(": ", 1)[-1],
                },
            )
            row[run["side"]] = {
                "sequences_per_s": round(result["sequences_per_s"], 1),
                "mfu": mfu(result, finished["device"]),
                "batch": result["batch"],
                "length": result["length"],
            }
    rows = list(by_key.values())
    for row in rows:
        if all(side in row for side in SIDES):
            ours, anchor = (row[side]["sequences_per_s"] for side in SIDES)
            row["ratio"] = round(ours / anchor, 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,bert-base", help="of: " + ",".join(MODELS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions, median kept")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a check, not a figure)")
    parser.add_argument(
        "--output",
        help="results name in bench/results/ (default gpu_throughput, gpu_throughput_quick "
        "with --quick); an absolute NAME writes NAME.json",
    )
    parser.add_argument("--timeout_s", type=float, default=900, help="per side and precision")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; known: {sorted(MODELS)}")
    bad = set(args.precisions.split(",")) - set(PRECISIONS)
    if bad:
        parser.error(f"--precisions: unknown {sorted(bad)}; known: {list(PRECISIONS)}")
    if not args.quick and not _provenance.has_gpu():
        parser.error("no GPU here (nvidia-smi names none); --quick runs a short CPU pass")
    provenance = _provenance.record()
    runs = []
    for precision in args.precisions.split(","):
        for side in SIDES:
            worker_args = ["--worker", side, "--precision", precision, "--models", args.models]
            worker_args += ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
            run = C.run_worker(__file__, worker_args, timeout_s=args.timeout_s)
            run.setdefault("side", side)
            run.setdefault("precision", precision)
            runs.append(run)
            if "failed" in run:
                print(f"{side} {precision} failed: {run['failed']}\n{run.get('stderr_tail', '')}")
    rows = summarize(runs)
    for row in rows:
        cells = [row["precision"], row["model"], row["task"]]
        for side in SIDES:
            if side in row:
                m = row[side]["mfu"]
                mfu_text = f" ({m:.1%} MFU)" if m is not None else ""
                cells.append(f"{side} {row[side]['sequences_per_s']:.0f}/s{mfu_text}")
        if "ratio" in row:
            cells.append(f"ratio {row['ratio']:.2f}x")
        print(" | ".join(cells))
    data = {**provenance, "runs": runs, "rows": rows}
    output = args.output or ("gpu_throughput_quick" if args.quick else "gpu_throughput")
    output = C.write_results(output, data)
    print(f"wrote {output}")
    if any("failed" in run for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
