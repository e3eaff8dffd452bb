"""CPU encoding throughput of the exported SavedModel vs ``Encoder.encode``.

all-MiniLM-L6-v2 (the packaged copy) is exported once with
``gecko_jax.export.saved_model.export_saved_model`` (its default platforms), then both
sides embed the same STS-B sentences (distinct sentences of train + dev, in file
order) at the same batch size, the query side with no task (texts unchanged):

* ``saved_model``: ``tf.saved_model.load(OUT/1).signatures["serving_default"]`` with
  ``text``, ``task`` (empty), ``title`` (empty) and ``kind`` ("query"), one call per
  batch, in a process where JAX cannot be imported (as on a serving machine);
* ``encoder``: ``Encoder.load("all-MiniLM-L6-v2").encode(texts, batch_size=...)``, in a
  process started as the ``gecko-*`` commands start (huge-page malloc).

Each side runs in its own process; the rounds alternate between them and every
process makes one untimed pass (compilation, warm-up) before its timed passes.
Reported: median sentences/s over all timed passes, the ratio SavedModel / Encoder,
the export time, and the lowest cosine between the two sides' embeddings.

    python bench/saved_model_speed.py [--rounds 3] [--repeats 3] [--batch_size 32]
        [--sentences 2000] [--export_dir DIR] [--output NAME]
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _provenance

SIDES = ("saved_model", "encoder")
MODEL_NAME = "all-MiniLM-L6-v2"
AGREEMENT_TEXTS = 64


class _NoJax(importlib.abc.MetaPathFinder):
    """Makes ``import jax`` fail, as on a machine without JAX."""

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _saved_model_encode(
    version_dir: str, batch_size: int, by_length: bool
) -> Callable[[list[str]], Any]:
    sys.meta_path.insert(0, _NoJax())
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    signature = tf.saved_model.load(version_dir).signatures["serving_default"]

    def encode(texts: list[str]) -> np.ndarray:
        # As Encoder.encode does, a caller can batch similar lengths together (characters
        # stand in for tokens here) and put the rows back in input order.
        order = np.argsort([-len(t) for t in texts], kind="stable") if by_length else None
        ordered = [texts[i] for i in order] if by_length else texts
        parts = []
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            empty = tf.constant([""] * len(batch))
            out = signature(
                text=tf.constant(batch),
                task=empty,
                title=empty,
                kind=tf.constant(["query"] * len(batch)),
            )
            parts.append(out["embedding"].numpy())
        embeddings = np.concatenate(parts)
        if by_length:
            embeddings[order] = embeddings.copy()
        return embeddings

    return encode


def _encoder_encode(batch_size: int) -> Callable[[list[str]], Any]:
    from gecko_jax import Encoder

    encoder = Encoder.load(MODEL_NAME)
    return lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=False)


def worker(args: argparse.Namespace) -> None:
    """One side in this process: a warm-up pass, timed passes, one JSON line."""
    with open(args.texts_file) as f:
        texts = json.load(f)
    if args.worker == "export":
        _common.start_like_the_commands()
        from gecko_jax.export.saved_model import export_saved_model
        from gecko_jax.export.source import load_source

        start = time.perf_counter()
        version_dir = export_saved_model(load_source(MODEL_NAME), args.export_dir)
        _common.emit({"version_dir": version_dir, "export_s": time.perf_counter() - start})
        return
    if args.worker == "encoder":
        _common.start_like_the_commands()  # as gecko-embed and gecko-serve start
        encode = _encoder_encode(args.batch_size)
    else:
        encode = _saved_model_encode(args.version_dir, args.batch_size, args.order == "by_length")
    start = time.perf_counter()
    embeddings = encode(texts)
    cold_s = time.perf_counter() - start
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        embeddings = encode(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    assert embeddings.shape[0] == len(texts)
    _common.emit(
        {
            "side": args.worker,
            "rates": rates,
            "cold_s": cold_s,
            "jax_imported": "jax" in sys.modules,
            "peak_rss_mib": _common.peak_rss_mib(),
            "load_average_1min": os.getloadavg()[0],
            "head": embeddings[:AGREEMENT_TEXTS].tolist(),
        }
    )


def _run(args: argparse.Namespace, side: str, scratch: dict[str, str]) -> dict[str, Any]:
    worker_args = [
        *("--worker", side, "--texts_file", scratch["texts_file"]),
        *("--batch_size", str(args.batch_size), "--repeats", str(args.repeats)),
        *("--order", args.order),
        *("--export_dir", scratch["export_dir"], "--version_dir", scratch.get("version_dir", "")),
    ]
    result = _common.run_worker(__file__, worker_args, timeout_s=1800)
    if "failed" in result:
        raise SystemExit(f"{side} failed: {result['failed']}\n{result['stderr_tail']}")
    return result


def _lowest_cosine(a: list[list[float]], b: list[list[float]]) -> float:
    import numpy as np

    x, y = np.asarray(a), np.asarray(b)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return float((x * y).sum(axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="process pairs, alternating sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per process")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--order",
        choices=("by_length", "input"),
        default="by_length",
        help="how the SavedModel side batches: similar lengths together (as Encoder.encode "
        "does), or in input order",
    )
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--data_dir", default=_common.DEFAULT_DATA)
    parser.add_argument(
        "--export_dir", help="reuse (or write) the export here; default: a fresh temporary one"
    )
    parser.add_argument("--output", default="saved_model_speed", help="bench/results/<NAME>.json")
    parser.add_argument("--worker", choices=(*SIDES, "export"), help=argparse.SUPPRESS)
    parser.add_argument("--texts_file", help=argparse.SUPPRESS)
    parser.add_argument("--version_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from encode import load_sentences

    texts = load_sentences(args.data_dir, args.sentences)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = {
            "texts_file": os.path.join(scratch_dir, "texts.json"),
            "export_dir": args.export_dir or os.path.join(scratch_dir, "export"),
        }
        with open(scratch["texts_file"], "w") as f:
            json.dump(texts, f)
        version_dir = os.path.join(scratch["export_dir"], "1")
        export_s = None
        if os.path.isdir(version_dir):
            print(f"reusing the export in {version_dir}", flush=True)
        else:
            print("exporting ...", flush=True)
            exported = _run(args, "export", scratch)
            version_dir, export_s = exported["version_dir"], exported["export_s"]
            print(f"  {export_s:.1f} s", flush=True)
        scratch["version_dir"] = version_dir
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for round_index in range(args.rounds):
            for side in SIDES if round_index % 2 == 0 else SIDES[::-1]:
                result = _run(args, side, scratch)
                runs[side].append(result)
                print(
                    f"round {round_index + 1} {side:>11}: "
                    + ", ".join(f"{r:.0f}" for r in result["rates"])
                    + f" sentences/s (load average {result['load_average_1min']:.1f})",
                    flush=True,
                )
    if any(r["jax_imported"] for r in runs["saved_model"]):
        raise SystemExit("the SavedModel side imported JAX")
    summary = {
        side: {
            "median_sentences_per_s": statistics.median(r for res in results for r in res["rates"]),
            "cold_first_pass_s": statistics.median(res["cold_s"] for res in results),
            "peak_rss_mib": max(res["peak_rss_mib"] for res in results),
        }
        for side, results in runs.items()
    }
    ratio = (
        summary["saved_model"]["median_sentences_per_s"]
        / summary["encoder"]["median_sentences_per_s"]
    )
    cosine = _lowest_cosine(runs["saved_model"][0]["head"], runs["encoder"][0]["head"])
    print(
        f"\n{len(texts)} STS-B sentences, {MODEL_NAME}, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, median of {args.rounds * args.repeats} passes:"
    )
    for side, s in summary.items():
        print(
            f"  {side:>11}: {s['median_sentences_per_s']:7.0f} sentences/s  "
            f"cold first pass {s['cold_first_pass_s']:.1f} s  peak RSS {s['peak_rss_mib']:.0f} MiB"
        )
    print(f"  ratio SavedModel / Encoder.encode: {ratio:.2f}x")
    print(f"  lowest cosine between the sides on {AGREEMENT_TEXTS} sentences: {cosine:.6f}")
    path = _common.write_results(
        args.output,
        {
            **_provenance.record(),
            "sentences": len(texts),
            "batch_size": args.batch_size,
            "cpu_count": os.cpu_count(),
            "export_s": export_s,
            "summary": summary,
            "ratio_saved_model_over_encoder": ratio,
            "lowest_cosine": cosine,
            "runs": {
                side: [{k: v for k, v in r.items() if k != "head"} for r in results]
                for side, results in runs.items()
            },
        },
    )
    print(path)


if __name__ == "__main__":
    main()
