"""FRet throughput: LLM client requests/s, and neighbour mining vs faiss.

Part 1 (LLM client): ``OpenAICompatibleClient.generate`` against the loopback server
with 50 ms latency per request (run in its own process by default, like a real server;
``--server thread`` runs it inside this process), without a cache, at concurrency 1, 8
and 64. The ideal is ``concurrency / latency`` requests/s; the ratio to it shows what
the client (and the fake server) cost.

Part 2 (mining): ``gecko_jax.fret.retrieve.PassageIndex`` finds the top 20 of
10,000 queries among 100,000 random unit-norm 384-d passages (float32, fixed seed);
median of 3 timed runs after a warm-up (which compiles), against faiss-cpu
``IndexFlatIP`` (add + search) in the same worker process; the overlap of the two
neighbour sets says they agree.

    python bench/fret_throughput.py [--levels 1,8,64] [--requests 40,200,1000] [--skip_mining]

Prints a table and writes ``bench/results/fret_throughput.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _provenance

_common.use_repo()


class _ServerProcess:
    """``python -m gecko_jax.fret.llm.loopback`` in a child process."""

    def __init__(self, latency_s: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gecko_jax.fret.llm.loopback",
                "--port",
                "0",
                "--latency_s",
                str(latency_s),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=_common.child_env(),
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.stop()
            raise SystemExit("the loopback server process did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def _measure_level(base_url: str, concurrency: int, requests: int) -> dict[str, Any]:
    from gecko_jax.fret.llm.openai_compatible import OpenAICompatibleClient

    prompts = [
        f"Passage: Benchmark passage number {i} about topic {i % 97}.\nOutput:"
        for i in range(requests)
    ]
    async with OpenAICompatibleClient(
        base_url, "loopback", cache=None, max_concurrency=concurrency, timeout_s=30.0
    ) as client:
        await asyncio.gather(
            *(client.generate(f"Passage: warm-up {i}") for i in range(concurrency))
        )
        start = time.perf_counter()
        results = await asyncio.gather(*(client.generate(p) for p in prompts))
        seconds = time.perf_counter() - start
        assert len(results) == requests and client.usage.retries == 0
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1),
    }


def client_throughput(
    levels: list[int], counts: list[int], latency_s: float, server_mode: str
) -> list[dict[str, Any]]:
    """Part 1: requests/s per concurrency level, with the ideal and the ratio."""
    if server_mode == "process":
        server: Any = _ServerProcess(latency_s)
        base_url = server.base_url
    else:
        from gecko_jax.fret.llm.loopback import LoopbackServer

        server = LoopbackServer(latency_s=latency_s).start()
        base_url = server.base_url
    try:
        rows = []
        for concurrency, count in zip(levels, counts):
            row = asyncio.run(_measure_level(base_url, concurrency, count))
            row["ideal_per_s"] = round(concurrency / latency_s, 1)
            row["ratio_to_ideal"] = round(row["requests_per_s"] / row["ideal_per_s"], 3)
            rows.append(row)
            print(
                f"  concurrency {concurrency:>3}: {row['requests_per_s']:>7.1f} req/s "
                f"(ideal {row['ideal_per_s']:.0f}, ratio {row['ratio_to_ideal']:.2f})",
                flush=True,
            )
        return rows
    finally:
        server.stop()


def mining_worker(args: argparse.Namespace) -> None:
    """Part 2 in a child process: jax PassageIndex vs faiss IndexFlatIP."""
    import faiss
    import numpy as np

    from gecko_jax.fret.retrieve import PassageIndex

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, args.dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    passages, queries = unit(args.passages), unit(args.queries)

    def timed(fn: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    def run_faiss() -> tuple[np.ndarray, np.ndarray]:
        index = faiss.IndexFlatIP(args.dim)
        index.add(passages)
        return index.search(queries, args.k)

    def run_jax() -> tuple[np.ndarray, np.ndarray]:
        return PassageIndex(passages).search(queries, args.k)

    cold_jax, _ = timed(run_jax)
    jax_times, faiss_times = [], []
    for _ in range(args.repeats):
        seconds, (_, jax_ids) = timed(run_jax)
        jax_times.append(seconds)
        seconds, (_, faiss_ids) = timed(run_faiss)
        faiss_times.append(seconds)
    overlap = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(jax_ids, faiss_ids)]))
    _common.emit(
        {
            "queries": args.queries,
            "passages": args.passages,
            "dim": args.dim,
            "k": args.k,
            "repeats": args.repeats,
            "jax_cold_s": round(cold_jax, 3),
            "jax_median_s": round(statistics.median(jax_times), 3),
            "jax_times_s": [round(t, 3) for t in jax_times],
            "faiss_median_s": round(statistics.median(faiss_times), 3),
            "faiss_times_s": [round(t, 3) for t in faiss_times],
            "neighbour_overlap": round(overlap, 6),
            "faiss_threads": faiss.omp_get_max_threads(),
            "peak_rss_mib": round(_common.peak_rss_mib(), 1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,64")
    parser.add_argument("--requests", default="40,200,1000")
    parser.add_argument("--latency_s", type=float, default=0.05)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--skip_mining", action="store_true")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="fret_throughput", help="bench/results/<NAME>.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mining_worker(args)
        return

    levels = [int(x) for x in args.levels.split(",")]
    counts = [int(x) for x in args.requests.split(",")]
    if len(levels) != len(counts):
        raise SystemExit("--levels and --requests need the same number of entries")
    load_before = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) before: {load_before} on {os.cpu_count()} CPUs", flush=True)
    print(
        f"Part 1: generate() vs loopback server ({args.latency_s * 1000:.0f} ms latency, "
        f"server in a {args.server})",
        flush=True,
    )
    client_rows = client_throughput(levels, counts, args.latency_s, args.server)
    # Other work on the machine takes CPU from the client and the server: keep its load.
    results: dict[str, Any] = {
        **_provenance.record(),
        "load_average_1m_before": load_before,
        "client": {"latency_s": args.latency_s, "server": args.server, "levels": client_rows},
    }
    if not args.skip_mining:
        print(
            f"Part 2: top-{args.k} of {args.queries:,} queries among {args.passages:,} "
            f"{args.dim}-d passages",
            flush=True,
        )
        worker_args = [
            "--worker",
            "--queries",
            str(args.queries),
            "--passages",
            str(args.passages),
            "--dim",
            str(args.dim),
            "--k",
            str(args.k),
            "--repeats",
            str(args.repeats),
        ]
        mining = _common.run_worker(__file__, worker_args, timeout_s=1800)
        results["mining"] = mining
        if "failed" in mining:
            print(f"  mining failed: {mining['failed']}\n{mining['stderr_tail']}", flush=True)
        else:
            print(
                f"  gecko_jax PassageIndex: {mining['jax_median_s']:.2f} s (median; cold "
                f"{mining['jax_cold_s']:.2f} s)   "
                f"faiss IndexFlatIP: {mining['faiss_median_s']:.2f} s   "
                f"ratio {mining['jax_median_s'] / mining['faiss_median_s']:.2f}   "
                f"neighbour overlap {mining['neighbour_overlap']:.4f}",
                flush=True,
            )
    path = _common.write_results(args.output, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
