"""gecko-demo: the corpus it builds, and the whole recipe with --quick in a subprocess,
interrupted during fine-tuning and resumed by a rerun in the same work directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from gecko_jax.cli import demo as demo_cli
from gecko_jax.cli import startup
from gecko_jax.demo import corpus

# absl/glog lines (E1129 12:00:00.000 ...), Python logging's "ERROR:..." and the like.
ERROR_LINE = re.compile(r"^E\d{4} |\bERROR\b")
STAGES = 10
FINE_TUNING_START = "fine-tune on the FRet rows (gecko-train) ..."
STAND_IN = "loopback, the built-in deterministic stand-in"


def _user_environ() -> dict[str, str]:
    """The environment a user has: no settings that hide log lines, no LLM, no eval data."""
    hidden = startup.QUIET_ENVIRON.keys() | {
        "TF_CPP_MIN_LOG_LEVEL",
        "PYTHONPATH",
        "GECKO_LLM",
        "GECKO_EVAL_DATA",
        "XLA_FLAGS",  # the test suite's 8 fake CPU devices
    }
    environ = {k: v for k, v in os.environ.items() if k not in hidden}
    return {**environ, "HF_HUB_OFFLINE": "1"}


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if ERROR_LINE.search(line)]


def _demo_argv(workdir: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "gecko-demo")
    return [script, "--quick", "--workdir", workdir]


# ------------------------------------------------------------------------------ corpus


def test_corpus_is_deterministic_with_a_disjoint_held_out_split() -> None:
    train, held_out = corpus.build_corpus()
    again_train, again_held_out = corpus.build_corpus()
    assert (train, held_out) == (again_train, again_held_out)
    assert len(train) > 500 and len(held_out) > 50
    assert not {p.title for p in train} & {p.title for p in held_out}
    words = [len(p.text.split()) for p in train + held_out]
    assert min(words) >= corpus.MIN_WORDS and max(words) <= corpus.MAX_WORDS + 30
    assert sum(words) / len(words) >= 90
    titles = {p.title for p in train + held_out}
    assert "Python language reference: assert" in titles and "json.dumps" in titles
    assert corpus.build_corpus(10, 3) == (train[:10], held_out[:3])


def test_split_text_packs_paragraphs() -> None:
    paragraph = " ".join(f"w{i}" for i in range(60))
    passages = corpus.split_text("\n\n".join([paragraph] * 5))
    assert [len(p.split()) for p in passages] == [120, 120, 60]
    assert corpus.split_text("too short") == []


def test_a_workdir_of_another_mode_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "demo.json").write_text(json.dumps({"mode": "full", "llm": "loopback"}))
    assert demo_cli.main(["--quick", "--workdir", str(tmp_path), "--llm", "loopback"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gecko-demo: error: --workdir {tmp_path} holds a demo run with mode 'full', not "
        "mode 'quick'; give another --workdir (or delete that one)"
    ]


# --------------------------------------------------------------------- the quick run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("demo") / "work")


@pytest.fixture(scope="module")
def interrupted(workdir: str) -> tuple[int, str, str]:
    """A quick run sent SIGINT (as Ctrl-C) once fine-tuning has logged its first step."""
    process = subprocess.Popen(
        _demo_argv(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_user_environ(),
        cwd=os.path.dirname(workdir),
    )
    deadline = time.monotonic() + 600
    lines = []
    fine_tuning = False
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        fine_tuning = fine_tuning or FINE_TUNING_START in line
        if fine_tuning and re.search(r"\bstep \d+/\d+ ", line):
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
    out, err = process.communicate(timeout=300)
    return process.returncode, out, "".join(lines) + err


@pytest.fixture(scope="module")
def resumed(workdir: str, interrupted: tuple[int, str, str]) -> subprocess.CompletedProcess:
    """The same command again, to the end."""
    return subprocess.run(
        _demo_argv(workdir),
        capture_output=True,
        text=True,
        env=_user_environ(),
        cwd=os.path.dirname(workdir),
        timeout=900,
    )


def test_sigint_during_fine_tuning_keeps_the_finished_stages(
    workdir: str, interrupted: tuple[int, str, str]
) -> None:
    status, out, err = interrupted
    assert status == 130, err[-3000:]
    assert out.splitlines()[0] == f"gecko-demo: work directory {workdir} (quick run)"
    ours = [line for line in err.splitlines() if line.startswith("gecko-demo:")]
    assert ours[-1] == (
        f"gecko-demo: interrupted; finished stages kept in {workdir}: corpus, fret_train, "
        "fret_held_out, eval_start, prefinetune; rerun the same command to resume (a "
        "training run resumes from its last checkpoint)"
    )
    assert len([line for line in ours if "interrupted" in line]) == 1
    assert "Traceback" not in err
    markers = sorted(os.listdir(os.path.join(workdir, "stages")))
    assert "finetune.done" not in markers and "prefinetune.done" in markers
    # gecko-train saved the step it was on: the rerun resumes from it.
    assert os.listdir(os.path.join(workdir, "models", "finetune", "checkpoints"))
    assert not [f for f in os.listdir(os.path.join(workdir, "eval")) if f.endswith(".tmp")]


def test_rerun_skips_the_finished_stages_and_completes(
    workdir: str, interrupted: tuple[int, str, str], resumed: subprocess.CompletedProcess
) -> None:
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    err, out = resumed.stderr, resumed.stdout
    skipped = re.findall(r"^\[(\d+)/10\] .*: finished in an earlier run, skipped$", err, re.M)
    assert skipped == ["1", "2", "3", "4", "5"]
    assert re.search(r"resumed from step \d+", err)
    assert f"[{STAGES}/{STAGES}] serve the SavedModel" in err
    for output in (interrupted[1] + interrupted[2], out + err):
        assert not _error_lines(output), output[-3000:]

    # The table, labelled with the stand-in LLM, with a score per evaluation.
    assert f"(FRet LLM: {STAND_IN}" in out
    for name in ("held-out split, FRet queries", "held-out split, titles as queries"):
        row = re.search(
            rf"^\| {name} \| nDCG@10 \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", out, re.M
        )
        assert row, out
        before, after, change = map(float, row.groups())
        assert 0 < before <= 100 and 0 < after <= 100
        assert change == pytest.approx(after - before, abs=0.011)
    assert "STS-B" not in out  # no evaluation data in a user's environment

    # The two served requests: two 384-d embeddings each.
    assert re.search(r"POST http://127\.0\.0\.1:\d+/v1/models/gecko-demo:predict", out)
    assert re.search(r"POST http://127\.0\.0\.1:\d+/v1/embeddings", out)
    assert out.count("(384 values)") == 4
    with open(os.path.join(workdir, "serve", "requests.json"), encoding="utf-8") as f:
        exchanges = json.load(f)
    predictions = exchanges["vertex"]["response"]["predictions"]
    assert [len(p["embeddings"]["values"]) for p in predictions] == [384, 384]
    data = exchanges["openai"]["response"]["data"]
    assert [(d["index"], len(d["embedding"])) for d in data] == [(0, 384), (1, 384)]

    # Where everything is: the last lines, every path there.
    where = out[out.index(f"Where everything is (FRet LLM: {STAND_IN}") :].splitlines()[1:]
    assert len(where) == 15
    paths = [line.split("  ")[-1].strip() for line in where]
    for path in paths:
        if "*" not in path and "," not in path:
            assert os.path.exists(path), path
    assert os.path.isfile(os.path.join(workdir, "report", "results.png"))
    assert os.path.isfile(os.path.join(workdir, "export", "saved_model", "1", "saved_model.pb"))
    assert os.path.isfile(os.path.join(workdir, "export", "sentence_transformers", "config.json"))
    with open(os.path.join(workdir, "fret", "train", "summary.json"), encoding="utf-8") as f:
        assert json.load(f)["rows"] >= 40
