"""Bad input through the real commands, each in its own process, as a user meets it.

Every case must exit with the usage status (2), print no traceback, name the culprit
(file:line, field, flag or URL) on a ``gecko-X: error:`` line, and leave what was already
in its directory untouched. The cases run a few at a time, once per module.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATUS_USAGE = 2


@dataclasses.dataclass
class Case:
    module: str  # gecko_jax.cli.<module>
    args: list[str]
    culprit: str  # text the error line must contain


def _pairs(rows: list[object]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _good(i: int) -> dict[str, str]:
    return {"query": f"what is item {i}", "positive": f"item {i} is a thing numbered {i}"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _cases(work: str, tiny_model_dir: str, eval_data_dir: str) -> dict[str, Case]:
    def path(name: str) -> str:
        return os.path.join(work, name)

    files = {
        "bad_rows.jsonl": _pairs([_good(0), _good(1), '{"query": "q", ', *map(_good, range(2, 9))]),
        "empty.jsonl": "",
        "five.jsonl": _pairs([_good(i) for i in range(5)]),
        "empty_query.jsonl": _pairs([{"query": "", "positive": "p"}, *map(_good, range(20))]),
        "good.jsonl": _pairs([_good(i) for i in range(64)]),
        "not_a_dir": "a file where MODEL_DIR should be\n",
        "corpus.jsonl": _pairs(
            [{"_id": str(i), "title": "t", "text": f"passage number {i}"} for i in range(6)]
        ),
    }
    for name, text in files.items():
        with open(path(name), "w", encoding="utf-8") as f:
            f.write(text)
    with open(path("blob.bin"), "wb") as f:
        f.write(b"a line of text\n\x89PNG\r\n\x1a\n\x00\xff\xfe\n")

    def train(model_dir: str, train_file: str, *extra: str) -> Case:
        return Case(
            "train",
            [
                "--gin_file=runs/finetune.gin",
                "--gin_file=inputs/pairs_file.gin",
                f"--gin.MODEL_DIR='{path(model_dir)}'",
                "--gin.TRAIN_STEPS=3",
                f"--gin.TRAIN_FILE='{path(train_file)}'",
                "--gin.BATCH_SIZE=8",
                f"--gin.train.init_from='{tiny_model_dir}'",
                "--gin.train.query_length=12",
                "--gin.train.document_length=16",
                *extra,
            ],
            "",
        )

    def case(base: Case, culprit: str) -> Case:
        return dataclasses.replace(base, culprit=culprit)

    port = _closed_port()
    llm = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "model": "m",
        "retry": {"max_attempts": 1},
    }
    return {
        "train_bad_rows": case(
            train("run_bad", "bad_rows.jsonl"), f"{path('bad_rows.jsonl')}:3: invalid JSON"
        ),
        "train_empty_file": case(
            train("run_empty", "empty.jsonl"), f"{path('empty.jsonl')}: no training rows"
        ),
        "train_empty_query": case(
            train("run_eq", "empty_query.jsonl"), f"{path('empty_query.jsonl')}:1: empty 'query'"
        ),
        "train_missing_file": case(
            train("run_missing", "missing.jsonl"), f"not found: {path('missing.jsonl')}"
        ),
        "train_batch_larger_than_the_data": case(
            train("run_small", "five.jsonl"),
            "only 5 training rows for a batch of 8: lower the batch size to at most 5 "
            "(e.g. --gin.BATCH_SIZE=4)",
        ),
        "train_model_dir_is_a_file": case(
            train("not_a_dir", "good.jsonl"), f"train.model_dir {path('not_a_dir')} is a file"
        ),
        "train_misspelt_macro": case(
            train("run_typo", "good.jsonl", "--gin.TRAIN_STESP=3"),
            "--gin.TRAIN_STESP: no gin file uses the macro TRAIN_STESP (did you mean TRAIN_STEPS?)",
        ),
        "train_unknown_binding": case(
            train("run_binding", "good.jsonl", "--gin.train.batch_sise=8"), "batch_sise"
        ),
        "embed_binary_input": Case(
            "embed",
            ["--input", path("blob.bin"), "--output", path("out.npy"), "--model", tiny_model_dir],
            f"{path('blob.bin')}:2: not UTF-8 text",
        ),
        "embed_dim_beyond_the_model": Case(
            "embed",
            ["--input", path("good.jsonl"), "--text_field", "query", "--output", path("o.npy")]
            + ["--dim", "10000"],
            "--dim 10000 is outside 1..384, the embedding size of all-MiniLM-L6-v2",
        ),
        "fret_unreachable_llm": Case(
            "fret",
            [
                "--corpus",
                path("corpus.jsonl"),
                "--output_dir",
                path("fret"),
                "--llm",
                json.dumps(llm),
                "--embedder",
                tiny_model_dir,
                "--top_n",
                "2",
                "--no_progress",
            ],
            f"POST http://127.0.0.1:{port}/v1/",
        ),
        "eval_missing_report": Case(
            "eval", ["compare", path("missing/report.json")], path("missing/report.json")
        ),
        "export_missing_model": Case(
            "export", ["saved_model", path("no_model"), path("export")], path("no_model")
        ),
        "serve_missing_model": Case(
            "serve", ["--model", path("no_model"), "--port", "0"], path("no_model")
        ),
    }


def _snapshot(work: str) -> dict[str, tuple[int, float]]:
    found = {}
    for root, _, names in os.walk(work):
        for name in names:
            full = os.path.join(root, name)
            found[full] = (os.path.getsize(full), os.path.getmtime(full))
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_dir: str, eval_data_dir: str) -> dict:
    work = str(tmp_path_factory.mktemp("bad_input"))
    cases = _cases(work, tiny_model_dir, eval_data_dir)
    before = _snapshot(work)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    env.pop("GECKO_DEBUG", None)

    def run(case: Case) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", f"gecko_jax.cli.{case.module}", *case.args]
        return subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=work, timeout=300, check=False
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(cases, pool.map(run, cases.values())))
    return {"cases": cases, "done": done, "before": before, "after": _snapshot(work)}


CASE_NAMES = [
    "train_bad_rows",
    "train_empty_file",
    "train_empty_query",
    "train_missing_file",
    "train_batch_larger_than_the_data",
    "train_model_dir_is_a_file",
    "train_misspelt_macro",
    "train_unknown_binding",
    "embed_binary_input",
    "embed_dim_beyond_the_model",
    "fret_unreachable_llm",
    "eval_missing_report",
    "export_missing_model",
    "serve_missing_model",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_clear_line_naming_the_culprit(results: dict, name: str) -> None:
    case, done = results["cases"][name], results["done"][name]
    assert done.returncode == STATUS_USAGE, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    prog = f"gecko-{case.module}: error: "
    errors = [line for line in done.stderr.splitlines() if line.startswith(prog)]
    assert len(errors) == 1 and case.culprit in errors[0], done.stderr[-3000:]


def test_every_case_is_listed(results: dict) -> None:
    assert sorted(results["cases"]) == sorted(CASE_NAMES)


def test_nothing_already_there_is_changed_or_deleted(results: dict) -> None:
    before, after = results["before"], results["after"]
    assert {p: after.get(p) for p in before} == before
