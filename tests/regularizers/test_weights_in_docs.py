"""Every frequency-penalty weight the README, the docs and the presets show moves its metric.

Weights had drifted orders of magnitude from what the penalties needed (a README sweep of
``regularizer.tv=0,0.05,0.25,1`` gave four identical images). This reads every
``regularizer.<l1|tv|blur|bilateral>=...`` written in README.md and docs/, and the presets
of conf/regularizer/ and conf/experiment/family/, renders each weight on a small version of
the default pipeline (FFT image, standard transforms) and checks it moves its metric against
the unregularized image: TV (tv, blur, bilateral) or the mean distance to grey (l1).
"""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from conftest import REPO
from featviz.ops import total_variation
from featviz.params import FFTImage
from featviz.regularizers import build_regularizers
from featviz.render import render
from featviz.objectives import channel
from featviz.transforms import build_transforms

NAMES = ("l1", "tv", "blur", "bilateral")
WRITTEN = re.compile(r"regularizer\.(l1|tv|blur|bilateral)=([0-9][0-9.,]*)")
SIZE, STEPS = 48, 24
# The smallest weight shown (0.05) must move its metric by at least this fraction.
MOVES = 0.1


def shown_weights() -> list[tuple[str, float]]:
    """(name, weight > 0) for every weight written in the docs or set by a preset."""
    found: set[tuple[str, float]] = set()
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for name, values in WRITTEN.findall(path.read_text()):
            found |= {(name, float(v)) for v in values.strip(",.").split(",") if v and float(v) > 0}
    for path in sorted((REPO / "conf" / "regularizer").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        found |= {(n, float(cfg[n])) for n in NAMES if float(cfg.get(n) or 0) > 0}
    for name in NAMES:
        family = yaml.safe_load((REPO / "conf" / "experiment" / "family" / f"{name}.yaml").read_text())
        found |= {(name, float(w)) for w in family["spectrum"]["strengths"].values()}
    return sorted(found)


def metric(name: str, images: torch.Tensor) -> float:
    """What the penalty lowers: grey distance for L1, total variation for the others."""
    return float((images - 0.5).abs().mean()) if name == "l1" else float(total_variation(images).mean())


def _render(lite0, **weights: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    result = render(
        lite0,
        channel("blocks.6", 11),
        param=FFTImage(SIZE, generator=generator),
        transforms=build_transforms(pad=4, jitter=3, scale=[0.9, 1.1], rotate=10, jitter_after=2),
        regularizers=build_regularizers(**weights),
        steps=STEPS,
        device="cpu",
        generator=generator,
    )
    return result.images


@pytest.fixture(scope="module")
def plain(lite0) -> torch.Tensor:
    return _render(lite0)


def test_the_docs_show_weights_of_every_penalty() -> None:
    shown = shown_weights()
    assert {n for n, _ in shown} == set(NAMES)
    assert ("tv", 0.05) in shown and ("tv", 1.0) in shown  # the README's tracking sweep


@pytest.mark.parametrize("name, weight", shown_weights(), ids=lambda v: str(v))
def test_each_shown_weight_moves_its_metric(lite0, plain: torch.Tensor, name: str, weight: float) -> None:
    before, after = metric(name, plain), metric(name, _render(lite0, **{name: weight}))
    assert after < (1 - MOVES) * before, f"regularizer.{name}={weight}: {before:.4g} -> {after:.4g}"
