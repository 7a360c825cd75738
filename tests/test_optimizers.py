"""featviz.optimizers.eager: torch's optimizers with their compile guards off give the same
steps bit for bit, save and load the same state, and never import torch._dynamo."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from featviz.optimizers import eager


def _steps(cls: type[torch.optim.Optimizer], **kwargs: float) -> tuple[torch.Tensor, dict]:
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12))
    opt = cls([p], **kwargs)
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        (p.sin() * p).sum().backward()
        opt.step()
    return p.detach().clone(), opt.state_dict()


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.NAdam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop])
def test_eager_steps_are_the_plain_ones(cls) -> None:
    kwargs = {"lr": 0.05, **({"momentum": 0.9} if cls is torch.optim.SGD else {})}
    want, want_state = _steps(cls, **kwargs)
    got, got_state = _steps(eager(cls), **kwargs)
    assert torch.equal(got, want)
    assert issubclass(eager(cls), cls) and eager(cls) is eager(cls)
    assert got_state["param_groups"] == want_state["param_groups"]
    for key, value in want_state["state"][0].items():
        assert torch.equal(got_state["state"][0][key], value), key


def test_a_users_own_decorated_step_is_left_as_it_is() -> None:
    calls = []

    def counted(step):
        @functools.wraps(step)
        def run(self, closure=None):
            calls.append(1)
            return step(self, closure)
        return run

    class Mine(torch.optim.SGD):
        step = counted(torch.optim.SGD.step)

    p = torch.nn.Parameter(torch.ones(2))
    opt = eager(Mine)([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert calls == [1] and torch.equal(p.detach(), torch.full((2,), 0.9))


def test_eager_state_loads_and_continues_like_the_plain_one() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = eager(torch.optim.Adam)([p], lr=0.1)
    p.grad = torch.full((3,), 0.5)
    opt.step()
    state = opt.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    plain = torch.optim.Adam([q], lr=0.1)
    plain.load_state_dict(copy.deepcopy(state))  # loading keeps the tensors: each gets its own
    again = eager(torch.optim.Adam)([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    again.load_state_dict(copy.deepcopy(state))
    for o in (plain, again):
        o.param_groups[0]["params"][0].grad = torch.full((3,), -0.25)
        o.step()
    assert torch.equal(plain.param_groups[0]["params"][0], again.param_groups[0]["params"][0])


def test_a_render_never_imports_dynamo() -> None:
    """In a fresh interpreter: a render with checkpoints of its state (state_dict) leaves
    torch._dynamo unimported (it costs 1.5 s of every process)."""
    code = (
        "import sys, torch\n"
        "from featviz import render\n"
        "from featviz.models import build_model\n"
        "from featviz.objectives.units import Channel\n"
        "from featviz.params.fourier import FFTImage\n"
        "model = build_model('efficientnet_lite0', weights='none', input_size=32)\n"
        "result = render(model, Channel('blocks.1', 0), param=FFTImage(32), steps=3)\n"
        "assert 'torch._dynamo' not in sys.modules, 'render imported torch._dynamo'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
