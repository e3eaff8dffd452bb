"""``bench/run_all.py``: results files -> table rows, the table, subset updates, the README
splice, and one real ``--quick`` run over a cheap subset (with one benchmark failing).

The extractors read results files written by real short passes of every benchmark
(``tests/bench/data/quick_results``, see its README); the live run writes fresh ones.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import run_all

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "quick_results")
MACHINE = "2 CPU cores (AMD EPYC)"

# bench -> its figures (figure, ours, anchor, ratio) from the recorded quick results.
EXPECTED = {
    "encode": [
        (
            "Encoding 256 STS-B sentences, all-MiniLM-L6-v2, batch 32, CPU (sentences/s)",
            "364",
            "51 (sentence-transformers)",
            "7.19x",
        )
    ],
    "train_throughput": [
        (
            "Training all-MiniLM-L6-v2, batch 8, 128 tokens per side, CPU (examples/s)",
            "4.00",
            "1.41 (sentence-transformers, MNRL)",
            "2.83x",
        )
    ],
    "input_pipeline": [
        (
            "Input pipeline, 20,000-row JSONL, lengths 64/256/256, batch 128 (examples/s)",
            "6,813",
            "106 (Gecko-1B trainer on a v4-8, estimated)",
            "64.22x",
        )
    ],
    "stsb_finetune": [
        (
            "STS-B dev Spearman after 2 steps of gecko-train on STS-B train",
            "86.72",
            "86.72 (all-MiniLM-L6-v2 as released)",
            "+0.00 points",
        )
    ],
    "train_memory": [
        (
            "Peak RSS of one train step with GradCache (chunk 8), batch 32 (MiB)",
            "1,910",
            "1,912 (same, batch 16)",
            "1.00x",
        )
    ],
    "mrl_sweep": [
        (
            "STS-B test Spearman at 256 of 384 dimensions, after MRL training (2 steps)",
            "81.89",
            "82.02 (the same model at 384)",
            "-0.13 points",
        ),
        (
            "STS-B test Spearman at 64 dimensions, after MRL training",
            "79.20",
            "79.21 (all-MiniLM-L6-v2 as released)",
            "-0.01 points",
        ),
    ],
    "eval_speed": [
        (
            "SciFact test, 300 documents, 20 queries: nDCG@10 of all-MiniLM-L6-v2, "
            "gecko_jax's evaluator",
            "92.50",
            "92.50 (sentence-transformers' InformationRetrievalEvaluator)",
            "+0.00 points",
        ),
        (
            "SciFact test, 300 documents, 20 queries: evaluation time, encoding + scoring (s)",
            "41.1",
            "41.3 (sentence-transformers)",
            "1.00x (1.00x faster)",
        ),
    ],
    "gpu_throughput": [
        (
            "cpu: encoding, minilm sizes, bfloat16, batch 8 x 16 tokens (sequences/s)",
            "131",
            "5 (sentence-transformers)",
            "24.79x",
        ),
        (
            "cpu: train step, minilm sizes, bfloat16, batch 4 x 16 tokens (sequences/s)",
            "31",
            "1 (sentence-transformers)",
            "28.27x",
        ),
    ],
    "serve_load": [
        (
            "Serving all-MiniLM-L6-v2 on CPU, concurrency 8, 1 text/request (texts/s, p99)",
            "182 (p99 64 ms)",
            "50 (p99 250 ms, sentence-transformers + FastAPI)",
            "3.60x",
        ),
        (
            "Serving all-MiniLM-L6-v2 on CPU, concurrency 8, 8 texts/request (texts/s, p99)",
            "240 (p99 326 ms)",
            "160 (p99 572 ms, sentence-transformers + FastAPI)",
            "1.50x",
        ),
    ],
    "saved_model_speed": [
        (
            "Exported SavedModel without JAX, 128 STS-B sentences, batch 32 (sentences/s)",
            "228",
            "365 (gecko_jax Encoder.encode)",
            "0.63x",
        )
    ],
    "fret_throughput": [
        (
            "FRet LLM client, concurrency 8, loopback server with 50 ms latency (requests/s)",
            "128.1",
            "160 (ideal: concurrency / latency)",
            "0.80x",
        ),
        (
            "Exact top-20 mining, 500 queries x 5,000 passages, 384-d (s)",
            "0.04",
            "0.12 (faiss-cpu IndexFlatIP)",
            "0.33x (3.08x faster)",
        ),
    ],
    "finetune_quality": [
        (
            "SciFact test nDCG@10 at 384, fine-tuned 2 steps on SciFact train (mined hard "
            "negatives)",
            "94.06",
            "91.83 (sentence-transformers, same data and budget)",
            "+2.23 points",
        ),
        (
            "SciFact test nDCG@10 at 384: the fine-tuned model against its start",
            "94.06",
            "91.83 (all-MiniLM-L6-v2 as released)",
            "+2.23 points",
        ),
        (
            "Fine-tuning wall clock, 2 steps on SciFact train (mined hard negatives), whole "
            "training process (s)",
            "64",
            "111 (sentence-transformers)",
            "0.57x (1.74x faster)",
        ),
        (
            "SciFact test nDCG@10 at 384, same-tower negatives and prompts chosen on held-out "
            "SciFact train queries (chose default)",
            "94.06",
            "91.83 (sentence-transformers, same data and budget)",
            "+2.23 points",
        ),
        (
            "STS-B / Banking77 / AmazonCF test at 384 after the mixture run (SciFact rows + "
            "STS-B + Banking77, one dataset per batch)",
            "91.76 / 88.94 / 64.56",
            "93.68 / 90.35 / 68.93 (all-MiniLM-L6-v2 as released)",
            "-4.37 points at worst",
        ),
    ],
    "fresh_install": [
        (
            "Fresh install: wheel built and installed, then gecko-train (2 steps) from outside "
            "the checkout",
            "ok (4 s install, 27 s train)",
            "-",
            "-",
        )
    ],
    "tpu_memory_plan": [
        (
            "Gecko-1b training memory per chip, gin/tpu/v4_64.gin (32 chips; planned, not "
            "measured)",
            "18.11 GiB; 2.33 s/step at 40% MFU",
            "32 GiB HBM (v4 chip)",
            "0.57x",
        ),
        (
            "Gecko-1b training memory per chip, gin/tpu/v5e_64.gin (64 chips; planned, not "
            "measured)",
            "9.68 GiB; 7.64 s/step at 40% MFU",
            "16 GiB HBM (v5e chip)",
            "0.60x",
        ),
    ],
}


def recorded_rows() -> dict[str, list[run_all.Row]]:
    return {
        b.name: run_all.rows_from_results(b, quick=True, results_dir=RECORDED)
        for b in run_all.BENCHMARKS
    }


def test_every_benchmark_has_an_extractor_checked_here() -> None:
    assert sorted(EXPECTED) == sorted(b.name for b in run_all.BENCHMARKS)
    scripts = {
        name[:-3]
        for name in os.listdir(os.path.join(REPO, "bench"))
        if name.endswith(".py") and not name.startswith("_")
    }
    # Every script but the orchestrator itself and the serving helper is a benchmark.
    assert scripts - {"run_all", "st_server"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_extractor_reads_the_recorded_quick_results(name: str) -> None:
    bench = run_all.BY_NAME[name]
    rows = run_all.rows_from_results(bench, quick=True, results_dir=RECORDED)
    assert [(r.figure, r.ours, r.anchor, r.ratio) for r in rows] == EXPECTED[name]
    assert {r.bench for r in rows} == {name}
    assert {(r.date, r.machine) for r in rows} == {("2026-11-30", MACHINE)}
    if name == "finetune_quality":  # recorded from a run with every option and its own workdir
        assert {r.command for r in rows} == {
            "python bench/finetune_quality.py --quick --ablations --mixture --select_on_dev "
            "--workdir /tmp/fq/work"
        }
    else:
        assert {r.command for r in rows} == {bench.display_command(quick=True)}


def test_results_without_date_or_machine(tmp_path) -> None:
    bench = run_all.BY_NAME["finetune_quality"]
    with open(os.path.join(RECORDED, bench.quick_results), encoding="utf-8") as f:
        data = json.load(f)
    del data["date"], data["machine"]  # as results files written before they were recorded
    (tmp_path / bench.quick_results).write_text(json.dumps(data))
    stamp = time.mktime((2026, 11, 24, 12, 0, 0, 0, 0, -1))
    os.utime(tmp_path / bench.quick_results, (stamp, stamp))
    rows = run_all.rows_from_results(bench, quick=True, results_dir=str(tmp_path))
    assert {(r.date, r.machine) for r in rows} == {
        ("2026-11-24 (file date)", "machine not recorded")
    }
    # Just written by a run of run_all: that run's date and machine.
    this_run = {
        "date": "2026-12-01T10:00:00+00:00",
        "machine": {"cpu": "Some CPU", "cpu_count": 16, "accelerators": ["NVIDIA H200"]},
    }
    rows = run_all.rows_from_results(bench, True, this_run, results_dir=str(tmp_path))
    assert {(r.date, r.machine) for r in rows} == {
        ("2026-12-01", "16 CPU cores (Some CPU), NVIDIA H200")
    }
    assert run_all.rows_from_results(bench, quick=False, results_dir=str(tmp_path)) is None


def test_unreadable_results_name_the_file(tmp_path) -> None:
    (tmp_path / "encode_quick.json").write_text('{"summary": {}}')
    with pytest.raises(ValueError, match="encode_quick.json: not readable as encode's results"):
        run_all.rows_from_results(run_all.BY_NAME["encode"], True, results_dir=str(tmp_path))


def test_ratio_formatting() -> None:
    assert run_all.number(21636.4) == "21,636"
    assert run_all.number(11.714, 2) == "11.71"
    assert run_all.ratio(11.71, 7.16) == "1.64x"
    assert run_all.time_ratio(132.8, 211.0) == "0.63x (1.59x faster)"
    assert run_all.time_ratio(10.0, 8.0) == "1.25x (1.25x slower)"
    assert run_all.points(94.06, 91.83) == "+2.23 points"
    assert run_all.points(79.204, 79.2) == "+0.00 points"  # never "-0.00"
    assert run_all.points(79.201, 79.204) == "+0.00 points"


def test_table_round_trips_and_escapes_pipes() -> None:
    rows = [row for rows in recorded_rows().values() for row in rows]
    odd = dataclasses.replace(rows[-1], figure="a | b", ours="x\ny")
    text = run_all.render_table([*rows, odd])
    assert text.splitlines()[0] == "| figure | ours | anchor | ratio | command | date | machine |"
    assert "a \\| b" in text and "| x y |" in text
    parsed = run_all.parse_rows(text)
    flat = [row for name in parsed for row in parsed[name]]
    assert flat[: len(rows)] == rows
    assert flat[-1] == dataclasses.replace(odd, ours="x y")


def test_subset_update_keeps_the_other_rows() -> None:
    recorded = recorded_rows()
    old = {name: rows for name, rows in recorded.items() if name != "train_memory"}
    fresh = [dataclasses.replace(r, ours="1") for r in recorded["encode"]]
    merged = run_all.merge(old, {"encode": fresh}, quick=False)
    by_bench: dict[str, list[run_all.Row]] = {}
    for row in merged:
        by_bench.setdefault(row.bench, []).append(row)
    assert list(by_bench) == [b.name for b in run_all.BENCHMARKS]  # registry order
    assert by_bench["encode"] == fresh
    for name in set(old) - {"encode"}:
        assert by_bench[name] == old[name]
    (missing,) = by_bench["train_memory"]  # nothing recorded: says so, no number
    assert (missing.ours, missing.anchor, missing.ratio, missing.date) == (
        "no recorded results",
        "",
        "",
        "",
    )
    assert missing.command == "python bench/train_memory.py"


def _without_markers(text: str) -> str:
    return text.replace(run_all.BEGIN_MARKER, "").replace(run_all.END_MARKER, "")


@pytest.mark.parametrize("readme", ["README.md", "bench/README.md"])
def test_splice_into_a_copy_of_the_readme(tmp_path, readme: str) -> None:
    with open(os.path.join(REPO, readme), encoding="utf-8") as f:
        original = _without_markers(f.read())
    block = run_all.render_block([row for rows in recorded_rows().values() for row in rows])

    absent = tmp_path / "absent.md"
    absent.write_text(original, encoding="utf-8")
    assert not run_all.splice(str(absent), block)
    assert absent.read_text(encoding="utf-8") == original

    head, tail = original[:200], original[200:]
    present = tmp_path / "present.md"
    marked = f"{head}\n{run_all.BEGIN_MARKER}\nold figures\n{run_all.END_MARKER}\n{tail}"
    present.write_text(marked, encoding="utf-8")
    assert run_all.splice(str(present), block)
    spliced = present.read_text(encoding="utf-8")
    expected = f"{head}\n{run_all.BEGIN_MARKER}\n{block.strip()}\n{run_all.END_MARKER}\n{tail}"
    assert spliced == expected
    assert run_all.splice(str(present), block)  # a second splice changes nothing
    assert present.read_text(encoding="utf-8") == expected

    reversed_markers = tmp_path / "reversed.md"
    text = f"{head}\n{run_all.END_MARKER}\nx\n{run_all.BEGIN_MARKER}\n{tail}"
    reversed_markers.write_text(text, encoding="utf-8")
    assert not run_all.splice(str(reversed_markers), block)
    assert reversed_markers.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("readme", ["README.md", "bench/README.md"])
def test_the_readmes_show_the_committed_table(readme: str) -> None:
    """README's figures are bench/RESULTS.md's, as run_all last wrote them."""
    with open(os.path.join(REPO, readme), encoding="utf-8") as f:
        text = f.read()
    begin = text.index(run_all.BEGIN_MARKER) + len(run_all.BEGIN_MARKER)
    shown = text[begin : text.index(run_all.END_MARKER)].strip()
    rows = run_all.read_rows(run_all.RESULTS_MD)
    assert rows
    assert shown == run_all.render_block([r for bench in rows.values() for r in bench]).strip()


def test_a_gpu_benchmark_is_skipped_without_a_gpu(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(run_all._provenance, "has_gpu", lambda: False)
    monkeypatch.setattr(run_all, "run_benchmark", lambda *a: pytest.fail("it ran"))
    kept = run_all.read_rows(run_all.RESULTS_MD)["gpu_throughput"]
    table = tmp_path / "RESULTS.md"
    table.write_text(run_all.render_file(kept, quick=False))
    assert run_all.main(["--only", "gpu_throughput", "--table", str(table)]) == 0
    assert "skipped, no GPU on this machine" in capsys.readouterr().out
    assert run_all.read_rows(str(table))["gpu_throughput"] == kept


def test_a_spent_budget_starts_nothing_more_and_keeps_the_rows(
    tmp_path, monkeypatch, capsys
) -> None:
    clock = iter([0.0, 5.0, 11.0, 12.0])  # start; before encode; before the other two
    monkeypatch.setattr(run_all, "budget_clock", lambda: next(clock))
    ran: list[str] = []

    def fake_run(bench, quick, timeout_s):  # type: ignore[no-untyped-def]
        ran.append(bench.name)
        return run_all.Outcome(False, "exit code 3", 1.0, str(tmp_path / "log"))

    (tmp_path / "log").write_text("boom\n")
    monkeypatch.setattr(run_all, "run_benchmark", fake_run)
    kept = run_all.read_rows(run_all.RESULTS_MD)
    table = tmp_path / "RESULTS.md"
    table.write_text(run_all.render_file(run_all.merge(kept, {}, False), quick=False))
    names = "encode,fret_throughput,tpu_memory_plan"
    argv = ["--only", names, "--budget_s", "10", "--table", str(table), "--no_readme"]
    assert run_all.main(argv) == 1  # encode ran (and failed); the budget then ran out
    out = capsys.readouterr().out
    assert ran == ["encode"]
    assert "[2/3] fret_throughput: not started, --budget_s 10 s spent" in out
    assert "not started (--budget_s): fret_throughput, tpu_memory_plan" in out
    after = run_all.read_rows(str(table))
    assert after["encode"][0].ours == "failed"
    assert after["fret_throughput"] == kept["fret_throughput"]
    assert after["tpu_memory_plan"] == kept["tpu_memory_plan"]


def test_the_gpu_benchmark_refuses_a_full_run_without_a_gpu() -> None:
    # A PATH without nvidia-smi: no GPU is seen, whatever this machine has.
    no_gpu = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "gpu_throughput.py")],
        capture_output=True,
        text=True,
        env=no_gpu,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "no GPU here" in done.stderr and "--quick" in done.stderr


def test_list_and_unknown_names(capsys) -> None:
    assert run_all.main(["--list", "--quick", "--only", "encode,tpu_memory_plan"]) == 0
    out = capsys.readouterr().out
    assert run_all.BY_NAME["encode"].display_command(quick=True) in out
    assert "python bench/tpu_memory_plan.py --output tpu_memory_plan_quick" in out
    assert "train_throughput" not in out
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["--only", "encode,nope"])
    assert exit_info.value.code == 2
    assert "--only: unknown benchmark(s) nope" in capsys.readouterr().err


def test_quick_run_of_a_subset_writes_the_table(tmp_path) -> None:
    """A real ``run_all.py --quick`` over two cheap benchmarks and one that fails (its
    evaluation data is missing): the failure is a row with its log, the others run, the
    rows of the benchmarks not run stay as they were, and the exit status is 1."""
    table = tmp_path / "RESULTS_quick.md"
    before = recorded_rows()
    table.write_text(run_all.render_file(run_all.merge(before, {}, True), True), encoding="utf-8")
    started = time.time()
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "run_all.py"), "--quick"]
        + ["--only", "tpu_memory_plan,encode,fret_throughput", "--table", str(table)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "GECKO_EVAL_DATA": str(tmp_path / "no_data")},
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "encode: FAILED" in done.stdout and "failed: encode" in done.stdout
    assert "fret_throughput: ok in" in done.stdout and "tpu_memory_plan: ok in" in done.stdout

    after = run_all.read_rows(str(table))
    assert list(after) == [b.name for b in run_all.BENCHMARKS]
    for name in set(before) - {"tpu_memory_plan", "encode", "fret_throughput"}:
        assert after[name] == before[name]
    (failed,) = after["encode"]
    assert failed.ours == "failed"
    assert failed.anchor == "exit code 1; log: bench/results/logs/encode_quick.log"
    with open(os.path.join(REPO, "bench", "results", "logs", "encode_quick.log")) as f:
        log = f.read()
    assert log.startswith("$ " + run_all.BY_NAME["encode"].display_command(quick=True))
    assert "no_data" in log
    for name in ("tpu_memory_plan", "fret_throughput"):
        bench = run_all.BY_NAME[name]
        assert os.path.getmtime(bench.results_path(quick=True)) >= started
        fresh = run_all.rows_from_results(bench, quick=True)
        assert after[name] == fresh
        assert [r.figure for r in fresh] == [e[0] for e in EXPECTED[name]]
        assert {r.date for r in fresh} == {time.strftime("%Y-%m-%d", time.gmtime())}
    # tpu_memory_plan is deterministic: the same figures as the recorded run.
    assert [(r.ours, r.anchor, r.ratio) for r in after["tpu_memory_plan"]] == [
        e[1:] for e in EXPECTED["tpu_memory_plan"]
    ]
