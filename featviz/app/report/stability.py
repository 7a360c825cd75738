"""``seed_stability`` for the report: how alike one config's final images are over its seeds.

Computed at report time, not per run, because it needs every seed's image: the eval
network's pooled features of each run's final image(s), then their mean pairwise cosine
similarity (:func:`featviz.metrics.scorecard.seed_stability`). A batch run compares image
``i`` with image ``i`` of the other seeds and averages over ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featviz.app.report.tables import Row
from featviz.metrics.features import pooled_features
from featviz.metrics.scorecard import seed_stability
from featviz.models import FeatureModel, build_model
from featviz.rundir import JobRecord
from featviz.tools.dataset_examples import load_image


def _images(run: JobRecord) -> list[Path]:
    """A run's per-image finals (``final_<i>.png``), or its ``final.png``."""
    singles = sorted(run.folder.glob("final_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    return singles or ([run.final_image] if run.final_image else [])


def add_seed_stability(rows: Sequence[Row], runs: Sequence[JobRecord], model_name: str) -> None:
    """Set ``seed_stability`` on every row that averages two or more completed runs."""
    by_job = {r.job: r for r in runs}
    model: FeatureModel | None = None
    for row in rows:
        members = [by_job[j] for j in row.jobs if by_job[j].status == "completed"]
        files = [_images(r) for r in members]
        count = min((len(f) for f in files), default=0)
        if len(members) < 2 or count == 0:
            continue
        model = model or build_model(model_name)
        per_index = []
        for i in range(count):
            images = torch.stack([load_image(f[i], model.input_size) for f in files])
            per_index.append(seed_stability(pooled_features(model, images)))
        row.values["seed_stability"] = sum(per_index) / len(per_index)
