"""The parts shared by featviz's static HTML pages (the sweep report, the microscope site).

Pages are self-contained: images are files beside the page, referenced by relative paths,
and the only script is inline, so a page works from a ``file://`` URL, offline, and after
its folder is copied elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } figure { margin: 0 1.5em 1em 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; } img { max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; } th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #eee; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } .err { color: #a00; font-size: 0.9em; } tr.sig td { font-weight: 600; }
"""


def figures(items: Sequence[tuple[str, str]]) -> str:
    """``(caption, image path)`` pairs as captioned figures."""
    return "\n".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>' for caption, src in items)


def document(title: str, body: Sequence[str], style: str = "", script: str = "") -> str:
    """A whole page: ``body`` parts under an ``<h1>`` of ``title``, :data:`STYLE` plus ``style``."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}{style}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *body,
        *([f"<script>{script}</script>"] if script else []),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
