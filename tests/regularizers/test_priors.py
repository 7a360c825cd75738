"""Learned priors: the denoiser, the patch bank, the commands that make their data, the configs."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featviz.app.build import build_run
from featviz.errors import ConfigError, DatasetError, WeightsError
from featviz.images import save_png
from featviz.params.cppn import CPPNImage
from featviz.params.pyramid import LaplacianPyramidImage
from featviz.params.maco import MacoImage
from featviz.regularizers.priors import DEFAULT_DENOISER, DEFAULT_PATCH_BANK, Denoiser, DenoiserPrior, PatchPrior, build_priors, load_denoiser, load_patch_bank
from featviz.tools.prior_data import load_folder, random_crops
from featviz.app.cli import main


def photo_like(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images with a 1/f amplitude spectrum, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None] ** 2
    spec = torch.randn(n, 3, size, size // 2 + 1, 2, generator=g)
    x = torch.fft.irfft2(torch.view_as_complex(spec) / f.sqrt().clamp_min(1 / size), s=(size, size))
    return torch.sigmoid(x / x.std())


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    for i, image in enumerate(photo_like(4, 48)):
        save_png(image, root / ("sub" if i % 2 else "") / f"img{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_and_crops(folder, tmp_path):
    images, names = load_folder(folder, max_side=32)
    assert sorted(names) == ["img0.png", "img2.png", "sub/img1.png", "sub/img3.png"]
    assert all(im.dtype == torch.uint8 and min(im.shape[-2:]) == 32 for im in images)
    a = random_crops(images, 16, 5, torch.Generator().manual_seed(0))
    b = random_crops(images, 16, 5, torch.Generator().manual_seed(0))
    assert a.shape == (5, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable"):
        load_folder(tmp_path / "empty", 32)
    with pytest.raises(DatasetError, match="does not exist"):
        load_folder(tmp_path / "missing", 32)


def test_train_denoiser_command_lowers_the_loss(folder, tmp_path, capsys):
    out = tmp_path / "den.pt"
    args = ["train-denoiser", str(folder), "--size", "16", "--steps", "16", "--batch", "8", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    losses = torch.load(out, weights_only=True)["losses"]
    assert len(losses) == 16
    # Starts as the identity (loss = noise variance 0.01), then learns to remove some noise.
    assert losses[0] == pytest.approx(0.01, rel=0.1)
    assert sum(losses[-4:]) / 4 < 0.95 * losses[0]
    assert "loss: first step" in capsys.readouterr().out
    net = load_denoiser(out)
    assert not any(p.requires_grad for p in net.parameters())


def test_untrained_denoiser_is_the_identity():
    x = torch.rand(2, 3, 20, 20)
    net = Denoiser(8).reset(torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), x)


def test_denoiser_prior_gradient_is_the_residual():
    net = Denoiser(8).reset(torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.out.weight.normal_(generator=torch.Generator().manual_seed(1))  # not the identity any more
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    prior = DenoiserPrior(1.0, net)
    prior.penalty(x).sum().backward()
    expected = (x.detach() - net(x.detach())) / (16 * 16)
    torch.testing.assert_close(x.grad, expected)
    assert x.grad.abs().max() > 0


def test_shipped_denoiser_removes_noise():
    skimage_data = pytest.importorskip("skimage.data")
    net = load_denoiser(None)
    assert DEFAULT_DENOISER.is_file()
    # A photo the shipped denoiser was not trained on (its four photos are in docs/learned_priors.md).
    grey = torch.from_numpy(skimage_data.camera()).float().div(255)
    clean = torch.nn.functional.interpolate(grey.expand(1, 3, -1, -1), size=(64, 64), mode="bilinear", antialias=True)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert ((net(noisy) - clean) ** 2).mean() < 0.3 * ((noisy - clean) ** 2).mean()


def test_patch_prior_is_zero_on_bank_patches():
    g = torch.Generator().manual_seed(0)
    bank = torch.rand(32, 3, 4, 4, generator=g)
    prior = PatchPrior(1.0, bank, stride=4)
    # A 16 x 16 image tiled with bank patches: every patch has an exact match.
    pick = torch.randint(0, 32, (16,), generator=g)
    tiles = bank[pick].view(4, 4, 3, 4, 4).permute(2, 0, 3, 1, 4).reshape(1, 3, 16, 16)
    assert float(prior.penalty(tiles)) == pytest.approx(0.0, abs=1e-10)
    noisy = (tiles + 0.05 * torch.randn(tiles.shape, generator=g)).requires_grad_(True)
    before = prior.penalty(noisy)
    assert float(before.detach()) > 0
    before.sum().backward()
    with torch.no_grad():
        after = prior.penalty(noisy - 0.5 * noisy.grad / noisy.grad.abs().max() * 0.05)
    assert float(after) < float(before.detach())  # a gradient step moves patches towards the bank


def test_patch_bank_subsampling_and_shipped_bank():
    bank = load_patch_bank(None)
    assert DEFAULT_PATCH_BANK.is_file() and bank.dtype == torch.uint8 and bank.shape[1] == 3
    prior = PatchPrior(1.0, None, bank_size=100)
    assert prior.bank.shape == (100, 3 * bank.shape[-1] ** 2) and prior.stride == bank.shape[-1] // 2
    assert PatchPrior(1.0, None, bank_size=100).bank.equal(prior.bank)  # no randomness
    assert prior.penalty(torch.rand(2, 3, 24, 24)).shape == (2,)
    with pytest.raises(ConfigError, match="smaller"):
        prior.penalty(torch.rand(1, 3, bank.shape[-1] - 1, bank.shape[-1] - 1))


def test_maco_spectrum_and_patch_bank_commands(folder, tmp_path):
    spectrum, bank = tmp_path / "spec.pt", tmp_path / "bank.pt"
    assert main(["maco-spectrum", str(folder), "--size", "16", "--crops", "8", "--out", str(spectrum)]) == 0
    assert main(["patch-bank", str(folder), "--size", "16", "--patch", "4", "--count", "40", "--out", str(bank)]) == 0
    param = MacoImage(24, spectrum=spectrum, generator=torch.Generator().manual_seed(0))
    assert param.magnitude.shape == (3, 24, 13)
    prior = PatchPrior(1.0, bank)
    assert prior.bank.shape == (40, 48) and prior.patch == 4
    with pytest.raises(WeightsError, match="patch-bank"):
        load_patch_bank(spectrum)  # a spectrum file is not a bank


def test_commands_report_bad_input(tmp_path, capsys):
    assert main(["patch-bank", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train-denoiser"):
        load_denoiser(tmp_path / "missing.pt")


def test_build_priors_weights():
    param = LaplacianPyramidImage(16)
    assert build_priors(param) == []
    priors = build_priors(param, denoiser=2.0, patch=3.0, patch_bank_size=64)
    assert [(p.name, p.weight) for p in priors] == [("denoiser", 2.0), ("patch", 3.0)]
    with pytest.raises(ConfigError, match="regularizer.patch"):
        build_priors(param, patch=-1.0)


def compose_cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        # perf off: the shared session model stays unfolded and no probe passes are spent.
        cfg = compose("config", overrides=["logger=none", "perf.fold_bn=false", "perf.channels_last=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("family", "check"),
    [
        ("laplacian", lambda p: isinstance(p.param, LaplacianPyramidImage) and len(p.param.levels) == 6),
        ("cppn", lambda p: isinstance(p.param, CPPNImage) and len(p.param.weights) == 5),
        ("maco", lambda p: isinstance(p.param, MacoImage)),
        ("denoiser", lambda p: [(r.name, r.weight) for r in p.regularizers] == [("denoiser", 3000.0)]),
        ("patch", lambda p: [(r.name, r.weight) for r in p.regularizers] == [("patch", 25000.0)]),
    ],
)
def test_spectrum_families_reach_their_knobs(lite0, family, check):
    cfg = compose_cfg("+experiment=spectrum", f"experiment/family={family}", "spectrum.level=strong")
    parts = build_run(cfg, model=lite0)
    assert check(parts), family


def test_learned_priors_experiment_builds(lite0):
    cfg = compose_cfg("+experiment=learned_priors", "param=cppn", "regularizer.patch=5000")
    parts = build_run(cfg, model=lite0)
    assert isinstance(parts.param, CPPNImage) and [r.name for r in parts.regularizers] == ["patch"]
