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


#: Metadata left out per vector format, so the same data give the same bytes there too.
VECTOR_METADATA = {"pdf": {"Creator": None, "Producer": None, "CreationDate": None}, "svg": {"Date": None, "Creator": None}}


def save_figure(fig: Figure, path: str | os.PathLike[str], vector: tuple[str, ...] = ()) -> Path:
    """Write ``fig`` as PNG, atomically; with ``vector=("pdf", "svg")`` also beside it under those suffixes (for a paper)."""
    from pathlib import Path

    from matplotlib import rc_context

    png = atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", metadata={"Software": None}))
    with rc_context({"svg.hashsalt": "featviz"}):  # SVG element ids from a fixed salt, not a random one
        for kind in vector:
            atomic_write_bytes(Path(path).with_suffix(f".{kind}"), lambda f, kind=kind: fig.savefig(f, format=kind, metadata=VECTOR_METADATA[kind]))
    return png
