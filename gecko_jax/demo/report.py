"""The before/after table of a demo run and its PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gecko_jax import fileio
from gecko_jax.eval.report import markdown_table

Results = Mapping[str, Mapping[str, Any]]  # evaluation -> {"metric", "score"}

LABELS = {
    "held_out_fret_queries": "held-out split, FRet queries",
    "held_out_titles": "held-out split, titles as queries",
    "stsb_test": "STS-B test",
    "scifact_test": "SciFact test",
    "banking77_test": "Banking77 test",
}
METRICS = {"ndcg_at_10": "nDCG@10", "spearman": "Spearman", "accuracy": "accuracy"}


def table_title(llm_label: str) -> str:
    """The table's title, naming where FRet's labels came from."""
    return f"gecko-demo: all-MiniLM-L6-v2 before and after the Gecko recipe (FRet LLM: {llm_label})"


def rows(start: Results, result: Results) -> list[list[str]]:
    """One row per evaluation: name, metric, start, fine-tuned, change (points)."""
    table = []
    for name, before in start.items():
        after = result[name]["score"]
        table.append(
            [
                LABELS.get(name, name),
                METRICS.get(before["metric"], before["metric"]),
                f"{before['score']:.2f}",
                f"{after:.2f}",
                f"{after - before['score']:+.2f}",
            ]
        )
    return table


def format_table(start: Results, result: Results, llm_label: str) -> str:
    """The Markdown table under its title."""
    header = ["evaluation", "metric", "start", "fine-tuned", "change"]
    return f"{table_title(llm_label)}\n\n{markdown_table(header, rows(start, result))}"


def write_png(start: Results, result: Results, llm_label: str, path: str) -> str:
    """A bar chart of the start and the fine-tuned model per evaluation; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # never open a window
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(start)
    positions = np.arange(len(names))
    figure, ax = plt.subplots(figsize=(8.0, 1.2 + 0.7 * len(names)))
    for offset, label, scores in (
        (-0.2, "start (all-MiniLM-L6-v2)", start),
        (0.2, "fine-tuned", result),
    ):
        values = [scores[n]["score"] for n in names]
        bars = ax.barh(positions + offset, values, height=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize="small", padding=2)
    ax.set_yticks(positions, [f"{LABELS.get(n, n)} ({start[n]['metric']})" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("score (points)")
    ax.set_xlim(0, 105)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"FRet LLM: {llm_label}", fontsize="medium")
    figure.tight_layout()
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def write_report(
    start: Results, result: Results, llm_label: str, markdown_path: str, json_path: str
) -> str:
    """Writes the table (Markdown) and the scores (JSON); returns the table."""
    text = format_table(start, result, llm_label)
    with fileio.atomic_open(markdown_path) as f:
        f.write(text + "\n")
    with fileio.atomic_open(json_path) as f:
        json.dump({"llm": llm_label, "start": start, "fine_tuned": result}, f, indent=2)
    return text
