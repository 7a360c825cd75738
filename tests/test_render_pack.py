"""A pack (render_pack): many jobs' settings in one batched optimization, each job as if alone."""

import signal

import pytest
import torch

from conftest import rel_error
from featviz.callbacks import Callback
from featviz.checkpoint import Checkpointer
from featviz.errors import ConfigError, Preempted
from featviz.objectives.units import channel, neuron
from featviz.optimizers import eager
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage
from featviz.regularizers.frequency import L1, TotalVariation
from featviz.render import Job, render, render_pack
from featviz.transforms import build_transforms


class FirstGradient(Callback):
    """Keeps the image gradient of the first update (it is still on the parameters after the step)."""

    def __init__(self):
        self.grads = None

    def on_after_update(self, ctx, step):
        if step == 1:
            self.grads = [p.grad.detach().clone() for p in ctx.param.parameters()]


def _settings():
    """Four jobs that differ in everything a pack allows: seed, param kind and size, batch,
    transforms, crops, regularizers, optimizer and lr, objective kind, layer, unit and sign."""
    return [
        dict(objective=channel("blocks.3", 1), param=lambda g: FFTImage(32, generator=g), seed=0,
             transforms=dict(pad=4, jitter=4, scale=(0.9, 1.1), rotate=5, resize=64), regularizers=[TotalVariation(0.5)],
             optimizer=lambda ps: eager(torch.optim.Adam)(ps, lr=0.05)),
        dict(objective=-channel("blocks.5", 7), param=lambda g: PixelImage(48, generator=g), seed=1,
             transforms=dict(jitter=2, resize=64), regularizers=[L1(0.2)],
             optimizer=lambda ps: eager(torch.optim.SGD)(ps, lr=0.5, momentum=0.9)),
        dict(objective=channel("blocks.4", 3) + 0.5 * channel("blocks.5", 2).batch(1), param=lambda g: FFTImage(40, batch=2, generator=g), seed=2,
             transforms=dict(jitter=3, crops=2, resize=64), regularizers=[],
             optimizer=lambda ps: eager(torch.optim.Adam)(ps, lr=0.05)),
        dict(objective=channel("blocks.3", 5), param=lambda g: FFTImage(32, generator=g), seed=3,
             transforms=dict(resize=64), regularizers=[TotalVariation(2.0)],
             optimizer=lambda ps: eager(torch.optim.Adam)(ps, lr=0.02)),
    ]


def _job(setting, steps, callbacks=()):
    g = torch.Generator().manual_seed(setting["seed"])
    return Job(setting["objective"], param=setting["param"](g), transforms=build_transforms(**setting["transforms"]),
               regularizers=setting["regularizers"], optimizer=setting["optimizer"], steps=steps, generator=g,
               callbacks=list(callbacks))


@pytest.fixture(scope="module")
def optimized_lite0(plain_lite0):
    """Lite0 with the CLI's default speed-ups, its own copy: the packed-vs-solo figures do not depend on test order."""
    import copy

    from featviz.models.speedups import PerfOptions

    return copy.deepcopy(plain_lite0).optimize(PerfOptions())


@pytest.fixture(scope="module")
def packed_and_solo(optimized_lite0):
    """The four jobs as one pack and each alone, 32 steps, with their first gradients."""
    lite0 = optimized_lite0
    settings = _settings()
    pack_grads = [FirstGradient() for _ in settings]
    packed = render_pack(lite0, [_job(s, 32, [c]) for s, c in zip(settings, pack_grads)], "cpu")
    solo = []
    for s in settings:
        grad = FirstGradient()
        (result,) = render_pack(lite0, [_job(s, 32, [grad])], "cpu")
        solo.append((result, grad))
    return packed, pack_grads, solo


def test_each_packed_jobs_first_gradient_is_its_solo_gradient(packed_and_solo):
    _, pack_grads, solo = packed_and_solo
    for packed, (_, alone) in zip(pack_grads, solo):
        for a, b in zip(packed.grads, alone.grads):
            assert rel_error(a, b) < 1e-4


def test_after_32_steps_a_packed_job_is_bit_identical_beside_other_neighbours_of_the_same_rows(packed_and_solo, optimized_lite0):
    """Rows do not mix: with the batch's shape fixed, every kernel is the same, so a job's 32
    steps are the same bytes whoever its neighbours are (on any CPU, by construction). Against
    solo the batch shape, hence the kernels, differ; that drift is measured, not bounded, in
    docs/fused_sweeps.md."""
    packed, _, solo = packed_and_solo
    settings = _settings()
    for k in (1, 2):  # other seeds, the same rows
        settings[k] = {**settings[k], "seed": settings[k]["seed"] + 100}
    neighbours = render_pack(optimized_lite0, [_job(s, 32) for s in settings], "cpu")
    for i in (0, 3):
        assert torch.equal(neighbours[i].images, packed[i].images)
        assert neighbours[i].final["objective"] == packed[i].final["objective"]
    for result, (alone, _) in zip(packed, solo):
        assert result.images.shape == alone.images.shape


def test_a_pack_is_reproducible_to_the_bit(lite0):
    settings = _settings()[:2]
    runs = [render_pack(lite0, [_job(s, 6) for s in settings], "cpu") for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a.images, b.images)


def test_a_single_render_is_a_pack_of_one(lite0):
    s = _settings()[0]
    g = torch.Generator().manual_seed(0)
    alone = render(lite0, s["objective"], param=s["param"](g), transforms=build_transforms(**s["transforms"]),
                   regularizers=s["regularizers"], optimizer=s["optimizer"], steps=5, generator=g, device="cpu")
    (packed,) = render_pack(lite0, [_job(s, 5)], "cpu")
    assert torch.equal(alone.images, packed.images)


class Boom(Callback):
    def on_after_update(self, ctx, step):
        if step == 3:
            raise RuntimeError("boom at step 3")


def test_a_failing_job_fails_alone_and_its_callbacks_are_told(lite0):
    settings = _settings()
    told = []

    class Told(Callback):
        def on_error(self, ctx, error, step):
            told.append((str(error), step))

    bad_unit = _job(settings[0], 6)
    bad_unit.objective = channel("blocks.3", 10_000)  # out of range: refused before the first step
    jobs = [_job(settings[3], 6), bad_unit, _job(settings[1], 6, [Boom(), Told()]), _job(settings[2], 4)]
    outcomes = render_pack(lite0, jobs, "cpu")
    assert outcomes[0].steps == 6 and outcomes[3].steps == 4  # the others complete (one leaves the pack early)
    assert isinstance(outcomes[1], Exception) and "10000" in str(outcomes[1])
    assert isinstance(outcomes[2], RuntimeError) and told == [("boom at step 3", 3)]
    (alone,) = render_pack(lite0, [_job(settings[3], 6)], "cpu")
    assert rel_error(outcomes[0].images, alone.images) < 1e-3


def test_render_raises_what_its_pack_of_one_failed_with(lite0):
    with pytest.raises(ConfigError, match="steps=0"):
        render(lite0, channel("blocks.3", 0), param=PixelImage(32), steps=0, device="cpu")


class SignalAt(Callback):
    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_after_update(self, ctx, step):
        if step == self.step:
            signal.raise_signal(self.signum)


def test_a_signal_checkpoints_every_job_of_the_pack_before_it_stops(lite0, tmp_path):
    settings = _settings()[:3]
    paths = [tmp_path / f"{i}.pt" for i in range(3)]
    # The signal comes while job 1 updates: job 0 has passed its step boundary, so it saves one step later.
    jobs = [_job(s, 20, ([SignalAt(4, signal.SIGUSR1)] if i == 1 else []) + [Checkpointer(p)]) for i, (s, p) in enumerate(zip(settings, paths))]
    with pytest.raises(Preempted) as stop:
        render_pack(lite0, jobs, "cpu")
    assert stop.value.signal_name == "SIGUSR1"
    steps = [torch.load(p, weights_only=True)["step"] for p in paths]
    assert steps == [5, 4, 4]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # the handlers are put back
    resumed = render_pack(lite0, [_job(s, 20, [Checkpointer(p)]) for s, p in zip(settings, paths)], "cpu")
    for job, path in zip(resumed, paths):
        assert job.steps == 20 and not path.exists()


def test_a_pack_shares_one_redirected_relu_and_takes_it_off(lite0):
    from featviz.schedules import _HOLDERS, RedirectedReLU

    settings = _settings()[:2]
    grads = [FirstGradient() for _ in settings]
    render_pack(lite0, [_job(s, 6, [RedirectedReLU(4), g]) for s, g in zip(settings, grads)], "cpu")
    for s, packed in zip(settings, grads):
        alone = FirstGradient()
        render_pack(lite0, [_job(s, 6, [RedirectedReLU(4), alone])], "cpu")
        for a, b in zip(packed.grads, alone.grads):
            assert rel_error(a, b) < 1e-4
    assert not _HOLDERS and not any(m._forward_hooks for m in lite0.net.modules())


def test_a_seed_the_generator_cannot_tell_apart_is_refused(lite0):
    with pytest.raises(ConfigError, match="seed=4294967296 is outside"):
        render(lite0, channel("blocks.3", 0), param=PixelImage(32), steps=1, seed=2**32, device="cpu")
