"""Matryoshka sweeps: report.json / report.md / report.png contents, resuming, comparisons."""

import json
import math
import os

import pytest

from gecko_jax.eval.classification import ClassificationEvaluator
from gecko_jax.eval.compare import compare_reports, write_comparison
from gecko_jax.eval.report import Report, load_report, run_sweep
from gecko_jax.eval.sts import StsEvaluator
from gecko_jax.readers import StsPair
from tests.eval import test_classification as cls_data
from tests.eval.fakes import TableEncoder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COSINES = [0.9, 0.5, 0.1, -0.2]
STS_VECTORS = {
    **{f"s{i}": [1.0, 0.0] for i in range(4)},
    **{f"t{i}": [c, math.sqrt(1 - c * c)] for i, c in enumerate(COSINES)},
}
PAIRS = [StsPair(f"s{i}", f"t{i}", g) for i, g in enumerate([4.0, 5.0, 1.0, 0.0])]
# Spearman at dim 2 (cosine ranks 4,3,2,1 vs gold 3,4,2,1) and at dim 1 (signs 1,1,1,-1).
SPEARMAN_2 = 80.0
SPEARMAN_1 = 100 * 3 / math.sqrt(15)


def recording(evaluator):  # type: ignore[no-untyped-def]
    """The evaluator itself, recording in ``.asked`` the dims each evaluate call gets."""
    inner, evaluator.asked = evaluator.evaluate, []

    def evaluate(encoder, dims=None):  # type: ignore[no-untyped-def]
        evaluator.asked.append(list(dims))
        return inner(encoder, dims)

    evaluator.evaluate = evaluate
    return evaluator


def _encoder() -> TableEncoder:
    return TableEncoder({**STS_VECTORS, **cls_data.VECTORS})


def _evaluators() -> list:
    return [
        StsEvaluator(PAIRS, name="toy_sts"),
        ClassificationEvaluator(
            cls_data.TRAIN, cls_data.TEST, name="toy_cls", samples_per_label=None
        ),
    ]


def _no_model():  # type: ignore[no-untyped-def]
    raise AssertionError("a fully cached sweep must not load the model")


def test_sweep_writes_json_markdown_and_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "run")
    report = run_sweep(_encoder(), _evaluators(), out, model="toy-model", dims=[1, 2])
    with open(os.path.join(out, "report.json")) as f:
        data = json.load(f)
    assert (data["model"], data["embedding_dim"], data["dims"]) == ("toy-model", 2, [1, 2])
    assert list(data["tasks"]) == ["toy_sts", "toy_cls"]
    sts = data["tasks"]["toy_sts"]
    assert sts["main_metric"] == "spearman" and sts["seconds"] >= 0
    assert sts["scores"]["2"]["spearman"] == pytest.approx(SPEARMAN_2, abs=1e-9)
    assert sts["scores"]["1"]["spearman"] == pytest.approx(SPEARMAN_1, abs=1e-9)
    assert data["tasks"]["toy_cls"]["scores"]["2"]["accuracy"] == pytest.approx(75.0, abs=1e-9)
    assert load_report(out).to_json() == report.to_json() == data

    with open(os.path.join(out, "report.md")) as f:
        markdown = f.read()
    assert (
        "| task | metric | 1 | 2 |\n|---|---|---:|---:|\n| toy_sts | spearman | 77.46 | 80.00 |"
        in markdown
    )
    assert "## toy_cls (" in markdown and "| accuracy | " in markdown and "| 75.00 |" in markdown

    with open(os.path.join(out, "report.png"), "rb") as f:
        png = f.read()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    assert sorted(os.listdir(os.path.join(out, "tasks"))) == ["toy_cls.json", "toy_sts.json"]


def test_sweep_resumes_and_evaluates_only_missing_dims(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path)
    first = [recording(e) for e in _evaluators()]
    run_sweep(_encoder(), first, out, model="toy-model", dims=[1])
    again = [recording(e) for e in _evaluators()]
    cached = run_sweep(_no_model, again, out, model="toy-model", dims=[1])
    assert [r.asked for r in again] == [[], []]
    assert cached.tasks["toy_sts"].scores[1]["spearman"] == pytest.approx(SPEARMAN_1, abs=1e-9)

    more = [recording(e) for e in _evaluators()]
    report = run_sweep(lambda: _encoder(), more, out, model="toy-model", dims=[1, 2])
    assert [r.asked for r in more] == [[[2]], [[2]]]
    assert report.tasks["toy_sts"].scores[2]["spearman"] == pytest.approx(SPEARMAN_2, abs=1e-9)

    full = run_sweep(
        _no_model, _evaluators(), out, model="toy-model"
    )  # dims=None: the full size, cached
    assert full.dims == [2] and list(full.tasks["toy_sts"].scores) == [2]

    redo = [recording(e) for e in _evaluators()]
    run_sweep(_encoder(), redo, out, model="toy-model", dims=[1], overwrite=True)
    assert [r.asked for r in redo] == [[[1]], [[1]]]
    with pytest.raises(
        ValueError, match="toy_sts.json holds results of model 'toy-model', not 'other'"
    ):
        run_sweep(_encoder(), _evaluators(), out, model="other")
    with open(os.path.join(out, "tasks", "toy_cls.json")) as f:
        assert json.load(f)["settings"] == {
            "samples_per_label": None,
            "n_experiments": 10,
            "seed": 42,
            "max_iter": 100,
            "task": None,
        }
    prompted = [StsEvaluator(PAIRS, name="toy_sts", task="sentence similarity")]
    with pytest.raises(
        ValueError,
        match=r"toy_sts.json holds results with settings \{'task': None\}, "
        r"not \{'task': 'sentence similarity'\}",
    ):
        run_sweep(_encoder(), prompted, out, model="toy-model", dims=[1])


def test_compare_table_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = run_sweep(_encoder(), _evaluators(), str(tmp_path / "a"), model="model-a", dims=[1, 2])
    second = Report.from_json({**first.to_json(), "model": "model-b"})
    second.tasks["toy_sts"].scores[2]["spearman"] = 70.0
    del second.tasks["toy_cls"]
    comparison = compare_reports([("a", first), ("b.json", second)])
    assert comparison.table() == (
        "| task | metric | model-a @2 | model-b @2 |\n"
        "|---|---|---:|---:|\n"
        "| toy_sts | spearman | 80.00 | 70.00 |\n"
        "| toy_cls | accuracy | 75.00 | - |"
    )
    at_one = compare_reports([("a", first), ("b.json", second)], tasks=["toy_sts"], dim=1)
    assert at_one.rows == [
        ("toy_sts", "spearman", [pytest.approx(SPEARMAN_1), pytest.approx(SPEARMAN_1)])
    ]
    same_model = compare_reports([("run1", first), ("run2", first)])
    assert same_model.labels == ["run1", "run2"]
    paths = write_comparison(comparison, str(tmp_path / "cmp"))
    with open(paths["plot"], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with open(paths["json"]) as f:
        assert json.load(f)["rows"][1] == {
            "task": "toy_cls",
            "metric": "accuracy",
            "scores": {"model-a": pytest.approx(75.0), "model-b": None},
        }
    with pytest.raises(ValueError, match=r"no task of the reports matches \['stsb'\]"):
        compare_reports([("a", first)], tasks=["stsb"])
