"""Learning-rate schedules and NAdam as optimizer configs: the rates per step, resuming, config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featviz.app.build import optimizer_from_config, schedule_from_config
from featviz.errors import ConfigError
from featviz.models import FeatureModel
from featviz.objectives.units import Channel
from featviz.params import build_param
from featviz.render import render
from featviz.schedules import LRSchedule


def test_warmup_then_cosine_to_the_floor() -> None:
    s = LRSchedule("cosine", warmup=4, lr_min=0.1)
    rates = [s.factor(k, 12) for k in range(12)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == sorted(rates[4:], reverse=True) and rates[-1] > 0.1
    assert s.factor(12, 12) == pytest.approx(0.1)


def test_step_decay_every_quarter_by_default() -> None:
    s = LRSchedule("step", gamma=0.5)
    assert [s.factor(k, 8) for k in range(8)] == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def _run(steps: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = FeatureModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), input_size=16, name="tiny")
    generator = torch.Generator().manual_seed(0)
    param = build_param("fft", generator=generator, size=16)
    nadam = optimizer_from_config({"_target_": "torch.optim.NAdam", "lr": 0.1, "schedule": "cosine", "warmup": 2})
    schedule = schedule_from_config({"schedule": "cosine", "warmup": 2})
    return render(model, Channel("1", 0), param, optimizer=nadam, steps=steps, device="cpu", generator=generator,
                  callbacks=[schedule])


def test_the_loop_records_the_scheduled_rate_and_nadam_runs() -> None:
    result = _run(6)
    lrs = [h["lr"] for h in result.history]
    assert lrs[:2] == pytest.approx([0.05, 0.1]) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_constant_rate_has_no_schedule_and_bad_values_are_refused() -> None:
    assert schedule_from_config({}) is None
    with pytest.raises(ConfigError, match="optimizer.lr_min"):
        LRSchedule("cosine", lr_min=2.0)
    with pytest.raises(ConfigError, match="optimizer.schedule"):
        LRSchedule("linear")
    opt = optimizer_from_config({"_target_": "torch.optim.NAdam", "schedule": "step", "momentum_decay": 0.004})([nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.NAdam) and "schedule" not in opt.defaults
