import hashlib
import json

import pytest
import torch

from featviz.errors import ConfigError, NonFiniteLossError
from featviz.objectives.units import Channel
from featviz.objectives.base import Objective
from featviz.writer import RunWriter
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage
from featviz.regularizers.frequency import L1
from featviz.render import render
from featviz.transforms import build_transforms


def small_render(model, seed=0, steps=12, param_kind="fft", device="cpu", **kw):
    g = torch.Generator().manual_seed(seed)
    param = (FFTImage if param_kind == "fft" else PixelImage)(32, batch=kw.pop("batch", 1), generator=g)
    return render(model, Channel("blocks.2", 5), param=param, transforms=build_transforms(jitter=2, rotate=5, resize=48), steps=steps, device=device, generator=g, **kw)


@pytest.mark.parametrize("param_kind", ["fft", "pixel"])
def test_objective_increases(lite0, param_kind, device):
    res = small_render(lite0, param_kind=param_kind, device=device)
    objs = [h["objective"] for h in res.history]
    assert len(objs) == 13
    assert objs[-1] > objs[0] + 1.0
    assert res.images.shape == (1, 3, 32, 32)
    assert res.final["objective_max"] >= res.final["objective"]


def test_same_seed_same_bytes_different_seed_differs(lite0, device):
    def digest(seed):
        return hashlib.sha256(small_render(lite0, seed=seed, steps=5, device=device).images.cpu().numpy().tobytes()).hexdigest()

    assert digest(3) == digest(3)
    assert digest(3) != digest(4)


def test_batch_and_regularizer_terms(lite0, device):
    res = small_render(lite0, steps=3, batch=2, regularizers=[L1(0.1)], device=device)
    assert res.images.shape[0] == 2
    assert "reg/l1" in res.history[0]
    assert res.history[0]["loss"] == pytest.approx(-res.history[0]["objective"] + res.history[0]["reg/l1"], rel=1e-5)


def test_weights_get_no_gradient(lite0, device):
    small_render(lite0, steps=2, device=device)
    assert all(p.grad is None for p in lite0.parameters())


def test_log_every_and_snapshots(lite0, tmp_path):
    small_render(lite0, steps=10, log_every=4, snapshots=[0, 3, 10, 99], callbacks=[RunWriter(tmp_path)])
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 3, 4, 8, 10]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["step_0.png", "step_10.png", "step_3.png"]
    assert (tmp_path / "final.png").exists() and (tmp_path / "final_0.png").exists()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"


class _Diverging(Objective):
    """A real objective that becomes NaN once the channel passes a threshold."""

    def __init__(self, threshold: float) -> None:
        self.inner = Channel("blocks.2", 5)
        self.layers = self.inner.layers
        self.threshold = threshold

    def score(self, acts):
        c = self.inner(acts)
        return c + 0.0 * torch.log(self.threshold - c)


def test_nan_stops_the_run_and_keeps_snapshots(lite0, tmp_path):
    start = small_render(lite0, steps=1).history[0]["objective"]
    g = torch.Generator().manual_seed(0)
    with pytest.raises(NonFiniteLossError, match="lower optimizer.lr"):
        render(lite0, _Diverging(start + 0.3), param=FFTImage(32, generator=g), transforms=build_transforms(resize=48), steps=50,
               snapshots=[0, 1], device="cpu", generator=g, callbacks=[RunWriter(tmp_path)])
    assert (tmp_path / "snapshots" / "step_0.png").exists()
    assert not (tmp_path / "final.png").exists()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "failed" and result["error"]["type"] == "NonFiniteLossError"
    assert result["steps_done"] > 0


def test_bad_steps_and_lr(lite0):
    with pytest.raises(ConfigError, match="steps=0"):
        small_render(lite0, steps=0)
    with pytest.raises(ConfigError, match="optimizer.lr"):
        small_render(lite0, steps=2, optimizer=lambda p: torch.optim.Adam(p, lr=float("nan")))
