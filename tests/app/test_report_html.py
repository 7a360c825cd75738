"""``report.html`` in a real browser: headless Chromium renders it from a ``file://`` URL.

What a reader would see is checked twice: every ``<img src>`` of the page is a file next
to it (so the page survives being copied), and the screenshot is not blank (the page
laid out and painted its images). The report is copied elsewhere before it is opened, so
any link into the sweep it was made from would show up as a missing image. ``.ci/run``
installs Debian's ``chromium``; without a browser this test is skipped, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from featviz.app.cli import main as cli_main

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
SMALL = ["logger=none", "progress=false", "param.size=32", "steps=4", "objective.layer=blocks.2", "snapshots=[0,4]", "metrics.views=0", "metrics.eval_model=null"]


def img_sources(page: Path) -> list[str]:
    from html.parser import HTMLParser

    found: list[str] = []

    class Images(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "img":
                found.append(dict(attrs).get("src") or "")

    Images().feed(page.read_text())
    return found


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1200, 1600)) -> None:
    assert BROWSER is not None
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]


@pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (.ci/run installs Debian's chromium: apt-get install -y chromium)")
def test_report_page_renders_in_a_browser(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *SMALL, "regularizer.tv=0,0.5", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cli_main(["report", str(sweep)]) == 0
    copied = shutil.copytree(sweep / "report", tmp_path / "elsewhere")  # the page must not need the sweep
    page = copied / "report.html"
    sources = img_sources(page)
    assert sources and all((copied / s).is_file() for s in sources), sources

    screenshot(page, tmp_path / "shot.png")
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(float)
    assert shot.std() > 20 and (shot.min(axis=2) < 245).mean() > 0.03  # not a blank page (measured 0.058 painted)
    assert (np.ptp(shot, axis=2) > 40).mean() > 0.001  # the curves' coloured lines (measured 0.003)
    assert ((shot.min(axis=2) > 90) & (shot.max(axis=2) < 170)).mean() > 0.005  # the snapshot tiles' mid tones (text is dark)


@pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (.ci/run installs Debian's chromium: apt-get install -y chromium)")
def test_a_sweeps_effects_section_renders_with_its_figures_and_paper_files(tmp_path: Path) -> None:
    """A fused tv x seed sweep: the Effects section shows tv's effect on every metric, paired over 6 seeds."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *SMALL, "launcher=fused", "threads=1", "regularizer.tv=0,1", "seed=0,1,2,3,4,5", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cli_main(["report", str(sweep), "--paper"]) == 0
    out = sweep / "report"
    html = (out / "report.html").read_text()
    assert '<h2 id="effects">Effects</h2>' in html and "effects_regularizer_tv.png" in html
    rows = (out / "effects_comparisons.csv").read_text().splitlines()
    assert rows[0].startswith("setting,value,baseline,metric,kind,n,") and any(r.startswith("regularizer.tv,1,0,tv,quality,6,") for r in rows)
    assert (out / "paper" / "effects_regularizer_tv.pdf").read_bytes().startswith(b"%PDF")
    per_setting = (out / "paper" / "metrics.tex").read_text()  # a row per tv value (mean [interval] over 6 seeds), not one per run
    assert per_setting.count(r"\\") == 3 and "0 & 6 & " in per_setting and "1 & 6 & " in per_setting
    effects_only = tmp_path / "effects.html"  # the section alone, so the screenshot shows it
    effects_only.write_text(html.split('<h2 id="effects">')[0].split("<h2")[0] + '<h2 id="effects">' + html.split('<h2 id="effects">')[1].split('<h2 id="curves">')[0])
    shutil.copy(out / "effects_regularizer_tv.png", tmp_path / "effects_regularizer_tv.png")
    screenshot(effects_only, tmp_path / "effects.png")
    shot = np.asarray(Image.open(tmp_path / "effects.png").convert("RGB")).astype(float)
    blue = (shot[..., 2] > shot[..., 0] + 40) & (shot[..., 2] > 120)  # the error bands and lines (matplotlib's C0 blue)
    assert blue.mean() > 0.002
