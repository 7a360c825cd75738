"""The example notebook runs, top to bottom, so it never rots (``docs/notebooks/tour.ipynb``).

Executed by nbclient in a fresh kernel at the notebook's own sizes (64 px, 96 steps); its
inline figures, the rise of the clean activation and the report it writes are checked, not
just the absence of errors.
"""

from __future__ import annotations

import base64
import io
import re

import nbformat
import pytest
from PIL import Image

from conftest import REPO

NOTEBOOK = REPO / "docs" / "notebooks" / "tour.ipynb"


def test_notebook_executes_and_shows_its_figures(tmp_path) -> None:
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' brings nbclient, nbformat and ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # No cell timeout: the test waits for the kernel, however busy the machine (no wall-clock bound).
    nbclient.NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))) for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 4  # the result shown by itself, image + curves, the sweep's grid.png and curves.png
    assert min(pngs[0].size) >= 256
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert re.search(r"final objective -?\d", text) and text.count("completed") == 2
    rise = re.search(r"activation (-?[\d.]+) -> (-?[\d.]+)", text)
    assert rise and float(rise.group(2)) > float(rise.group(1)) + 1, "the clean image's activation must rise"
    report = re.search(r"open (\S+report\.html)", text)
    assert report and "<table" in open(report.group(1)).read()
