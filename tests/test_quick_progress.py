"""The progress bar's last number is the run's final objective, named as the views' mean."""

from __future__ import annotations

import io

import featviz
from featviz.progress import VIEWS_LABEL, ProgressBar


def test_the_last_progress_line_is_the_final_views_objective(lite0) -> None:
    stream = io.StringIO()
    result = featviz.render(lite0, "blocks.2:3", size=32, steps=4, progress=False, callbacks=[ProgressBar(min_gap_s=0.0, stream=stream)])
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("render: step 4/4 (100 %)")
    assert f"{VIEWS_LABEL} {result.final['objective']:.4g}," in last
