"""The richer parameterizations: Laplacian pyramid, CPPN, MACO and generator."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from featviz.app.build import build_run, instantiate_module, param_from_config
from featviz.errors import ConfigError, WeightsError
from featviz.objectives.units import Channel
from featviz.params import PARAMS, build_param
from featviz.params.maco import DEFAULT_SPECTRUM, MacoImage, _bin_weights, estimate_magnitude, load_magnitude, resample_magnitude
from featviz.params.generator import GeneratorImage
from featviz.params.pyramid import LaplacianPyramidImage
from featviz.regularizers.priors import LatentPrior
from featviz.render import render
from featviz.transforms import build_transforms

# A generator as Hydra config: z [B, 8, 1, 1] -> 3 x 8 x 8 in [-1, 1] (random weights stand in for a trained net).
TINY_NET = {
    "_target_": "torch.nn.Sequential",
    "_args_": [{"_target_": "torch.nn.ConvTranspose2d", "in_channels": 8, "out_channels": 3, "kernel_size": 8}, {"_target_": "torch.nn.Tanh"}],
}


def tiny_net() -> nn.Module:
    net = nn.Sequential(nn.ConvTranspose2d(8, 3, kernel_size=8), nn.Tanh())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in net.parameters():
            t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return net


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "gen.pt"
    torch.save(tiny_net().state_dict(), path)
    return path


def photo_like(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images with a 1/f amplitude spectrum, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None] ** 2
    spec = torch.randn(n, 3, size, size // 2 + 1, 2, generator=g)
    x = torch.fft.irfft2(torch.view_as_complex(spec) / f.sqrt().clamp_min(1 / size), s=(size, size))
    return torch.sigmoid(x / x.std())


def make(kind: str, seed: int, **kw):
    g = torch.Generator().manual_seed(seed)
    if kind == "generator":
        return GeneratorImage(tiny_net(), size=32, batch=3, latent_shape=[8, 1, 1], generator=g, **kw)
    return build_param(kind, generator=g, size=32, batch=3, **kw)


@pytest.mark.parametrize("kind", ["laplacian", "cppn", "maco", "generator"])
def test_shape_range_and_seed(kind):
    assert kind in PARAMS
    a, b, c = make(kind, 1)(), make(kind, 1)(), make(kind, 2)()
    assert a.shape == (3, 3, 32, 32)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # batch elements are independent draws


@pytest.mark.parametrize("kind", ["laplacian", "cppn", "maco"])
def test_render_raises_the_objective(lite0, kind):
    g = torch.Generator().manual_seed(0)
    param = build_param(kind, generator=g, size=32)
    res = render(lite0, Channel("blocks.2", 5), param=param, transforms=build_transforms(jitter=2), steps=8, device="cpu", generator=g)
    objs = [h["objective"] for h in res.history]
    assert objs[-1] > objs[0] + 1.0, objs


def test_laplacian_levels_are_coarse_copies():
    p = LaplacianPyramidImage(32, levels=3, sd=0.1, decorrelate=False, value_range="clamp")
    assert [tuple(t.shape[-2:]) for t in p.levels] == [(32, 32), (16, 16), (8, 8)]
    with torch.no_grad():
        p.levels[0].zero_()
        p.levels[1].zero_()
    # Only the 8 x 8 level is left: the image is that level upsampled, no finer detail.
    coarse = torch.nn.functional.interpolate(p.levels[2].detach(), size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(p().detach(), (coarse + 0.5).clamp(0, 1))
    p().sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in p.levels)  # every level gets a gradient
    with pytest.raises(ConfigError):
        LaplacianPyramidImage(16, levels=6)


def test_maco_keeps_the_magnitude_while_the_phase_moves():
    mag = estimate_magnitude(photo_like())
    p = MacoImage(32, batch=2, magnitude=mag, generator=torch.Generator().manual_seed(0))
    before = p.field().detach()
    opt = torch.optim.Adam(p.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        (-p()[:, 0].mean()).backward()  # ask for more red
        opt.step()
    after = p.field().detach()
    assert (after - before).abs().max() > 0.01
    for field in (before, after):
        got = torch.fft.rfft2(field, norm="ortho").abs()
        torch.testing.assert_close(got, p.magnitude.expand_as(got), atol=1e-4, rtol=1e-4)
    assert float(p().detach().mean()) == pytest.approx(0.5, abs=0.05)  # the DC bin is fixed at 0: mean colour stays grey


def test_magnitude_estimate_and_resampling():
    images = photo_like(size=32)
    mag = estimate_magnitude(images)
    assert mag.shape == (3, 32, 17) and mag[:, 0, 0].eq(0).all()
    # Orthonormal FFT: the mean power over the full spectrum is the pixel variance.
    variance = (mag**2 * _bin_weights(32, 32)).sum((-2, -1)) / 32**2
    assert variance.sqrt().min() > 0.01
    for size in (16, 48):
        out = resample_magnitude(mag, size)
        assert out.shape == (3, size, size // 2 + 1)
        torch.testing.assert_close((out**2 * _bin_weights(size, size)).sum((-2, -1)) / size**2, variance)
    assert torch.equal(resample_magnitude(mag, 32), mag)


def test_shipped_spectrum_is_natural():
    mag = load_magnitude(None)
    assert DEFAULT_SPECTRUM.is_file() and mag.shape[0] == 3
    fy = torch.fft.fftfreq(mag.shape[1])[:, None]
    fx = torch.fft.rfftfreq(mag.shape[1])[None]
    r = (fx**2 + fy**2).sqrt()
    low, high = mag[:, (r > 0.02) & (r < 0.05)].mean(), mag[:, (r > 0.2) & (r < 0.5)].mean()
    assert low > 10 * high  # about 1/f: a decade of frequency, a decade of amplitude


def test_maco_bad_spectrum(tmp_path):
    with pytest.raises(ConfigError, match="maco-spectrum"):
        MacoImage(32, spectrum=tmp_path / "missing.pt")
    torch.save({"magnitude": torch.ones(3, 8)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError):
        MacoImage(32, spectrum=tmp_path / "bad.pt")
    with pytest.raises(ConfigError):
        MacoImage(32, lr_scale=0)


def test_generator_optimizes_only_the_latent(checkpoint):
    p = GeneratorImage(tiny_net(), checkpoint=checkpoint, size=32, latent_shape=[8, 1, 1], generator=torch.Generator().manual_seed(0))
    p.train()
    assert not p.net.training
    ref = tiny_net()
    expected = torch.nn.functional.interpolate((ref(p.latent.detach()) + 1) / 2, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(p().detach(), expected)
    p().mean().backward()
    assert p.latent.grad is not None and p.latent.grad.abs().sum() > 0
    assert all(t.grad is None for t in p.net.parameters())
    prior = LatentPrior(1.0, p)
    torch.testing.assert_close(prior.penalty(p()), 0.5 * p.latent.detach().pow(2).flatten(1).mean(1))


def test_generator_errors(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match="checkpoint is required"):
        param_from_config({"kind": "generator", "net": TINY_NET, "checkpoint": None, "size": 32, "latent_shape": [8, 1, 1]}, 1, torch.Generator())
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        GeneratorImage(TINY_NET, checkpoint=checkpoint, size=32)
    with pytest.raises(WeightsError, match="does not exist"):
        GeneratorImage(tiny_net(), checkpoint=tmp_path / "nope.pt", size=32, latent_shape=[8, 1, 1])
    torch.save(nn.Linear(8, 5).state_dict(), tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        GeneratorImage(tiny_net(), checkpoint=tmp_path / "other.pt", size=32, latent_shape=[8, 1, 1])
    with pytest.raises(ConfigError, match="_target_"):
        instantiate_module({"_target_": "no.such.Module"}, "param.net")
    with pytest.raises(ConfigError, match="param=generator"):
        LatentPrior(1.0, build_param("fft", size=32))


def compose_cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        # perf off: the shared session model stays unfolded and no probe passes are spent.
        cfg = compose("config", overrides=["logger=none", "perf.fold_bn=false", "perf.channels_last=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["laplacian", "cppn", "maco"])
def test_config_groups_build(lite0, kind):
    parts = build_run(compose_cfg(f"param={kind}", "param.size=32", "batch=2"), model=lite0)
    assert type(parts.param) is PARAMS[kind]
    assert parts.param().shape == (2, 3, 32, 32)


def test_generator_config_group_builds_with_the_latent_prior(lite0, checkpoint):
    cfg = compose_cfg("param=generator", "param.size=32", "param.latent_shape=[8, 1, 1]", f"param.checkpoint={checkpoint}", "regularizer.latent=0.5")
    cfg["param"]["net"] = TINY_NET  # what `+param.net={...}` or a param/my_gan.yaml would give
    parts = build_run(cfg, model=lite0)
    assert isinstance(parts.param, GeneratorImage)
    assert [type(r) for r in parts.regularizers] == [LatentPrior]
    with pytest.raises(ConfigError, match="param=generator"):
        build_run(compose_cfg("param.size=32", "regularizer.latent=0.5"), model=lite0)
