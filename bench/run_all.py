"""Runs the benchmarks in bench/ and writes one table of their figures.

Each benchmark runs as its own command (the one a user would type, shown in the table),
its output going to ``bench/results/logs/<name>.log``; its results JSON then becomes
table rows: figure, ours (gecko_jax), anchor (the peer it is compared with), ratio,
command, date and machine. A full run writes ``bench/RESULTS.md`` and copies its table
into README.md and bench/README.md, between ``<!-- bench-results:begin -->`` and
``<!-- bench-results:end -->``. Running a subset (``--only``) replaces that subset's rows
and keeps the others, so the table can be regenerated piecewise; a benchmark that fails
gets a row saying so (with its log), and the others still run. ``--quick`` runs every
benchmark briefly and writes ``bench/results/RESULTS_quick.md`` instead (no figure from
it is meant for the README). The evaluation data comes from ``$GECKO_EVAL_DATA``, by
default ``../shared/data``.

    python bench/run_all.py [--only encode,serve_load] [--quick] [--list]
        [--from_results] [--timeout_s S] [--budget_s S] [--table PATH] [--no_readme]

``--budget_s`` bounds a run by the clock (CI's time limit): no benchmark starts after
that many seconds; the ones not started are named and keep their rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance
import finetune_quality

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
LOG_DIR = os.path.join(RESULTS_DIR, "logs")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
QUICK_MD = os.path.join(RESULTS_DIR, "RESULTS_quick.md")
SPLICE_TARGETS = (os.path.join(REPO, "README.md"), os.path.join(HERE, "README.md"))
BEGIN_MARKER = "<!-- bench-results:begin -->"
END_MARKER = "<!-- bench-results:end -->"
# What --budget_s is measured with (a name of its own, so a test can replace it).
budget_clock = time.monotonic
COLUMNS = ("figure", "ours", "anchor", "ratio", "command", "date", "machine")
NO_RESULTS = "no recorded results"
MACHINE_NOT_RECORDED = "machine not recorded"


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured figure of a benchmark: gecko_jax's value, the anchor's, their ratio."""

    figure: str
    ours: str
    anchor: str
    ratio: str


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: a figure and where it comes from."""

    bench: str
    figure: str
    ours: str
    anchor: str
    ratio: str
    command: str
    date: str
    machine: str

    def cells(self) -> list[str]:
        return [getattr(self, column) for column in COLUMNS]


def number(value: float, digits: int = 0) -> str:
    """``1,234`` / ``12.35``: thousands separated, ``digits`` decimals."""
    return f"{value:,.{digits}f}"


def ratio(ours: float, anchor: float) -> str:
    """``ours / anchor`` as ``1.64x`` (rates, sizes)."""
    return f"{ours / anchor:.2f}x"


def time_ratio(ours: float, anchor: float) -> str:
    """``ours / anchor`` for durations, with the speed it means: ``0.63x (1.59x faster)``."""
    speed = anchor / ours
    meaning = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower"
    return f"{ours / anchor:.2f}x ({meaning})"


def points(ours: float, anchor: float) -> str:
    """A score difference, of the scores as shown: ``+2.23 points`` (never ``-0.00``)."""
    difference = round(round(ours, 2) - round(anchor, 2), 2)
    return f"{difference + 0.0:+.2f} points"


# ------------------------------------------------------------------------ extractors
# Each turns a benchmark's results JSON (as the script writes it) into its figures.


def rate_figure(
    figure: str, ours: float, anchor: float, anchor_name: str, digits: int = 0
) -> Figure:
    """A throughput figure: both rates, the anchor named, and ours / anchor."""
    return Figure(
        figure,
        number(ours, digits),
        f"{number(anchor, digits)} ({anchor_name})",
        ratio(ours, anchor),
    )


def encode_figures(data: dict[str, Any]) -> list[Figure]:
    ours = data["summary"]["gecko_jax"]["median_sentences_per_s"]
    anchor = data["summary"]["sentence-transformers"]["median_sentences_per_s"]
    return [
        rate_figure(
            f"Encoding {data['sentences']:,} STS-B sentences, all-MiniLM-L6-v2, batch "
            f"{data['batch_size']}, CPU (sentences/s)",
            ours,
            anchor,
            "sentence-transformers",
        )
    ]


def train_throughput_figures(data: dict[str, Any]) -> list[Figure]:
    s = data["settings"]
    ours = data["summary"]["gecko_jax"]["median_examples_per_s"]
    anchor = data["summary"]["sentence-transformers"]["median_examples_per_s"]
    return [
        rate_figure(
            f"Training all-MiniLM-L6-v2, batch {s['batch_size']}, {s['length']} tokens "
            "per side, CPU (examples/s)",
            ours,
            anchor,
            "sentence-transformers, MNRL",
            digits=2,
        )
    ]


def input_pipeline_figures(data: dict[str, Any]) -> list[Figure]:
    s = data["settings"]
    ours, need = data["median_examples_per_s"], data["needed"]["gecko_1b"]
    return [
        Figure(
            f"Input pipeline, {s['rows']:,}-row JSONL, lengths 64/256/256, batch "
            f"{s['batch_size']} (examples/s)",
            number(ours),
            f"{number(need)} (Gecko-1B trainer on a v4-8, estimated)",
            ratio(ours, need),
        )
    ]


def stsb_finetune_figures(data: dict[str, Any]) -> list[Figure]:
    before, after = data["before"]["dev"], data["after"]["dev"]
    return [
        Figure(
            f"STS-B dev Spearman after {data['steps']} steps of gecko-train on STS-B train",
            number(after, 2),
            f"{number(before, 2)} (all-MiniLM-L6-v2 as released)",
            points(after, before),
        )
    ]


def train_memory_figures(data: dict[str, Any]) -> list[Figure]:
    gradcache = [r for r in data["rows"] if r.get("chunk")]
    ran = [r for r in gradcache if r.get("status") == "ok"]
    if not gradcache or not ran:
        return []
    reference = gradcache[0]
    largest = max(ran, key=lambda r: r["batch"])
    if reference.get("status") != "ok" or largest is reference:
        return []
    return [
        Figure(
            f"Peak RSS of one train step with GradCache (chunk {data['chunk']}), batch "
            f"{largest['batch']:,} (MiB)",
            number(largest["peak_rss_mib"]),
            f"{number(reference['peak_rss_mib'])} (same, batch {reference['batch']:,})",
            ratio(largest["peak_rss_mib"], reference["peak_rss_mib"]),
        )
    ]


def mrl_sweep_figures(data: dict[str, Any]) -> list[Figure]:
    trained, released = data["results"]["mrl"]["test"], data["results"]["released"]["test"]
    dims = sorted(int(d) for d in trained)
    full, small = dims[-1], dims[0]
    figures = []
    if "256" in trained and full != 256:
        figures.append(
            Figure(
                f"STS-B test Spearman at 256 of {full} dimensions, after MRL training "
                f"({data['steps']} steps)",
                number(trained["256"], 2),
                f"{number(trained[str(full)], 2)} (the same model at {full})",
                points(trained["256"], trained[str(full)]),
            )
        )
    figures.append(
        Figure(
            f"STS-B test Spearman at {small} dimensions, after MRL training",
            number(trained[str(small)], 2),
            f"{number(released[str(small)], 2)} (all-MiniLM-L6-v2 as released)",
            points(trained[str(small)], released[str(small)]),
        )
    )
    return figures


def eval_speed_figures(data: dict[str, Any]) -> list[Figure]:
    ours, anchor = data["results"]["gecko_jax"], data["results"]["sentence-transformers"]
    task = f"SciFact test, {data['documents']:,} documents, {data['queries']} queries"
    return [
        Figure(
            f"{task}: nDCG@10 of all-MiniLM-L6-v2, gecko_jax's evaluator",
            number(ours["ndcg_at_10"], 2),
            f"{number(anchor['ndcg_at_10'], 2)} (sentence-transformers' "
            "InformationRetrievalEvaluator)",
            points(ours["ndcg_at_10"], anchor["ndcg_at_10"]),
        ),
        Figure(
            f"{task}: evaluation time, encoding + scoring (s)",
            number(ours["seconds"], 1),
            f"{number(anchor['seconds'], 1)} (sentence-transformers)",
            time_ratio(ours["seconds"], anchor["seconds"]),
        ),
    ]


def serve_load_figures(data: dict[str, Any]) -> list[Figure]:
    summary = data["summary"]
    peer = next((p for p in ("infinity", "sentence-transformers") if p in summary), None)
    if "gecko-serve" not in summary or peer is None:
        return []
    label = {"infinity": "Infinity", "sentence-transformers": "sentence-transformers + FastAPI"}
    top = max(c["concurrency"] for c in summary["gecko-serve"].values())
    figures = []
    for key, ours in summary["gecko-serve"].items():
        anchor = summary[peer].get(key)
        if ours["concurrency"] != top or anchor is None:
            continue
        texts = ours["texts_per_request"]
        figures.append(
            Figure(
                f"Serving all-MiniLM-L6-v2 on CPU, concurrency {top}, {texts} "
                f"text{'s' if texts > 1 else ''}/request (texts/s, p99)",
                f"{number(ours['texts_per_s'])} (p99 {number(ours['p99_ms'])} ms)",
                f"{number(anchor['texts_per_s'])} (p99 {number(anchor['p99_ms'])} ms, "
                f"{label[peer]})",
                ratio(ours["texts_per_s"], anchor["texts_per_s"]),
            )
        )
    return figures


def saved_model_speed_figures(data: dict[str, Any]) -> list[Figure]:
    ours = data["summary"]["saved_model"]["median_sentences_per_s"]
    anchor = data["summary"]["encoder"]["median_sentences_per_s"]
    return [
        rate_figure(
            f"Exported SavedModel without JAX, {data['sentences']:,} STS-B sentences, batch "
            f"{data['batch_size']} (sentences/s)",
            ours,
            anchor,
            "gecko_jax Encoder.encode",
        )
    ]


def fret_throughput_figures(data: dict[str, Any]) -> list[Figure]:
    client = data["client"]
    top = max(client["levels"], key=lambda level: level["concurrency"])
    figures = [
        Figure(
            f"FRet LLM client, concurrency {top['concurrency']}, loopback server with "
            f"{client['latency_s'] * 1000:.0f} ms latency (requests/s)",
            number(top["requests_per_s"], 1),
            f"{number(top['ideal_per_s'])} (ideal: concurrency / latency)",
            ratio(top["requests_per_s"], top["ideal_per_s"]),
        )
    ]
    mining = data.get("mining")
    if mining and "failed" not in mining:
        figures.append(
            Figure(
                f"Exact top-{mining['k']} mining, {mining['queries']:,} queries x "
                f"{mining['passages']:,} passages, {mining['dim']}-d (s)",
                number(mining["jax_median_s"], 2),
                f"{number(mining['faiss_median_s'], 2)} (faiss-cpu IndexFlatIP)",
                time_ratio(mining["jax_median_s"], mining["faiss_median_s"]),
            )
        )
    return figures


def fresh_install_figures(data: dict[str, Any]) -> list[Figure]:
    verdict = "ok" if data["ok"] else "FAILED: " + "; ".join(data["problems"])
    return [
        Figure(
            f"Fresh install: wheel built and installed, then gecko-train ({data['steps']} "
            "steps) from outside the checkout",
            f"{verdict} ({data['install_s']:.0f} s install, {data['train_s']:.0f} s train)",
            "-",
            "-",
        )
    ]


def tpu_memory_plan_figures(data: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"Gecko-1b training memory per chip, gin/{plan['gin_file']} ({plan['chips']} "
            f"chips; planned, not measured)",
            f"{plan['per_chip_gib']['total']:.2f} GiB; {plan['step_s']:.2f} s/step at "
            f"{plan['mfu']:.0%} MFU",
            f"{plan['hbm_gib']:g} GiB HBM ({plan['chip']} chip)",
            ratio(plan["per_chip_gib"]["total"], plan["hbm_gib"]),
        )
        for plan in data["plans"]
    ]


def gpu_throughput_figures(data: dict[str, Any]) -> list[Figure]:
    def rate(side: dict[str, Any] | None) -> str:
        if side is None:
            return "not measured"
        mfu = f", {side['mfu']:.1%} MFU" if side.get("mfu") is not None else ""
        return number(side["sequences_per_s"]) + mfu

    figures = []
    for row in data["rows"]:
        ours, anchor = row.get("gecko_jax"), row.get("sentence-transformers")
        shape = ours or anchor
        what = "encoding" if row["task"] == "encode" else "train step"
        figures.append(
            Figure(
                f"{row['device']}: {what}, {row['model']} sizes, {row['precision']}, batch "
                f"{shape['batch']} x {shape['length']} tokens (sequences/s)",
                rate(ours),
                f"{rate(anchor)} (sentence-transformers)",
                ratio(ours["sequences_per_s"], anchor["sequences_per_s"])
                if ours and anchor
                else "",
            )
        )
    return figures


def finetune_quality_figures(data: dict[str, Any]) -> list[Figure]:
    by_name = {(m["model"], m["format"]): m for m in data["models"]}
    base = by_name[("all-MiniLM-L6-v2 (base)", "plain")]
    gecko = by_name[("gecko_jax", "Gecko prompts")]
    st = by_name[("sentence-transformers", "plain")]
    full = data["settings"]["dims"][0]
    key = f"SciFact nDCG@10 @{full}"
    recipe = f"{data['steps']} steps on SciFact train (mined hard negatives)"
    figures = [
        Figure(
            f"SciFact test nDCG@10 at {full}, fine-tuned {recipe}",
            number(gecko["scores"][key], 2),
            f"{number(st['scores'][key], 2)} (sentence-transformers, same data and budget)",
            points(gecko["scores"][key], st["scores"][key]),
        ),
        Figure(
            f"SciFact test nDCG@10 at {full}: the fine-tuned model against its start",
            number(gecko["scores"][key], 2),
            f"{number(base['scores'][key], 2)} (all-MiniLM-L6-v2 as released)",
            points(gecko["scores"][key], base["scores"][key]),
        ),
        Figure(
            f"Fine-tuning wall clock, {recipe}, whole training process (s)",
            number(gecko["train_seconds"]),
            f"{number(st['train_seconds'])} (sentence-transformers)",
            time_ratio(gecko["train_seconds"], st["train_seconds"]),
        ),
    ]
    chosen = finetune_quality.selected_model(data)
    if chosen:
        variant = data["selection"]["chosen"]
        figures.append(
            Figure(
                f"SciFact test nDCG@10 at {full}, same-tower negatives and prompts chosen on "
                f"held-out SciFact train queries (chose {variant})",
                number(chosen["scores"][key], 2),
                f"{number(st['scores'][key], 2)} (sentence-transformers, same data and budget)",
                points(chosen["scores"][key], st["scores"][key]),
            )
        )
    mixture = by_name.get(("gecko_jax mixture", "Gecko prompts"))
    if mixture:
        # The mixture line: the other tasks after mixing, against the base.
        keys = [f"{t} @{full}" for t in ("STS-B", "Banking77", "AmazonCF")]
        pairs = [(mixture["scores"][k], base["scores"][k]) for k in keys]
        worst = min(pairs, key=lambda p: round(p[0], 2) - round(p[1], 2))
        figures.append(
            Figure(
                f"STS-B / Banking77 / AmazonCF test at {full} after the mixture run "
                "(SciFact rows + STS-B + Banking77, one dataset per batch)",
                " / ".join(number(ours, 2) for ours, _ in pairs),
                " / ".join(number(anchor, 2) for _, anchor in pairs)
                + " (all-MiniLM-L6-v2 as released)",
                f"{points(*worst)} at worst",
            )
        )
    return figures


# -------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark script, how to run it (fully and briefly) and how to read its results.

    Attributes:
      name: the script's name (``bench/<name>.py``).
      title: what it measures, for rows without figures.
      full_args: the arguments of a full run (the figures the README quotes).
      quick_args: the arguments of a short pass, which writes its own results file.
      results: the full run's results JSON, relative to ``bench/results``.
      quick_results: the short pass's results JSON, relative to ``bench/results``.
      extract: results JSON -> figures.
      needs_gpu: a full run measures a GPU; on a machine without one it is skipped
        (its rows kept), while its short pass still runs.
    """

    name: str
    title: str
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    results: str
    quick_results: str
    extract: Callable[[dict[str, Any]], list[Figure]]
    needs_gpu: bool = False

    def argv(self, quick: bool) -> list[str]:
        """The script and its arguments, relative to the repository."""
        return [f"bench/{self.name}.py", *(self.quick_args if quick else self.full_args)]

    def display_command(self, quick: bool) -> str:
        return " ".join(["python", *self.argv(quick)])

    def results_path(self, quick: bool, results_dir: str | None = None) -> str:
        """Its results JSON (the short pass's with ``quick``) in ``results_dir``, by
        default ``bench/results``."""
        return os.path.join(
            results_dir or RESULTS_DIR, self.quick_results if quick else self.results
        )


def _standard(
    name: str, title: str, full: str, quick: str, extract, needs_gpu: bool = False
) -> Benchmark:  # type: ignore[no-untyped-def]
    """A benchmark writing ``<name>.json`` (full) and, given ``--output <name>_quick``,
    ``<name>_quick.json``."""
    return Benchmark(
        name,
        title,
        tuple(full.split()),
        (*quick.split(), "--output", f"{name}_quick"),
        f"{name}.json",
        f"{name}_quick.json",
        extract,
        needs_gpu,
    )


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "encode",
        "Encoding throughput against sentence-transformers",
        ("--rounds", "3", "--repeats", "3"),
        (
            *("--rounds", "1", "--repeats", "1", "--sentences", "256"),
            *("--output", "bench/results/encode_quick.json"),
        ),
        "encode.json",
        "encode_quick.json",
        encode_figures,
    ),
    _standard(
        "train_throughput",
        "Training throughput against sentence-transformers",
        "--rounds 3 --steps 12 --warmup 3",
        "--rounds 1 --steps 2 --warmup 1 --batch_size 8",
        train_throughput_figures,
    ),
    _standard(
        "input_pipeline",
        "Input pipeline throughput",
        "--batches 10 --repeats 3",
        "--rows 20000 --batch_size 128 --batches 4 --repeats 1",
        input_pipeline_figures,
    ),
    _standard(
        "stsb_finetune",
        "STS-B fine-tuning with gecko-train",
        "",
        "--steps 2 --batch_size 8 --length 16",
        stsb_finetune_figures,
    ),
    _standard(
        "train_memory",
        "Peak memory of a train step, with and without GradCache",
        "",
        "--gradcache_batches 16,32 --plain_batches 16 --chunk 8 --length 16 --cap_gib 8",
        train_memory_figures,
    ),
    _standard(
        "mrl_sweep",
        "Matryoshka sweep: STS-B against embedding size",
        "--steps 300",
        "--steps 2 --batch_size 8 --length 16 --dims 64,256,384 "
        "--output_dir bench/results/mrl_sweep_quick",
        mrl_sweep_figures,
    ),
    _standard(
        "eval_speed",
        "SciFact evaluation against sentence-transformers' evaluator",
        "",
        "--queries 20 --documents 300",
        eval_speed_figures,
    ),
    _standard(
        "gpu_throughput",
        "GPU throughput and MFU against sentence-transformers",
        "",
        "--quick --repeats 1 --models minilm --precisions bfloat16",
        gpu_throughput_figures,
        needs_gpu=True,
    ),
    Benchmark(
        "serve_load",
        "Serving load test against Infinity and sentence-transformers",
        (),
        (
            *("--quick", "--duration", "2", "--warmup", "1", "--concurrency", "1", "8"),
            *("--sizes", "1", "8", "--texts", "256"),
            *("--servers", "gecko-serve", "sentence-transformers"),
            *("--out", "bench/results/serve_load_quick"),
        ),
        os.path.join("serve_load", "serve_load.json"),
        os.path.join("serve_load_quick", "serve_load.json"),
        serve_load_figures,
    ),
    _standard(
        "saved_model_speed",
        "Exported SavedModel against Encoder.encode",
        "",
        "--rounds 1 --repeats 1 --sentences 128",
        saved_model_speed_figures,
    ),
    _standard(
        "fret_throughput",
        "FRet: LLM client throughput and neighbour mining against faiss",
        "",
        "--levels 1,8 --requests 10,40 --queries 500 --passages 5000 --repeats 1",
        fret_throughput_figures,
    ),
    Benchmark(
        "finetune_quality",
        "Fine-tuning quality on SciFact against sentence-transformers",
        (),
        ("--quick", "--workdir", "bench/results/work/finetune_quality"),
        "finetune_quality.json",
        "finetune_quality_quick.json",
        finetune_quality_figures,
    ),
    _standard(
        "fresh_install",
        "Fresh install from a wheel",
        "--steps 2",
        "--steps 2",
        fresh_install_figures,
    ),
    _standard(
        "tpu_memory_plan",
        "Planned per-chip memory of the TPU examples",
        "",
        "",
        tpu_memory_plan_figures,
    ),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def select(only: str | None) -> list[Benchmark]:
    """The benchmarks named in ``--only`` (comma-separated), in registry order; all if None.

    Raises:
      ValueError: an unknown name (the known ones are listed).
    """
    if not only:
        return list(BENCHMARKS)
    names = [n.strip().removesuffix(".py") for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise ValueError(
            f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(BY_NAME)}"
        )
    return [b for b in BENCHMARKS if b.name in names]


# ------------------------------------------------------------------ results -> rows


def describe_machine(machine: dict[str, Any]) -> str:
    """``2 CPU cores (AMD EPYC)`` plus the accelerators, if any."""
    text = f"{machine.get('cpu_count', '?')} CPU cores ({machine.get('cpu', 'unknown CPU')})"
    return ", ".join([text, *machine.get("accelerators", [])])


def day(iso: str) -> str:
    """The date part of an ISO timestamp (``2026-11-30``)."""
    return iso[:10]


def rows_from_results(
    bench: Benchmark,
    quick: bool,
    this_run: dict[str, Any] | None = None,
    results_dir: str | None = None,
) -> list[Row] | None:
    """The rows of ``bench``'s results file (in ``results_dir``, by default
    ``bench/results``), or None when there is none.

    Date, machine and command come from the file; a file that lacks them takes this
    run's (``this_run``: the record of the run that just wrote it), else the file's
    modification date and :data:`MACHINE_NOT_RECORDED`.

    Raises:
      ValueError: the file is not the JSON this benchmark writes (named in the message).
    """
    import json

    path = bench.results_path(quick, results_dir)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        figures = bench.extract(data)
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as error:
        raise ValueError(f"{path}: not readable as {bench.name}'s results ({error!r})") from error
    if "date" in data:
        date = day(data["date"])
    elif this_run:
        date = day(this_run["date"])
    else:
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        date = f"{mtime:%Y-%m-%d} (file date)"
    if "machine" in data:
        machine = describe_machine(data["machine"])
    elif this_run:
        machine = describe_machine(this_run["machine"])
    else:
        machine = MACHINE_NOT_RECORDED
    command = data.get("command") or bench.display_command(quick)
    if not figures:
        figures = [Figure(bench.title, "no figure in the results", os.path.relpath(path, REPO), "")]
    return [
        Row(bench.name, f.figure, f.ours, f.anchor, f.ratio, command, date, machine)
        for f in figures
    ]


def missing_row(bench: Benchmark, quick: bool) -> Row:
    """The row of a benchmark that has no recorded results: never a typed number."""
    return Row(bench.name, bench.title, NO_RESULTS, "", "", bench.display_command(quick), "", "")


def failed_row(bench: Benchmark, quick: bool, reason: str, log_path: str) -> Row:
    record = {"date": _provenance.utc_now(), "machine": _provenance.machine()}
    return Row(
        bench.name,
        bench.title,
        "failed",
        f"{reason}; log: {os.path.relpath(log_path, REPO)}",
        "",
        bench.display_command(quick),
        day(record["date"]),
        describe_machine(record["machine"]),
    )


# -------------------------------------------------------------------------- tables


def _escape(cell: str) -> str:
    return " ".join(cell.split()).replace("|", "\\|")


def render_table(rows: Iterable[Row]) -> str:
    """The Markdown table of ``rows`` (commands as code)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_escape(c) for c in row.cells()]
        command = COLUMNS.index("command")
        cells[command] = f"`{cells[command]}`" if cells[command] else ""
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_block(rows: Iterable[Row]) -> str:
    """What README.md and bench/README.md include: a how-to-read line and the table."""
    return (
        "ours = gecko_jax; anchor = what it is compared with; ratio = ours / anchor "
        "(for times, also how much faster), or the difference in points for scores. "
        "Generated by `python bench/run_all.py` from each benchmark's last run "
        "(`--only NAME` reruns one); do not edit by hand.\n\n" + render_table(rows)
    )


def render_file(rows: Iterable[Row], quick: bool) -> str:
    title = "# Benchmark results" + (" (quick pass: not for quoting)" if quick else "")
    return f"{title}\n\n{render_block(rows)}"


_COMMAND_BENCH = re.compile(r"bench/(\w+)\.py")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def parse_rows(text: str) -> dict[str, list[Row]]:
    """The rows of a table written by :func:`render_table`, by benchmark (the one its
    command runs); rows of no known benchmark are dropped."""
    found: dict[str, list[Row]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        if len(cells) != len(COLUMNS) or cells[0] == "figure" or set(cells[0]) <= {"-"}:
            continue
        values = dict(zip(COLUMNS, cells))
        values["command"] = values["command"].strip("`")
        match = _COMMAND_BENCH.search(values["command"])
        if match and match.group(1) in BY_NAME:
            found.setdefault(match.group(1), []).append(Row(match.group(1), **values))
    return found


def read_rows(path: str) -> dict[str, list[Row]]:
    """The rows of the table in ``path`` by benchmark; empty when there is no file."""
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return parse_rows(f.read())


def merge(old: dict[str, list[Row]], new: dict[str, list[Row]], quick: bool) -> list[Row]:
    """Every benchmark's rows in registry order: the new ones, else the old, else a
    'no recorded results' row."""
    rows: list[Row] = []
    for bench in BENCHMARKS:
        rows += new.get(bench.name) or old.get(bench.name) or [missing_row(bench, quick)]
    return rows


def write_atomically(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def splice(path: str, block: str) -> bool:
    """Replaces the text between the bench-results markers of ``path`` with ``block``.

    Returns False, leaving the file alone, when it does not hold exactly one begin
    marker followed by one end marker.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        return False
    begin, end = text.index(BEGIN_MARKER) + len(BEGIN_MARKER), text.index(END_MARKER)
    if end < begin:
        return False
    spliced = text[:begin] + "\n" + block.strip("\n") + "\n" + text[end:]
    if spliced != text:
        write_atomically(path, spliced)
    return True


# -------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one benchmark run ended."""

    ok: bool
    reason: str
    seconds: float
    log_path: str


def bench_env() -> dict[str, str]:
    """The benchmarks' environment: offline and quiet, everything else as given."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_benchmark(bench: Benchmark, quick: bool, timeout_s: float | None) -> Outcome:
    """Runs one benchmark from the repository root, its output in its log; a run that
    exits non-zero, times out or writes no results file is not ok."""
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, f"{bench.name}{'_quick' if quick else ''}.log")
    results = bench.results_path(quick)
    started_wall, start = time.time(), time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {bench.display_command(quick)}\n")
        log.flush()
        # Its own process group, so a timeout or Ctrl-C stops everything it started.
        process = subprocess.Popen(
            [sys.executable, *bench.argv(quick)],
            cwd=REPO,
            env=bench_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            return Outcome(False, f"timed out after {timeout_s:.0f} s", 0.0, log_path)
        except BaseException:
            _stop(process)
            raise
    seconds = time.perf_counter() - start
    if code != 0:
        reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        return Outcome(False, reason, seconds, log_path)
    if not os.path.isfile(results) or os.path.getmtime(results) < started_wall - 1:
        return Outcome(
            False, f"no results written to {os.path.relpath(results, REPO)}", seconds, log_path
        )
    return Outcome(True, "ok", seconds, log_path)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(path: str, lines: int = 5) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


# ----------------------------------------------------------------------------- main


def list_benchmarks(benchmarks: list[Benchmark], quick: bool) -> None:
    for bench in benchmarks:
        path = bench.results_path(quick)
        state = "results recorded" if os.path.isfile(path) else "no results yet"
        print(f"{bench.name:<18} {bench.display_command(quick)}")
        print(f"{'':<18} -> {os.path.relpath(path, REPO)} ({state})")


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen benchmarks and writes the table; returns the exit status (1 if a
    benchmark failed, 130 on Ctrl-C after writing the rows of the finished ones)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--quick", action="store_true", help="a short pass of each benchmark")
    parser.add_argument("--list", action="store_true", help="print what would run, run nothing")
    parser.add_argument(
        "--from_results",
        action="store_true",
        help="run nothing: rebuild the chosen rows from the results files already there",
    )
    parser.add_argument("--timeout_s", type=float, help="stop a benchmark after this long")
    parser.add_argument(
        "--budget_s",
        type=float,
        help="start no benchmark after this many seconds; those not started are named "
        "and keep their rows",
    )
    parser.add_argument(
        "--table",
        help="write the table here instead (bench/RESULTS.md, or bench/results/"
        "RESULTS_quick.md with --quick); the READMEs are updated only for bench/RESULTS.md",
    )
    parser.add_argument(
        "--no_readme",
        action="store_true",
        help="write the table only, not into README.md and bench/README.md",
    )
    args = parser.parse_args(argv)
    try:
        benchmarks = select(args.only)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        list_benchmarks(benchmarks, args.quick)
        return 0
    table = os.path.abspath(args.table or (QUICK_MD if args.quick else RESULTS_MD))
    old = read_rows(table)
    new: dict[str, list[Row]] = {}
    failed: list[str] = []
    not_started: list[str] = []
    interrupted = False
    started = budget_clock()
    try:
        for index, bench in enumerate(benchmarks, 1):
            prefix = f"[{index}/{len(benchmarks)}] {bench.name}"
            if args.budget_s is not None and budget_clock() - started >= args.budget_s:
                not_started.append(bench.name)
                print(f"{prefix}: not started, --budget_s {args.budget_s:.0f} s spent")
                continue
            if args.from_results:
                try:
                    rows = rows_from_results(bench, args.quick)
                except ValueError as error:
                    failed.append(bench.name)
                    print(f"{prefix}: {error}; its rows are kept as they were", flush=True)
                    continue
                found = "rows from" if rows else "no results file (rows kept):"
                print(f"{prefix}: {found} {os.path.relpath(bench.results_path(args.quick))}")
                if rows:
                    new[bench.name] = rows
                continue
            if bench.needs_gpu and not args.quick and not _provenance.has_gpu():
                print(f"{prefix}: skipped, no GPU on this machine (its rows are kept)")
                continue
            print(f"{prefix}: {bench.display_command(args.quick)}", flush=True)
            this_run = {"date": _provenance.utc_now(), "machine": _provenance.machine()}
            outcome = run_benchmark(bench, args.quick, args.timeout_s)
            if outcome.ok:
                try:
                    new[bench.name] = rows_from_results(bench, args.quick, this_run) or []
                except ValueError as error:
                    outcome = dataclasses.replace(outcome, ok=False, reason=str(error))
            if outcome.ok:
                print(f"{prefix}: ok in {outcome.seconds:.0f} s", flush=True)
            else:
                failed.append(bench.name)
                new[bench.name] = [failed_row(bench, args.quick, outcome.reason, outcome.log_path)]
                print(
                    f"{prefix}: FAILED after {outcome.seconds:.0f} s ({outcome.reason}); log "
                    f"{outcome.log_path}:\n{_log_tail(outcome.log_path)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: writing the rows of the benchmarks that finished", flush=True)
    rows = merge(old, new, args.quick)
    write_atomically(table, render_file(rows, args.quick))
    print(f"table: {table}")
    if table == os.path.abspath(RESULTS_MD) and not args.quick and not args.no_readme:
        block = render_block(rows)
        for path in SPLICE_TARGETS:
            if not os.path.isfile(path) or not splice(path, block):
                print(
                    f"{os.path.relpath(path, REPO)}: no {BEGIN_MARKER} ... {END_MARKER} "
                    "markers; left unchanged"
                )
            else:
                print(f"{os.path.relpath(path, REPO)}: table updated")
    if not_started:
        print(f"not started (--budget_s): {', '.join(not_started)}")
    if interrupted:
        return 130
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
