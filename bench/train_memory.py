"""Peak memory of one gecko_jax train step vs the global batch, with and without GradCache.

all-MiniLM-L6-v2 (its real weights, dropout 0.1 as the checkpoint), query and
positive length 64, no hard negatives (in-batch + same-tower loss), AdamW. Token ids
are random ids from the vocabulary's word range: memory and time do not depend on
them. Every configuration runs ONE train step in its own process, which records:

* RSS before the step (weights, optimizer state, compiled program, batch on device),
* the process's peak RSS (``ru_maxrss``) after the step, and so the step's increment,
* XLA's ``memory_analysis()`` temp bytes of the compiled train step,
* the step's wall time (compilation excluded: the step is compiled ahead of time).

Each process's address space is capped (``RLIMIT_AS``, ``--cap_gib``), so a batch
that does not fit fails inside its own process (reported as out of memory) rather
than exhausting the machine. Once a batch has run out without GradCache, larger
batches are only compiled, to report the temp memory XLA says they would need.

    python bench/train_memory.py [--gradcache_batches 512,2048,8192]
        [--plain_batches 64,128,256,512,2048,8192] [--chunk 64] [--cap_gib 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

TARGET_RATIO = 1.5


def worker(args: argparse.Namespace) -> None:
    """One configuration in this process: init, compile, one step; emits a JSON line."""
    C.cap_address_space(args.cap_gib)
    C.use_repo()
    import jax
    import numpy as np

    from gecko_jax import partitioning as P
    from gecko_jax.losses import ContrastiveLossConfig
    from gecko_jax.pretrained import load_pretrained
    from gecko_jax.trainer import TrainConfig, Trainer

    pretrained = load_pretrained("all-MiniLM-L6-v2")
    config = TrainConfig(
        loss=ContrastiveLossConfig(hard_negatives="none", same_tower_negatives=True),
        grad_cache_chunk_size=args.chunk or None,
    )
    trainer = Trainer(pretrained.model, P.make_mesh(), P.logical_axis_rules(), config)
    rng = np.random.default_rng(0)
    vocab = pretrained.vocabulary.vocab_size
    batch = {
        name: rng.integers(1000, vocab, (args.batch, args.length), dtype=np.int32)
        for name in ("query_tokens", "positive_tokens")
    }
    state = trainer.init_state(jax.random.PRNGKey(0), pretrained.params, batch)
    jax.block_until_ready(state)
    result: dict[str, Any] = {
        "batch": args.batch,
        "chunk": args.chunk,
        "rss_after_init_mib": C.current_rss_mib(),
    }
    with trainer.context():
        # The Trainer's own jitted step, compiled ahead of time so the timed call
        # below runs the program without tracing or compiling.
        compiled = trainer.jitted_train_step.lower(state, batch).compile()
    analysis = compiled.memory_analysis()
    result["xla_temp_mib"] = analysis.temp_size_in_bytes / C.MIB if analysis else None
    C.emit({**result, "status": "compiled only"})  # what a failed run leaves behind
    if args.estimate_only:
        C.emit({**result, "status": "not run (a smaller batch ran out); compiled only"})
        return
    device_batch = jax.device_put(batch, P.batch_sharding(trainer.mesh))
    jax.block_until_ready(device_batch)
    result["rss_before_step_mib"] = C.current_rss_mib()
    start = time.perf_counter()
    with trainer.context():
        state, metrics = compiled(state, device_batch)
        metrics = jax.device_get(metrics)
    result["step_s"] = time.perf_counter() - start
    result["peak_rss_mib"] = C.peak_rss_mib()
    result["loss"] = float(metrics["loss"])
    C.emit({**result, "status": "ok"})


def run_config(
    args: argparse.Namespace, batch: int, chunk: int, estimate_only: bool
) -> dict[str, Any]:
    """Runs one configuration in a child process; a failed child becomes a 'failed' row."""
    worker_args = [
        "--worker",
        "--batch",
        str(batch),
        "--chunk",
        str(chunk),
        "--length",
        str(args.length),
        "--cap_gib",
        str(args.cap_gib),
    ]
    if estimate_only:
        worker_args.append("--estimate_only")
    result = C.run_worker(__file__, worker_args, timeout_s=args.timeout_s)
    if "failed" in result:
        what = "out of memory" if result["out_of_memory"] else "failed"
        result = {
            "batch": batch,
            "chunk": chunk,
            **result["partial"],
            "status": f"{what}: {result['failed']}",
            "stderr_tail": result["stderr_tail"],
        }
    return result


def fmt(value: float | None, width: int, digits: int = 0) -> str:
    """A right-aligned number, or '-' where there is none."""
    return f"{value:{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def print_table(
    rows: list[dict[str, Any]],
    reference: float | None,
    ref_batch: int | None,
    args: argparse.Namespace,
) -> None:
    print(
        f"\nOne train step, all-MiniLM-L6-v2, lengths {args.length}/{args.length}, "
        "no hard negatives, "
        f"{os.cpu_count()} CPUs, address space capped at {args.cap_gib} GiB per process. "
        f"'ratio' = peak RSS / peak RSS at batch {ref_batch} with GradCache."
    )
    print(
        f"{'batch':>6} {'GradCache':>9} {'RSS before':>10} {'peak RSS':>9} {'step incr':>9} "
        f"{'XLA temp':>9} {'step s':>7} {'ratio':>6}  status   (MiB unless noted)"
    )
    for r in rows:
        peak = r.get("peak_rss_mib")
        incr = peak - r["rss_before_step_mib"] if peak is not None else None
        ratio = peak / reference if peak is not None and reference else None
        gc = f"chunk {r['chunk']}" if r["chunk"] else "off"
        print(
            f"{r['batch']:>6} {gc:>9} {fmt(r.get('rss_before_step_mib'), 10)} {fmt(peak, 9)} "
            f"{fmt(incr, 9)} {fmt(r.get('xla_temp_mib'), 9)} {fmt(r.get('step_s'), 7, 1)} "
            f"{fmt(ratio, 6, 2)}  {r['status']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gradcache_batches", default="512,2048,8192")
    parser.add_argument(
        "--plain_batches",
        default="64,128,256,512,2048,8192",
        help="batches without GradCache (after one runs out, the rest are only compiled)",
    )
    parser.add_argument("--chunk", type=int, default=64, help="GradCache chunk size")
    parser.add_argument("--length", type=int, default=64, help="query and positive token length")
    parser.add_argument("--cap_gib", type=float, default=12.0, help="address-space cap per process")
    parser.add_argument("--timeout_s", type=float, default=3600.0, help="per configuration")
    parser.add_argument("--output", default="train_memory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--estimate_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for chunk, batches in ((args.chunk, args.gradcache_batches), (0, args.plain_batches)):
        ran_out = False
        for batch in (int(b) for b in batches.split(",") if b):
            row = run_config(args, batch, chunk, estimate_only=ran_out)
            ran_out = ran_out or row["status"] != "ok"
            rows.append(row)
            print(
                f"batch {batch:>5} GradCache {f'chunk {chunk}' if chunk else 'off'}: "
                f"peak {fmt(row.get('peak_rss_mib'), 0)} MiB, {row['status']}",
                flush=True,
            )
    ref_row = next((r for r in rows if r["chunk"]), {})  # the first (smallest) GradCache batch
    reference, ref_batch = ref_row.get("peak_rss_mib"), ref_row.get("batch")
    print_table(rows, reference, ref_batch, args)
    largest = max(
        (r for r in rows if r["chunk"] and r["status"] == "ok"),
        key=lambda r: r["batch"],
        default=None,
    )
    verdict = None
    if reference and largest and largest["batch"] > ref_batch:
        ratio = largest["peak_rss_mib"] / reference
        verdict = ratio <= TARGET_RATIO
        print(
            f"\nTarget: with GradCache, peak RSS at batch {largest['batch']} "
            f"within {TARGET_RATIO}x of "
            f"batch {ref_batch}: {ratio:.2f}x -> {'MET' if verdict else 'NOT MET'}"
        )
    fits = [r["batch"] for r in rows if not r["chunk"] and r["status"] == "ok"]
    print(
        f"Without GradCache, the largest batch that ran under the {args.cap_gib} GiB cap: "
        f"{max(fits) if fits else 'none'}"
    )
    path = C.write_results(
        args.output,
        {
            **_provenance.record(),
            "rows": rows,
            "target_met": verdict,
            "length": args.length,
            "chunk": args.chunk,
            "cap_gib": args.cap_gib,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
