"""Labelled figures with matplotlib, drawn off-screen.

The object API (``Figure``, no pyplot) needs no display and keeps no global state, so a
figure made in a test, a sweep job or a notebook never leaks into the next. PNG metadata
(the matplotlib version) is left out, so the same data give the same bytes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from featviz.images import atomic_write_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure

DPI = 80


def figure(width: float, height: float) -> Figure:
    """A blank figure of ``width`` x ``height`` inches with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG, atomically."""
    return atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", metadata={"Software": None}))
