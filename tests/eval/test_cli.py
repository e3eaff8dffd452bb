"""``gecko-eval``: local sweep on a toy data directory, resume, compare, mteb delegation."""

import json
import os
import re
import sys
import types

import pytest

from gecko_jax import Encoder
from gecko_jax.cli import eval as cli
from gecko_jax.eval import build_evaluator
from gecko_jax.eval.report import Report, load_report
from tests.eval import toy_data


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One ``local`` run of all-MiniLM-L6-v2 on the toy sets, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data_dir = toy_data.write_data_dir(str(root / "data"))
    out = str(root / "out")
    argv = [
        "local",
        "--model",
        "all-MiniLM-L6-v2",
        "--tasks",
        "stsb,scifact,banking77",
        "--dims",
        "32,384",
        "--data_dir",
        data_dir,
        "--output_dir",
        out,
        "--batch_size",
        "8",
    ]
    return data_dir, out, argv


def test_local_writes_report_matching_the_api(local_run, capsys) -> None:  # type: ignore[no-untyped-def]
    data_dir, out, argv = local_run
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| task | metric | 32 | 384 |" in printed
    assert os.path.join(out, "report.png") in printed
    report = load_report(out)
    assert (report.model, report.embedding_dim, report.dims) == ("all-MiniLM-L6-v2", 384, [32, 384])
    assert list(report.tasks) == ["stsb_test", "scifact_test", "banking77_test"]
    # The CLI's numbers are the evaluators' own.
    direct = build_evaluator("stsb", data_dir).evaluate(
        Encoder.load("all-MiniLM-L6-v2"), dims=[32, 384]
    )
    for dim in (32, 384):
        assert report.tasks["stsb_test"].scores[dim] == pytest.approx(direct[dim], abs=1e-6)
    for line in printed.splitlines():
        if line.startswith("| stsb_test |"):
            low, full = direct[32]["spearman"], direct[384]["spearman"]
            assert line == f"| stsb_test | spearman | {low:.2f} | {full:.2f} |"


def test_local_resumes_without_loading_the_model(local_run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, out, argv = local_run
    before = load_report(out)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("cached tasks must not load the model")

    monkeypatch.setattr(Encoder, "load", refuse)
    assert cli.main(argv) == 0
    after = load_report(out)
    assert {n: t.scores for n, t in after.tasks.items()} == {
        n: t.scores for n, t in before.tasks.items()
    }


def test_compare_prints_side_by_side_table(local_run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = local_run
    mine = load_report(out)
    other = Report.from_json({**mine.to_json(), "model": "other-model"})
    other.tasks["stsb_test"].scores[384]["spearman"] = 12.5
    other_path = str(tmp_path / "other.json")
    with open(other_path, "w") as f:
        json.dump(other.to_json(), f)
    cmp_dir = str(tmp_path / "cmp")
    assert (
        cli.main(["compare", out, other_path, "--tasks", "stsb,banking77", "--output_dir", cmp_dir])
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    stsb = mine.tasks["stsb_test"].main(384)
    banking = mine.tasks["banking77_test"].main(384)
    assert printed[:4] == [
        "| task | metric | all-MiniLM-L6-v2 @384 | other-model @384 |",
        "|---|---|---:|---:|",
        f"| stsb_test | spearman | {stsb:.2f} | 12.50 |",
        f"| banking77_test | accuracy | {banking:.2f} | {banking:.2f} |",
    ]
    assert sorted(os.listdir(cmp_dir)) == ["compare.json", "compare.md", "compare.png"]


def test_errors_exit_1_with_a_message(local_run, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data_dir, _, _ = local_run
    assert (
        cli.main(
            [
                "local",
                "--model",
                "all-MiniLM-L6-v2",
                "--tasks",
                "nope",
                "--data_dir",
                data_dir,
                "--output_dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        "gecko-eval: error: unknown evaluator 'nope'; known: stsb, scifact,"
        in capsys.readouterr().err
    )
    assert cli.main(["compare", str(tmp_path / "missing.json")]) == 2
    assert "report not found: " in capsys.readouterr().err
    monkeypatch.delenv("GECKO_EVAL_DATA")
    assert cli.main(["local", "--model", "m", "--output_dir", str(tmp_path / "o")]) == 2
    assert re.search(r"--data_dir.*GECKO_EVAL_DATA", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        cli.main(["local", "--model", "m", "--output_dir", "o", "--dims", "32,x"])


class _UnknownName(KeyError):
    pass


class _Unavailable(RuntimeError):
    pass


@pytest.fixture()
def fake_mteb(monkeypatch):  # type: ignore[no-untyped-def]
    """Stands in for the mteb adapter modules; records run_mteb's arguments."""
    calls = []

    def run_mteb(
        checkpoint,
        tasks=(),
        benchmark=None,
        output_dir="results",
        dims=None,
        batch_size=64,  # type: ignore[no-untyped-def]
        overwrite=False,
        *,
        task_prompts="gecko",
    ):
        calls.append(
            (checkpoint, tasks, benchmark, output_dir, dims, batch_size, overwrite, task_prompts)
        )
        if tasks == ["Nope"]:
            raise _UnknownName("unknown MTEB task 'Nope'; close matches: NFCorpus")
        return [os.path.join(output_dir, f"{t}.json") for t in tasks or []]

    monkeypatch.setitem(
        sys.modules,
        "gecko_jax.eval.mteb_adapter",
        types.SimpleNamespace(run_mteb=run_mteb, DatasetUnavailableError=_Unavailable),
    )
    monkeypatch.setitem(
        sys.modules,
        "gecko_jax.eval.mteb_tasks",
        types.SimpleNamespace(UnknownNameError=_UnknownName),
    )
    return calls


def test_mteb_delegates_to_run_mteb(fake_mteb, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path)
    assert (
        cli.main(
            [
                "mteb",
                "--model",
                "/models/m",
                "--tasks",
                "STSBenchmark,SciFact",
                "--dims",
                "64,384",
                "--output_dir",
                out,
                "--batch_size",
                "16",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "mteb",
                "--model",
                "m",
                "--benchmark",
                "MTEB(eng, v2)",
                "--output_dir",
                out,
                "--task_prompts",
                "none",
                "--overwrite",
            ]
        )
        == 0
    )
    assert fake_mteb == [
        ("/models/m", ["STSBenchmark", "SciFact"], None, out, [64, 384], 16, False, "gecko"),
        ("m", None, "MTEB(eng, v2)", out, None, 64, True, "none"),
    ]
    assert capsys.readouterr().out.splitlines() == [
        os.path.join(out, "STSBenchmark.json"),
        os.path.join(out, "SciFact.json"),
    ]
    assert cli.main(["mteb", "--model", "m", "--tasks", "Nope", "--output_dir", out]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "gecko-eval: error: unknown MTEB task 'Nope'; close matches: NFCorpus"
    )


def test_compare_writes_beside_its_first_report_never_the_current_directory(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text("{}")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert cli.compare_output_dir(["all-MiniLM-L6-v2", str(run / "report.json")]) == str(
        run / "compare"
    )
    assert cli.compare_output_dir([str(run)]) == str(run / "compare")
    assert cli.compare_output_dir(["all-MiniLM-L6-v2", str(model_dir)]) == str(
        model_dir / "eval" / "compare"
    )
    with pytest.raises(ValueError, match="give --output_dir"):
        cli.compare_output_dir(["all-MiniLM-L6-v2"])
