"""The report's curves: each run's ``metrics.jsonl`` over steps, drawn with matplotlib.

Two figures: every run of a sweep overlaid (one panel per curve, one column per sweep,
shared y-axes so sweeps compare at a glance), and small multiples (one panel per run, its
curves together) for when forty lines on one panel say nothing. The curves are the
``objective`` the loop optimizes (on a transformed image) and the ``activation``, the same
objective on the untransformed image (:mod:`featviz.metrics.activation`); the gap between
them is how much of the score the transformations do not keep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from featviz.tools.figures import figure, save_figure

Curves = Mapping[str, Sequence[tuple[int, float]]]  # metric -> (step, value) points
CURVES = ("objective", "activation")  # what is plotted, in this order
LEGEND_MAX = 16  # more settings than this on one panel: no legend (the small multiples name each run)


def plotted(runs: Sequence[tuple[str, Curves]]) -> list[str]:
    """The curves of :data:`CURVES` that at least one run recorded."""
    return [c for c in CURVES if any(curves.get(c) for _, curves in runs)]


def colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: tab10 up to 10, tab20 up to 20, then viridis evenly spaced (no colour repeats)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def overlay(groups: Mapping[str, Sequence[tuple[str, str, Curves]]], path: Path, colour_by: str = "") -> Path | None:
    """Every run's curves overlaid: rows = curves, columns = sweeps (``groups``); None when nothing was recorded.

    Each run is ``(label, setting, curves)``: runs of one ``setting`` (e.g. ``tv=1``, its seeds the
    replicates) share a colour and one legend entry, so 24 runs of 4 settings read as 4 labelled
    colours, not 24 unlabelled lines; ``colour_by`` names what the colours are (the legend's title).
    """
    names = plotted([(label, curves) for runs in groups.values() for label, _, curves in runs])
    if not names:
        return None
    settings = list(dict.fromkeys(setting for runs in groups.values() for _, setting, _ in runs))
    colour = dict(zip(settings, colours(len(settings))))
    fig = figure(4.8 * len(groups), 2.6 * len(names))
    axes = fig.subplots(len(names), len(groups), squeeze=False, sharex="col", sharey="row")
    for j, (group, runs) in enumerate(groups.items()):
        for i, name in enumerate(names):
            ax = axes[i][j]
            labelled: set[str] = set()
            for label, setting, curves in runs:
                points = curves.get(name) or []
                if points:
                    steps, values = zip(*points)
                    count = sum(1 for _, s, _ in runs if s == setting)
                    legend = (setting if count == 1 else f"{setting} ({count} runs)") if setting not in labelled else None
                    labelled.add(setting)
                    ax.plot(steps, values, label=legend, color=colour[setting], linewidth=1.0, alpha=0.85, marker="." if len(points) < 40 else None)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if i == 0 and len(groups) > 1:
                ax.set_title(group, fontsize=9)
            if i == len(names) - 1:
                ax.set_xlabel("step")
        if len({s for _, s, _ in runs}) <= LEGEND_MAX:
            axes[0][j].legend(fontsize=7, loc="best", title=colour_by or None, title_fontsize=7)
    return save_figure(fig, path)


def small_multiples(runs: Sequence[tuple[str, Curves]], path: Path, columns: int = 6) -> Path | None:
    """One small panel per run with its curves; None when nothing was recorded."""
    names = plotted(runs)
    if not names:
        return None
    cols = min(columns, len(runs))
    rows = -(-len(runs) // cols)
    fig = figure(2.6 * cols, 2.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for k, ax in enumerate(ax for row in axes for ax in row):
        if k >= len(runs):
            ax.set_axis_off()
            continue
        label, curves = runs[k]
        for name in names:
            points = curves.get(name) or []
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=name, linewidth=1.0, marker="." if len(points) < 40 else None)
        ax.set_title(label, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="best")
    return save_figure(fig, path)
