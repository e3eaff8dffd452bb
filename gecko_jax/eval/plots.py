"""Score-versus-dimension plots (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping

# Scores by panel, then by line label, then by dimension (None: not evaluated there).
Panels = Mapping[str, Mapping[str, Mapping[int, float | None]]]


def plot_panels(panels: Panels, path: str, title: str = "") -> str:
    """Draws one subplot per panel with one line per label (score against dimension).

    Dimensions are on a log-2 axis, ticked at the dimensions present; a label with one
    dimension shows as a single marker.

    Returns:
      ``path`` (a PNG).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: never open a window, whatever the environment
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("nothing to plot: no panels")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    size = (8.0, 5.0) if len(panels) == 1 else (5.0 * columns, 3.6 * rows)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        ticks = sorted({d for series in lines.values() for d in series})
        for label, series in lines.items():
            points = sorted((d, s) for d, s in series.items() if s is not None)
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(panel)
        ax.set_xlabel("dimension")
        ax.set_ylabel("score (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)
    return path
