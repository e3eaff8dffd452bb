"""Side-by-side comparison of several reports: a task x model table and a plot."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from gecko_jax.eval.report import Report, markdown_table, write_outputs

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_PNG = "compare.png"


@dataclasses.dataclass
class Comparison:
    """Main-metric scores of several models on the same tasks.

    Attributes:
      labels: one column per model.
      dims: the dimension each column is read at.
      rows: ``(task, metric, [score per column])``; ``None`` where a model lacks the task.
      reports: the reports compared, in column order.
    """

    labels: list[str]
    dims: list[int]
    rows: list[tuple[str, str, list[float | None]]]
    reports: list[Report]

    def table(self) -> str:
        """The comparison as a Markdown table (column headers carry the dimension)."""
        header = [
            "task",
            "metric",
            *(f"{label} @{dim}" for label, dim in zip(self.labels, self.dims)),
        ]
        return markdown_table(
            header, [[task, metric, *scores] for task, metric, scores in self.rows]
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "columns": [
                {"label": label, "dim": dim, "model": r.model}
                for label, dim, r in zip(self.labels, self.dims, self.reports)
            ],
            "rows": [
                {"task": t, "metric": m, "scores": dict(zip(self.labels, s))}
                for t, m, s in self.rows
            ],
        }


def matches(task_name: str, wanted: Sequence[str] | None) -> bool:
    """Whether a report's task (``stsb_test``) is among ``wanted`` (``stsb`` or ``stsb_test``)."""
    return wanted is None or task_name in wanted or task_name.rsplit("_", 1)[0] in wanted


def _labels(entries: Sequence[tuple[str, Report]]) -> list[str]:
    models = [r.model for _, r in entries]
    return [r.model if models.count(r.model) == 1 else entry for entry, r in entries]


def compare_reports(
    entries: Sequence[tuple[str, Report]],
    tasks: Sequence[str] | None = None,
    dim: int | None = None,
) -> Comparison:
    """Builds the side-by-side table.

    Args:
      entries: ``(what the user named, its report)`` per column.
      tasks: task filter (set names like ``stsb`` or full names like ``stsb_test``);
        ``None``: every task of any report.
      dim: read every column at this dimension (``None``: each model's full size).

    Raises:
      ValueError: no entries, or the filter leaves no task.
    """
    if not entries:
        raise ValueError("nothing to compare: no reports")
    reports = [r for _, r in entries]
    names = list(dict.fromkeys(n for r in reports for n in r.tasks if matches(n, tasks)))
    if not names:
        raise ValueError(f"no task of the reports matches {list(tasks or [])}")
    dims = [dim or r.embedding_dim for r in reports]
    rows = []
    for name in names:
        metric = next(r.tasks[name].main_metric for r in reports if name in r.tasks)
        scores = [r.tasks[name].main(d) if name in r.tasks else None for r, d in zip(reports, dims)]
        rows.append((name, metric, scores))
    return Comparison(_labels(entries), dims, rows, reports)


def write_comparison(comparison: Comparison, output_dir: str) -> dict[str, str]:
    """Writes ``compare.json``, ``compare.md`` and ``compare.png`` (one panel per task)."""
    panels = {
        f"{task} ({metric})": {
            label: {d: r.tasks[task].main(d) for d in r.dims}
            for label, r in zip(comparison.labels, comparison.reports)
            if task in r.tasks
        }
        for task, metric, _ in comparison.rows
    }
    return write_outputs(
        output_dir,
        (COMPARE_JSON, COMPARE_MD, COMPARE_PNG),
        comparison.to_json(),
        comparison.table() + "\n",
        panels,
    )
