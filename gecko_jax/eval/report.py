"""Matryoshka sweeps: run local evaluators over several dimensions, write a report.

A sweep writes into ``output_dir``:

* ``tasks/{evaluator name}.json``: one file per evaluator, written as soon as it
  finishes, with the model and the evaluator's score-relevant settings; a rerun reuses
  it (evaluating only dimensions it lacks) unless ``overwrite`` is set, so an
  interrupted sweep resumes where it stopped (other settings or another model in the
  same directory are an error, never silently mixed);
* ``report.json``: model, dimensions and every metric of every task per dimension;
* ``report.md``: the main metric as a task x dimension table, then every metric;
* ``report.png``: main metric against dimension, one line per task.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from gecko_jax import fileio
from gecko_jax.eval import base, plots
from gecko_jax.text_encoder import TextEncoder

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
TASKS_DIR = "tasks"


@dataclasses.dataclass
class TaskResult:
    """One evaluator's scores.

    Attributes:
      name: the evaluator's name (e.g. ``"stsb_test"``).
      main_metric: the metric tables and plots show.
      scores: dimension -> metric -> points.
      seconds: wall time spent evaluating (all runs that produced ``scores``).
    """

    name: str
    main_metric: str
    scores: dict[int, dict[str, float]]
    seconds: float = 0.0

    def main(self, dim: int) -> float | None:
        """The main metric at ``dim`` (``None`` when not evaluated there)."""
        return self.scores.get(dim, {}).get(self.main_metric)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dimensions become string keys)."""
        return {
            "name": self.name,
            "main_metric": self.main_metric,
            "seconds": self.seconds,
            "scores": {str(dim): metrics for dim, metrics in sorted(self.scores.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskResult:
        """Inverse of :meth:`to_json`."""
        return cls(
            data["name"],
            data["main_metric"],
            {int(dim): dict(metrics) for dim, metrics in data["scores"].items()},
            float(data.get("seconds", 0.0)),
        )


@dataclasses.dataclass
class Report:
    """A model's scores on several tasks at several Matryoshka dimensions."""

    model: str
    embedding_dim: int
    dims: list[int]
    tasks: dict[str, TaskResult]
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "model": self.model,
            "embedding_dim": self.embedding_dim,
            "dims": self.dims,
            "created": self.created,
            "tasks": {n: t.to_json() for n, t in self.tasks.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_json`."""
        return cls(
            data["model"],
            int(data["embedding_dim"]),
            [int(d) for d in data["dims"]],
            {n: TaskResult.from_json(t) for n, t in data["tasks"].items()},
            data.get("created", ""),
        )


def load_report(path: str) -> Report:
    """Reads a ``report.json`` (or the directory holding one).

    Raises:
      FileNotFoundError: no report there.
      ValueError: the file is not a report (names it).
    """
    if os.path.isdir(path):
        path = os.path.join(path, REPORT_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"report not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return Report.from_json(json.load(f))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a gecko-eval report ({type(e).__name__}: {e})") from None


def write_json_atomic(path: str, data: Any) -> None:
    """Writes through a temporary file, so an interrupted run never leaves half a file."""
    with fileio.atomic_open(path) as f:
        json.dump(data, f, indent=2)


class _LazyEncoder:
    """Loads the encoder on first use, so a fully cached sweep loads no model."""

    def __init__(self, encoder: TextEncoder | Callable[[], TextEncoder]) -> None:
        self._source = encoder
        self._encoder = encoder if isinstance(encoder, TextEncoder) else None

    def get(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = self._source()
        return self._encoder


def _cached(
    path: str, model: str, settings: dict[str, Any]
) -> tuple[TaskResult | None, int | None]:
    """A task file's result and embedding size, after checking model and settings match."""
    if not os.path.isfile(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("model") != model:
        raise ValueError(
            f"{path} holds results of model {data.get('model')!r}, not {model!r}; "
            "use another output directory or overwrite"
        )
    if data.get("settings", {}) != settings:
        raise ValueError(
            f"{path} holds results with settings {data.get('settings', {})}, not {settings}; "
            "use another output directory or overwrite"
        )
    return TaskResult.from_json(data), int(data["embedding_dim"])


def run_sweep(
    encoder: TextEncoder | Callable[[], TextEncoder],
    evaluators: Sequence[base.Evaluator],
    output_dir: str,
    *,
    model: str,
    dims: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Report:
    """Runs every evaluator at every dimension and writes the report files.

    Args:
      encoder: the model, or a function loading it (called only if some task needs it).
      evaluators: the evaluators, in report order.
      output_dir: where ``tasks/``, ``report.json``, ``report.md``, ``report.png`` go.
      model: the model's name or directory (recorded, and checked against cached tasks).
      dims: Matryoshka dimensions (``None``: the model's full dimension).
      overwrite: re-evaluate tasks that already have results in ``output_dir``.

    Returns:
      The report, also written to ``output_dir``.
    """
    lazy = _LazyEncoder(encoder)
    os.makedirs(os.path.join(output_dir, TASKS_DIR), exist_ok=True)
    results: dict[str, TaskResult] = {}
    embedding_dim = None
    for evaluator in tqdm(evaluators, desc="tasks", unit="task", file=sys.stderr):
        path = os.path.join(output_dir, TASKS_DIR, f"{evaluator.name}.json")
        settings = base.score_settings(evaluator)
        cached, cached_dim = (None, None) if overwrite else _cached(path, model, settings)
        embedding_dim = embedding_dim or cached_dim or lazy.get().embedding_dim
        wanted = base.resolve_dims(dims, embedding_dim)
        result = cached or TaskResult(evaluator.name, evaluator.main_metric, {})
        missing = [d for d in wanted if d not in result.scores]
        if missing:
            start = time.perf_counter()
            result.scores.update(evaluator.evaluate(lazy.get(), missing))
            result.seconds += time.perf_counter() - start
            write_json_atomic(
                path,
                {
                    "model": model,
                    "embedding_dim": embedding_dim,
                    "settings": settings,
                    **result.to_json(),
                },
            )
        results[evaluator.name] = dataclasses.replace(
            result, scores={d: result.scores[d] for d in wanted}
        )
    if embedding_dim is None:
        embedding_dim = lazy.get().embedding_dim
    report = Report(
        model,
        embedding_dim,
        base.resolve_dims(dims, embedding_dim),
        results,
        datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    write_report(report, output_dir)
    return report


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats with 2 decimals, ``None`` as ``-``; numbers right-aligned."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    numeric = [any(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def main_table(report: Report) -> str:
    """The main metric of each task (rows) at each dimension (columns)."""
    rows = [
        [name, t.main_metric, *(t.main(d) for d in report.dims)] for name, t in report.tasks.items()
    ]
    return markdown_table(["task", "metric", *map(str, report.dims)], rows)


def render_markdown(report: Report) -> str:
    """``report.md``: the main table, then every metric of each task per dimension."""
    parts = [
        f"# Evaluation of {report.model}",
        "",
        f"Embedding size {report.embedding_dim}; Matryoshka dimensions "
        f"{', '.join(map(str, report.dims))}; scores in points (0-100). {report.created}",
        "",
        "## Main metric",
        "",
        main_table(report),
        "",
    ]
    for name, task in report.tasks.items():
        metrics = list(dict.fromkeys(m for d in report.dims for m in task.scores.get(d, {})))
        rows = [[m, *(task.scores.get(d, {}).get(m) for d in report.dims)] for m in metrics]
        parts += [
            f"## {name} ({task.seconds:.1f} s)",
            "",
            markdown_table(["metric", *map(str, report.dims)], rows),
            "",
        ]
    return "\n".join(parts)


PLOT_TITLE = "main metric by Matryoshka dimension"


def write_outputs(
    output_dir: str,
    names: tuple[str, str, str],
    record: Any,
    markdown: str,
    panels: dict[str, dict[str, dict[int, float]]],
) -> dict[str, str]:
    """Writes a JSON record, a Markdown table and a PNG of ``panels`` under ``output_dir``.

    Args:
      names: file names of the JSON, Markdown and PNG files.

    Returns:
      Their paths, keyed ``json``, ``markdown`` and ``plot``.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        kind: os.path.join(output_dir, name)
        for kind, name in zip(("json", "markdown", "plot"), names)
    }
    write_json_atomic(paths["json"], record)
    with open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(markdown)
    plots.plot_panels(panels, paths["plot"], title=PLOT_TITLE)
    return paths


def write_report(report: Report, output_dir: str) -> dict[str, str]:
    """Writes ``report.json``, ``report.md`` and ``report.png``; returns their paths."""
    lines = {
        f"{name} ({t.main_metric})": {d: t.main(d) for d in report.dims}
        for name, t in report.tasks.items()
    }
    return write_outputs(
        output_dir,
        (REPORT_JSON, REPORT_MD, REPORT_PNG),
        report.to_json(),
        render_markdown(report),
        {report.model: lines},
    )
